//! The worker pool: a fixed number of slots, each running one Python worker
//! (`python -m mlbridge.worker`). The pool starts them, waits until they are ready, keeps
//! them healthy (exit detection, health pings, restart with exponential backoff), pins each
//! session to one slot, and routes checked framework operation and tool calls to the
//! session's worker. It hears that a session ended from the state backend's session events.
//!
//! No worker outlives the engine: each one exits when its stdin (a pipe the engine holds)
//! closes, which the kernel does however the engine ends.

mod config;
mod dispatch;
mod pins;
mod process;
mod supervise;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use mlbridge_proto::mlbridge::v1::{self as pb, worker_client::WorkerClient};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tonic::Status;

use crate::error::{BridgeError, ErrorKind, Result};
use crate::listen::ListenAddr;
use crate::state::SessionEvents;

pub use config::{WorkerPoolConfig, default_python};
pub use dispatch::ToolChunkStream;
use pins::{Pins, unpin_ended};
pub use process::READY_PREFIX;
use supervise::{crashed, failure, supervise, timed_out, until_ended};

/// The state of one slot, as calls see it.
#[derive(Clone)]
enum SlotState {
    /// Its worker is starting or restarting.
    Starting,
    /// Its worker serves.
    Ready(Arc<Incarnation>),
    /// The pool has shut down.
    Stopped,
}

/// One run of a slot's worker process.
struct Incarnation {
    client: WorkerClient<process::WorkerChannel>,
    pid: u32,
    /// Becomes `Some(how it ended)` when the process dies or is killed.
    ended: watch::Receiver<Option<String>>,
}

struct Slot {
    id: String,
    listen: String,
    state: watch::Sender<SlotState>,
    /// One permit per call the worker may run at once.
    calls: Arc<Semaphore>,
    restarts: AtomicU64,
}

struct PoolInner {
    config: WorkerPoolConfig,
    slots: Vec<Arc<Slot>>,
    adapters: Vec<pb::AdapterDescription>,
    tools: HashMap<String, (pb::ToolSpec, String)>,
    engine_address: OnceLock<String>,
    pins: Mutex<Pins>,
    shutdown: watch::Sender<bool>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
    socket_dir: PathBuf,
}

/// A worker pool's health at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolHealth {
    /// Worker slots.
    pub slots: usize,
    /// Workers started and serving.
    pub alive: usize,
    /// Workers running at least one call.
    pub busy: usize,
    /// Calls running on workers.
    pub calls: usize,
    /// Restarts over all slots since the pool started.
    pub restarts: u64,
}

/// A supervised pool of Python workers. Cheap to clone; clones share the pool.
///
/// Embedding an engine with workers (what `mlbridge serve --workers 2` does):
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use mlbridge_engine::{Engine, ListenAddr, WorkerPoolConfig};
///
/// let pool = WorkerPoolConfig::new(2)
///     .adapter("mlbridge_adapters.builtin")
///     .start()
///     .await?;
/// let engine = Engine::builder().workers(pool.clone()).build();
/// let addr: ListenAddr = "127.0.0.1:0".parse()?;
/// mlbridge_engine::serve(engine, &addr, |bound| pool.set_engine_address(bound), async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// pool.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WorkerPool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("size", &self.inner.slots.len())
            .field(
                "frameworks",
                &self
                    .inner
                    .adapters
                    .iter()
                    .map(|a| a.framework.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A worker's id in slot `index`.
fn worker_id(index: usize) -> String {
    format!("worker-{index}")
}

impl WorkerPool {
    async fn start(config: WorkerPoolConfig) -> Result<WorkerPool> {
        if config.size == 0 {
            return Err(BridgeError::invalid_argument(
                "workers",
                "a worker pool needs at least one worker",
            ));
        }
        let socket_dir = socket_dir()?;
        let slots: Vec<Arc<Slot>> = (0..config.size)
            .map(|index| {
                let id = worker_id(index);
                Arc::new(Slot {
                    listen: format!("unix:{}", socket_dir.join(format!("{id}.sock")).display()),
                    id,
                    state: watch::Sender::new(SlotState::Starting),
                    calls: Arc::new(Semaphore::new(config.max_concurrent_calls)),
                    restarts: AtomicU64::new(0),
                })
            })
            .collect();
        // Start them all at once: each may spend seconds importing its frameworks.
        let mut starting = tokio::task::JoinSet::new();
        for (index, slot) in slots.iter().enumerate() {
            let config = config.clone();
            let slot = Arc::clone(slot);
            starting.spawn(async move {
                (
                    index,
                    process::launch(&config, &slot.id, &slot.listen).await,
                )
            });
        }
        let mut launched: Vec<Option<process::Launched>> = (0..config.size).map(|_| None).collect();
        let mut failure = None;
        while let Some(joined) = starting.join_next().await {
            match joined {
                Ok((index, Ok(worker))) => launched[index] = Some(worker),
                Ok((_, Err(error))) => {
                    failure.get_or_insert(error);
                }
                Err(error) => {
                    failure.get_or_insert(BridgeError::internal(format!(
                        "starting a worker panicked: {error}"
                    )));
                }
            }
        }
        if let Some(error) = failure {
            for worker in launched.into_iter().flatten() {
                process::stop(worker.child, config.stop_grace).await;
            }
            let _ = std::fs::remove_dir_all(&socket_dir);
            return Err(error);
        }
        let launched: Vec<process::Launched> = launched.into_iter().flatten().collect();
        let mut adapters = launched[0].description.frameworks.clone();
        adapters.sort_by(|a, b| a.framework.cmp(&b.framework));
        let mut tools = HashMap::new();
        for adapter in &adapters {
            for tool in &adapter.tools {
                tools
                    .entry(tool.name.clone())
                    .or_insert_with(|| (tool.clone(), adapter.framework.clone()));
            }
        }
        let inner = Arc::new(PoolInner {
            pins: Mutex::new(Pins::new(config.size, config.max_pinned_sessions)),
            config,
            slots,
            adapters,
            tools,
            engine_address: OnceLock::new(),
            shutdown: watch::Sender::new(false),
            supervisors: Mutex::new(Vec::new()),
            socket_dir,
        });
        let supervisors = launched
            .into_iter()
            .zip(inner.slots.iter())
            .map(|(worker, slot)| {
                tokio::spawn(supervise(
                    Arc::clone(slot),
                    inner.config.clone(),
                    inner.shutdown.subscribe(),
                    worker,
                ))
            })
            .collect();
        *inner.supervisors.lock().expect("supervisors lock") = supervisors;
        Ok(WorkerPool { inner })
    }

    /// Number of slots.
    pub fn size(&self) -> usize {
        self.inner.slots.len()
    }

    /// The adapters the workers serve, sorted by framework id.
    pub fn adapters(&self) -> &[pb::AdapterDescription] {
        &self.inner.adapters
    }

    /// Tells workers where the engine listens, for their calls back into it. A TCP
    /// address on all interfaces becomes the loopback address of the same family.
    pub fn set_engine_address(&self, address: &ListenAddr) {
        let target = match address {
            ListenAddr::Tcp(addr) if addr.ip().is_unspecified() => {
                let loopback: std::net::IpAddr = if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                };
                std::net::SocketAddr::new(loopback, addr.port()).to_string()
            }
            other => other.to_string(),
        };
        let _ = self.inner.engine_address.set(target);
    }

    pub(crate) fn engine_address(&self) -> String {
        self.inner.engine_address.get().cloned().unwrap_or_default()
    }

    /// How long a call on a worker may run.
    pub fn operation_timeout(&self) -> std::time::Duration {
        self.inner.config.operation_timeout
    }

    /// The pool's health, for metrics.
    pub fn health(&self) -> PoolHealth {
        let max_calls = self.inner.config.max_concurrent_calls;
        let mut health = PoolHealth {
            slots: self.inner.slots.len(),
            ..PoolHealth::default()
        };
        for slot in &self.inner.slots {
            if let SlotState::Ready(worker) = &*slot.state.borrow()
                && worker.ended.borrow().is_none()
            {
                health.alive += 1;
            }
            let calls = max_calls.saturating_sub(slot.calls.available_permits());
            health.calls += calls;
            health.busy += usize::from(calls > 0);
            health.restarts += slot.restarts.load(Ordering::Relaxed);
        }
        health
    }

    /// The process id of each slot's worker (`None` while it is down), by slot.
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.inner
            .slots
            .iter()
            .map(|slot| match &*slot.state.borrow() {
                SlotState::Ready(worker) => Some(worker.pid),
                _ => None,
            })
            .collect()
    }

    /// How many times each slot's worker has been restarted, by slot.
    pub fn restarts(&self) -> Vec<u64> {
        self.inner
            .slots
            .iter()
            .map(|slot| slot.restarts.load(Ordering::Relaxed))
            .collect()
    }

    /// Unpins each session as `events` (the state backend's session events) report it
    /// ended, for as long as both the pool and the backend exist. The engine builder
    /// subscribes its pool to its backend.
    pub fn follow_sessions(&self, events: SessionEvents) -> JoinHandle<()> {
        let pool = Arc::downgrade(&self.inner);
        tokio::spawn(unpin_ended(events, move |session_id| {
            let Some(inner) = pool.upgrade() else {
                return false;
            };
            inner.pins.lock().expect("pins lock").forget(session_id);
            true
        }))
    }

    /// The slot serving `session_id`: its pin, or a new pin on the slot with the fewest
    /// sessions (preferring slots whose worker is up; ties go round-robin).
    fn slot_for(&self, session_id: &str) -> Arc<Slot> {
        let slots = &self.inner.slots;
        let chosen = self
            .inner
            .pins
            .lock()
            .expect("pins lock")
            .slot(session_id, |slot, pinned| {
                let down = !matches!(*slots[slot].state.borrow(), SlotState::Ready(_));
                let idle = slots[slot].calls.available_permits();
                (down, pinned, std::cmp::Reverse(idle))
            });
        Arc::clone(&slots[chosen])
    }

    /// A permit to run one call on the slot's worker, waiting (up to the unavailable wait)
    /// while it runs as many calls as it may.
    async fn permit(&self, slot: &Slot) -> Result<OwnedSemaphorePermit> {
        let wait = self.inner.config.unavailable_wait;
        match tokio::time::timeout(wait, Arc::clone(&slot.calls).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(BridgeError::new(
                ErrorKind::WorkerUnavailable,
                format!(
                    "worker {} was running its maximum of {} calls for {}s; retry later",
                    slot.id,
                    self.inner.config.max_concurrent_calls,
                    wait.as_secs_f64()
                ),
            )
            .with("worker_id", &slot.id)),
        }
    }

    /// Waits (up to the unavailable wait) for the slot's worker to be up.
    async fn ready_worker(&self, slot: &Slot) -> Result<Arc<Incarnation>> {
        let mut state = slot.state.subscribe();
        let wait = self.inner.config.unavailable_wait;
        let up = tokio::time::timeout(
            wait,
            state.wait_for(|s| match s {
                SlotState::Ready(worker) => worker.ended.borrow().is_none(),
                SlotState::Stopped => true,
                SlotState::Starting => false,
            }),
        )
        .await;
        match up {
            Ok(Ok(state)) => match &*state {
                SlotState::Ready(worker) => Ok(Arc::clone(worker)),
                _ => Err(BridgeError::new(
                    ErrorKind::WorkerUnavailable,
                    format!("worker {} is stopped: the engine is shutting down", slot.id),
                )
                .with("worker_id", &slot.id)),
            },
            Ok(Err(_)) => Err(BridgeError::new(
                ErrorKind::WorkerUnavailable,
                format!("worker {} is stopped: the engine is shutting down", slot.id),
            )
            .with("worker_id", &slot.id)),
            Err(_) => Err(BridgeError::new(
                ErrorKind::WorkerUnavailable,
                format!(
                    "worker {} is restarting and was not back within {}s; retry later",
                    slot.id,
                    wait.as_secs_f64()
                ),
            )
            .with("worker_id", &slot.id)),
        }
    }

    /// Runs one unary call on the session's worker: fails with `WORKER_CRASHED` as soon as
    /// the worker dies, with `TIMEOUT` after the operation timeout, and passes a worker's
    /// own `BridgeError` through. Returns the result and the worker's id.
    async fn call<T, F, Fut>(&self, session_id: &str, what: &str, rpc: F) -> Result<(T, String)>
    where
        F: FnOnce(WorkerClient<process::WorkerChannel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let slot = self.slot_for(session_id);
        let _permit = self.permit(&slot).await?;
        let worker = self.ready_worker(&slot).await?;
        let mut ended = worker.ended.clone();
        let timeout = self.inner.config.operation_timeout;
        tokio::select! {
            outcome = tokio::time::timeout(timeout, rpc(worker.client.clone())) => match outcome {
                Ok(Ok(response)) => Ok((response.into_inner(), slot.id.clone())),
                Ok(Err(status)) => Err(failure(&slot, &worker, what, status).await),
                Err(_) => Err(timed_out(&slot, what, timeout)),
            },
            () = until_ended(&mut ended) => Err(crashed(&slot, &worker, what)),
        }
    }

    /// Stops every worker (closing their stdin, killing those that do not exit within the
    /// grace period) and waits until they are reaped. Calls made afterwards fail with
    /// `WORKER_UNAVAILABLE`.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let supervisors =
            std::mem::take(&mut *self.inner.supervisors.lock().expect("supervisors lock"));
        for supervisor in supervisors {
            let _ = supervisor.await;
        }
        let _ = std::fs::remove_dir_all(&self.inner.socket_dir);
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // Supervisors hold the children (killed on drop); ending them ends the workers.
        for supervisor in self
            .supervisors
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default()
        {
            supervisor.abort();
        }
        let _ = std::fs::remove_dir_all(&self.socket_dir);
    }
}

/// A private directory for the workers' sockets.
fn socket_dir() -> Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "mlbridge-{}-{:x}",
        std::process::id(),
        nanos & 0xffff_ffff
    ));
    std::fs::create_dir_all(&dir).map_err(|e| {
        BridgeError::new(
            ErrorKind::WorkerUnavailable,
            format!(
                "cannot create the worker socket directory {}: {e}",
                dir.display()
            ),
        )
    })?;
    Ok(dir)
}
