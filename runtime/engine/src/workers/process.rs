//! One worker process: starting `python -m mlbridge.worker`, waiting for its ready line,
//! connecting to it, and stopping it.

use std::process::Stdio;
use std::time::Duration;

use mlbridge_proto::mlbridge::v1::{self as pb, worker_client::WorkerClient};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;
use tonic::transport::Channel;

use super::WorkerPoolConfig;
use crate::error::{BridgeError, ErrorKind, Result};

/// The first word of the one line a worker prints on stdout once it serves.
pub const READY_PREFIX: &str = "MLBRIDGE_WORKER_READY";

/// A started, connected and described worker.
pub(super) struct Launched {
    pub(super) child: Child,
    pub(super) client: WorkerClient<WorkerChannel>,
    pub(super) description: pb::DescribeResponse,
}

fn unavailable(worker_id: &str, message: String) -> BridgeError {
    BridgeError::new(ErrorKind::WorkerUnavailable, message).with("worker_id", worker_id)
}

/// Starts worker `worker_id` listening on `listen` and returns it once it is ready,
/// connected and has described itself, all within the startup timeout.
pub(super) async fn launch(
    config: &WorkerPoolConfig,
    worker_id: &str,
    listen: &str,
) -> Result<Launched> {
    let deadline = Instant::now() + config.startup_timeout;
    let mut command = Command::new(&config.python);
    command
        .args(["-m", "mlbridge.worker", "--listen", listen, "--worker-id"])
        .arg(worker_id);
    // Threads beyond the calls the engine sends at once keep health pings answered.
    command
        .arg("--threads")
        .arg((config.max_concurrent_calls + 4).to_string());
    for adapter in &config.adapters {
        command.args(["--adapter", adapter]);
    }
    // The worker refuses calls without this secret; it travels in the environment, never
    // on the command line (which other users of the host can read).
    let secret = crate::auth::random_hex(32)?;
    command
        .env(WORKER_SECRET_ENV, &secret)
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
    let stdout = child.stdout.take().expect("stdout is piped");
    match ready(&mut child, stdout, worker_id, deadline, config, &secret).await {
        Ok((client, description)) => Ok(Launched {
            child,
            client,
            description,
        }),
        Err(error) => {
            let _ = child.kill().await;
            Err(error.with("pid", pid))
        }
    }
}

async fn ready(
    child: &mut Child,
    stdout: ChildStdout,
    worker_id: &str,
    deadline: Instant,
    config: &WorkerPoolConfig,
    secret: &str,
) -> Result<(WorkerClient<WorkerChannel>, pb::DescribeResponse)> {
    let timeout_secs = config.startup_timeout.as_secs_f64();
    let not_ready = |what: &str| {
        unavailable(
            worker_id,
            format!(
                "worker {worker_id} {what} within {timeout_secs}s (its stderr above may say \
                 why; raise --worker-startup-timeout-secs if its frameworks import slowly)"
            ),
        )
    };
    let mut lines = BufReader::new(stdout).lines();
    let address = tokio::time::timeout_at(deadline, async {
        while let Some(line) = lines.next_line().await? {
            match line.strip_prefix(READY_PREFIX) {
                Some(address) => return Ok(Some(address.trim().to_owned())),
                None => forward(worker_id, &line),
            }
        }
        Ok::<_, std::io::Error>(None)
    })
    .await
    .map_err(|_| not_ready("did not print its ready line"))?
    .map_err(|e| {
        unavailable(
            worker_id,
            format!("reading worker {worker_id}'s stdout: {e}"),
        )
    })?;
    let Some(address) = address else {
        // Its stdout closed: it is exiting. Its status says how.
        let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        let how = match status {
            Ok(Ok(status)) => format!("exited ({status})"),
            _ => "closed its stdout".to_owned(),
        };
        return Err(unavailable(
            worker_id,
            format!(
                "worker {worker_id} {how} before it was ready; its stderr above says why \
                 (command: {} -m mlbridge.worker)",
                config.python.display()
            ),
        ));
    };
    // Keep draining stdout so that framework code printing to it never blocks, and pass
    // what it prints on to the engine's stderr.
    let id = worker_id.to_owned();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            forward(&id, &line);
        }
    });
    let channel = tokio::time::timeout_at(deadline, connect(&address))
        .await
        .map_err(|_| not_ready("did not accept a connection"))?
        .map_err(|e| {
            unavailable(
                worker_id,
                format!("cannot connect to worker {worker_id} at `{address}`: {e}"),
            )
            .with("address", &address)
        })?;
    let secret = format!("Bearer {secret}").parse().map_err(|_| {
        unavailable(
            worker_id,
            "the worker secret is not metadata text".to_owned(),
        )
    })?;
    let mut client = WorkerClient::with_interceptor(channel, WorkerSecret(secret))
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let description = tokio::time::timeout_at(deadline, client.describe(pb::DescribeRequest {}))
        .await
        .map_err(|_| not_ready("did not answer Describe"))?
        .map_err(|status| {
            let cause = BridgeError::from(status);
            let mut error = unavailable(
                worker_id,
                format!("worker {worker_id} failed to describe itself: {cause}"),
            );
            error.cause = Some(Box::new(cause));
            error
        })?
        .into_inner();
    Ok((client, description))
}

fn forward(worker_id: &str, line: &str) {
    // Under `mlbridge serve` a log line like the engine's own (JSON with --log-format json);
    // embedded without a subscriber, plain stderr as before.
    if tracing::dispatcher::has_been_set() {
        tracing::info!(target: "mlbridge_engine::worker", worker_id, "{line}");
    } else {
        eprintln!("[{worker_id}] {line}");
    }
}

/// The environment variable that gives a worker the secret the engine presents on every
/// call (`authorization: Bearer <secret>`).
pub(super) const WORKER_SECRET_ENV: &str = "MLBRIDGE_WORKER_SECRET";

/// Adds the worker's secret to every call to it.
#[derive(Clone)]
pub(super) struct WorkerSecret(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for WorkerSecret {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The channel to a worker, presenting its secret.
pub(super) type WorkerChannel =
    tonic::service::interceptor::InterceptedService<Channel, WorkerSecret>;

/// A gRPC channel to a worker at `HOST:PORT` or `unix:PATH`.
pub(super) async fn connect(
    address: &str,
) -> std::result::Result<Channel, tonic::transport::Error> {
    mlbridge_client::dial::channel(address).await
}

/// Stops a worker: closing its stdin asks it to exit; after `grace` it is killed.
pub(super) async fn stop(mut child: Child, grace: Duration) {
    drop(child.stdin.take());
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}
