//! Client callbacks: functions a client registers (`RegisterCallback`) and serves through its
//! own `Callback` server. The registry is bounded per session and forgets a session's
//! callbacks when the state backend reports the session ended; [`CallbackRegistry::call`]
//! checks the arguments, calls `ExecuteCallback` under the callback's deadline (dropping the
//! call when it passes, which cancels it at the client) and turns every failure into a typed
//! [`BridgeError`]: the callback's own error as it sent it, `TIMEOUT`, or
//! `CALLBACK_UNAVAILABLE` for an endpoint that cannot be reached or stops answering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mlbridge_proto::mlbridge::v1::{self as pb, callback_client::CallbackClient};
use tokio::sync::OnceCell;
use tonic::Code;
use tonic::transport::Channel;

use crate::error::{BridgeError, ErrorKind, Result, clip};
use crate::params::Callee;
use crate::state::{SessionEvent, SessionEvents};

/// Bounds of the callback registry.
#[derive(Debug, Clone)]
pub struct CallbackLimits {
    /// Callbacks per session at most; more is `SESSION_LIMIT_EXCEEDED`.
    pub max_per_session: usize,
    /// Deadline of a call when the registration names none.
    pub default_timeout: Duration,
    /// Longest deadline granted.
    pub max_timeout: Duration,
}

impl Default for CallbackLimits {
    fn default() -> Self {
        CallbackLimits {
            max_per_session: 256,
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(600),
        }
    }
}

/// One registered callback.
#[derive(Debug)]
pub struct Callback {
    /// Engine-assigned id, sent back in each `ExecuteCallbackRequest`.
    pub id: String,
    /// The name it is registered under in its session.
    pub name: String,
    /// The owning session.
    pub session_id: String,
    /// The client's `Callback` server.
    pub endpoint: String,
    /// Parameter specs, in declaration order.
    pub parameters: Vec<pb::ParameterSpec>,
    /// Deadline of each call.
    pub timeout: Duration,
    /// What the callback server expects in `authorization` (never logged: no `Debug`).
    secret: EndpointSecret,
    client: OnceCell<CallbackClient<Channel>>,
}

/// A callback server's secret, which `Debug` never shows.
struct EndpointSecret(String);

impl std::fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

type Sessions = HashMap<String, HashMap<String, Arc<Callback>>>;

/// A session's tool served by one of its callbacks (`RegisterTools` with host CALLBACK).
#[derive(Debug, Clone)]
pub struct CallbackTool {
    /// The tool's description.
    pub spec: pb::ToolSpec,
    /// The callback that runs it.
    pub callback: String,
}

/// The callbacks of every session, and the tools they serve. Cheap to share behind an
/// `Arc`.
#[derive(Debug, Default)]
pub struct CallbackRegistry {
    sessions: Mutex<Sessions>,
    tools: Mutex<HashMap<String, std::collections::BTreeMap<String, CallbackTool>>>,
    limits: CallbackLimits,
}

const NAME_MAX: usize = 128;
const ENDPOINT_MAX: usize = 1024;

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && name.len() <= NAME_MAX
}

impl CallbackRegistry {
    /// An empty registry with `limits`.
    pub fn new(limits: CallbackLimits) -> Self {
        CallbackRegistry {
            sessions: Mutex::new(HashMap::new()),
            tools: Mutex::new(HashMap::new()),
            limits,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or, with `replace`, re-registers) a callback; answers its new id. The
    /// caller has checked that the session is live.
    pub fn register(&self, r: pb::RegisterCallbackRequest) -> Result<Arc<Callback>> {
        if !valid_name(&r.name) {
            return Err(BridgeError::invalid_argument(
                "name",
                format!(
                    "callback name `{}` must match [A-Za-z_][A-Za-z0-9_.]{{0,127}}",
                    r.name
                ),
            ));
        }
        if r.endpoint.is_empty() || r.endpoint.len() > ENDPOINT_MAX {
            return Err(BridgeError::invalid_argument(
                "endpoint",
                format!(
                    "callback `{}` needs an endpoint of at most {ENDPOINT_MAX} bytes",
                    r.name
                ),
            ));
        }
        let timeout = match r.timeout {
            None => self.limits.default_timeout,
            Some(t) => match crate::engine::non_negative(t) {
                Some(t) if !t.is_zero() => t.min(self.limits.max_timeout),
                _ => {
                    return Err(BridgeError::invalid_argument(
                        "timeout",
                        "`timeout` must be greater than zero",
                    ));
                }
            },
        };
        let callback = Arc::new(Callback {
            id: uuid::Uuid::new_v4().to_string(),
            name: r.name.clone(),
            session_id: r.session_id.clone(),
            endpoint: r.endpoint,
            parameters: r.parameters,
            timeout,
            secret: EndpointSecret(r.endpoint_secret),
            client: OnceCell::new(),
        });
        let mut sessions = self.sessions();
        let callbacks = sessions.entry(r.session_id.clone()).or_default();
        if callbacks.contains_key(&r.name) {
            if !r.replace {
                return Err(BridgeError::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "callback `{}` is already registered in session `{}`",
                        r.name, r.session_id
                    ),
                )
                .with("callback", &r.name)
                .with("session_id", &r.session_id));
            }
        } else if callbacks.len() >= self.limits.max_per_session {
            return Err(BridgeError::new(
                ErrorKind::SessionLimitExceeded,
                format!(
                    "session `{}` already has {} callbacks, the most allowed",
                    r.session_id, self.limits.max_per_session
                ),
            )
            .with("session_id", &r.session_id)
            .with("limit", self.limits.max_per_session));
        }
        callbacks.insert(r.name, Arc::clone(&callback));
        Ok(callback)
    }

    /// Removes a callback; answers whether it existed.
    pub fn unregister(&self, session_id: &str, name: &str) -> bool {
        let mut sessions = self.sessions();
        let Some(callbacks) = sessions.get_mut(session_id) else {
            return false;
        };
        let existed = callbacks.remove(name).is_some();
        if callbacks.is_empty() {
            sessions.remove(session_id);
        }
        drop(sessions);
        // Tools served by the callback go with it.
        if let Some(tools) = self.tools_lock().get_mut(session_id) {
            tools.retain(|_, tool| tool.callback != name);
        }
        existed
    }

    /// Forgets every callback (and callback tool) of a session.
    pub fn forget_session(&self, session_id: &str) {
        self.sessions().remove(session_id);
        self.tools_lock().remove(session_id);
    }

    fn tools_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, std::collections::BTreeMap<String, CallbackTool>>>
    {
        self.tools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers tools of a session served by its callback `callback` (checked to exist);
    /// `taken` tells whether a name belongs to a tool of another kind (engine or worker).
    pub fn register_tools(
        &self,
        session_id: &str,
        callback: &str,
        specs: Vec<pb::ToolSpec>,
        replace: bool,
        taken: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        self.get(session_id, callback)?;
        if specs.is_empty() {
            return Err(BridgeError::invalid_argument(
                "tools",
                "`tools` must not be empty",
            ));
        }
        let mut all = self.tools_lock();
        let tools = all.entry(session_id.to_owned()).or_default();
        let mut names = Vec::with_capacity(specs.len());
        for spec in &specs {
            if !valid_name(&spec.name) {
                return Err(BridgeError::invalid_argument(
                    "tools",
                    format!(
                        "tool name `{}` must match [A-Za-z_][A-Za-z0-9_.]{{0,127}}",
                        spec.name
                    ),
                ));
            }
            let clash = taken(&spec.name) || (!replace && tools.contains_key(&spec.name));
            if clash || names.contains(&spec.name) {
                return Err(BridgeError::new(
                    ErrorKind::AlreadyExists,
                    format!("a tool named `{}` already exists", spec.name),
                )
                .with("tool", &spec.name));
            }
            names.push(spec.name.clone());
        }
        let new = names.iter().filter(|n| !tools.contains_key(*n)).count();
        if tools.len() + new > self.limits.max_per_session {
            return Err(BridgeError::new(
                ErrorKind::SessionLimitExceeded,
                format!(
                    "session `{session_id}` may have at most {} callback tools",
                    self.limits.max_per_session
                ),
            )
            .with("session_id", session_id)
            .with("limit", self.limits.max_per_session));
        }
        for spec in specs {
            tools.insert(
                spec.name.clone(),
                CallbackTool {
                    spec,
                    callback: callback.to_owned(),
                },
            );
        }
        Ok(names)
    }

    /// The callback tools of a session, sorted by name.
    pub fn tools(&self, session_id: &str) -> Vec<CallbackTool> {
        self.tools_lock()
            .get(session_id)
            .map(|tools| tools.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The callback tool `name` of a session, if any.
    pub fn tool(&self, session_id: &str, name: &str) -> Option<CallbackTool> {
        self.tools_lock().get(session_id)?.get(name).cloned()
    }

    /// Number of callbacks registered in a session.
    pub fn count(&self, session_id: &str) -> usize {
        self.sessions().get(session_id).map_or(0, HashMap::len)
    }

    /// The callback `name` of a session, or `CALLBACK_NOT_FOUND`.
    pub fn get(&self, session_id: &str, name: &str) -> Result<Arc<Callback>> {
        self.sessions()
            .get(session_id)
            .and_then(|callbacks| callbacks.get(name))
            .cloned()
            .ok_or_else(|| {
                BridgeError::new(
                    ErrorKind::CallbackNotFound,
                    format!(
                        "no callback named `{}` in session `{}`",
                        clip(name),
                        clip(session_id)
                    ),
                )
                .with("callback", name)
                .with("session_id", session_id)
            })
    }

    /// Calls the callback `name` of a session with `arguments` (checked against its specs,
    /// defaults filled in), under its deadline. `caller` says what triggered the call
    /// (`resource:<id>`, `tool:<name>`, or empty).
    pub async fn call(
        &self,
        session_id: &str,
        name: &str,
        arguments: HashMap<String, pb::Value>,
        metadata: HashMap<String, String>,
        caller: &str,
    ) -> Result<pb::ExecuteCallbackResponse> {
        let callback = self.get(session_id, name)?;
        let callee = Callee::Callback(name);
        let mut given = arguments;
        callee.complete(&callback.parameters, &mut given, "arguments")?;
        let mut checked = HashMap::with_capacity(given.len());
        for spec in &callback.parameters {
            if let Some(value) = given.remove(&spec.name) {
                checked.insert(spec.name.clone(), callee.check(spec, value, None)?);
            }
        }
        let request = pb::ExecuteCallbackRequest {
            callback_id: callback.id.clone(),
            callback_name: callback.name.clone(),
            session_id: session_id.to_owned(),
            arguments: checked,
            metadata,
            caller: caller.to_owned(),
        };
        callback.execute(request).await
    }

    /// Forgets each session's callbacks as `events` report it ended, for as long as the
    /// registry exists.
    pub fn follow_sessions(self: &Arc<Self>, mut events: SessionEvents) {
        let registry: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(SessionEvent::Ended { session_id, .. }) => {
                        let Some(registry) = registry.upgrade() else {
                            return;
                        };
                        registry.forget_session(&session_id);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

impl Callback {
    fn unavailable(&self, detail: impl std::fmt::Display) -> BridgeError {
        BridgeError::new(
            ErrorKind::CallbackUnavailable,
            format!(
                "callback `{}` at `{}` is unavailable: {detail}",
                self.name, self.endpoint
            ),
        )
        .with("callback", &self.name)
        .with("endpoint", &self.endpoint)
        .with("session_id", &self.session_id)
    }

    fn timed_out(&self) -> BridgeError {
        BridgeError::new(
            ErrorKind::Timeout,
            format!(
                "callback `{}` did not answer within its deadline of {:?}; the call was cancelled",
                self.name, self.timeout
            ),
        )
        .with("callback", &self.name)
        .with("timeout_ms", self.timeout.as_millis())
        .with("session_id", &self.session_id)
    }

    /// Runs one call; the whole of it (connecting included) is bounded by the deadline, and
    /// giving up drops the call, which resets its stream so that the client sees it
    /// cancelled.
    async fn execute(
        &self,
        request: pb::ExecuteCallbackRequest,
    ) -> Result<pb::ExecuteCallbackResponse> {
        let started = std::time::Instant::now();
        let call = async {
            let client = self
                .client
                .get_or_try_init(|| async {
                    mlbridge_client::dial::channel(&self.endpoint)
                        .await
                        .map(|channel| {
                            CallbackClient::new(channel)
                                .max_decoding_message_size(usize::MAX)
                                .max_encoding_message_size(usize::MAX)
                        })
                        .map_err(|e| self.unavailable(format!("cannot connect: {e}")))
                })
                .await?;
            let mut request = crate::telemetry::traced_request(request);
            request.set_timeout(self.timeout);
            if !self.secret.0.is_empty() {
                let value = format!("Bearer {}", self.secret.0)
                    .parse()
                    .map_err(|_| self.unavailable("its endpoint secret is not valid metadata"))?;
                request.metadata_mut().insert("authorization", value);
            }
            client
                .clone()
                .execute_callback(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| self.failure(&status, started.elapsed()))
        };
        let span = tracing::info_span!(
            "callback call",
            otel.name = "mlbridge.v1.Callback/ExecuteCallback",
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = "mlbridge.v1.Callback",
            rpc.method = "ExecuteCallback",
        );
        let call = tracing::Instrument::instrument(call, span);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(self.timed_out()),
        }
    }

    /// The callback server's error as it sent it (origin and callback added), or, for a
    /// status without one, what the transport says: past the deadline (which tonic also
    /// enforces, answering CANCELLED) it is a `TIMEOUT`.
    fn failure(&self, status: &tonic::Status, elapsed: Duration) -> BridgeError {
        if status.details().is_empty() {
            return match status.code() {
                Code::DeadlineExceeded => self.timed_out(),
                Code::Cancelled if elapsed >= self.timeout => self.timed_out(),
                code => self.unavailable(format!("{code:?}: {}", status.message())),
            };
        }
        let mut error = BridgeError::from_status(status);
        if error.origin.is_empty() {
            error.origin = format!("callback:{}", self.name);
        }
        error
            .context
            .entry("callback".to_owned())
            .or_insert_with(|| self.name.clone());
        error
    }
}
