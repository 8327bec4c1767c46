//! Where workers attach. Workers started elsewhere dial the engine's `WorkerHub` service,
//! which checks their attach token and adapters, gives each a slot of the pool and
//! supervises it by ping until its stream ends (restarting one that left is the operator's
//! job). The workers the pool spawns dial the pool's own hub instead, on a Unix socket in
//! its private folder, presenting the secret each was given; `process::launch` waits for
//! that arrival.

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlbridge_proto::mlbridge::v1::{
    self as pb,
    worker_hub_server::{WorkerHub, WorkerHubServer},
    worker_to_engine,
};
use subtle::ConstantTimeEq;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::link::{AttachedLink, read_answers};
use super::supervise::{info, unhealthy, until_shutdown, warn};
use super::{Catalog, Incarnation, Link, Slot, SlotState, WorkerPool};
use crate::error::{BridgeError, ErrorKind, Result};

/// The shortest attach token the pool accepts.
pub(super) const MIN_ATTACH_TOKEN_CHARS: usize = 16;

/// The engine's `WorkerHub` service: where workers started elsewhere attach.
#[derive(Clone)]
pub struct WorkerHubService {
    pool: Option<WorkerPool>,
    engine_id: String,
    stopping: watch::Receiver<bool>,
}

impl WorkerHubService {
    /// The hub of an engine with `pool` (none: every attachment is refused) whose instance
    /// id is `engine_id`; attached workers are let go when `stopping` turns true.
    pub fn new(
        pool: Option<WorkerPool>,
        engine_id: impl Into<String>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        WorkerHubService {
            pool,
            engine_id: engine_id.into(),
            stopping,
        }
    }
}

type EngineToWorkerStream = Pin<Box<dyn Stream<Item = Result<pb::EngineToWorker, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerHub for WorkerHubService {
    async fn attach(
        &self,
        request: Request<Streaming<pb::WorkerToEngine>>,
    ) -> std::result::Result<Response<EngineToWorkerStream>, Status> {
        let refused = || {
            BridgeError::new(
                ErrorKind::PermissionDenied,
                "this engine takes no attached workers: start it with `mlbridge serve \
                 --attach-token-file FILE`",
            )
        };
        let pool = self.pool.as_ref().ok_or_else(refused)?;
        let Some(expected) = &pool.inner.config.attach_token else {
            return Err(refused().into());
        };
        if *self.stopping.borrow() || *pool.inner.shutdown.borrow() {
            return Err(BridgeError::new(
                ErrorKind::Unavailable,
                "the engine is shutting down and takes no more workers",
            )
            .into());
        }
        let presented = crate::auth::bearer(request.metadata())?.unwrap_or_default();
        if !bool::from(presented.as_bytes().ct_eq(expected.0.as_bytes())) {
            return Err(BridgeError::new(
                ErrorKind::Unauthenticated,
                "attaching a worker needs the engine's attach token as `authorization: \
                 Bearer <token>`; the one presented is missing or wrong",
            )
            .into());
        }
        let mut inbound = request.into_inner();
        let hello = read_hello(&mut inbound, pool.inner.config.startup_timeout).await?;
        let (attachment, outbound) = pool.attach(hello, &self.engine_id)?;
        tokio::spawn(supervise_attached(
            pool.clone(),
            attachment,
            inbound,
            self.stopping.clone(),
        ));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(outbound),
        )))
    }
}

/// A worker that has just attached.
struct Attachment {
    slot: Arc<Slot>,
    link: Arc<AttachedLink>,
    ended: watch::Sender<Option<String>>,
    name: String,
    pid: u32,
}

impl WorkerPool {
    /// Gives the worker that said `hello` a slot: a detached one, or a new one up to the
    /// attach limit. Its adapters must be the pool's (the first worker's, when it is the
    /// first).
    fn attach(
        &self,
        hello: pb::WorkerHello,
        engine_id: &str,
    ) -> Result<(
        Attachment,
        mpsc::Receiver<std::result::Result<pb::EngineToWorker, Status>>,
    )> {
        let description = hello.description.unwrap_or_default();
        let name = crate::error::clip(&hello.name).into_owned();
        let offered = Catalog::new(description.frameworks);
        // The first worker of a pool that spawns none sets what the pool serves.
        if let Err(offered) = self.inner.catalog.set(offered) {
            let ours = self.inner.catalog.get().expect("the catalog is set");
            if let Some(difference) = ours.difference(&offered) {
                return Err(BridgeError::invalid_argument(
                    "hello.description.frameworks",
                    format!(
                        "worker {name:?} cannot attach: its adapters differ from this engine's \
                         workers' ({difference}); every worker of an engine serves the same \
                         adapters"
                    ),
                ));
            }
        }
        let config = &self.inner.config;
        let mut slots = self.inner.slots.write().unwrap_or_else(|e| e.into_inner());
        let attached = |slot: &Arc<Slot>| slot.attached;
        let live = slots
            .iter()
            .filter(|s| attached(s) && !matches!(*s.state.borrow(), SlotState::Detached))
            .count();
        if live >= config.max_attached {
            return Err(BridgeError::new(
                ErrorKind::Unavailable,
                format!(
                    "worker {name:?} cannot attach: this engine already has its maximum of {} \
                     attached workers",
                    config.max_attached
                ),
            ));
        }
        let free = slots
            .iter()
            .find(|s| attached(s) && matches!(*s.state.borrow(), SlotState::Detached))
            .cloned();
        let slot = match free {
            Some(slot) => slot,
            None => {
                let number = slots.iter().filter(|s| attached(s)).count();
                let slot = Arc::new(Slot {
                    id: format!("attached-{number}"),
                    attached: true,
                    state: watch::Sender::new(SlotState::Starting),
                    calls: Arc::new(Semaphore::new(config.max_concurrent_calls)),
                    restarts: AtomicU64::new(0),
                });
                slots.push(Arc::clone(&slot));
                self.inner.pins.lock().expect("pins lock").add_slot();
                slot
            }
        };
        // Room for every call the slot may run, their cancellations and a health ping.
        let (outbound, receiver) = mpsc::channel(2 * config.max_concurrent_calls + 4);
        let link = Arc::new(AttachedLink::new(slot.id.clone(), outbound));
        link.welcome(engine_id);
        let (ended, ended_rx) = watch::channel(None);
        slot.state
            .send_replace(SlotState::Ready(Arc::new(Incarnation {
                client: Link(Arc::clone(&link)),
                pid: description.pid,
                ended: ended_rx,
            })));
        info(format_args!(
            "mlbridge: worker {} attached ({name}, pid {})",
            slot.id, description.pid
        ));
        Ok((
            Attachment {
                slot,
                link,
                ended,
                name,
                pid: description.pid,
            },
            receiver,
        ))
    }
}

impl Catalog {
    /// What `other` serves differently, in a few words; `None` when it serves the same.
    fn difference(&self, other: &Catalog) -> Option<String> {
        let names = |c: &Catalog| {
            c.adapters
                .iter()
                .map(|a| a.framework.clone())
                .collect::<Vec<_>>()
        };
        let (ours, theirs) = (names(self), names(other));
        if ours != theirs {
            return Some(format!(
                "it serves [{}], they serve [{}]",
                theirs.join(", "),
                ours.join(", ")
            ));
        }
        self.adapters
            .iter()
            .zip(&other.adapters)
            .find(|(a, b)| a.operations != b.operations || a.tools != b.tools)
            .map(|(a, _)| format!("framework `{}` has other operations or tools", a.framework))
    }
}

/// Serves one attached worker until its stream ends, it misses its health pings, or the
/// engine stops; then fails its calls in flight (`WORKER_CRASHED`) and frees its slot.
async fn supervise_attached(
    pool: WorkerPool,
    attachment: Attachment,
    inbound: Streaming<pb::WorkerToEngine>,
    mut stopping: watch::Receiver<bool>,
) {
    let Attachment {
        slot,
        link,
        ended,
        name,
        pid,
    } = attachment;
    let config = pool.inner.config.clone();
    let mut shutdown = pool.inner.shutdown.subscribe();
    // The pool must not be kept alive by a worker that never leaves.
    drop(pool);
    let shutting_down = "the engine is shutting down";
    let how = tokio::select! {
        how = read_answers(&link, inbound) => how,
        how = unhealthy(Link(Arc::clone(&link)), &config) => how,
        () = until_shutdown(&mut shutdown) => shutting_down.to_owned(),
        _ = stopping.wait_for(|stop| *stop) => shutting_down.to_owned(),
    };
    ended.send_replace(Some(how.clone()));
    slot.state.send_replace(SlotState::Detached);
    link.close(&how);
    let line = format_args!(
        "mlbridge: attached worker {} ({name}, pid {pid}) left: {how}",
        slot.id
    );
    if how == shutting_down {
        info(line);
    } else {
        warn(line);
    }
}

/// The first message of a worker's stream, which must be its hello.
async fn read_hello(
    inbound: &mut Streaming<pb::WorkerToEngine>,
    within: Duration,
) -> std::result::Result<pb::WorkerHello, Status> {
    match tokio::time::timeout(within, inbound.message()).await {
        Ok(Ok(Some(pb::WorkerToEngine {
            body: Some(worker_to_engine::Body::Hello(hello)),
            ..
        }))) => Ok(hello),
        Ok(Err(status)) => Err(status),
        _ => Err(BridgeError::invalid_argument(
            "hello",
            "an attached worker's first message must be its hello",
        )
        .into()),
    }
}

/// A spawned worker that has dialed the pool's hub: its hello and both ends of its stream.
pub(super) struct Arrival {
    pub(super) hello: pb::WorkerHello,
    pub(super) inbound: Streaming<pb::WorkerToEngine>,
    pub(super) outbound: mpsc::Sender<std::result::Result<pb::EngineToWorker, Status>>,
}

/// Spawned workers the pool waits for, by the secret each was given (bounded by the
/// pool's slots: one launch per slot at a time).
#[derive(Default)]
pub(super) struct Arrivals {
    waiting: Mutex<HashMap<String, oneshot::Sender<Arrival>>>,
}

impl Arrivals {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Arrival>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the worker given `secret`; dropping the returned receiver stops waiting.
    pub(super) fn expect(self: &Arc<Self>, secret: &str) -> Expected {
        let (sender, receiver) = oneshot::channel();
        self.waiting().insert(secret.to_owned(), sender);
        Expected {
            arrivals: Arc::clone(self),
            secret: secret.to_owned(),
            receiver,
        }
    }
}

/// A worker the pool waits for; forgotten when dropped.
pub(super) struct Expected {
    arrivals: Arc<Arrivals>,
    secret: String,
    pub(super) receiver: oneshot::Receiver<Arrival>,
}

impl Drop for Expected {
    fn drop(&mut self) {
        self.arrivals.waiting().remove(&self.secret);
    }
}

/// The pool's own hub, where the workers it spawns attach.
#[derive(Clone)]
pub(super) struct PrivateHub {
    arrivals: Arc<Arrivals>,
    /// Calls a worker may run at once, which sizes its stream's buffer.
    max_calls: usize,
    hello_within: Duration,
}

#[tonic::async_trait]
impl WorkerHub for PrivateHub {
    async fn attach(
        &self,
        request: Request<Streaming<pb::WorkerToEngine>>,
    ) -> std::result::Result<Response<EngineToWorkerStream>, Status> {
        let presented = crate::auth::bearer(request.metadata())?.unwrap_or_default();
        let waiting = self.arrivals.waiting().remove(&presented).ok_or_else(|| {
            BridgeError::new(
                ErrorKind::Unauthenticated,
                "this socket takes only the workers its engine spawned, with their secrets",
            )
        })?;
        let mut inbound = request.into_inner();
        let hello = read_hello(&mut inbound, self.hello_within).await?;
        let (outbound, receiver) = mpsc::channel(2 * self.max_calls + 4);
        let arrival = Arrival {
            hello,
            inbound,
            outbound,
        };
        if waiting.send(arrival).is_err() {
            return Err(Status::unavailable(
                "the engine stopped waiting for this worker",
            ));
        }
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}

/// Serves the pool's hub on the Unix socket `path` until `shutdown` turns true.
pub(super) fn serve_private_hub(
    path: &Path,
    arrivals: Arc<Arrivals>,
    max_calls: usize,
    hello_within: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| {
        BridgeError::new(
            ErrorKind::WorkerUnavailable,
            format!("cannot listen for workers on {}: {e}", path.display()),
        )
    })?;
    let hub = WorkerHubServer::new(PrivateHub {
        arrivals,
        max_calls,
        hello_within,
    })
    .max_decoding_message_size(usize::MAX)
    .max_encoding_message_size(usize::MAX);
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    Ok(tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        let _ = tonic::transport::Server::builder()
            .add_service(hub)
            .serve_with_incoming_shutdown(incoming, stop)
            .await;
    }))
}
