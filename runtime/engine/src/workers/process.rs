//! One worker process: starting `python -m mlbridge.worker`, waiting until it has dialed
//! the pool's hub and described itself, and stopping it.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use mlbridge_proto::mlbridge::v1 as pb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tonic::Streaming;

use super::WorkerPoolConfig;
use super::attach::{Arrival, Arrivals};
use super::link::AttachedLink;
use crate::error::{BridgeError, ErrorKind, Result};

/// The first word of the line a worker serving its own gRPC server (`--listen`) prints
/// once it serves.
pub const READY_PREFIX: &str = "MLBRIDGE_WORKER_READY";

/// The first word of the line a worker prints once an engine took it (`--connect`).
const ATTACHED_PREFIX: &str = "MLBRIDGE_WORKER_ATTACHED";

/// Where the workers the pool spawns attach: the pool's hub socket, and who it waits for.
#[derive(Clone)]
pub(super) struct Hub {
    /// `unix:PATH` of the pool's hub.
    pub(super) address: String,
    pub(super) arrivals: Arc<Arrivals>,
}

/// A started worker that has attached and described itself.
pub(super) struct Launched {
    pub(super) child: Child,
    pub(super) link: Arc<AttachedLink>,
    pub(super) inbound: Streaming<pb::WorkerToEngine>,
    pub(super) description: pb::DescribeResponse,
}

fn unavailable(worker_id: &str, message: String) -> BridgeError {
    BridgeError::new(ErrorKind::WorkerUnavailable, message).with("worker_id", worker_id)
}

/// Starts worker `worker_id` and returns it once it has dialed `hub` and said what it
/// serves, all within the startup timeout.
pub(super) async fn launch(
    config: &WorkerPoolConfig,
    worker_id: &str,
    hub: &Hub,
) -> Result<Launched> {
    let deadline = Instant::now() + config.startup_timeout;
    // The hub takes the worker by this secret; it travels in the environment, never on
    // the command line (which other users of the host can read).
    let secret = crate::auth::random_hex(32)?;
    let mut expected = hub.arrivals.expect(&secret);
    let mut command = Command::new(&config.python);
    command
        .args([
            "-m",
            "mlbridge.worker",
            "--connect",
            &hub.address,
            "--worker-id",
        ])
        .arg(worker_id);
    // Threads beyond the calls the engine sends at once keep the worker responsive.
    command
        .arg("--threads")
        .arg((config.max_concurrent_calls + 4).to_string());
    for adapter in &config.adapters {
        command.args(["--adapter", adapter]);
    }
    command
        .env(ATTACH_TOKEN_ENV, &secret)
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        // The worker exits when this pipe closes: however the engine ends, even by SIGKILL,
        // the kernel closes it and no worker outlives the engine.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| {
        unavailable(
            worker_id,
            format!(
                "cannot start worker {worker_id} with `{}`: {e} (choose the interpreter with \
                 --python or MLBRIDGE_PYTHON)",
                config.python.display()
            ),
        )
    })?;
    let pid = child.id().unwrap_or_default();
    // Drain stdout from the start, so that framework code printing to it never blocks, and
    // pass what it prints on to the engine's stderr.
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let id = worker_id.to_owned();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if !line.starts_with(ATTACHED_PREFIX) {
                forward(&id, &line);
            }
        }
    });
    let timeout_secs = config.startup_timeout.as_secs_f64();
    // `Child::wait` closes the child's stdin, which tells a worker to exit: hold it apart.
    let stdin = child.stdin.take();
    let arrived = tokio::select! {
        arrival = &mut expected.receiver => arrival.map_err(|_| {
            unavailable(worker_id, format!("worker {worker_id} was not awaited any more"))
        }),
        status = child.wait() => {
            let how = match status {
                Ok(status) => format!("exited ({status})"),
                Err(e) => format!("could not be waited for ({e})"),
            };
            Err(unavailable(
                worker_id,
                format!(
                    "worker {worker_id} {how} before it was ready; its stderr above says why \
                     (command: {} -m mlbridge.worker)",
                    config.python.display()
                ),
            ))
        }
        () = tokio::time::sleep_until(deadline) => Err(unavailable(
            worker_id,
            format!(
                "worker {worker_id} did not attach within {timeout_secs}s (its stderr above may \
                 say why; raise --worker-startup-timeout-secs if its frameworks import slowly)"
            ),
        )),
    };
    child.stdin = stdin;
    match arrived {
        Ok(Arrival {
            hello,
            inbound,
            outbound,
        }) => {
            let link = Arc::new(AttachedLink::new(worker_id.to_owned(), outbound));
            link.welcome("");
            let mut description = hello.description.unwrap_or_default();
            description.worker_id = worker_id.to_owned();
            Ok(Launched {
                child,
                link,
                inbound,
                description,
            })
        }
        Err(error) => {
            let _ = child.kill().await;
            Err(error.with("pid", pid))
        }
    }
}

/// The environment variable that gives a worker the token it attaches with.
const ATTACH_TOKEN_ENV: &str = "MLBRIDGE_ATTACH_TOKEN";

fn forward(worker_id: &str, line: &str) {
    // Under `mlbridge serve` a log line like the engine's own (JSON with --log-format json);
    // embedded without a subscriber, plain stderr as before.
    if tracing::dispatcher::has_been_set() {
        tracing::info!(target: "mlbridge_engine::worker", worker_id, "{line}");
    } else {
        eprintln!("[{worker_id}] {line}");
    }
}

/// Stops a worker: closing its stdin asks it to exit; after `grace` it is killed.
pub(super) async fn stop(mut child: Child, grace: Duration) {
    drop(child.stdin.take());
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}
