//! Engine-native resources: objects a session creates with `CreateResource` (a module that
//! runs a framework operation, an optimizer over the session's variables), calls with
//! `InvokeResource` and releases with `ReleaseResource`. Each kind implements
//! [`NativeResource`]; the [`ResourceRegistry`] is bounded per session and forgets a session's
//! resources when the state backend reports the session ended.

pub mod module;
pub mod optimizer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use mlbridge_proto::mlbridge::v1 as pb;

use crate::engine::Engine;
use crate::error::{BridgeError, ErrorKind, Result, clip};
use crate::state::{SessionEvent, SessionEvents};

/// One call of a resource method.
pub struct ResourceCall<'a> {
    /// The engine, for state, callbacks and workers.
    pub engine: &'a Engine,
    /// The owning session.
    pub session_id: &'a str,
    /// The resource's id.
    pub resource_id: &'a str,
    /// One of [`NativeResource::methods`].
    pub method: &'a str,
    /// Arguments by name.
    pub arguments: HashMap<String, pb::Value>,
    /// Free-form call labels.
    pub metadata: HashMap<String, String>,
}

/// What a method returned.
#[derive(Debug, Default)]
pub struct Invoked {
    /// The return value; `None` if the method returns nothing.
    pub result: Option<pb::Value>,
    /// Free-form labels for the caller.
    pub metadata: HashMap<String, String>,
}

/// An engine-native resource.
#[tonic::async_trait]
pub trait NativeResource: Send + Sync + 'static {
    /// Method names accepted by `invoke`, sorted.
    fn methods(&self) -> &'static [&'static str];

    /// Runs one method. Unknown methods never reach it (the registry checks `methods`).
    async fn invoke(&self, call: ResourceCall<'_>) -> Result<Invoked>;

    /// Called once on an explicit `ReleaseResource` (e.g. to release a lock it holds).
    async fn release(&self, _engine: &Engine, _session_id: &str) {}

    /// Called once, instead of `release`, when its session ended (cleaned up or expired):
    /// the session's locks are already gone; stop any work in progress.
    fn ended(&self) {}

    /// Labels added to the resource's `metadata` at creation (e.g. an optimizer's seed).
    fn labels(&self) -> HashMap<String, String> {
        HashMap::new()
    }

    /// `Some(self)` for modules, so that an optimizer can run a module with candidate values.
    fn as_module(&self) -> Option<&module::Module> {
        None
    }
}

/// A live resource: its description and its implementation.
#[derive(Clone)]
pub struct Entry {
    /// What `CreateResource` and `ListResources` report.
    pub resource: pb::Resource,
    /// The implementation.
    pub native: Arc<dyn NativeResource>,
}

/// The live resources of every session, bounded per session.
pub struct ResourceRegistry {
    max_per_session: usize,
    /// Session id → resources in creation order.
    sessions: Mutex<HashMap<String, Vec<Entry>>>,
}

impl std::fmt::Debug for ResourceRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceRegistry")
            .field("max_per_session", &self.max_per_session)
            .finish_non_exhaustive()
    }
}

impl ResourceRegistry {
    /// An empty registry holding at most `max_per_session` resources per session.
    pub fn new(max_per_session: usize) -> Self {
        ResourceRegistry {
            max_per_session,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Entry>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh resource id for a session.
    pub fn next_id(&self, kind: &str) -> String {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let prefix = match kind {
            "optimizer" => "opt",
            "module" => "mod",
            _ => "res",
        };
        format!("{prefix}-{n}-{nanos:08x}")
    }

    /// Adds a resource, or `SESSION_LIMIT_EXCEEDED` if the session has too many.
    pub fn insert(&self, entry: Entry) -> Result<()> {
        let mut sessions = self.sessions();
        let list = sessions
            .entry(entry.resource.session_id.clone())
            .or_default();
        if list.len() >= self.max_per_session {
            return Err(BridgeError::new(
                ErrorKind::SessionLimitExceeded,
                format!(
                    "session `{}` already holds {} resources, the most allowed; release one first",
                    entry.resource.session_id, self.max_per_session
                ),
            )
            .with("session_id", &entry.resource.session_id)
            .with("limit", self.max_per_session.to_string()));
        }
        list.push(entry);
        Ok(())
    }

    /// The resource `id` of a session, or `RESOURCE_NOT_FOUND`.
    pub fn get(&self, session_id: &str, id: &str) -> Result<Entry> {
        self.sessions()
            .get(session_id)
            .and_then(|list| list.iter().find(|e| e.resource.resource_id == id))
            .cloned()
            .ok_or_else(|| not_found(session_id, id))
    }

    /// Removes and returns resource `id` of a session, if it exists.
    pub fn remove(&self, session_id: &str, id: &str) -> Option<Entry> {
        let mut sessions = self.sessions();
        let list = sessions.get_mut(session_id)?;
        let at = list.iter().position(|e| e.resource.resource_id == id)?;
        let entry = list.remove(at);
        if list.is_empty() {
            sessions.remove(session_id);
        }
        Some(entry)
    }

    /// A session's resources, oldest first.
    pub fn list(&self, session_id: &str) -> Vec<pb::Resource> {
        self.sessions()
            .get(session_id)
            .map(|list| list.iter().map(|e| e.resource.clone()).collect())
            .unwrap_or_default()
    }

    /// How many resources a session holds.
    pub fn count(&self, session_id: &str) -> usize {
        self.sessions().get(session_id).map_or(0, Vec::len)
    }

    /// Forgets every resource of a session that ended, telling each; returns how many.
    pub fn forget_session(&self, session_id: &str) -> usize {
        let removed = self.sessions().remove(session_id).unwrap_or_default();
        for entry in &removed {
            entry.native.ended();
        }
        removed.len()
    }

    /// The sessions that hold resources.
    fn session_ids(&self) -> Vec<String> {
        self.sessions().keys().cloned().collect()
    }

    /// Forgets each session's resources as `events` report it ended, for as long as the
    /// registry exists. After missing events (a lagging subscriber), asks `live` about every
    /// session that holds resources.
    pub fn follow_sessions<F, Fut>(self: &Arc<Self>, mut events: SessionEvents, live: F)
    where
        F: Fn(String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
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
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let Some(ids) = registry.upgrade().map(|r| r.session_ids()) else {
                            return;
                        };
                        for id in ids {
                            if !live(id.clone()).await
                                && let Some(registry) = registry.upgrade()
                            {
                                registry.forget_session(&id);
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

/// `RESOURCE_NOT_FOUND` for resource `id` of a session.
pub fn not_found(session_id: &str, id: &str) -> BridgeError {
    BridgeError::new(
        ErrorKind::ResourceNotFound,
        format!(
            "session `{}` has no resource `{}`",
            clip(session_id),
            clip(id)
        ),
    )
    .with("session_id", session_id)
    .with("resource_id", id)
}

/// Creates the implementation of `kind`/`name`, or the error that names what is wrong.
pub(crate) async fn create(
    engine: &Engine,
    session_id: &str,
    resource_id: &str,
    request: &mut pb::CreateResourceRequest,
) -> Result<Arc<dyn NativeResource>> {
    let config = std::mem::take(&mut request.config);
    match request.kind.as_str() {
        "optimizer" => {
            if !request.framework.is_empty() {
                return Err(BridgeError::invalid_argument(
                    "framework",
                    format!(
                        "optimizers run in the engine; `framework` must be empty, not `{}`",
                        request.framework
                    ),
                ));
            }
            optimizer::create(engine, session_id, resource_id, &request.name, config).await
        }
        "module" => {
            let module =
                module::Module::create(engine, &mut request.framework, &mut request.name, config)?;
            Ok(Arc::new(module))
        }
        "" => Err(BridgeError::invalid_argument(
            "kind",
            "`kind` is required: \"optimizer\" or \"module\"",
        )),
        other => Err(BridgeError::invalid_argument(
            "kind",
            format!("unknown resource kind `{other}`; the engine has: module, optimizer"),
        )
        .with("kind", other)),
    }
}
