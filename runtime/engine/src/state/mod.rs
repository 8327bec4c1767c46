//! Session state behind the [`StateBackend`] trait. The rules (validation, versions,
//! history, atomic batches) live in [`variables`], shared by every backend; a backend only
//! stores sessions and delivers change events. [`MemoryBackend`] is the embedded default;
//! [`RedisBackend`] keeps the state in Redis so that several engines share it.

pub mod budget;
pub mod locks;
mod memory;
pub mod redis;
pub mod shared;
pub mod variables;

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use mlbridge_proto::mlbridge::v1 as pb;
use tokio_stream::Stream;

use crate::error::{BridgeError, Result};
use crate::glob::Glob;

pub use budget::EngineMemory;
pub use locks::LockRequest;
pub use memory::MemoryBackend;
pub use redis::{RedisBackend, RedisOptions};
pub use variables::{WriteContext, WriteOp};

/// A stream of variable updates, ending with an error (never with OK on its own).
pub type UpdateStream = Pin<Box<dyn Stream<Item = Result<pb::VariableUpdate>> + Send>>;

/// Something that happened to a session as a whole, for those who keep per-session
/// resources outside the backend (the worker pool's session pins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The session is gone: cleaned up by a client (`expired` false) or expired.
    Ended {
        /// The session's id.
        session_id: String,
        /// Whether it ended by running out its TTL.
        expired: bool,
    },
}

/// A subscription to [`SessionEvent`]s. A subscriber that falls far behind misses events
/// (`Lagged`); the backend never waits for subscribers.
pub type SessionEvents = tokio::sync::broadcast::Receiver<SessionEvent>;

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// Only changes from now on.
    Now,
    /// The current value of every matching variable first (kind `INITIAL`).
    Initial,
    /// Every retained change after this sequence number, in order.
    Resume(u64),
}

/// One mebibyte.
pub const MIB: usize = 1024 * 1024;

/// Limits that keep memory bounded whatever clients send.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes one session's state may hold: its variables' values and definitions, their
    /// history and its change ring, each version counted once by encoded size however
    /// many of them share it. When a change would go over, the oldest history and ring
    /// entries go first; a change that still does not fit is `MEMORY_BUDGET_EXCEEDED`.
    pub session_memory_bytes: usize,
    /// Bytes all sessions together may hold, counted the same way. A change that would go
    /// over drops its own session's oldest entries (never another session's), else is
    /// `MEMORY_BUDGET_EXCEEDED`.
    pub engine_memory_bytes: usize,
    /// Values at least this large (encoded) are validated on a blocking thread, away from
    /// the async runtime's workers and the session's lock.
    pub blocking_validation_bytes: usize,
    /// Live sessions at most; more is `SESSION_LIMIT_EXCEEDED`.
    pub max_sessions: usize,
    /// Variables per session at most.
    pub max_variables_per_session: usize,
    /// History entries kept per variable (fewer when the memory budget needs their bytes).
    pub history_per_variable: usize,
    /// Changes kept per session for watch resumption (fewer when the memory budget needs
    /// their bytes). Larger than `watch_buffer`, so that a watcher cut off for lagging can
    /// resume unless the budget dropped what it missed.
    pub retained_changes: usize,
    /// How far (in changes) a watcher may fall behind the session before it is cut off with
    /// `WATCH_LAGGED`. Watchers read the change ring and hold no copies.
    pub watch_buffer: usize,
    /// Open watch streams per session at most.
    pub max_watchers_per_session: usize,
    /// Largest encoded value accepted, in bytes.
    pub max_value_bytes: usize,
    /// Writes in one `SetVariables` at most. Kept below `watch_buffer` so that one batch
    /// cannot overflow every watcher at once.
    pub max_writes_per_batch: usize,
    /// Session inactivity timeout when the client names none.
    pub default_ttl: Duration,
    /// Longest session inactivity timeout granted.
    pub max_ttl: Duration,
    /// Recently expired session ids remembered to answer `SESSION_EXPIRED`.
    pub remembered_expired_sessions: usize,
    /// Optimization locks per session at most (live ones; expired locks do not count).
    pub max_locks_per_session: usize,
    /// Lease of an optimization lock when the client names none.
    pub default_lease: Duration,
    /// Longest lease granted; longer requests are clamped.
    pub max_lease: Duration,
    /// Live engine-native resources (modules, optimizers) per session at most.
    pub max_resources_per_session: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            session_memory_bytes: 512 * MIB,
            engine_memory_bytes: 2048 * MIB,
            blocking_validation_bytes: 256 * 1024,
            max_sessions: 10_000,
            max_variables_per_session: 10_000,
            history_per_variable: 100,
            retained_changes: 4096,
            watch_buffer: 1024,
            max_watchers_per_session: 256,
            max_value_bytes: 64 * 1024 * 1024,
            max_writes_per_batch: 512,
            default_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(24 * 3600),
            remembered_expired_sessions: 4096,
            max_locks_per_session: 64,
            default_lease: Duration::from_secs(60),
            max_lease: Duration::from_secs(3600),
            max_resources_per_session: 64,
        }
    }
}

/// What a new session asks for.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    /// The client's chosen id; `None` lets the engine pick one.
    pub id: Option<String>,
    /// Inactivity timeout; `None` means the default. Clamped to the maximum.
    pub ttl: Option<Duration>,
    /// Free-form labels.
    pub metadata: HashMap<String, String>,
    /// Client cache settings, stored and returned.
    pub cache: Option<pb::CacheSettings>,
}

/// Storage of sessions, variables and change events.
///
/// Every method that names a session counts as activity on it. Implementations must make
/// each `write` call atomic with respect to other calls on the same session, and deliver
/// updates to watchers in sequence order.
#[tonic::async_trait]
pub trait StateBackend: Send + Sync + 'static {
    /// Creates a session, or returns the existing one with that id (`created` false).
    async fn create_session(&self, new: NewSession) -> Result<(pb::Session, bool)>;
    /// The session, marking activity.
    async fn session(&self, id: &str) -> Result<pb::Session>;
    /// Removes a session and everything it owns; `None` if it did not exist.
    async fn remove_session(&self, id: &str) -> Result<Option<pb::CleanupSessionResponse>>;
    /// Removes sessions whose TTL has run out; returns their ids.
    async fn expire_sessions(&self) -> Result<Vec<String>>;
    /// Variables by name (`None` for missing ones) and the sequence they reflect.
    async fn get(
        &self,
        session: &str,
        names: &[String],
    ) -> Result<(Vec<Option<pb::Variable>>, u64)>;
    /// Variables whose names match `pattern`, sorted by name.
    async fn list(&self, session: &str, pattern: &Glob) -> Result<(Vec<pb::Variable>, u64)>;
    /// The session's derived variables (`derived_by` set), for the engine to recompute
    /// them when their dependencies change.
    async fn derived(&self, session: &str) -> Result<Vec<pb::Variable>> {
        let (all, _) = self.list(session, &Glob::new("*")?).await?;
        Ok(all
            .into_iter()
            .filter(|v| !v.derived_by.is_empty())
            .collect())
    }
    /// Applies writes. With `atomic`, all succeed or none is applied (and every outcome is
    /// the failure that stopped them); otherwise each stands alone.
    async fn write(
        &self,
        session: &str,
        ops: Vec<WriteOp>,
        atomic: bool,
        context: WriteContext,
    ) -> Result<Vec<Result<(pb::Variable, u64)>>>;
    /// Retained history of a variable, newest first, at most `limit` entries (0 = all).
    async fn history(
        &self,
        session: &str,
        name: &str,
        limit: usize,
    ) -> Result<Vec<pb::VariableVersion>>;
    /// Updates of the named variables (all when `names` is empty): the start's prelude, a
    /// `SYNCED` marker, then live changes.
    async fn watch(
        &self,
        session: &str,
        names: Vec<String>,
        start: WatchStart,
    ) -> Result<UpdateStream>;
    /// Acquires or renews an optimization lock on variables of `session` (see
    /// [`variables::Variables::start_optimization`]).
    async fn start_optimization(
        &self,
        session: &str,
        request: LockRequest,
    ) -> Result<pb::StartOptimizationResponse>;
    /// Writes `final_values` atomically under the lock `token`, then releases it; on
    /// failure nothing is written and the lock is kept. Returns the written variables.
    async fn stop_optimization(
        &self,
        session: &str,
        token: &str,
        final_values: HashMap<String, pb::Value>,
        context: WriteContext,
    ) -> Result<Vec<pb::Variable>>;
    /// Number of live sessions.
    async fn session_count(&self) -> usize;
    /// Counts for the metrics endpoint. The default knows only the session count.
    async fn stats(&self) -> StateStats {
        StateStats {
            sessions: self.session_count().await,
            ..StateStats::default()
        }
    }
    /// Events about sessions as a whole (a session ended), from now on.
    fn session_events(&self) -> SessionEvents;
    /// Where the engine keeps access tokens: in this process's memory unless the backend
    /// shares its state with other engines (then tokens must be shared too).
    fn token_store(&self) -> std::sync::Arc<dyn crate::auth::TokenStore> {
        std::sync::Arc::new(crate::auth::MemoryTokens::default())
    }
}

/// What a backend holds, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateStats {
    /// Live sessions.
    pub sessions: usize,
    /// Variables over all sessions.
    pub variables: usize,
    /// Open watch streams over all sessions.
    pub watchers: usize,
    /// Bytes held, as the engine-wide memory budget counts them.
    pub memory_bytes: usize,
}

impl std::fmt::Debug for dyn StateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateBackend")
    }
}

/// A new session id (a random UUID).
pub(crate) fn new_session_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Session ids a client may choose: 1 to 128 characters of letters, digits, `-`, `_`, `.`
/// and `:` (no braces, so that an id is always a whole Redis hash tag).
pub(crate) fn check_session_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if valid {
        Ok(())
    } else {
        Err(BridgeError::invalid_argument(
            "session_id",
            format!(
                "invalid session id {id:?}: use 1 to 128 letters, digits, '-', '_', '.' or ':'"
            ),
        ))
    }
}
