//! Keeping a slot's worker alive: the supervisor task (start, health pings, restart with
//! backoff, stop) and the errors calls see when a worker dies, hangs or breaks the
//! connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tonic::Status;

use super::link::read_answers;
use super::{Incarnation, Link, Slot, SlotState, WorkerPoolConfig, process};
use crate::error::{BridgeError, ErrorKind};

pub(super) fn crashed(slot: &Slot, worker: &Incarnation, what: &str) -> BridgeError {
    let how = worker
        .ended
        .borrow()
        .clone()
        .unwrap_or_else(|| "its connection broke".to_owned());
    BridgeError::new(
        ErrorKind::WorkerCrashed,
        format!(
            "worker {} (pid {}) died while running {what}: {how}; the call's side effects are unknown",
            slot.id, worker.pid
        ),
    )
    .with("worker_id", &slot.id)
    .with("pid", worker.pid)
    .with("exit_status", how)
}

pub(super) fn timed_out(slot: &Slot, what: &str, timeout: Duration) -> BridgeError {
    BridgeError::new(
        ErrorKind::Timeout,
        format!(
            "{what} did not finish on worker {} within {}s (--operation-timeout-secs)",
            slot.id,
            timeout.as_secs_f64()
        ),
    )
    .with("worker_id", &slot.id)
    .with("timeout_secs", timeout.as_secs_f64())
}

/// The error for a failed worker call: the worker's own `BridgeError` when it sent one;
/// otherwise the transport failed, which means the worker died or its connection broke.
pub(super) async fn failure(
    slot: &Slot,
    worker: &Incarnation,
    what: &str,
    status: Status,
) -> BridgeError {
    if !status.details().is_empty() {
        let mut error = BridgeError::from_status(&status);
        if !error.context.contains_key("worker_id") {
            error = error.with("worker_id", &slot.id);
        }
        return error;
    }
    // A broken connection is usually noticed just before the exit: give the supervisor a
    // moment to report how the process ended.
    let mut ended = worker.ended.clone();
    let _ = tokio::time::timeout(Duration::from_millis(500), until_ended(&mut ended)).await;
    if worker.ended.borrow().is_some()
        || matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown
        )
    {
        let mut error = crashed(slot, worker, what);
        if worker.ended.borrow().is_none() {
            error.message = format!(
                "the connection to worker {} (pid {}) broke while running {what}: {}; the \
                 call's side effects are unknown",
                slot.id,
                worker.pid,
                status.message()
            );
        }
        return error;
    }
    BridgeError::new(
        ErrorKind::Internal,
        format!(
            "worker {} answered {what} with {:?} and no error details: {}",
            slot.id,
            status.code(),
            status.message()
        ),
    )
    .with("worker_id", &slot.id)
}

/// Completes when the worker has ended (or its supervisor is gone).
pub(super) async fn until_ended(ended: &mut watch::Receiver<Option<String>>) {
    let _ = ended.wait_for(Option::is_some).await;
}

/// Completes when the pool shuts down (or is dropped).
pub(super) async fn until_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Keeps one slot's worker running until shutdown: reports its end to calls in flight,
/// restarts it with exponential backoff, and stops it on shutdown.
pub(super) async fn supervise(
    slot: Arc<Slot>,
    config: WorkerPoolConfig,
    hub: process::Hub,
    mut shutdown: watch::Receiver<bool>,
    first: process::Launched,
) {
    let mut launched = first;
    let mut backoff = config.restart_backoff;
    loop {
        let process::Launched {
            mut child,
            link,
            inbound,
            description,
        } = launched;
        let pid = description.pid;
        // `Child::wait` closes the child's stdin, which tells a worker to exit: hold it here.
        let stdin = child.stdin.take();
        let (ended_tx, ended) = watch::channel(None);
        let client = Link(Arc::clone(&link));
        slot.state
            .send_replace(SlotState::Ready(Arc::new(Incarnation {
                client: client.clone(),
                pid,
                ended,
            })));
        let up_since = Instant::now();
        let how = tokio::select! {
            status = child.wait() => match status {
                Ok(status) => format!("it exited ({status})"),
                Err(e) => format!("waiting for it failed: {e}"),
            },
            reason = unhealthy(client, &config) => {
                let _ = child.kill().await;
                format!("{reason} and was killed")
            }
            broke = read_answers(&link, inbound) => {
                // Its stream ended: it is exiting or stuck; its exit status says more.
                match tokio::time::timeout(Duration::from_millis(500), child.wait()).await {
                    Ok(Ok(status)) => format!("it exited ({status})"),
                    _ => {
                        let _ = child.kill().await;
                        format!("{broke}, and it was killed")
                    }
                }
            }
            () = until_shutdown(&mut shutdown) => {
                ended_tx.send_replace(Some("the engine is shutting down".to_owned()));
                slot.state.send_replace(SlotState::Stopped);
                drop(stdin);
                process::stop(child, config.stop_grace).await;
                return;
            }
        };
        // Calls in flight fail now, not when they time out.
        ended_tx.send_replace(Some(how.clone()));
        link.close(&how);
        slot.state.send_replace(SlotState::Starting);
        drop((child, stdin));
        if up_since.elapsed() >= config.stable_after {
            backoff = config.restart_backoff;
        }
        warn(format_args!(
            "mlbridge: worker {} (pid {pid}) stopped: {how}; restarting in {}ms",
            slot.id,
            backoff.as_millis()
        ));
        launched = loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                () = until_shutdown(&mut shutdown) => {
                    slot.state.send_replace(SlotState::Stopped);
                    return;
                }
            }
            backoff = (backoff * 2).min(config.max_restart_backoff);
            let attempt = tokio::select! {
                attempt = process::launch(&config, &slot.id, &hub) => attempt,
                () = until_shutdown(&mut shutdown) => {
                    slot.state.send_replace(SlotState::Stopped);
                    return;
                }
            };
            match attempt {
                Ok(worker) => break worker,
                Err(error) => warn(format_args!(
                    "mlbridge: restarting worker {} failed: {}; retrying in {}ms",
                    slot.id,
                    error.message,
                    backoff.as_millis()
                )),
            }
        };
        slot.restarts.fetch_add(1, Ordering::Relaxed);
        warn(format_args!(
            "mlbridge: worker {} restarted (pid {})",
            slot.id, launched.description.pid
        ));
    }
}

/// A line about the pool's health: a log event under `mlbridge serve`'s subscriber, plain
/// stderr when the engine is embedded without one.
pub(super) fn warn(message: std::fmt::Arguments<'_>) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!("{message}");
    } else {
        eprintln!("{message}");
    }
}

/// A line about a worker that comes or goes as planned: an info event under a subscriber,
/// nothing when the engine is embedded without one.
pub(super) fn info(message: std::fmt::Arguments<'_>) {
    tracing::info!("{message}");
}

/// Completes when the worker misses `health_failures` pings in a row, with the reason.
pub(super) async fn unhealthy(client: Link, config: &WorkerPoolConfig) -> String {
    let mut missed = 0u32;
    let mut tick = tokio::time::interval(config.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let ping = client.ping();
        let last = match tokio::time::timeout(config.health_timeout, ping).await {
            Ok(Ok(_)) => {
                missed = 0;
                continue;
            }
            Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
            Err(_) => format!("no answer within {}s", config.health_timeout.as_secs_f64()),
        };
        missed += 1;
        if missed >= config.health_failures {
            return format!("it failed {missed} health pings in a row (last: {last})");
        }
    }
}
