//! Workers started elsewhere: the engine's `WorkerHub` service takes a worker's stream,
//! checks its attach token and its adapters, gives it a slot of the pool, and supervises it
//! by ping until its stream ends. Restarting a worker that left is the operator's job.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use mlbridge_proto::mlbridge::v1::{
    self as pb, engine_to_worker, worker_hub_server::WorkerHub, worker_to_engine,
};
use subtle::ConstantTimeEq;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::link::AttachedLink;
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
        let first = tokio::time::timeout(pool.inner.config.startup_timeout, inbound.message());
        let hello = match first.await {
            Ok(Ok(Some(pb::WorkerToEngine {
                body: Some(worker_to_engine::Body::Hello(hello)),
                ..
            }))) => hello,
            Ok(Err(status)) => return Err(status),
            _ => {
                return Err(BridgeError::invalid_argument(
                    "hello",
                    "an attached worker's first message must be its hello",
                )
                .into());
            }
        };
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
                    listen: String::new(),
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
        let welcome = pb::EngineToWorker {
            call_id: 0,
            body: Some(engine_to_worker::Body::Welcome(pb::WorkerWelcome {
                worker_id: slot.id.clone(),
                engine_id: engine_id.to_owned(),
            })),
        };
        outbound
            .try_send(Ok(welcome))
            .expect("a new channel has room for the welcome");
        let link = Arc::new(AttachedLink::new(slot.id.clone(), outbound));
        let (ended, ended_rx) = watch::channel(None);
        slot.state
            .send_replace(SlotState::Ready(Arc::new(Incarnation {
                client: Link::Attached(Arc::clone(&link)),
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
    mut inbound: Streaming<pb::WorkerToEngine>,
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
    let read = async {
        loop {
            match inbound.message().await {
                Ok(Some(message)) => link.deliver(message).await,
                Ok(None) => break "it closed its stream to the engine".to_owned(),
                Err(status) => {
                    break format!(
                        "its stream to the engine broke ({:?}: {})",
                        status.code(),
                        status.message()
                    );
                }
            }
        }
    };
    let shutting_down = "the engine is shutting down";
    let how = tokio::select! {
        how = read => how,
        how = unhealthy(Link::Attached(Arc::clone(&link)), &config) => how,
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
