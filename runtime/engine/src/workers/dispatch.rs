//! Routing a checked call to the session's worker: unary operation and tool calls, and
//! streaming tool calls forwarded chunk by chunk. What is checked before (operation lookup,
//! bindings, specs) lives in `crate::operations`.

use std::pin::Pin;

use mlbridge_proto::mlbridge::v1 as pb;
use tokio_stream::{Stream, StreamExt};
use tracing::Instrument;

use super::{WorkerPool, crashed, failure, timed_out, until_ended};
use crate::error::{BridgeError, ErrorKind, Result};

/// A worker-hosted tool's output, chunk by chunk, ending after the final chunk or with an
/// error.
pub type ToolChunkStream = Pin<Box<dyn Stream<Item = Result<pb::ToolChunk>> + Send>>;

/// The span of an engine → worker call, whose context the worker's span continues.
fn worker_span(method: &str) -> tracing::Span {
    tracing::info_span!(
        "worker call",
        otel.name = %format_args!("mlbridge.v1.Worker/{method}"),
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.service = "mlbridge.v1.Worker",
        rpc.method = %method,
    )
}

impl WorkerPool {
    /// The spec of the worker-hosted tool `name`, if a worker offers one.
    pub fn tool(&self, name: &str) -> Option<&pb::ToolSpec> {
        self.inner
            .catalog
            .get()
            .and_then(|catalog| catalog.tools.get(name))
            .map(|(spec, _)| spec)
    }

    /// Every worker-hosted tool's spec and the framework whose worker hosts it.
    pub(crate) fn tools(&self) -> impl Iterator<Item = &(pb::ToolSpec, String)> {
        self.inner
            .catalog
            .get()
            .into_iter()
            .flat_map(|catalog| catalog.tools.values())
    }

    /// Runs a checked framework operation on the session's worker; returns the answer and
    /// the worker's id.
    pub(crate) async fn run_operation(
        &self,
        session_id: &str,
        what: &str,
        mut request: pb::WorkerExecuteFrameworkOperationRequest,
    ) -> Result<(pb::ExecuteFrameworkOperationResponse, String)> {
        request.engine_address = self.engine_address();
        request.session_token = crate::auth::operation_token();
        self.call(session_id, what, move |link| async move {
            link.operation(crate::telemetry::traced_request(request))
                .await
        })
        .instrument(worker_span("ExecuteFrameworkOperation"))
        .await
    }

    /// Runs a checked unary tool call on the session's worker; returns the answer and the
    /// worker's id.
    pub(crate) async fn run_tool(
        &self,
        session_id: &str,
        what: &str,
        mut request: pb::WorkerExecuteToolRequest,
    ) -> Result<(pb::ExecuteToolResponse, String)> {
        request.engine_address = self.engine_address();
        request.session_token = crate::auth::operation_token();
        self.call(session_id, what, move |link| async move {
            link.tool(crate::telemetry::traced_request(request)).await
        })
        .instrument(worker_span("ExecuteTool"))
        .await
    }

    /// Opens a checked streaming tool call on the session's worker. The stream fails with
    /// `WORKER_CRASHED` as soon as the worker dies, and with `TIMEOUT` when no chunk comes
    /// within the operation timeout.
    pub(crate) async fn open_tool_stream(
        &self,
        what: String,
        mut worker_request: pb::WorkerExecuteStreamingToolRequest,
    ) -> Result<ToolChunkStream> {
        worker_request.engine_address = self.engine_address();
        let slot = self.slot_for(&worker_request.session_id)?;
        let permit = self.permit(&slot).await?;
        let worker = self.ready_worker(&slot).await?;
        let timeout = self.inner.config.operation_timeout;
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<pb::ToolChunk>>(16);
        let span = worker_span("ExecuteStreamingTool");
        let worker_request = {
            let _entered = span.enter();
            crate::telemetry::traced_request(worker_request)
        };
        // The forwarding task owns the call: it ends the stream with the worker's death,
        // and dropping the receiver (the client went away) cancels the worker's call.
        tokio::spawn(async move {
            let _permit = permit;
            let mut ended = worker.ended.clone();
            let link = worker.client.clone();
            let opened = tokio::select! {
                opened = tokio::time::timeout(timeout, link.streaming_tool(worker_request)) => match opened {
                    Ok(Ok(chunks)) => Ok(chunks),
                    Ok(Err(status)) => Err(failure(&slot, &worker, &what, status).await),
                    Err(_) => Err(timed_out(&slot, &what, timeout)),
                },
                () = until_ended(&mut ended) => Err(crashed(&slot, &worker, &what)),
            };
            let mut chunks = match opened {
                Ok(chunks) => chunks,
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            };
            loop {
                let next = tokio::select! {
                    next = tokio::time::timeout(timeout, chunks.next()) => match next {
                        Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
                        Ok(Some(Err(status))) => Err(failure(&slot, &worker, &what, status).await),
                        Ok(None) => Ok(None),
                        Err(_) => Err(timed_out(&slot, &what, timeout)),
                    },
                    () = until_ended(&mut ended) => Err(crashed(&slot, &worker, &what)),
                    _ = sender.closed() => return,
                };
                match next {
                    Ok(Some(chunk)) => {
                        let last = chunk.is_final;
                        if sender.send(Ok(chunk)).await.is_err() || last {
                            return;
                        }
                    }
                    Ok(None) => {
                        let _ = sender
                            .send(Err(BridgeError::new(
                                ErrorKind::WorkerCrashed,
                                format!(
                                    "worker {} ended the stream of {what} without its final chunk",
                                    slot.id
                                ),
                            )
                            .with("worker_id", &slot.id)))
                            .await;
                        return;
                    }
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }
}
