//! How the engine reaches one worker: the `WorkerHub.Attach` stream the worker opened,
//! whether the pool spawned it (it dials the pool's own socket) or an operator started it
//! elsewhere (it dials the engine). Calls go out tagged with an id, carrying the requests
//! of the `Worker` service, and answers come back on the same stream.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mlbridge_proto::mlbridge::v1::{self as pb, engine_to_worker, worker_to_engine};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tonic::{Status, Streaming};

use crate::error::{BridgeError, ErrorKind};

/// A worker's chunks of one streaming tool call, as the transport delivers them.
pub(super) type RawChunks = Pin<Box<dyn Stream<Item = Result<pb::ToolChunk, Status>> + Send>>;

/// The way to one worker. Cheap to clone.
#[derive(Clone)]
pub(super) struct Link(pub(super) Arc<AttachedLink>);

/// The trace context headers of an engine request, which the worker's span continues.
fn trace_context<T>(request: &tonic::Request<T>) -> HashMap<String, String> {
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|key| {
            let value = request.metadata().get(key)?.to_str().ok()?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

impl Link {
    pub(super) async fn operation(
        &self,
        request: tonic::Request<pb::WorkerExecuteFrameworkOperationRequest>,
    ) -> Result<pb::ExecuteFrameworkOperationResponse, Status> {
        let context = trace_context(&request);
        let body = engine_to_worker::Body::Operation(request.into_inner());
        match self.0.unary(body, context).await? {
            worker_to_engine::Body::Operation(response) => Ok(response),
            other => Err(self.0.wrong_answer("a framework operation", &other)),
        }
    }

    pub(super) async fn tool(
        &self,
        request: tonic::Request<pb::WorkerExecuteToolRequest>,
    ) -> Result<pb::ExecuteToolResponse, Status> {
        let context = trace_context(&request);
        let body = engine_to_worker::Body::Tool(request.into_inner());
        match self.0.unary(body, context).await? {
            worker_to_engine::Body::Tool(response) => Ok(response),
            other => Err(self.0.wrong_answer("a tool call", &other)),
        }
    }

    pub(super) async fn streaming_tool(
        &self,
        request: tonic::Request<pb::WorkerExecuteStreamingToolRequest>,
    ) -> Result<RawChunks, Status> {
        let context = trace_context(&request);
        self.0.stream(request.into_inner(), context)
    }

    pub(super) async fn ping(&self) -> Result<(), Status> {
        let request = pb::PingRequest {
            message: "health".to_owned(),
        };
        match self
            .0
            .unary(engine_to_worker::Body::Ping(request), HashMap::new())
            .await?
        {
            worker_to_engine::Body::Pong(_) => Ok(()),
            other => Err(self.0.wrong_answer("a ping", &other)),
        }
    }
}

/// Reads the worker's stream, routing each answer to its call, until the stream ends;
/// returns how it ended.
pub(super) async fn read_answers(
    link: &AttachedLink,
    mut inbound: Streaming<pb::WorkerToEngine>,
) -> String {
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
}

/// Where the answers of one call on an attached worker go.
enum Pending {
    Unary(oneshot::Sender<Result<worker_to_engine::Body, Status>>),
    Stream(mpsc::Sender<Result<pb::ToolChunk, Status>>),
}

/// The engine's side of an attached worker's stream: calls go out tagged with an id, and
/// the reader ([`AttachedLink::deliver`]) routes each answer to its call. Calls in flight
/// are bounded by the worker's slot (its call permits, plus one health ping).
pub(crate) struct AttachedLink {
    worker_id: String,
    outbound: mpsc::Sender<Result<pb::EngineToWorker, Status>>,
    calls: Mutex<HashMap<u64, Pending>>,
    next: AtomicU64,
}

/// Chunks of one streaming call that may wait for its caller. The stream's one reader never
/// waits for a caller (every call of the worker, and its pings, share the stream): a caller
/// that falls this far behind has its call cancelled instead.
const STREAM_BUFFER: usize = 256;

impl AttachedLink {
    pub(super) fn new(
        worker_id: String,
        outbound: mpsc::Sender<Result<pb::EngineToWorker, Status>>,
    ) -> Self {
        AttachedLink {
            worker_id,
            outbound,
            calls: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends one call and registers where its answers go; the guard cancels it if the
    /// caller leaves before it is answered.
    fn start(
        self: &Arc<Self>,
        body: engine_to_worker::Body,
        trace_context: HashMap<String, String>,
        pending: Pending,
    ) -> Result<CallGuard, Status> {
        let call_id = self.next.fetch_add(1, Ordering::Relaxed);
        self.calls().insert(call_id, pending);
        let message = pb::EngineToWorker {
            call_id,
            body: Some(body),
            trace_context,
        };
        // The stream's buffer is bounded like the calls; a full one means the worker has
        // stopped reading (its health pings will tell): the call is not sent at all.
        if self.outbound.try_send(Ok(message)).is_err() {
            self.calls().remove(&call_id);
            return Err(BridgeError::new(
                ErrorKind::WorkerUnavailable,
                format!(
                    "worker {} is not reading its stream; the call was not sent, retry later",
                    self.worker_id
                ),
            )
            .with("worker_id", &self.worker_id)
            .into());
        }
        Ok(CallGuard {
            link: Arc::clone(self),
            call_id,
        })
    }

    async fn unary(
        self: &Arc<Self>,
        body: engine_to_worker::Body,
        trace_context: HashMap<String, String>,
    ) -> Result<worker_to_engine::Body, Status> {
        let (answer, answered) = oneshot::channel();
        let _guard = self.start(body, trace_context, Pending::Unary(answer))?;
        answered.await.unwrap_or_else(|_| Err(self.gone()))
    }

    fn stream(
        self: &Arc<Self>,
        request: pb::WorkerExecuteStreamingToolRequest,
        trace_context: HashMap<String, String>,
    ) -> Result<RawChunks, Status> {
        let (chunks, receiver) = mpsc::channel(STREAM_BUFFER);
        let guard = self.start(
            engine_to_worker::Body::StreamingTool(request),
            trace_context,
            Pending::Stream(chunks),
        )?;
        let gone = self.gone();
        Ok(Box::pin(futures_util::stream::unfold(
            (receiver, guard, Some(gone)),
            |(mut receiver, guard, gone)| async move {
                match receiver.recv().await {
                    Some(item) => Some((item, (receiver, guard, gone))),
                    // The reader dropped the call: the stream ended without a final chunk.
                    None => {
                        let gone = gone?;
                        Some((Err(gone), (receiver, guard, None)))
                    }
                }
            },
        )))
    }

    /// Tells the worker it is attached, under the id it now has.
    pub(super) fn welcome(&self, engine_id: &str) {
        let welcome = pb::EngineToWorker {
            call_id: 0,
            body: Some(engine_to_worker::Body::Welcome(pb::WorkerWelcome {
                worker_id: self.worker_id.clone(),
                engine_id: engine_id.to_owned(),
            })),
            trace_context: HashMap::new(),
        };
        // A new stream has room for it; a full one means the worker is gone already.
        let _ = self.outbound.try_send(Ok(welcome));
    }

    /// The status of a call whose worker's stream ended (the caller then reports how the
    /// worker ended).
    fn gone(&self) -> Status {
        Status::unavailable(format!(
            "the stream of attached worker {} ended",
            self.worker_id
        ))
    }

    fn wrong_answer(&self, what: &str, got: &worker_to_engine::Body) -> Status {
        Status::internal(format!(
            "attached worker {} answered {what} with {}",
            self.worker_id,
            body_name(got)
        ))
    }

    /// Routes one message from the worker to its call. Answers to calls that are gone
    /// (cancelled, timed out) are dropped.
    pub(super) async fn deliver(&self, message: pb::WorkerToEngine) {
        let Some(body) = message.body else {
            return;
        };
        let call_id = message.call_id;
        let answer = match body {
            worker_to_engine::Body::Error(error) => Err(Status::from(BridgeError::from(error))),
            other => Ok(other),
        };
        let stream = {
            let mut calls = self.calls();
            match calls.get(&call_id) {
                None => return,
                Some(Pending::Unary(_)) => {
                    if let Some(Pending::Unary(sender)) = calls.remove(&call_id) {
                        let _ = sender.send(answer);
                    }
                    return;
                }
                Some(Pending::Stream(sender)) => sender.clone(),
            }
        };
        let (item, last) = match answer {
            Ok(worker_to_engine::Body::Chunk(chunk)) => {
                let last = chunk.is_final;
                (Ok(chunk), last)
            }
            Ok(other) => (
                Err(self.wrong_answer("a streaming tool call", &other)),
                true,
            ),
            Err(status) => (Err(status), true),
        };
        if last {
            self.calls().remove(&call_id);
        }
        match stream.try_send(item) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                // The caller fell `STREAM_BUFFER` chunks behind: cancel its call (the worker
                // stops producing) and tell the caller why, after what it has not read yet.
                if self.calls().remove(&call_id).is_some() {
                    self.send_cancel(call_id);
                }
                let error = BridgeError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "the caller read the chunks of a streaming tool of worker {} too \
                         slowly ({STREAM_BUFFER} waited); the call was cancelled",
                        self.worker_id
                    ),
                )
                .with("worker_id", &self.worker_id);
                tokio::spawn(async move {
                    let _ = stream.send(Err(error.into())).await;
                });
            }
        }
    }

    /// Tells the worker to stop call `call_id` (best effort: a full stream drops it).
    fn send_cancel(&self, call_id: u64) {
        let _ = self.outbound.try_send(Ok(pb::EngineToWorker {
            call_id,
            body: Some(engine_to_worker::Body::Cancel(pb::CancelWorkerCall {})),
            trace_context: HashMap::new(),
        }));
    }

    /// Fails every call in flight (their callers then see the worker's end) and ends the
    /// worker's stream with `how`.
    pub(super) fn close(&self, how: &str) {
        self.calls().clear();
        let _ = self.outbound.try_send(Err(Status::unavailable(format!(
            "the engine let worker {} go: {how}",
            self.worker_id
        ))));
    }
}

/// A call in flight; dropped before its last answer came, it tells the worker to cancel
/// the call.
struct CallGuard {
    link: Arc<AttachedLink>,
    call_id: u64,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.link.calls().remove(&self.call_id).is_some() {
            self.link.send_cancel(self.call_id);
        }
    }
}

fn body_name(body: &worker_to_engine::Body) -> &'static str {
    match body {
        worker_to_engine::Body::Hello(_) => "a second hello",
        worker_to_engine::Body::Operation(_) => "an operation's answer",
        worker_to_engine::Body::Tool(_) => "a tool's answer",
        worker_to_engine::Body::Chunk(_) => "a tool chunk",
        worker_to_engine::Body::Error(_) => "an error",
        worker_to_engine::Body::Pong(_) => "a pong",
    }
}
