//! The worker pool: slots, each served by one Python worker (`python -m mlbridge.worker`)
//! over a stream the worker opened (`link`). Spawned slots run a worker the pool starts
//! (it dials the pool's private hub), waits for and keeps healthy (exit detection, health
//! pings, restart with exponential backoff); attached slots are served by workers started
//! elsewhere that dialed the engine (`attach`). The pool pins each session to one slot and
//! routes checked framework operation and tool calls to the session's worker. It hears that
//! a session ended from the state backend's session events.
//!
//! No spawned worker outlives the engine: each one exits when its stdin (a pipe the engine
//! holds) closes, which the kernel does however the engine ends. An attached worker exits
//! when its stream to the engine ends.

mod attach;
mod config;
mod dispatch;
mod link;
mod pins;
mod process;
mod supervise;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::SystemTime;

use mlbridge_proto::mlbridge::v1 as pb;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tonic::Status;

use crate::error::{BridgeError, ErrorKind, Result};
use crate::listen::ListenAddr;
use crate::state::SessionEvents;

pub use attach::WorkerHubService;
pub use config::{DEFAULT_MAX_ATTACHED, WorkerPoolConfig, default_python};
pub use dispatch::ToolChunkStream;
use link::Link;
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
    /// An attached slot whose worker left; a worker that attaches later may take it.
    Detached,
}

/// One run of a slot's worker process.
struct Incarnation {
    client: Link,
    pid: u32,
    /// Becomes `Some(how it ended)` when the process dies or is killed.
    ended: watch::Receiver<Option<String>>,
}

struct Slot {
    id: String,
    /// Served by a worker started elsewhere (else by one the pool spawns).
    attached: bool,
    state: watch::Sender<SlotState>,
    /// One permit per call the worker may run at once.
    calls: Arc<Semaphore>,
    restarts: AtomicU64,
}

struct PoolInner {
    config: WorkerPoolConfig,
    /// Spawned slots first, then attached ones (which only grow up to the attach limit).
    /// Lock order: `slots`, then `pins`.
    slots: RwLock<Vec<Arc<Slot>>>,
    /// What every worker serves: set by the first worker, spawned or attached.
    catalog: OnceLock<Catalog>,
    engine_address: OnceLock<String>,
    pins: Mutex<Pins>,
    shutdown: watch::Sender<bool>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
    /// The pool's hub server, where its spawned workers attach.
    hub_server: Option<JoinHandle<()>>,
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
            .field("size", &self.inner.slots().len())
            .field(
                "frameworks",
                &self
                    .adapters()
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
        if config.size == 0 && config.attach_token.is_none() {
            return Err(BridgeError::invalid_argument(
                "workers",
                "a worker pool needs at least one worker, or an attach token for workers \
                 started elsewhere (`--attach-token-file`)",
            ));
        }
        if let Some(token) = &config.attach_token
            && token.0.chars().count() < attach::MIN_ATTACH_TOKEN_CHARS
        {
            return Err(BridgeError::invalid_argument(
                "attach_token",
                format!(
                    "the attach token must have at least {} characters",
                    attach::MIN_ATTACH_TOKEN_CHARS
                ),
            ));
        }
        let socket_dir = socket_dir()?;
        let shutdown = watch::Sender::new(false);
        let hub_path = socket_dir.join("hub.sock");
        let hub = process::Hub {
            address: format!("unix:{}", hub_path.display()),
            arrivals: Arc::default(),
        };
        let hub_server = match attach::serve_private_hub(
            &hub_path,
            Arc::clone(&hub.arrivals),
            config.max_concurrent_calls,
            config.startup_timeout,
            shutdown.subscribe(),
        ) {
            Ok(server) => server,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&socket_dir);
                return Err(error);
            }
        };
        let slots: Vec<Arc<Slot>> = (0..config.size)
            .map(|index| {
                let id = worker_id(index);
                Arc::new(Slot {
                    attached: false,
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
            let hub = hub.clone();
            starting.spawn(async move { (index, process::launch(&config, &slot.id, &hub).await) });
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
            hub_server.abort();
            let _ = std::fs::remove_dir_all(&socket_dir);
            return Err(error);
        }
        let launched: Vec<process::Launched> = launched.into_iter().flatten().collect();
        let catalog = OnceLock::new();
        if let Some(first) = launched.first() {
            let _ = catalog.set(Catalog::new(first.description.frameworks.clone()));
        }
        let inner = Arc::new(PoolInner {
            pins: Mutex::new(Pins::new(config.size, config.max_pinned_sessions)),
            config,
            slots: RwLock::new(slots),
            catalog,
            engine_address: OnceLock::new(),
            shutdown,
            supervisors: Mutex::new(Vec::new()),
            hub_server: Some(hub_server),
            socket_dir,
        });
        let spawned = inner.slots().clone();
        let supervisors = launched
            .into_iter()
            .zip(spawned.iter())
            .map(|(worker, slot)| {
                tokio::spawn(supervise(
                    Arc::clone(slot),
                    inner.config.clone(),
                    hub.clone(),
                    inner.shutdown.subscribe(),
                    worker,
                ))
            })
            .collect();
        *inner.supervisors.lock().expect("supervisors lock") = supervisors;
        Ok(WorkerPool { inner })
    }

    /// Number of slots, spawned and attached (detached ones included).
    pub fn size(&self) -> usize {
        self.inner.slots().len()
    }

    /// The adapters the workers serve, sorted by framework id (none while an
    /// attached-only pool waits for its first worker).
    pub fn adapters(&self) -> &[pb::AdapterDescription] {
        self.inner
            .catalog
            .get()
            .map_or(&[], |catalog| &catalog.adapters[..])
    }

    /// Whether some worker has told the pool what it serves.
    pub fn has_workers(&self) -> bool {
        self.inner.catalog.get().is_some()
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
        let slots = self.inner.slots();
        let mut health = PoolHealth {
            slots: slots.len(),
            ..PoolHealth::default()
        };
        for slot in slots.iter() {
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
            .slots()
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
            .slots()
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
    /// sessions (preferring slots whose worker is up; ties go round-robin). A pin on an
    /// attached slot whose worker left moves.
    fn slot_for(&self, session_id: &str) -> Result<Arc<Slot>> {
        let slots = self.inner.slots();
        if slots.is_empty() {
            return Err(BridgeError::new(
                ErrorKind::WorkerUnavailable,
                "no worker serves this engine yet: it spawns none and none has attached",
            ));
        }
        let detached = |slot: usize| matches!(*slots[slot].state.borrow(), SlotState::Detached);
        let mut pins = self.inner.pins.lock().expect("pins lock");
        let rank = |slot: usize, pinned: usize| {
            let state = slots[slot].state.borrow();
            let gone = matches!(*state, SlotState::Detached);
            let down = !matches!(*state, SlotState::Ready(_));
            let idle = slots[slot].calls.available_permits();
            (gone, down, pinned, std::cmp::Reverse(idle))
        };
        let mut chosen = pins.slot(session_id, rank);
        if detached(chosen) {
            pins.forget(session_id);
            chosen = pins.slot(session_id, rank);
        }
        Ok(Arc::clone(&slots[chosen]))
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
                SlotState::Stopped | SlotState::Detached => true,
                SlotState::Starting => false,
            }),
        )
        .await;
        match up {
            Ok(Ok(state)) => match &*state {
                SlotState::Ready(worker) => Ok(Arc::clone(worker)),
                SlotState::Detached => Err(BridgeError::new(
                    ErrorKind::WorkerUnavailable,
                    format!("attached worker {} has left; retry", slot.id),
                )
                .with("worker_id", &slot.id)),
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
        F: FnOnce(Link) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Status>>,
    {
        let slot = self.slot_for(session_id)?;
        let _permit = self.permit(&slot).await?;
        let worker = self.ready_worker(&slot).await?;
        let mut ended = worker.ended.clone();
        let timeout = self.inner.config.operation_timeout;
        tokio::select! {
            outcome = tokio::time::timeout(timeout, rpc(worker.client.clone())) => match outcome {
                Ok(Ok(response)) => Ok((response, slot.id.clone())),
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
        if let Some(server) = self.hub_server.take() {
            server.abort();
        }
        let _ = std::fs::remove_dir_all(&self.socket_dir);
    }
}

/// What the workers of a pool serve; every worker of a pool serves the same.
struct Catalog {
    adapters: Vec<pb::AdapterDescription>,
    tools: HashMap<String, (pb::ToolSpec, String)>,
}

impl Catalog {
    fn new(mut adapters: Vec<pb::AdapterDescription>) -> Self {
        adapters.sort_by(|a, b| a.framework.cmp(&b.framework));
        let mut tools = HashMap::new();
        for adapter in &adapters {
            for tool in &adapter.tools {
                tools
                    .entry(tool.name.clone())
                    .or_insert_with(|| (tool.clone(), adapter.framework.clone()));
            }
        }
        Catalog { adapters, tools }
    }
}

impl PoolInner {
    fn slots(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Slot>>> {
        self.slots.read().unwrap_or_else(|e| e.into_inner())
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
