//! [`WorkerPoolConfig`]: how to run a worker pool, as data, then
//! [`WorkerPoolConfig::start`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::WorkerPool;
use crate::error::Result;

/// How to run a [`WorkerPool`]: settings as data, then [`WorkerPoolConfig::start`].
#[derive(Debug, Clone)]
pub struct WorkerPoolConfig {
    pub(super) size: usize,
    pub(super) python: PathBuf,
    pub(super) adapters: Vec<String>,
    pub(super) env: Vec<(OsString, OsString)>,
    pub(super) startup_timeout: Duration,
    pub(super) operation_timeout: Duration,
    pub(super) unavailable_wait: Duration,
    pub(super) health_interval: Duration,
    pub(super) health_timeout: Duration,
    pub(super) health_failures: u32,
    pub(super) restart_backoff: Duration,
    pub(super) max_restart_backoff: Duration,
    pub(super) stable_after: Duration,
    pub(super) stop_grace: Duration,
    pub(super) max_pinned_sessions: usize,
    pub(super) max_concurrent_calls: usize,
    pub(super) attach_token: Option<AttachToken>,
    pub(super) max_attached: usize,
}

/// The secret a worker started elsewhere presents to attach (`authorization: Bearer
/// <token>`). Never printed: its `Debug` is redacted.
#[derive(Clone)]
pub(super) struct AttachToken(pub(super) String);

impl std::fmt::Debug for AttachToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttachToken(<redacted>)")
    }
}

/// The default [`WorkerPoolConfig::max_attached`].
pub const DEFAULT_MAX_ATTACHED: usize = 16;

impl Default for WorkerPoolConfig {
    fn default() -> Self {
        WorkerPoolConfig {
            size: 1,
            python: default_python(),
            adapters: Vec::new(),
            env: Vec::new(),
            startup_timeout: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(300),
            unavailable_wait: Duration::from_secs(30),
            health_interval: Duration::from_secs(1),
            health_timeout: Duration::from_secs(2),
            health_failures: 3,
            restart_backoff: Duration::from_millis(100),
            max_restart_backoff: Duration::from_secs(5),
            stable_after: Duration::from_secs(30),
            stop_grace: Duration::from_secs(3),
            max_pinned_sessions: crate::state::Limits::default().max_sessions,
            max_concurrent_calls: 32,
            attach_token: None,
            max_attached: DEFAULT_MAX_ATTACHED,
        }
    }
}

/// `$MLBRIDGE_PYTHON`, else `python3`.
pub fn default_python() -> PathBuf {
    std::env::var_os("MLBRIDGE_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

impl WorkerPoolConfig {
    /// A pool of `size` workers with default settings.
    pub fn new(size: usize) -> Self {
        WorkerPoolConfig {
            size,
            ..WorkerPoolConfig::default()
        }
    }

    /// The Python interpreter that runs workers (default `$MLBRIDGE_PYTHON`, else `python3`).
    pub fn python(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = python.into();
        self
    }

    /// Loads exactly this adapter module in every worker (e.g. `mlbridge_adapters.dspy`);
    /// without any, workers load every adapter they find.
    pub fn adapter(mut self, module: impl Into<String>) -> Self {
        self.adapters.push(module.into());
        self
    }

    /// Sets an environment variable for the workers.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How long a worker may take to start, import its frameworks and describe itself.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// How long one operation or tool call may run on a worker before it fails with
    /// `TIMEOUT` (for a streaming tool: the longest wait for its next chunk).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// How long a call waits for its session's worker to be restarted before it fails with
    /// `WORKER_UNAVAILABLE`.
    pub fn unavailable_wait(mut self, wait: Duration) -> Self {
        self.unavailable_wait = wait;
        self
    }

    /// Health pings: one every `interval`, each answered within `timeout`; `failures` misses
    /// in a row restart the worker.
    pub fn health(mut self, interval: Duration, timeout: Duration, failures: u32) -> Self {
        self.health_interval = interval;
        self.health_timeout = timeout;
        self.health_failures = failures.max(1);
        self
    }

    /// Restart backoff: `initial`, doubling up to `max`; back to `initial` once a worker
    /// has run for `stable_after`.
    pub fn restart_backoff(
        mut self,
        initial: Duration,
        max: Duration,
        stable_after: Duration,
    ) -> Self {
        self.restart_backoff = initial;
        self.max_restart_backoff = max.max(initial);
        self.stable_after = stable_after;
        self
    }

    /// At most this many session-to-worker pins are kept (use the engine's session limit).
    pub fn max_pinned_sessions(mut self, max: usize) -> Self {
        self.max_pinned_sessions = max.max(1);
        self
    }

    /// Calls one worker runs at once at most; more wait (up to the unavailable wait) for
    /// one to finish. The worker gets a few threads beyond this, so that health pings are
    /// always answered.
    pub fn max_concurrent_calls(mut self, max: usize) -> Self {
        self.max_concurrent_calls = max.max(1);
        self
    }

    /// Lets workers started elsewhere (`python -m mlbridge.worker --connect ENGINE
    /// --token-file FILE`) attach to the engine and serve its sessions, when they present
    /// `token`. Every such worker must serve the same adapters as the pool's other workers.
    /// With a token the pool may spawn no worker at all (`WorkerPoolConfig::new(0)`); it
    /// then serves what the first attached worker serves. A token shorter than 16
    /// characters is refused when the pool starts.
    pub fn attach_token(mut self, token: impl Into<String>) -> Self {
        self.attach_token = Some(AttachToken(token.into()));
        self
    }

    /// Attached workers at most at once (default 16); more are refused with `UNAVAILABLE`.
    pub fn max_attached(mut self, max: usize) -> Self {
        self.max_attached = max;
        self
    }

    /// Starts every worker and waits until all are ready and described. Fails, naming the
    /// worker, when one does not start within the startup timeout; no worker is left
    /// running then.
    pub async fn start(self) -> Result<WorkerPool> {
        WorkerPool::start(self).await
    }
}
