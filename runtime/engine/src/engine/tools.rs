//! Tools and framework operations: listing, running engine-hosted tools (unary and
//! streaming) and routing worker-hosted tools and operations through
//! [`crate::operations`].

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) async fn list_tools(
    engine: &Engine,
    r: pb::ListToolsRequest,
) -> Result<pb::ListToolsResponse> {
    // An empty session lists the global tools only (engine and worker tools).
    let session = r.session_id.as_str();
    if !session.is_empty() {
        engine.state.session(session).await?;
    }
    let pattern = Glob::new(&r.pattern)?;
    let mut tools: Vec<pb::ToolInfo> = engine
        .tools
        .specs()
        .into_iter()
        .filter(|spec| pattern.matches(&spec.name))
        .map(|spec| pb::ToolInfo {
            spec: Some(spec),
            host: Some(pb::ToolHost {
                kind: pb::ToolHostKind::Engine as i32,
                ..Default::default()
            }),
            session_id: String::new(),
        })
        .collect();
    // Worker-hosted tools, unless an engine tool has the name (it wins).
    if let Some(workers) = &engine.workers {
        let engine_tools: std::collections::HashSet<String> = tools
            .iter()
            .filter_map(|t| t.spec.as_ref().map(|s| s.name.clone()))
            .collect();
        tools.extend(operations::tool_infos(workers).into_iter().filter(|info| {
            info.spec.as_ref().is_some_and(|spec| {
                pattern.matches(&spec.name) && !engine_tools.contains(&spec.name)
            })
        }));
    }
    // The session's own tools, served by its callbacks.
    tools.extend(
        engine
            .callbacks
            .tools(session)
            .into_iter()
            .filter(|tool| pattern.matches(&tool.spec.name))
            .map(|tool| pb::ToolInfo {
                spec: Some(tool.spec),
                host: Some(pb::ToolHost {
                    kind: pb::ToolHostKind::Callback as i32,
                    callback_name: tool.callback,
                    ..Default::default()
                }),
                session_id: session.to_owned(),
            }),
    );
    tools.sort_by(|a, b| {
        let name = |t: &pb::ToolInfo| t.spec.as_ref().map(|s| s.name.clone());
        name(a).cmp(&name(b))
    });
    Ok(pb::ListToolsResponse { tools })
}

pub(super) async fn execute_tool(
    engine: &Engine,
    r: pb::ExecuteToolRequest,
) -> Result<pb::ExecuteToolResponse> {
    let session = required("session_id", &r.session_id)?;
    engine.state.session(session).await?;
    if let Some(workers) = engine.tool_worker(&r.tool_name) {
        return operations::execute_tool(workers, engine.limits.max_value_bytes, r).await;
    }
    if let Some(tool) = engine.callbacks.tool(session, &r.tool_name) {
        let started = Instant::now();
        let caller = format!("tool:{}", r.tool_name);
        let answer = engine
            .callbacks
            .call(session, &tool.callback, r.arguments, r.metadata, &caller)
            .await?;
        return Ok(pb::ExecuteToolResponse {
            result: answer.result,
            metadata: answer.metadata,
            duration_us: started.elapsed().as_micros() as u64,
            worker_id: String::new(),
        });
    }
    let (handler, args) =
        engine
            .tools
            .prepare(session, required("tool_name", &r.tool_name)?, r.arguments)?;
    let Handler::Unary(run) = handler else {
        return Err(BridgeError::invalid_argument(
            "tool_name",
            format!(
                "tool `{}` streams its results: call ExecuteStreamingTool",
                r.tool_name
            ),
        ));
    };
    let started = Instant::now();
    let result = engine
        .tool_call(session, &r.tool_name)
        .scope(run(args))
        .await?;
    Ok(pb::ExecuteToolResponse {
        result: Some(result),
        metadata: HashMap::new(),
        duration_us: started.elapsed().as_micros() as u64,
        worker_id: String::new(),
    })
}

pub(super) async fn execute_framework_operation(
    engine: &Engine,
    r: pb::ExecuteFrameworkOperationRequest,
) -> Result<pb::ExecuteFrameworkOperationResponse> {
    engine
        .state
        .session(required("session_id", &r.session_id)?)
        .await?;
    required("framework", &r.framework)?;
    required("operation", &r.operation)?;
    let what = format!("operation `{}.{}`", r.framework, r.operation);
    operations::execute_operation(
        engine.worker_pool(&what)?,
        &*engine.state,
        &engine.callbacks,
        engine.limits.max_value_bytes,
        r,
    )
    .await
}

/// Renumbers the final marker to follow the last data chunk, and stops after an error so
/// that a failed stream never also reports success.
pub(super) struct FinalNumbered {
    inner: BoxStream<pb::ToolChunk>,
    next: u64,
    done: bool,
}

impl FinalNumbered {
    pub(super) fn new(inner: BoxStream<pb::ToolChunk>) -> Self {
        FinalNumbered {
            inner,
            next: 0,
            done: false,
        }
    }
}

impl Stream for FinalNumbered {
    type Item = std::result::Result<pb::ToolChunk, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.done {
            return std::task::Poll::Ready(None);
        }
        let polled = self.inner.as_mut().poll_next(cx);
        match polled {
            std::task::Poll::Ready(Some(Ok(mut chunk))) => {
                chunk.sequence = self.next;
                self.next += 1;
                std::task::Poll::Ready(Some(Ok(chunk)))
            }
            std::task::Poll::Ready(Some(Err(status))) => {
                self.done = true;
                std::task::Poll::Ready(Some(Err(status)))
            }
            other => other,
        }
    }
}
