//! The engine's `MLBridge` service: sessions, variables, watch and host tools over a
//! [`StateBackend`]. Every failure leaves as a [`BridgeError`] in the status details.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mlbridge_proto::mlbridge::v1::{self as pb, ml_bridge_server::MlBridge};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::auth::{Auth, AuthMode, Caller, Guarded, TokenEnd};
use crate::callbacks::{CallbackLimits, CallbackRegistry};
use crate::error::{BridgeError, ErrorKind, Result};
use crate::glob::Glob;
use crate::operations;
use crate::resources::{NativeResource, ResourceRegistry};
use crate::state::{
    Limits, MemoryBackend, NewSession, StateBackend, WatchStart, WriteContext, WriteOp,
};
use crate::telemetry::traced;
use crate::tools::{Handler, ToolDef, ToolRegistry};
use crate::workers::WorkerPool;

mod callbacks;
mod derive;
mod locks;
mod resources;
mod rules;
mod sessions;
mod tools;
mod variables;

use tools::FinalNumbered;

type GrpcResult<T> = std::result::Result<Response<T>, Status>;
type BoxStream<T> = std::pin::Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

/// The engine: state, tools, and the `MLBridge` API over them. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    id: String,
    state: Arc<dyn StateBackend>,
    tools: Arc<ToolRegistry>,
    limits: Limits,
    workers: Option<WorkerPool>,
    callbacks: Arc<CallbackRegistry>,
    resources: Arc<ResourceRegistry>,
    auth: Auth,
    /// Whether any derived variable exists, and registrations under way: what a write
    /// needs to know that the derived variables it looked up may have changed meanwhile.
    derived_registrations: Arc<derive::Registrations>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("id", &self.id)
            .field("tools", &self.tools.len())
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Engine`].
#[derive(Debug, Default)]
pub struct EngineBuilder {
    limits: Limits,
    tools: ToolRegistry,
    state: Option<Arc<dyn StateBackend>>,
    workers: Option<WorkerPool>,
    callback_limits: CallbackLimits,
    auth: AuthMode,
}

impl EngineBuilder {
    /// Limits for the default in-memory backend.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Adds a host tool. Panics on a duplicate name, which is a programming error.
    pub fn tool(mut self, tool: ToolDef) -> Self {
        let name = tool.spec.name.clone();
        self.tools
            .register(tool)
            .unwrap_or_else(|e| panic!("tool `{name}`: {e}"));
        self
    }

    /// Uses `state` instead of the in-memory backend.
    pub fn state(mut self, state: Arc<dyn StateBackend>) -> Self {
        self.state = Some(state);
        self
    }

    /// Bounds and deadlines of client callbacks.
    pub fn callback_limits(mut self, limits: CallbackLimits) -> Self {
        self.callback_limits = limits;
        self
    }

    /// Whether calls must carry a valid token (default: off, as for a library engine
    /// used in-process; `mlbridge serve` decides from where it listens).
    pub fn auth(mut self, mode: AuthMode) -> Self {
        self.auth = mode;
        self
    }

    /// Runs framework operations and worker-hosted tools on `pool`.
    pub fn workers(mut self, pool: WorkerPool) -> Self {
        self.workers = Some(pool);
        self
    }

    /// The engine.
    pub fn build(self) -> Engine {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let limits = self.limits;
        let state = self
            .state
            .unwrap_or_else(|| Arc::new(MemoryBackend::new(limits.clone())));
        if let Some(workers) = &self.workers {
            // The pool unpins sessions as the backend reports them ended.
            workers.follow_sessions(state.session_events());
        }
        let callbacks = Arc::new(CallbackRegistry::new(self.callback_limits));
        // Callbacks go with their session. Outside a runtime nobody follows the events;
        // calls still check that the session is live.
        let resources = Arc::new(ResourceRegistry::new(limits.max_resources_per_session));
        let auth = Auth::with_store(self.auth, state.token_store());
        if tokio::runtime::Handle::try_current().is_ok() {
            auth.follow_sessions(state.session_events());
            callbacks.follow_sessions(state.session_events());
            let backend = Arc::clone(&state);
            resources.follow_sessions(state.session_events(), move |id| {
                let backend = Arc::clone(&backend);
                async move { backend.session(&id).await.is_ok() }
            });
        }
        Engine {
            id: format!("engine-{}-{nanos:x}", std::process::id()),
            state,
            tools: Arc::new(self.tools),
            limits,
            workers: self.workers,
            callbacks,
            resources,
            auth,
            derived_registrations: Arc::default(),
        }
    }
}

impl Engine {
    /// An engine with in-memory state, default limits and no tools.
    pub fn new() -> Self {
        Engine::builder().build()
    }

    /// Starts configuring an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// This engine's instance id, reported by `Ping`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The state backend.
    pub fn state(&self) -> &Arc<dyn StateBackend> {
        &self.state
    }

    /// A client of this engine in this process: the same [`mlbridge_client::Session`] API
    /// as over gRPC, calling the engine directly (no socket, no protobuf encoding).
    pub fn in_process_client(&self) -> mlbridge_client::Client {
        mlbridge_client::Client::in_process(Arc::new(self.clone()))
    }

    /// The engine's tokens.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The caller of `request` per its access rule (`rules.rs`): the check at the top of
    /// every handler.
    async fn authorize<T: Guarded + Sync>(
        &self,
        request: &Request<T>,
    ) -> std::result::Result<Caller, Status> {
        let caller = self.auth.authorize(request).await?;
        if caller.token().is_some() && request.get_ref().access().session.is_empty() {
            let access = request.get_ref().access();
            if access.mutates || access.tools {
                return Err(BridgeError::new(
                    ErrorKind::PermissionDenied,
                    "a session's token cannot change what every session shares",
                )
                .into());
            }
        }
        Ok(caller)
    }

    /// Runs `call` (which may reach a worker) with a token for the worker's calls back
    /// into the engine: a child of the caller's token, with its scope, that ends with the
    /// worker's operation deadline and is revoked when `call` ends.
    async fn on_behalf_of<T>(
        &self,
        caller: &Caller,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let deadline = self
            .workers
            .as_ref()
            .map(WorkerPool::operation_timeout)
            .unwrap_or(Duration::from_secs(300))
            + Duration::from_secs(5);
        let Some(token) = self.auth.mint_for_operation(caller, Some(deadline)).await? else {
            return call.await;
        };
        // Revoked when `token` drops, after the call.
        crate::auth::OPERATION_TOKEN
            .scope(token.token.clone(), call)
            .await
    }

    /// The worker pool, when the engine runs one.
    pub fn workers(&self) -> Option<&WorkerPool> {
        self.workers.as_ref()
    }

    /// Calls the client callback `name` of a session (registered with `RegisterCallback`)
    /// with `arguments`, under the callback's deadline: the engine-side way to reach a
    /// Python function, for tools, resources and optimizers. `caller` says what triggered
    /// the call (`resource:<id>`, `tool:<name>`) and reaches the callback.
    ///
    /// # Errors
    ///
    /// `SESSION_NOT_FOUND`/`SESSION_EXPIRED`, `CALLBACK_NOT_FOUND`, argument errors
    /// (`INVALID_ARGUMENT`, `TYPE_MISMATCH`, `CONSTRAINT_VIOLATION`), the callback's own
    /// `CALLBACK_ERROR` (with the remote type and traceback), `TIMEOUT` (the call was
    /// cancelled), `CALLBACK_UNAVAILABLE`.
    pub async fn call_callback(
        &self,
        session_id: &str,
        name: &str,
        arguments: HashMap<String, pb::Value>,
        metadata: HashMap<String, String>,
        caller: &str,
    ) -> Result<pb::ExecuteCallbackResponse> {
        self.state.session(session_id).await?;
        self.callbacks
            .call(session_id, name, arguments, metadata, caller)
            .await
    }

    /// The registry of client callbacks, with each callback's parameter specs and deadline.
    pub fn callbacks(&self) -> &CallbackRegistry {
        &self.callbacks
    }

    /// The resource `resource_id` of a session, or `RESOURCE_NOT_FOUND`.
    pub fn resource(&self, session_id: &str, resource_id: &str) -> Result<Arc<dyn NativeResource>> {
        Ok(self.resources.get(session_id, resource_id)?.native)
    }

    /// The context of a call of engine tool `tool` by a session.
    fn tool_call(&self, session_id: &str, tool: &str) -> Arc<crate::tools::ToolCall> {
        Arc::new(crate::tools::ToolCall {
            engine: self.clone(),
            session_id: session_id.to_owned(),
            tool: tool.to_owned(),
        })
    }

    /// Runs a framework operation on the worker pool, as `ExecuteFrameworkOperation` does.
    ///
    /// # Errors
    ///
    /// As `ExecuteFrameworkOperation`.
    pub async fn execute_operation(
        &self,
        request: pb::ExecuteFrameworkOperationRequest,
    ) -> Result<pb::ExecuteFrameworkOperationResponse> {
        tools::execute_framework_operation(self, request).await
    }

    /// Removes expired sessions every `every` until the returned task is aborted.
    pub fn spawn_expiry_sweeper(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // The worker pool hears of expired sessions from the backend's events.
                let _ = state.expire_sessions().await;
            }
        })
    }

    /// The worker pool, if `tool` is a worker-hosted tool (and no engine tool has its name).
    fn tool_worker(&self, tool: &str) -> Option<&WorkerPool> {
        self.workers
            .as_ref()
            .filter(|w| w.tool(tool).is_some())
            .filter(|_| !self.tools.specs().iter().any(|spec| spec.name == tool))
    }

    /// The worker pool, or `WORKER_UNAVAILABLE` saying how to start one.
    pub(crate) fn worker_pool(&self, what: &str) -> Result<&WorkerPool> {
        self.workers
            .as_ref()
            .ok_or_else(|| operations::no_workers(what))
    }

    async fn variable(&self, session: &str, name: &str) -> Result<(pb::Variable, u64)> {
        let (mut found, sequence) = self.state.get(session, &[name.to_owned()]).await?;
        let variable = found
            .pop()
            .flatten()
            .ok_or_else(|| BridgeError::variable_not_found(session, name))?;
        Ok((variable, sequence))
    }

    async fn write_one(
        &self,
        session: &str,
        op: WriteOp,
        context: WriteContext,
    ) -> Result<(pb::Variable, u64)> {
        let mut outcomes = self.write(session, vec![op], true, context).await?;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(BridgeError::internal("a write returned no outcome")))
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    if value.is_empty() {
        Err(BridgeError::invalid_argument(
            field,
            format!("`{field}` is required"),
        ))
    } else {
        Ok(value)
    }
}

fn duration(field: &str, value: Option<prost_types::Duration>) -> Result<Option<Duration>> {
    value
        .map(|d| {
            non_negative(d).ok_or_else(|| {
                BridgeError::invalid_argument(field, format!("`{field}` must not be negative"))
            })
        })
        .transpose()
}

/// A client's `google.protobuf.Duration` as a `std` one; `None` when it is negative.
/// prost-types' own conversion negates the seconds of a negative duration, which
/// overflows (a panic in debug builds) for `seconds = i64::MIN`; a negative duration is
/// refused before it gets there.
pub(crate) fn non_negative(d: prost_types::Duration) -> Option<Duration> {
    if d.seconds < 0 {
        return None;
    }
    Duration::try_from(d).ok()
}

fn variable_type(value: i32) -> Result<pb::VariableType> {
    pb::VariableType::try_from(value).map_err(|_| {
        BridgeError::invalid_argument("type", format!("unknown variable type {value}"))
    })
}

fn value_arg(field: &str, value: Option<pb::Value>) -> Result<pb::Value> {
    value.ok_or_else(|| BridgeError::invalid_argument(field, format!("`{field}` is required")))
}

fn context(source: String, metadata: HashMap<String, String>) -> WriteContext {
    WriteContext {
        source,
        metadata,
        lock_token: String::new(),
    }
}

/// A write context carrying an optimization lock token.
fn locked_context(
    source: String,
    metadata: HashMap<String, String>,
    lock_token: String,
) -> WriteContext {
    WriteContext {
        lock_token,
        ..context(source, metadata)
    }
}

fn answer<T>(result: Result<T>) -> GrpcResult<T> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl MlBridge for Engine {
    async fn ping(&self, request: Request<pb::PingRequest>) -> GrpcResult<pb::PingResponse> {
        let _caller = self.authorize(&request).await?;
        Ok(Response::new(pb::PingResponse {
            message: request.into_inner().message,
            server_id: self.id.clone(),
            protocol_version: crate::PROTOCOL_VERSION.to_owned(),
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            server_time: Some(SystemTime::now().into()),
        }))
    }

    async fn initialize_session(
        &self,
        request: Request<pb::InitializeSessionRequest>,
    ) -> GrpcResult<pb::InitializeSessionResponse> {
        // Creating a session needs no token (it is how a program gets one); joining a live
        // one needs a token of it, checked now and answered once the backend said which
        // it was.
        let joining = self.authorize(&request).await;
        let response = sessions::initialize_session(self, traced(request)).await;
        if let Ok(r) = &response
            && !r.created
        {
            joining?;
        }
        answer(response)
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> GrpcResult<pb::GetSessionResponse> {
        let _caller = self.authorize(&request).await?;
        answer(sessions::get_session(self, traced(request)).await)
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> GrpcResult<pb::HeartbeatResponse> {
        let _caller = self.authorize(&request).await?;
        answer(sessions::heartbeat(self, traced(request)).await)
    }

    async fn cleanup_session(
        &self,
        request: Request<pb::CleanupSessionRequest>,
    ) -> GrpcResult<pb::CleanupSessionResponse> {
        let _caller = self.authorize(&request).await?;
        answer(sessions::cleanup_session(self, traced(request)).await)
    }

    async fn register_variable(
        &self,
        request: Request<pb::RegisterVariableRequest>,
    ) -> GrpcResult<pb::RegisterVariableResponse> {
        let _caller = self.authorize(&request).await?;
        answer(variables::register_variable(self, traced(request)).await)
    }

    async fn get_variable(
        &self,
        request: Request<pb::GetVariableRequest>,
    ) -> GrpcResult<pb::GetVariableResponse> {
        let _caller = self.authorize(&request).await?;
        answer(variables::get_variable(self, traced(request)).await)
    }

    async fn set_variable(
        &self,
        request: Request<pb::SetVariableRequest>,
    ) -> GrpcResult<pb::SetVariableResponse> {
        let _caller = self.authorize(&request).await?;
        answer(variables::set_variable(self, traced(request)).await)
    }

    async fn delete_variable(
        &self,
        request: Request<pb::DeleteVariableRequest>,
    ) -> GrpcResult<pb::DeleteVariableResponse> {
        let _caller = self.authorize(&request).await?;
        answer(variables::delete_variable(self, traced(request)).await)
    }

    async fn list_variables(
        &self,
        request: Request<pb::ListVariablesRequest>,
    ) -> GrpcResult<pb::ListVariablesResponse> {
        let caller = self.authorize(&request).await?;
        let mut listed = variables::list_variables(self, traced(request)).await;
        if let Ok(listed) = &mut listed {
            listed.variables.retain(|v| caller.may_read(&v.name));
        }
        answer(listed)
    }

    async fn get_variables(
        &self,
        request: Request<pb::GetVariablesRequest>,
    ) -> GrpcResult<pb::GetVariablesResponse> {
        let _caller = self.authorize(&request).await?;
        answer(variables::get_variables(self, traced(request)).await)
    }

    async fn set_variables(
        &self,
        request: Request<pb::SetVariablesRequest>,
    ) -> GrpcResult<pb::SetVariablesResponse> {
        let _caller = self.authorize(&request).await?;
        answer(variables::set_variables(self, traced(request)).await)
    }

    async fn get_variable_history(
        &self,
        request: Request<pb::GetVariableHistoryRequest>,
    ) -> GrpcResult<pb::GetVariableHistoryResponse> {
        let _caller = self.authorize(&request).await?;
        answer(variables::get_variable_history(self, traced(request)).await)
    }

    async fn rollback_variable(
        &self,
        request: Request<pb::RollbackVariableRequest>,
    ) -> GrpcResult<pb::RollbackVariableResponse> {
        let _caller = self.authorize(&request).await?;
        answer(variables::rollback_variable(self, traced(request)).await)
    }

    async fn watch_variables(
        &self,
        request: Request<pb::WatchVariablesRequest>,
    ) -> GrpcResult<BoxStream<pb::VariableUpdate>> {
        let caller = self.authorize(&request).await?;
        let r = traced(request);
        let stream = async {
            let start = match (r.include_initial_values, r.resume_from_sequence) {
                (true, Some(_)) => {
                    return Err(BridgeError::invalid_argument(
                        "resume_from_sequence",
                        "choose either include_initial_values or resume_from_sequence, not both",
                    ));
                }
                (true, None) => WatchStart::Initial,
                (false, Some(from)) => WatchStart::Resume(from),
                (false, None) => WatchStart::Now,
            };
            self.state
                .watch(required("session_id", &r.session_id)?, r.names, start)
                .await
        }
        .await
        .map_err(Status::from)?;
        let updates = stream.map(|item| item.map_err(Status::from));
        let Some(token) = caller.token().cloned() else {
            return Ok(Response::new(Box::pin(updates)));
        };
        // Only what the token may read; and the stream ends when the token is revoked or
        // expires.
        let readable = updates.filter(move |item| match item {
            Ok(update) => {
                update.variable_name.is_empty() || token.scope.covers(&update.variable_name)
            }
            Err(_) => true,
        });
        Ok(Response::new(until_token_ends(
            &caller,
            &r.session_id,
            "watch",
            readable,
        )))
    }

    async fn start_optimization(
        &self,
        request: Request<pb::StartOptimizationRequest>,
    ) -> GrpcResult<pb::StartOptimizationResponse> {
        let _caller = self.authorize(&request).await?;
        answer(locks::start_optimization(self, traced(request)).await)
    }

    async fn stop_optimization(
        &self,
        request: Request<pb::StopOptimizationRequest>,
    ) -> GrpcResult<pb::StopOptimizationResponse> {
        let _caller = self.authorize(&request).await?;
        answer(locks::stop_optimization(self, traced(request)).await)
    }

    async fn list_tools(
        &self,
        request: Request<pb::ListToolsRequest>,
    ) -> GrpcResult<pb::ListToolsResponse> {
        let _caller = self.authorize(&request).await?;
        answer(tools::list_tools(self, traced(request)).await)
    }

    async fn execute_tool(
        &self,
        request: Request<pb::ExecuteToolRequest>,
    ) -> GrpcResult<pb::ExecuteToolResponse> {
        let caller = self.authorize(&request).await?;
        let request = traced(request);
        answer(
            self.on_behalf_of(&caller, async { tools::execute_tool(self, request).await })
                .await,
        )
    }

    async fn execute_streaming_tool(
        &self,
        request: Request<pb::ExecuteStreamingToolRequest>,
    ) -> GrpcResult<BoxStream<pb::ToolChunk>> {
        let caller = self.authorize(&request).await?;
        let r = traced(request);
        let session = r.session_id.clone();
        if let Some(workers) = self.tool_worker(&r.tool_name) {
            // A worker numbers its chunks and sends the final marker itself. Its calls back
            // into the engine carry a child of the caller's token, revoked when the stream
            // ends (it lives in the stream).
            let (chunks, token) = async {
                self.state
                    .session(required("session_id", &r.session_id)?)
                    .await?;
                let token = self.auth.mint_for_operation(&caller, None).await?;
                let text = token.as_ref().map(|t| t.token.clone()).unwrap_or_default();
                let chunks =
                    operations::stream_tool(workers, self.limits.max_value_bytes, r, text).await?;
                Ok::<_, BridgeError>((chunks, token))
            }
            .await
            .map_err(Status::from)?;
            let chunks = chunks.map(move |chunk| {
                let _held = &token;
                chunk.map_err(Status::from)
            });
            return Ok(Response::new(until_token_ends(
                &caller,
                &session,
                "tool stream",
                chunks,
            )));
        }
        let chunks = async {
            let session = required("session_id", &r.session_id)?;
            self.state.session(session).await?;
            let (handler, args) =
                self.tools
                    .prepare(session, required("tool_name", &r.tool_name)?, r.arguments)?;
            let chunks = match handler {
                Handler::Streaming(run) => run(args),
                // A unary tool streams as a single chunk.
                Handler::Unary(run) => {
                    let mut call = Some(run(args));
                    Box::pin(
                        tokio_stream::once(()).then(move |()| call.take().expect("polled once")),
                    ) as _
                }
            };
            Ok(self.tool_call(session, &r.tool_name).scope_stream(chunks))
        }
        .await
        .map_err(|e: BridgeError| Status::from(e))?;
        let mut sequence = 0u64;
        let body = chunks.map(move |item| {
            let chunk = item.map(|data| pb::ToolChunk {
                sequence,
                data: Some(data),
                is_final: false,
                metadata: HashMap::new(),
            });
            sequence += 1;
            chunk.map_err(Status::from)
        });
        // After the last data chunk, one final marker: `is_final` without data.
        let end = tokio_stream::once(Ok(pb::ToolChunk {
            sequence: u64::MAX,
            data: None,
            is_final: true,
            metadata: HashMap::new(),
        }));
        let stream = FinalNumbered::new(Box::pin(body.chain(end)));
        Ok(Response::new(until_token_ends(
            &caller,
            &session,
            "tool stream",
            stream,
        )))
    }

    async fn execute_framework_operation(
        &self,
        request: Request<pb::ExecuteFrameworkOperationRequest>,
    ) -> GrpcResult<pb::ExecuteFrameworkOperationResponse> {
        let caller = self.authorize(&request).await?;
        let request = traced(request);
        answer(
            self.on_behalf_of(&caller, async {
                tools::execute_framework_operation(self, request).await
            })
            .await,
        )
    }

    async fn register_callback(
        &self,
        request: Request<pb::RegisterCallbackRequest>,
    ) -> GrpcResult<pb::RegisterCallbackResponse> {
        let _caller = self.authorize(&request).await?;
        answer(callbacks::register_callback(self, traced(request)).await)
    }

    async fn unregister_callback(
        &self,
        request: Request<pb::UnregisterCallbackRequest>,
    ) -> GrpcResult<pb::UnregisterCallbackResponse> {
        let _caller = self.authorize(&request).await?;
        answer(callbacks::unregister_callback(self, traced(request)).await)
    }

    async fn register_tools(
        &self,
        request: Request<pb::RegisterToolsRequest>,
    ) -> GrpcResult<pb::RegisterToolsResponse> {
        let _caller = self.authorize(&request).await?;
        answer(callbacks::register_tools(self, traced(request)).await)
    }

    async fn invoke_callback(
        &self,
        request: Request<pb::InvokeCallbackRequest>,
    ) -> GrpcResult<pb::ExecuteCallbackResponse> {
        let _caller = self.authorize(&request).await?;
        let r = traced(request);
        answer(
            async {
                let session = required("session_id", &r.session_id)?;
                let name = required("name", &r.name)?;
                self.call_callback(session, name, r.arguments, r.metadata, "")
                    .await
            }
            .await,
        )
    }

    async fn create_resource(
        &self,
        request: Request<pb::CreateResourceRequest>,
    ) -> GrpcResult<pb::CreateResourceResponse> {
        let _caller = self.authorize(&request).await?;
        answer(resources::create_resource(self, traced(request)).await)
    }

    async fn invoke_resource(
        &self,
        request: Request<pb::InvokeResourceRequest>,
    ) -> GrpcResult<pb::InvokeResourceResponse> {
        let _caller = self.authorize(&request).await?;
        answer(resources::invoke_resource(self, traced(request)).await)
    }

    async fn release_resource(
        &self,
        request: Request<pb::ReleaseResourceRequest>,
    ) -> GrpcResult<pb::ReleaseResourceResponse> {
        let _caller = self.authorize(&request).await?;
        answer(resources::release_resource(self, traced(request)).await)
    }

    async fn list_resources(
        &self,
        request: Request<pb::ListResourcesRequest>,
    ) -> GrpcResult<pb::ListResourcesResponse> {
        let _caller = self.authorize(&request).await?;
        answer(resources::list_resources(self, traced(request)).await)
    }

    async fn describe_adapters(
        &self,
        request: Request<pb::DescribeAdaptersRequest>,
    ) -> GrpcResult<pb::DescribeAdaptersResponse> {
        let _caller = self.authorize(&request).await?;
        let r = request.into_inner();
        answer(
            self.worker_pool("DescribeAdapters")
                .map(|workers| pb::DescribeAdaptersResponse {
                    adapters: operations::describe_adapters(workers, &r.frameworks),
                }),
        )
    }

    async fn mint_token(
        &self,
        request: Request<pb::MintTokenRequest>,
    ) -> GrpcResult<pb::MintTokenResponse> {
        let caller = self.authorize(&request).await?;
        let r = traced(request);
        answer(
            async {
                let session = required("session_id", &r.session_id)?;
                self.state.session(session).await?;
                self.auth.mint(session, caller.token(), &r).await
            }
            .await,
        )
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> GrpcResult<pb::RevokeTokenResponse> {
        let caller = self.authorize(&request).await?;
        let r = traced(request);
        answer(
            async {
                let session = required("session_id", &r.session_id)?;
                let token_id = required("token_id", &r.token_id)?;
                let revoked = self.auth.revoke(session, &caller, token_id).await?;
                Ok(pb::RevokeTokenResponse { revoked })
            }
            .await,
        )
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> GrpcResult<pb::ListTokensResponse> {
        let caller = self.authorize(&request).await?;
        let r = traced(request);
        answer(
            async {
                let session = required("session_id", &r.session_id)?;
                self.state.session(session).await?;
                Ok(pb::ListTokensResponse {
                    tokens: self.auth.list(session, &caller).await?,
                })
            }
            .await,
        )
    }
}

/// `stream`, ended once the caller's token ends: UNAUTHENTICATED when it was revoked or
/// expired, and SESSION_NOT_FOUND when it ended with its session (the answer a stream
/// without a token gets then, whichever of the two notices first). The stream still ends
/// when it ends by itself, or with its first error. A caller without a token gets `stream`
/// unchanged.
fn until_token_ends<T: Send + 'static>(
    caller: &Caller,
    session: &str,
    what: &'static str,
    stream: impl Stream<Item = std::result::Result<T, Status>> + Send + 'static,
) -> BoxStream<T> {
    let Some(token) = caller.token() else {
        return Box::pin(stream);
    };
    let session = session.to_owned();
    let ended = futures_util::stream::once(token.ended()).map(move |end| {
        Some(Err(Status::from(match end {
            TokenEnd::SessionEnded => BridgeError::session_not_found(&session),
            TokenEnd::Revoked | TokenEnd::Expired => BridgeError::new(
                ErrorKind::Unauthenticated,
                format!("the token of this {what} was revoked or expired"),
            ),
        })))
    });
    // `None` marks the end of `stream` itself: the token's watcher must not keep the
    // merged stream open after it.
    let items = stream
        .map(Some)
        .chain(futures_util::stream::once(std::future::ready(None)));
    let merged = Box::pin(items.merge(ended));
    // Dropped (with what it holds: the state's subscription, a worker call and its token)
    // as soon as it ends or fails, not when the consumer lets go of the response.
    Box::pin(futures_util::stream::unfold(
        Some(merged),
        |state| async move {
            let mut merged = state?;
            match merged.next().await {
                Some(Some(Ok(item))) => Some((Ok(item), Some(merged))),
                Some(Some(Err(error))) => Some((Err(error), None)),
                Some(None) | None => None,
            }
        },
    ))
}
