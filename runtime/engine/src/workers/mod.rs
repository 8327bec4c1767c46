//! The worker pool: a fixed number of slots, each running one Python worker
//! (`python -m mlbridge.worker`). The pool starts them, waits until they are ready, keeps
//! them healthy (exit detection, health pings, restart with exponential backoff), pins each
//! session to one slot, and routes checked framework operation and tool calls to the
//! session's worker. It hears that a session ended from the state backend's session events.
//!
//! No worker outlives the engine: each one exits when its stdin (a pipe the engine holds)
//! closes, which the kernel does however the engine ends.

mod dispatch;
mod process;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use mlbridge_proto::mlbridge::v1::{self as pb, worker_client::WorkerClient};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Status;
use tonic::transport::Channel;

use crate::error::{BridgeError, ErrorKind, Result};
use crate::listen::ListenAddr;
use crate::state::{SessionEvent, SessionEvents};

pub use dispatch::ToolChunkStream;
pub use process::READY_PREFIX;

/// How to run a [`WorkerPool`]: settings as data, then [`WorkerPoolConfig::start`].
#[derive(Debug, Clone)]
pub struct WorkerPoolConfig {
    size: usize,
    python: PathBuf,
    adapters: Vec<String>,
    env: Vec<(OsString, OsString)>,
    startup_timeout: Duration,
    operation_timeout: Duration,
    unavailable_wait: Duration,
    health_interval: Duration,
    health_timeout: Duration,
    health_failures: u32,
    restart_backoff: Duration,
    max_restart_backoff: Duration,
    stable_after: Duration,
    stop_grace: Duration,
    max_pinned_sessions: usize,
    max_concurrent_calls: usize,
}

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

    /// Starts every worker and waits until all are ready and described. Fails, naming the
    /// worker, when one does not start within the startup timeout; no worker is left
    /// running then.
    pub async fn start(self) -> Result<WorkerPool> {
        WorkerPool::start(self).await
    }
}

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
    client: WorkerClient<Channel>,
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

/// Sessions pinned to slots, bounded: when full, the least recently used pin goes, so
/// that no client input grows it without limit.
struct Pins {
    /// Session id to (slot, last use).
    by_session: HashMap<String, (usize, u64)>,
    per_slot: Vec<usize>,
    capacity: usize,
    clock: u64,
    next: usize,
}

impl Pins {
    fn new(slots: usize, capacity: usize) -> Self {
        Pins {
            by_session: HashMap::new(),
            per_slot: vec![0; slots],
            capacity: capacity.max(1),
            clock: 0,
            next: 0,
        }
    }

    /// The slot of `session`: its pin, or a new pin on the slot that `rank` (given the
    /// slot and its number of pinned sessions) puts first; ties go round-robin.
    fn slot<R: Ord>(&mut self, session: &str, rank: impl Fn(usize, usize) -> R) -> usize {
        self.clock += 1;
        let now = self.clock;
        if let Some(pin) = self.by_session.get_mut(session) {
            pin.1 = now;
            return pin.0;
        }
        if self.by_session.len() >= self.capacity {
            let oldest = self
                .by_session
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(session, _)| session.clone());
            if let Some(oldest) = oldest {
                self.forget(&oldest);
            }
        }
        let count = self.per_slot.len();
        let start = self.next % count;
        self.next = self.next.wrapping_add(1);
        let chosen = (0..count)
            .map(|offset| (start + offset) % count)
            .min_by_key(|&slot| rank(slot, self.per_slot[slot]))
            .unwrap_or(0);
        self.per_slot[chosen] += 1;
        self.by_session.insert(session.to_owned(), (chosen, now));
        chosen
    }

    fn forget(&mut self, session: &str) {
        if let Some((slot, _)) = self.by_session.remove(session) {
            self.per_slot[slot] -= 1;
        }
    }
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
        F: FnOnce(WorkerClient<Channel>) -> Fut,
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

/// Calls `forget` with each ended session's id until it returns false or the events end.
/// Events missed by lagging are lost; the pins are bounded, so a missed one only holds a
/// pin until it is the least recently used.
async fn unpin_ended(mut events: SessionEvents, mut forget: impl FnMut(&str) -> bool) {
    loop {
        match events.recv().await {
            Ok(SessionEvent::Ended { session_id, .. }) => {
                if !forget(&session_id) {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
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

fn crashed(slot: &Slot, worker: &Incarnation, what: &str) -> BridgeError {
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

fn timed_out(slot: &Slot, what: &str, timeout: Duration) -> BridgeError {
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
async fn failure(slot: &Slot, worker: &Incarnation, what: &str, status: Status) -> BridgeError {
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
async fn until_ended(ended: &mut watch::Receiver<Option<String>>) {
    let _ = ended.wait_for(Option::is_some).await;
}

/// Completes when the pool shuts down (or is dropped).
async fn until_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Keeps one slot's worker running until shutdown: reports its end to calls in flight,
/// restarts it with exponential backoff, and stops it on shutdown.
async fn supervise(
    slot: Arc<Slot>,
    config: WorkerPoolConfig,
    mut shutdown: watch::Receiver<bool>,
    first: process::Launched,
) {
    let mut launched = first;
    let mut backoff = config.restart_backoff;
    loop {
        let process::Launched {
            mut child,
            client,
            description,
            ..
        } = launched;
        let pid = description.pid;
        // `Child::wait` closes the child's stdin, which tells a worker to exit: hold it here.
        let stdin = child.stdin.take();
        let (ended_tx, ended) = watch::channel(None);
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
                reason
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
        slot.state.send_replace(SlotState::Starting);
        drop((child, stdin));
        if up_since.elapsed() >= config.stable_after {
            backoff = config.restart_backoff;
        }
        eprintln!(
            "mlbridge: worker {} (pid {pid}) stopped: {how}; restarting in {}ms",
            slot.id,
            backoff.as_millis()
        );
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
                attempt = process::launch(&config, &slot.id, &slot.listen) => attempt,
                () = until_shutdown(&mut shutdown) => {
                    slot.state.send_replace(SlotState::Stopped);
                    return;
                }
            };
            match attempt {
                Ok(worker) => break worker,
                Err(error) => eprintln!(
                    "mlbridge: restarting worker {} failed: {}; retrying in {}ms",
                    slot.id,
                    error.message,
                    backoff.as_millis()
                ),
            }
        };
        slot.restarts.fetch_add(1, Ordering::Relaxed);
        eprintln!(
            "mlbridge: worker {} restarted (pid {})",
            slot.id, launched.description.pid
        );
    }
}

/// Completes when the worker misses `health_failures` pings in a row, with the reason.
async fn unhealthy(mut client: WorkerClient<Channel>, config: &WorkerPoolConfig) -> String {
    let mut missed = 0u32;
    let mut tick = tokio::time::interval(config.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let ping = client.ping(pb::PingRequest {
            message: "health".to_owned(),
        });
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
            return format!(
                "it failed {missed} health pings in a row (last: {last}) and was killed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_keep_their_slot_and_spread_over_slots() {
        let mut pins = Pins::new(3, 100);
        let first = pins.slot("a", |_, pinned| pinned);
        assert_eq!(pins.slot("a", |_, pinned| pinned), first);
        let others: std::collections::HashSet<usize> = ["b", "c"]
            .iter()
            .map(|s| pins.slot(s, |_, pinned| pinned))
            .collect();
        assert_eq!(others.len(), 2);
        assert!(!others.contains(&first));
        // A slot ranked down is avoided while another is up.
        let mut pins = Pins::new(2, 100);
        for session in ["x", "y", "z"] {
            assert_eq!(pins.slot(session, |slot, pinned| (slot == 0, pinned)), 1);
        }
    }

    #[test]
    fn pins_are_bounded_and_forgotten() {
        let mut pins = Pins::new(2, 3);
        for i in 0..10 {
            pins.slot(&format!("s{i}"), |_, pinned| pinned);
        }
        assert_eq!(pins.by_session.len(), 3);
        assert_eq!(pins.per_slot.iter().sum::<usize>(), 3);
        // The most recently used pins survive.
        assert!(pins.by_session.contains_key("s9"));
        pins.forget("s9");
        pins.forget("never-pinned");
        assert_eq!(pins.by_session.len(), 2);
        assert_eq!(pins.per_slot.iter().sum::<usize>(), 2);
    }

    /// Ending a session, by cleanup or by expiry, unpins it: the pool hears it from the
    /// backend's session events, with no call from the engine.
    #[tokio::test]
    async fn ended_sessions_are_unpinned_from_backend_events() {
        use crate::state::{Limits, MemoryBackend, NewSession, StateBackend};

        let backend = MemoryBackend::new(Limits::default());
        let pins = Arc::new(Mutex::new(Pins::new(2, 100)));
        let follower = {
            let pins = Arc::clone(&pins);
            tokio::spawn(unpin_ended(backend.session_events(), move |id| {
                pins.lock().unwrap().forget(id);
                true
            }))
        };
        let session = |id: &str, ttl: Option<Duration>| NewSession {
            id: Some(id.to_owned()),
            ttl,
            ..Default::default()
        };
        backend
            .create_session(session("closed", None))
            .await
            .unwrap();
        backend
            .create_session(session("expiring", Some(Duration::from_nanos(1))))
            .await
            .unwrap();
        backend.create_session(session("kept", None)).await.unwrap();
        for id in ["closed", "expiring", "kept"] {
            pins.lock().unwrap().slot(id, |_, pinned| pinned);
        }
        assert!(backend.remove_session("closed").await.unwrap().is_some());
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(backend.expire_sessions().await.unwrap(), ["expiring"]);
        // Dropping the backend ends the event stream, so the follower has seen every event
        // once it returns.
        drop(backend);
        follower.await.unwrap();
        let pins = pins.lock().unwrap();
        assert_eq!(pins.by_session.keys().collect::<Vec<_>>(), ["kept"]);
        assert_eq!(pins.per_slot.iter().sum::<usize>(), 1);
    }
}
