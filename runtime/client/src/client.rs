//! The Rust client: [`Client`] connects to an engine, [`Session`] is the typed API over one
//! session (variables, batches, history, watch, host tools). Failures are [`BridgeError`]s.

use std::collections::HashMap;
use std::time::Duration;

use std::pin::Pin;
use std::sync::Arc;

use mlbridge_proto::mlbridge::v1::{
    self as pb, ml_bridge_client::MlBridgeClient, ml_bridge_server::MlBridge,
};
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::error::{BridgeError, ErrorKind, Result};
use crate::values::WireValue;

/// A connection to an engine. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Transport,
}

/// An engine's `MLBridge` service, called in-process by [`Client::in_process`].
pub type LocalService = dyn MlBridge;

type ServerStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

/// How calls reach the engine (over gRPC, or straight into an engine in this process),
/// and the bearer token they carry.
#[derive(Clone)]
pub(crate) struct Transport {
    route: Route,
    token: Option<Bearer>,
}

/// A bearer token and its `authorization` header value, made once rather than per call.
#[derive(Clone)]
struct Bearer {
    text: Arc<str>,
    /// `None` when the text cannot be metadata (calls then fail with a clear error).
    header: Option<MetadataValue<Ascii>>,
}

impl Bearer {
    fn new(text: &str) -> Self {
        Bearer {
            text: Arc::from(text),
            header: format!("Bearer {text}").parse().ok(),
        }
    }
}

#[derive(Clone)]
enum Route {
    Remote(MlBridgeClient<Channel>),
    Local(Arc<LocalService>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of debug output (and so out of logs).
        let route = match self.route {
            Route::Remote(_) => "Remote",
            Route::Local(_) => "Local",
        };
        f.debug_struct("Transport")
            .field("route", &route)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Marks a request made through [`Client::in_process`]: an engine lets such a call
/// without a token act with its own authority (the program holds the engine anyway); a
/// call with a token is checked as over gRPC.
#[derive(Debug, Clone, Copy)]
pub struct InProcessCall;

impl Transport {
    /// `message` as a request with the token, if any, in its `authorization` metadata.
    fn request<T>(&self, message: T) -> Result<Request<T>> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            let value = token.header.clone().ok_or_else(|| {
                BridgeError::invalid_argument("token", "the token is not valid metadata text")
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        if matches!(self.route, Route::Local(_)) {
            request.extensions_mut().insert(InProcessCall);
        }
        Ok(request)
    }

    fn with_token(&self, token: Option<&str>) -> Transport {
        Transport {
            route: self.route.clone(),
            token: token.map(Bearer::new),
        }
    }
}

/// One method per RPC the client uses, each answering the response message (or a stream)
/// whichever way the call went.
macro_rules! rpcs {
    ($($name:ident($request:ty) -> $response:ty;)*) => {
        impl Transport {
            $(
                pub(crate) async fn $name(&self, request: $request) -> Result<$response> {
                    let request = self.request(request)?;
                    match &self.route {
                        // Boxed: tonic's call futures are large, and an unboxed one would
                        // make every call's future (in-process ones too) as large.
                        Route::Remote(client) => {
                            let mut client = client.clone();
                            Ok(Box::pin(client.$name(request)).await?.into_inner())
                        }
                        Route::Local(service) => Ok(service.$name(request).await?.into_inner()),
                    }
                }
            )*
        }
    };
}

rpcs! {
    ping(pb::PingRequest) -> pb::PingResponse;
    describe_adapters(pb::DescribeAdaptersRequest) -> pb::DescribeAdaptersResponse;
    initialize_session(pb::InitializeSessionRequest) -> pb::InitializeSessionResponse;
    get_session(pb::GetSessionRequest) -> pb::GetSessionResponse;
    heartbeat(pb::HeartbeatRequest) -> pb::HeartbeatResponse;
    cleanup_session(pb::CleanupSessionRequest) -> pb::CleanupSessionResponse;
    register_variable(pb::RegisterVariableRequest) -> pb::RegisterVariableResponse;
    get_variable(pb::GetVariableRequest) -> pb::GetVariableResponse;
    set_variable(pb::SetVariableRequest) -> pb::SetVariableResponse;
    delete_variable(pb::DeleteVariableRequest) -> pb::DeleteVariableResponse;
    list_variables(pb::ListVariablesRequest) -> pb::ListVariablesResponse;
    get_variables(pb::GetVariablesRequest) -> pb::GetVariablesResponse;
    set_variables(pb::SetVariablesRequest) -> pb::SetVariablesResponse;
    get_variable_history(pb::GetVariableHistoryRequest) -> pb::GetVariableHistoryResponse;
    rollback_variable(pb::RollbackVariableRequest) -> pb::RollbackVariableResponse;
    execute_tool(pb::ExecuteToolRequest) -> pb::ExecuteToolResponse;
    start_optimization(pb::StartOptimizationRequest) -> pb::StartOptimizationResponse;
    stop_optimization(pb::StopOptimizationRequest) -> pb::StopOptimizationResponse;
    invoke_callback(pb::InvokeCallbackRequest) -> pb::ExecuteCallbackResponse;
    create_resource(pb::CreateResourceRequest) -> pb::CreateResourceResponse;
    invoke_resource(pb::InvokeResourceRequest) -> pb::InvokeResourceResponse;
    release_resource(pb::ReleaseResourceRequest) -> pb::ReleaseResourceResponse;
    list_resources(pb::ListResourcesRequest) -> pb::ListResourcesResponse;
    execute_framework_operation(pb::ExecuteFrameworkOperationRequest)
        -> pb::ExecuteFrameworkOperationResponse;
    mint_token(pb::MintTokenRequest) -> pb::MintTokenResponse;
    revoke_token(pb::RevokeTokenRequest) -> pb::RevokeTokenResponse;
    list_tokens(pb::ListTokensRequest) -> pb::ListTokensResponse;
}

impl Transport {
    async fn watch_variables(
        &self,
        request: pb::WatchVariablesRequest,
    ) -> Result<ServerStream<pb::VariableUpdate>> {
        let request = self.request(request)?;
        Ok(match &self.route {
            Route::Remote(client) => {
                Box::pin(client.clone().watch_variables(request).await?.into_inner())
            }
            Route::Local(service) => service.watch_variables(request).await?.into_inner(),
        })
    }

    async fn execute_streaming_tool(
        &self,
        request: pb::ExecuteStreamingToolRequest,
    ) -> Result<ServerStream<pb::ToolChunk>> {
        let request = self.request(request)?;
        Ok(match &self.route {
            Route::Remote(client) => Box::pin(
                client
                    .clone()
                    .execute_streaming_tool(request)
                    .await?
                    .into_inner(),
            ),
            Route::Local(service) => service.execute_streaming_tool(request).await?.into_inner(),
        })
    }
}

impl Client {
    /// Connects to `address`: `HOST:PORT`, `http://HOST:PORT` or `unix:PATH`.
    pub async fn connect(address: &str) -> Result<Self> {
        Self::connect_with(address, None).await
    }

    /// Connects to an engine that serves TLS (`mlbridge serve --tls-cert ...`), presenting
    /// a client certificate when `tls` has one.
    pub async fn connect_tls(address: &str, tls: &crate::dial::ClientTls) -> Result<Self> {
        Self::connect_with(address, Some(tls)).await
    }

    async fn connect_with(address: &str, tls: Option<&crate::dial::ClientTls>) -> Result<Self> {
        let unreachable = |e: &dyn std::error::Error| {
            // tonic's transport error says only "transport error"; the reason (refused, a
            // certificate that does not check out, ...) is in its causes.
            let mut reason = e.to_string();
            let mut cause = e.source();
            while let Some(next) = cause {
                reason.push_str(&format!(": {next}"));
                cause = next.source();
            }
            BridgeError::new(
                ErrorKind::Unavailable,
                format!("cannot connect to engine at `{address}`: {reason}"),
            )
            .with("address", address)
        };
        let channel = crate::dial::channel_with(address, tls)
            .await
            .map_err(|e| unreachable(&e))?;
        let inner = MlBridgeClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        Ok(Client {
            inner: Transport {
                route: Route::Remote(inner),
                token: None,
            },
        })
    }

    /// A client of an engine in this process: every call goes straight to `service` (the
    /// engine's `MLBridge` implementation) with no socket and no protobuf encoding. The
    /// [`Session`] API is the same as over gRPC.
    pub fn in_process(service: Arc<LocalService>) -> Self {
        Client {
            inner: Transport {
                route: Route::Local(service),
                token: None,
            },
        }
    }

    /// This client, sending `token` as `authorization: Bearer <token>` on every call: the
    /// token of the session it joins on an engine that checks tokens. A session this
    /// client creates uses its owner token instead when the client holds none.
    pub fn with_token(&self, token: &str) -> Self {
        Client {
            inner: self.inner.with_token(Some(token)),
        }
    }

    /// The token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.inner.token.as_ref().map(|t| &*t.text)
    }

    /// The generated tonic client, for RPCs this API does not wrap.
    ///
    /// # Panics
    ///
    /// For an in-process client ([`Client::in_process`]), which has no channel.
    pub fn raw(&self) -> MlBridgeClient<Channel> {
        match &self.inner.route {
            Route::Remote(client) => client.clone(),
            Route::Local(_) => panic!("an in-process client has no gRPC channel"),
        }
    }

    /// Round trip to the engine.
    pub async fn ping(&self, message: &str) -> Result<pb::PingResponse> {
        let request = pb::PingRequest {
            message: message.to_owned(),
        };
        self.inner.ping(request).await
    }

    /// The framework adapters the engine's workers offer, sorted by framework id (all of
    /// them when `frameworks` is empty).
    pub async fn describe_adapters(
        &self,
        frameworks: &[&str],
    ) -> Result<Vec<pb::AdapterDescription>> {
        let request = pb::DescribeAdaptersRequest {
            frameworks: frameworks.iter().map(|f| (*f).to_owned()).collect(),
        };
        Ok(self.inner.describe_adapters(request).await?.adapters)
    }

    /// Creates a session with the engine's defaults.
    pub async fn session(&self) -> Result<Session> {
        self.open(SessionOptions::default()).await
    }

    /// Creates (or joins, when `options.id` names a live session) a session.
    pub async fn open(&self, options: SessionOptions) -> Result<Session> {
        let request = pb::InitializeSessionRequest {
            session_id: options.id.unwrap_or_default(),
            ttl: options
                .ttl
                .and_then(|t| prost_types::Duration::try_from(t).ok()),
            metadata: options.metadata,
            cache: None,
        };
        let response = self.inner.initialize_session(request).await?;
        let info = response
            .session
            .ok_or_else(|| BridgeError::internal("InitializeSession returned no session"))?;
        // A session this client created is reached with its owner token, unless the
        // client was given a token of its own.
        let client = match (&self.inner.token, response.owner_token.is_empty()) {
            (None, false) => self.inner.with_token(Some(&response.owner_token)),
            _ => self.inner.clone(),
        };
        Ok(Session {
            client,
            id: info.session_id,
            source: options.source,
        })
    }
}

/// How to open a session.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// A chosen id; `None` lets the engine pick.
    pub id: Option<String>,
    /// Inactivity timeout; `None` for the engine default.
    pub ttl: Option<Duration>,
    /// Labels stored with the session.
    pub metadata: HashMap<String, String>,
    /// Writer identity recorded on history entries (default `rust`).
    pub source: String,
}

/// A typed handle on one session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Session {
    client: Transport,
    id: String,
    source: String,
}

/// One write of a batch.
#[derive(Debug, Clone)]
pub struct Write {
    /// Variable name.
    pub name: String,
    /// New value.
    pub value: pb::Value,
    /// Optimistic concurrency check.
    pub expected_version: Option<u64>,
}

impl Write {
    /// A write of `value` to `name`.
    pub fn new(name: &str, value: impl WireValue) -> Self {
        Write {
            name: name.to_owned(),
            value: value.into_value(),
            expected_version: None,
        }
    }
}

impl Session {
    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The token this session's calls carry: the owner token of a session this client
    /// created, or the token the client was given ([`Client::with_token`]).
    pub fn token(&self) -> Option<&str> {
        self.client.token.as_ref().map(|t| &*t.text)
    }

    /// Mints a token derived from this session's token, never wider than it (see
    /// `TokenScope`); returns the token text (shown once) and what was granted.
    pub async fn mint_token(
        &self,
        scope: pb::TokenScope,
        label: &str,
    ) -> Result<(String, pb::TokenInfo)> {
        let response = self
            .client
            .mint_token(pb::MintTokenRequest {
                session_id: self.id.clone(),
                scope: Some(scope),
                label: label.to_owned(),
            })
            .await?;
        let info = response
            .info
            .ok_or_else(|| BridgeError::internal("MintToken returned no info"))?;
        Ok((response.token, info))
    }

    /// Revokes a token and every token derived from it; returns the ids revoked.
    pub async fn revoke_token(&self, token_id: &str) -> Result<Vec<String>> {
        let response = self
            .client
            .revoke_token(pb::RevokeTokenRequest {
                session_id: self.id.clone(),
                token_id: token_id.to_owned(),
            })
            .await?;
        Ok(response.revoked)
    }

    /// This session's token and those derived from it (never secrets).
    pub async fn tokens(&self) -> Result<Vec<pb::TokenInfo>> {
        let response = self
            .client
            .list_tokens(pb::ListTokensRequest {
                session_id: self.id.clone(),
            })
            .await?;
        Ok(response.tokens)
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.client
    }

    fn source(&self) -> String {
        if self.source.is_empty() {
            "rust".to_owned()
        } else {
            self.source.clone()
        }
    }

    /// The session's current state (marks activity).
    pub async fn info(&self) -> Result<pb::Session> {
        let request = pb::GetSessionRequest {
            session_id: self.id.clone(),
        };
        let response = self.client.get_session(request).await?;
        response
            .session
            .ok_or_else(|| BridgeError::internal("GetSession returned no session"))
    }

    /// Keeps the session alive; returns the new expiry.
    pub async fn heartbeat(&self) -> Result<Option<prost_types::Timestamp>> {
        let request = pb::HeartbeatRequest {
            session_id: self.id.clone(),
        };
        Ok(self.client.heartbeat(request).await?.expires_at)
    }

    /// Removes the session and everything in it.
    pub async fn close(self) -> Result<pb::CleanupSessionResponse> {
        let request = pb::CleanupSessionRequest {
            session_id: self.id.clone(),
        };
        self.client.cleanup_session(request).await
    }

    /// Registers a variable of type `ty` with an initial value.
    pub async fn register(
        &self,
        name: &str,
        ty: pb::VariableType,
        value: impl WireValue,
        constraints: pb::Constraints,
    ) -> Result<pb::Variable> {
        let request = pb::RegisterVariableRequest {
            session_id: self.id.clone(),
            name: name.to_owned(),
            r#type: ty as i32,
            initial_value: Some(value.into_value()),
            constraints: Some(constraints),
            source: self.source(),
            ..Default::default()
        };
        variable(self.client.register_variable(request).await?.variable)
    }

    /// Registers a variable that depends on existing variables `depends_on`: they cannot
    /// be deleted while it exists.
    pub async fn register_dependent(
        &self,
        name: &str,
        ty: pb::VariableType,
        value: impl WireValue,
        constraints: pb::Constraints,
        depends_on: &[&str],
    ) -> Result<pb::Variable> {
        let request = pb::RegisterVariableRequest {
            session_id: self.id.clone(),
            name: name.to_owned(),
            r#type: ty as i32,
            initial_value: Some(value.into_value()),
            constraints: Some(constraints),
            source: self.source(),
            depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
            ..Default::default()
        };
        variable(self.client.register_variable(request).await?.variable)
    }

    /// Registers a derived variable: engine host tool `tool` computes its value from the
    /// variables `depends_on` (one argument per variable, by name), now and in the same
    /// atomic step as every change of one of them. Clients cannot write it.
    ///
    /// # Errors
    ///
    /// `VARIABLE_NOT_FOUND` for a missing input, `INVALID_ARGUMENT` for a dependency cycle,
    /// `TOOL_NOT_FOUND`, the tool's own errors, and the value's `TYPE_MISMATCH` /
    /// `CONSTRAINT_VIOLATION`.
    pub async fn register_derived(
        &self,
        name: &str,
        ty: pb::VariableType,
        tool: &str,
        depends_on: &[&str],
        constraints: pb::Constraints,
    ) -> Result<pb::Variable> {
        let request = pb::RegisterVariableRequest {
            session_id: self.id.clone(),
            name: name.to_owned(),
            r#type: ty as i32,
            constraints: Some(constraints),
            source: self.source(),
            depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
            derived_by: tool.to_owned(),
            ..Default::default()
        };
        variable(self.client.register_variable(request).await?.variable)
    }

    /// A variable with its type, constraints and version.
    pub async fn get(&self, name: &str) -> Result<pb::Variable> {
        let request = pb::GetVariableRequest {
            session_id: self.id.clone(),
            name: name.to_owned(),
        };
        variable(self.client.get_variable(request).await?.variable)
    }

    /// A variable's value, decoded as `T`.
    pub async fn value<T: WireValue>(&self, name: &str) -> Result<T> {
        let value = self.get(name).await?.value.unwrap_or_default();
        T::from_value(value).map_err(|detail| {
            BridgeError::new(
                ErrorKind::TypeMismatch,
                format!("variable `{name}`: {detail}"),
            )
            .with("variable", name)
        })
    }

    /// Sets a variable; returns it at its new version.
    pub async fn set(&self, name: &str, value: impl WireValue) -> Result<pb::Variable> {
        self.set_value(name, value.into_value(), None).await
    }

    /// Sets a variable only if it is still at `expected_version` (else `VERSION_CONFLICT`).
    pub async fn set_if_version(
        &self,
        name: &str,
        value: impl WireValue,
        expected_version: u64,
    ) -> Result<pb::Variable> {
        self.set_value(name, value.into_value(), Some(expected_version))
            .await
    }

    /// Sets a variable with an optimization lock token (see
    /// [`crate::OptimizationLock`], whose writes carry its token themselves).
    pub async fn set_with_token(
        &self,
        name: &str,
        value: impl WireValue,
        lock_token: &str,
    ) -> Result<pb::Variable> {
        let request = pb::SetVariableRequest {
            session_id: self.id.clone(),
            name: name.to_owned(),
            value: Some(value.into_value()),
            source: self.source(),
            lock_token: lock_token.to_owned(),
            ..Default::default()
        };
        variable(self.client.set_variable(request).await?.variable)
    }

    async fn set_value(
        &self,
        name: &str,
        value: pb::Value,
        expected_version: Option<u64>,
    ) -> Result<pb::Variable> {
        let request = pb::SetVariableRequest {
            session_id: self.id.clone(),
            name: name.to_owned(),
            value: Some(value),
            expected_version,
            source: self.source(),
            ..Default::default()
        };
        variable(self.client.set_variable(request).await?.variable)
    }

    /// Deletes a variable and its history.
    pub async fn delete(&self, name: &str) -> Result<pb::Variable> {
        let request = pb::DeleteVariableRequest {
            session_id: self.id.clone(),
            name: name.to_owned(),
            source: self.source(),
            ..Default::default()
        };
        variable(self.client.delete_variable(request).await?.variable)
    }

    /// Variables whose names match a glob `pattern`, sorted by name.
    pub async fn list(&self, pattern: &str) -> Result<Vec<pb::Variable>> {
        let request = pb::ListVariablesRequest {
            session_id: self.id.clone(),
            pattern: pattern.to_owned(),
        };
        Ok(self.client.list_variables(request).await?.variables)
    }

    /// Several variables at once; missing names are left out of the map.
    pub async fn get_many(&self, names: &[&str]) -> Result<HashMap<String, pb::Variable>> {
        let request = pb::GetVariablesRequest {
            session_id: self.id.clone(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        };
        Ok(self.client.get_variables(request).await?.variables)
    }

    /// Several writes; per-write outcomes come back in order: the new version, or the error.
    /// With `atomic`, all or none apply, and a failed batch is the error of the write that
    /// failed (its context has `batch_failed_at`).
    pub async fn set_many(&self, writes: Vec<Write>, atomic: bool) -> Result<Vec<Result<u64>>> {
        self.set_many_with_token(writes, atomic, &self.source(), "")
            .await
    }

    pub(crate) async fn set_many_with_token(
        &self,
        writes: Vec<Write>,
        atomic: bool,
        source: &str,
        lock_token: &str,
    ) -> Result<Vec<Result<u64>>> {
        let request = pb::SetVariablesRequest {
            session_id: self.id.clone(),
            writes: writes
                .into_iter()
                .map(|w| pb::VariableWrite {
                    name: w.name,
                    value: Some(w.value),
                    expected_version: w.expected_version,
                })
                .collect(),
            atomic,
            source: source.to_owned(),
            lock_token: lock_token.to_owned(),
            ..Default::default()
        };
        let response = self.client.set_variables(request).await?;
        if atomic && !response.all_applied {
            // The one write that failed carries the error; the others were not applied.
            return Err(response
                .results
                .into_iter()
                .find_map(|result| match result.outcome {
                    Some(pb::variable_write_result::Outcome::Error(error)) => Some(error.into()),
                    _ => None,
                })
                .unwrap_or_else(|| {
                    BridgeError::internal("an atomic batch failed without an error")
                }));
        }
        Ok(response
            .results
            .into_iter()
            .map(|result| match result.outcome {
                Some(pb::variable_write_result::Outcome::NewVersion(version)) => Ok(version),
                Some(pb::variable_write_result::Outcome::Error(error)) => Err(error.into()),
                None => Err(BridgeError::internal(format!(
                    "write of `{}` was not applied, but no write of the batch failed",
                    result.name
                ))),
            })
            .collect())
    }

    /// Retained versions of a variable, newest first (`limit` 0 = all).
    pub async fn history(&self, name: &str, limit: u32) -> Result<Vec<pb::VariableVersion>> {
        let request = pb::GetVariableHistoryRequest {
            session_id: self.id.clone(),
            name: name.to_owned(),
            limit,
        };
        Ok(self.client.get_variable_history(request).await?.entries)
    }

    /// Restores `version`'s value as a new version.
    pub async fn rollback(&self, name: &str, version: u64) -> Result<pb::Variable> {
        let request = pb::RollbackVariableRequest {
            session_id: self.id.clone(),
            name: name.to_owned(),
            target_version: version,
            source: self.source(),
            ..Default::default()
        };
        variable(self.client.rollback_variable(request).await?.variable)
    }

    /// Updates of `names` (all when empty): with `include_initial`, current values first;
    /// with `resume_from`, the retained changes after that sequence. `SYNCED` markers are
    /// passed through so callers can tell when the live part starts.
    pub async fn watch(
        &self,
        names: &[&str],
        include_initial: bool,
        resume_from: Option<u64>,
    ) -> Result<impl Stream<Item = Result<pb::VariableUpdate>> + use<>> {
        let request = pb::WatchVariablesRequest {
            session_id: self.id.clone(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            include_initial_values: include_initial,
            resume_from_sequence: resume_from,
        };
        let stream = self.client.watch_variables(request).await?;
        Ok(stream.map(|item| item.map_err(BridgeError::from)))
    }

    /// Runs a host tool with named arguments.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: HashMap<String, pb::Value>,
    ) -> Result<pb::Value> {
        let request = pb::ExecuteToolRequest {
            session_id: self.id.clone(),
            tool_name: name.to_owned(),
            arguments,
            metadata: HashMap::new(),
        };
        let response = self.client.execute_tool(request).await?;
        Ok(response.result.unwrap_or_default())
    }

    /// Calls the callback `name` that a client (e.g. a Python program) registered in this
    /// session, through the engine (`InvokeCallback`), and answers its result (`None` if it
    /// returned nothing). The engine checks the arguments against the callback's parameter
    /// specs and applies its deadline.
    ///
    /// # Errors
    ///
    /// `CALLBACK_NOT_FOUND`, argument errors, `CALLBACK_ERROR` with the callback's
    /// exception type and traceback, `TIMEOUT`, `CALLBACK_UNAVAILABLE`.
    pub async fn call_callback(
        &self,
        name: &str,
        arguments: HashMap<String, pb::Value>,
    ) -> Result<Option<pb::Value>> {
        let request = pb::InvokeCallbackRequest {
            session_id: self.id.clone(),
            name: name.to_owned(),
            arguments,
            metadata: HashMap::new(),
        };
        Ok(self.client.invoke_callback(request).await?.result)
    }

    /// Creates an engine-native resource owned by this session: `kind` `"optimizer"` (name
    /// `tpe`, `random` or `grid`) or `"module"` (a framework operation, e.g. framework `dspy`
    /// and name `predict`), configured by `config`. It is released with the session.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` naming the bad kind, name or configuration key,
    /// `OPERATION_NOT_FOUND`, `CALLBACK_NOT_FOUND`, `SESSION_LIMIT_EXCEEDED`.
    pub async fn create_resource(
        &self,
        kind: &str,
        name: &str,
        framework: &str,
        config: HashMap<String, pb::Value>,
        metadata: HashMap<String, String>,
    ) -> Result<pb::Resource> {
        let request = pb::CreateResourceRequest {
            session_id: self.id.clone(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            framework: framework.to_owned(),
            config,
            metadata,
        };
        self.client
            .create_resource(request)
            .await?
            .resource
            .ok_or_else(|| BridgeError::internal("the engine returned no resource"))
    }

    /// Calls `method` of one of this session's resources (e.g. an optimizer's `run` or a
    /// module's `forward`) with named arguments.
    ///
    /// # Errors
    ///
    /// `RESOURCE_NOT_FOUND`, `INVALID_ARGUMENT` for an unknown method or argument, and the
    /// method's own errors.
    pub async fn invoke_resource(
        &self,
        resource_id: &str,
        method: &str,
        arguments: HashMap<String, pb::Value>,
    ) -> Result<pb::InvokeResourceResponse> {
        let request = pb::InvokeResourceRequest {
            session_id: self.id.clone(),
            resource_id: resource_id.to_owned(),
            method: method.to_owned(),
            arguments,
            metadata: HashMap::new(),
        };
        self.client.invoke_resource(request).await
    }

    /// Releases one of this session's resources; `false` if it did not exist.
    pub async fn release_resource(&self, resource_id: &str) -> Result<bool> {
        let request = pb::ReleaseResourceRequest {
            session_id: self.id.clone(),
            resource_id: resource_id.to_owned(),
        };
        Ok(self.client.release_resource(request).await?.existed)
    }

    /// This session's live resources, oldest first.
    pub async fn resources(&self) -> Result<Vec<pb::Resource>> {
        let request = pb::ListResourcesRequest {
            session_id: self.id.clone(),
        };
        Ok(self.client.list_resources(request).await?.resources)
    }

    /// Runs a streaming host tool; yields each chunk's value, ending after the final chunk.
    pub async fn stream_tool(
        &self,
        name: &str,
        arguments: HashMap<String, pb::Value>,
    ) -> Result<impl Stream<Item = Result<pb::Value>> + use<>> {
        let request = pb::ExecuteStreamingToolRequest {
            session_id: self.id.clone(),
            tool_name: name.to_owned(),
            arguments,
            metadata: HashMap::new(),
        };
        let stream = self.client.execute_streaming_tool(request).await?;
        // Chunks until the final one; a stream that ends OK without it was cut short.
        let tool = name.to_owned();
        let mut finished = false;
        let items = stream.map(Some).chain(tokio_stream::once(None));
        Ok(items.filter_map(move |item| {
            if finished {
                return None;
            }
            match item {
                Some(Ok(chunk)) if chunk.is_final => {
                    finished = true;
                    chunk.data.map(Ok)
                }
                Some(Ok(chunk)) => Some(Ok(chunk.data.unwrap_or_default())),
                Some(Err(status)) => {
                    finished = true;
                    Some(Err(BridgeError::from(status)))
                }
                None => {
                    finished = true;
                    Some(Err(BridgeError::new(
                        ErrorKind::Unavailable,
                        format!("the stream of tool `{tool}` ended without its final chunk"),
                    )
                    .with("tool", &tool)))
                }
            }
        }))
    }

    /// Runs `framework.operation` on a worker. Each parameter is a literal value or a
    /// binding to one of this session's variables (read when the call is dispatched).
    pub async fn execute_framework_operation(
        &self,
        framework: &str,
        operation: &str,
        parameters: HashMap<String, pb::ParameterValue>,
        metadata: HashMap<String, String>,
    ) -> Result<pb::ExecuteFrameworkOperationResponse> {
        let request = pb::ExecuteFrameworkOperationRequest {
            session_id: self.id.clone(),
            framework: framework.to_owned(),
            operation: operation.to_owned(),
            parameters,
            metadata,
        };
        self.client.execute_framework_operation(request).await
    }
}

fn variable(variable: Option<pb::Variable>) -> Result<pb::Variable> {
    variable.ok_or_else(|| BridgeError::internal("the engine returned no variable"))
}
