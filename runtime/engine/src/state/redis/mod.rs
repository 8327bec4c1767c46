//! The Redis backend: several engines share one state by keeping it in Redis.
//!
//! Layout, every key of a session hash-tagged `{id}` so that one script may touch them all
//! (and Redis Cluster keeps them in one slot):
//!
//! * `mlb:{id}:meta`: a hash of the session's times, ttl, incarnation, change sequence
//!   `seq`, revision `rev` (bumped by every committed step) and lock table;
//! * `mlb:{id}:vars`: a hash of variable name → stored definition and retained history;
//! * `mlb:{id}:feed`: the change feed, a stream whose entry ids are the sequence numbers
//!   (`<seq>-0`), trimmed to `Limits::retained_changes`; `<seq>-1` marks the session's end;
//! * `mlb:{id}:gone`: remembers for a while that the session expired;
//! * `mlb:{id}:req:<request id>`: the answer of a committed request, for a while.
//!
//! Two keys are engine-wide: `mlb:sessions` (sorted set, id → earliest possible expiry, a
//! hint for the sweeper) and `mlb:events` (stream of ended sessions, followed by every
//! engine to release what it keeps per session).
//!
//! A write is optimistic: read the session, judge the step in Rust with the rules every
//! backend shares (`state::variables`), then commit it with one script that checks the
//! session's revision is the one read and only then writes everything (values, history,
//! feed entries, locks). A conflicting commit is retried from the read. Each step carries
//! a request id: a commit whose reply was lost (timeout, dropped connection) is retried
//! with the same id and answered from what the first attempt stored, never applied twice.
//!
//! Why the `redis` crate with its `ConnectionManager`: it is the maintained async client
//! (tokio), its manager multiplexes every command of the engine over one connection and
//! reconnects by itself after Redis restarts, and its `Script` reloads scripts on
//! NOSCRIPT. Watchers block (`XREAD BLOCK`) on connections of their own without a response
//! timeout, so that a long wait never holds up other commands or counts as a failure.

mod scripts;
pub mod stored;
mod tokens;

pub use tokens::RedisTokens;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mlbridge_proto::mlbridge::v1::{self as pb, VariableUpdateKind};
use prost::Message;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, RedisError, Value as RedisValue};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::budget::EngineMemory;
use super::shared::Change;
use super::variables::{VariableState, Variables, WriteContext, WriteOp};
use super::{
    Limits, LockRequest, NewSession, SessionEvent, SessionEvents, StateBackend, StateStats,
    UpdateStream, WatchStart, check_session_id, new_session_id,
};
use crate::error::{BridgeError, ErrorKind, Result};
use crate::glob::Glob;
use scripts::Scripts;
use stored::{from_millis, millis};

/// Session events buffered per subscriber before it lags.
const SESSION_EVENT_BUFFER: usize = 1024;
/// Feed entries a watcher reads per look (bounds what it holds).
const WATCH_BATCH: usize = 64;
/// Ended-session events kept in `mlb:events` (approximately).
const EVENTS_RETAINED: usize = 10_000;
/// Attempts of an optimistic step before giving up under contention.
const MAX_ATTEMPTS: usize = 200;
/// Sessions the sweeper checks per pass.
const SWEEP_BATCH: isize = 256;
/// The engine-wide index of sessions.
const SESSIONS_KEY: &str = "mlb:sessions";
/// The engine-wide stream of ended sessions.
const EVENTS_KEY: &str = "mlb:events";

/// Timeouts and retention of the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Longest a command may take (connecting included) before the call fails with
    /// `UNAVAILABLE`. Blocking reads of watchers have no such timeout.
    pub command_timeout: Duration,
    /// How long a request's answer is kept for retries of the same request.
    pub request_ttl: Duration,
    /// How long an ended session's feed (with its end marker) stays for watchers.
    pub end_linger: Duration,
    /// How long an expired session is remembered, to answer `SESSION_EXPIRED`.
    pub remember_expired: Duration,
    /// Redis keeps a session's keys this long past its TTL, in case no engine sweeps.
    pub expiry_grace: Duration,
    /// How long a blocked watcher waits before it checks that its session still exists.
    pub watch_poll: Duration,
    /// How long a watcher keeps reconnecting to Redis before it ends with `UNAVAILABLE`.
    pub watch_reconnect_for: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            command_timeout: Duration::from_secs(3),
            request_ttl: Duration::from_secs(600),
            end_linger: Duration::from_secs(60),
            remember_expired: Duration::from_secs(3600),
            expiry_grace: Duration::from_secs(60),
            watch_poll: Duration::from_secs(2),
            watch_reconnect_for: Duration::from_secs(30),
        }
    }
}

/// Sessions kept in Redis, shared by every engine connected to it.
#[derive(Debug, Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    /// Where Redis is, for messages (without credentials).
    address: String,
    limits: Limits,
    options: RedisOptions,
    scripts: Scripts,
    events: broadcast::Sender<SessionEvent>,
    /// The token records this engine has read (`tokens.rs`).
    tokens: tokens::TokenCache,
    /// Open watch streams of this engine, per session.
    watchers: Mutex<HashMap<String, usize>>,
    /// The event follower and the token rechecker (`tokens.rs`), ended with the backend.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.tasks.lock().expect("tasks lock").drain(..) {
            task.abort();
        }
    }
}

/// The keys of one session.
struct Keys {
    meta: String,
    vars: String,
    feed: String,
    gone: String,
}

impl Keys {
    fn of(session: &str) -> Self {
        Keys {
            meta: format!("mlb:{{{session}}}:meta"),
            vars: format!("mlb:{{{session}}}:vars"),
            feed: format!("mlb:{{{session}}}:feed"),
            gone: format!("mlb:{{{session}}}:gone"),
        }
    }

    fn request(session: &str, request_id: &str) -> String {
        format!("mlb:{{{session}}}:req:{request_id}")
    }
}

/// A session as read by the `READ` script.
struct Snapshot {
    sequence: u64,
    revision: String,
    incarnation: String,
    created_ms: u64,
    active_ms: u64,
    ttl_ms: u64,
    info: Vec<u8>,
    locks: Vec<u8>,
    variable_count: usize,
    values: Vec<Vec<u8>>,
}

impl Snapshot {
    fn describe(&self, id: &str) -> Result<pb::Session> {
        let info = stored::StoredSessionInfo::decode(self.info.as_slice())
            .map_err(|e| stored::corrupt("session", e))?;
        let ttl = Duration::from_millis(self.ttl_ms);
        Ok(pb::Session {
            session_id: id.to_owned(),
            created_at: Some(from_millis(self.created_ms).into()),
            last_activity_at: Some(from_millis(self.active_ms).into()),
            expires_at: Some(from_millis(self.active_ms.saturating_add(self.ttl_ms)).into()),
            ttl: prost_types::Duration::try_from(ttl).ok(),
            metadata: info.metadata,
            cache: info.cache,
            variable_count: u32::try_from(self.variable_count).unwrap_or(u32::MAX),
            tool_count: 0,
            callback_count: 0,
            resource_count: 0,
            current_sequence: self.sequence,
        })
    }

    fn locks(&self) -> Result<super::locks::Locks> {
        stored::decode_locks(&self.locks)
    }

    /// The session's variables as the shared rules hold them.
    fn variables(&self) -> Result<Variables> {
        let vars = self
            .values
            .iter()
            .filter(|bytes| !bytes.is_empty())
            .map(|bytes| stored::decode_variable(bytes))
            .collect::<Result<Vec<_>>>()?;
        Ok(Variables::restore(
            Arc::new(EngineMemory::default()),
            vars,
            self.sequence,
            self.locks()?,
        ))
    }
}

/// What the `READ` script is asked for.
enum Read<'a> {
    Meta,
    Names(&'a [String]),
    All,
}

/// The outcome of one commit attempt.
enum Commit {
    Ok,
    Done(Vec<u8>),
    Conflict,
    Fenced,
    Gone(String),
}

/// What a step answers, kept under its request id for retries.
trait Reply: Sized {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self>;
}

impl Reply for Vec<Result<(pb::Variable, u64)>> {
    fn encode(&self) -> Vec<u8> {
        stored::encode_outcomes(self)
    }
    fn decode(bytes: &[u8]) -> Result<Self> {
        stored::decode_outcomes(bytes)
    }
}

impl Reply for Vec<pb::Variable> {
    fn encode(&self) -> Vec<u8> {
        let outcomes: Vec<Result<(pb::Variable, u64)>> =
            self.iter().map(|v| Ok((v.clone(), 0))).collect();
        stored::encode_outcomes(&outcomes)
    }
    fn decode(bytes: &[u8]) -> Result<Self> {
        stored::decode_outcomes(bytes)?
            .into_iter()
            .map(|outcome| outcome.map(|(variable, _)| variable))
            .collect()
    }
}

impl Reply for pb::StartOptimizationResponse {
    fn encode(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
    fn decode(bytes: &[u8]) -> Result<Self> {
        <pb::StartOptimizationResponse as Message>::decode(bytes)
            .map_err(|e| stored::corrupt("lock reply", e))
    }
}

impl RedisBackend {
    /// Connects to Redis at `url` (`redis://HOST:PORT[/DB]`) with default options.
    pub async fn connect(url: &str, limits: Limits) -> Result<Self> {
        RedisBackend::connect_with(url, limits, RedisOptions::default()).await
    }

    /// Connects to Redis at `url` with `options`; fails with `UNAVAILABLE` when Redis
    /// does not answer.
    pub async fn connect_with(url: &str, limits: Limits, options: RedisOptions) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| {
            BridgeError::invalid_argument("state", format!("invalid Redis URL {url:?}: {e}"))
        })?;
        let info = client.get_connection_info();
        let address = format!("redis://{}/{}", info.addr(), info.redis_settings().db());
        // Commands fail fast while Redis is away (one quick reconnection attempt each);
        // the manager keeps trying on later calls, so the engine recovers by itself.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.command_timeout.min(Duration::from_secs(1))))
            .set_response_timeout(Some(options.command_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let unreachable = |e: RedisError| {
            BridgeError::new(
                ErrorKind::Unavailable,
                format!("cannot reach the state store at {address}: {e}"),
            )
            .with("state", &address)
        };
        let conn = tokio::time::timeout(
            options.command_timeout,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| {
            BridgeError::new(
                ErrorKind::Unavailable,
                format!("the state store at {address} did not answer in time"),
            )
        })?
        .map_err(unreachable)?;
        let inner = Arc::new(Inner {
            client,
            conn,
            address,
            limits,
            options,
            scripts: Scripts::default(),
            events: broadcast::channel(SESSION_EVENT_BUFFER).0,
            tokens: tokens::TokenCache::default(),
            watchers: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let tasks = vec![
            tokio::spawn(follow_events(Arc::downgrade(&inner))),
            tokio::spawn(tokens::recheck_watched(Arc::downgrade(&inner))),
        ];
        *inner.tasks.lock().expect("tasks lock") = tasks;
        Ok(RedisBackend { inner })
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }
}

impl Inner {
    /// `UNAVAILABLE` for a failed command, naming the store.
    fn unavailable(&self, err: impl std::fmt::Display) -> BridgeError {
        BridgeError::new(
            ErrorKind::Unavailable,
            format!("the state store at {} is unavailable: {err}", self.address),
        )
        .with("state", &self.address)
    }

    /// Runs one command future with the command timeout.
    async fn run<T>(
        &self,
        command: impl Future<Output = redis::RedisResult<T>>,
    ) -> std::result::Result<T, BridgeError> {
        match tokio::time::timeout(self.options.command_timeout, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) if is_script_error(&err) => Err(BridgeError::internal(format!(
                "a state store script failed: {err}"
            ))),
            Ok(Err(err)) => Err(self.unavailable(err)),
            Err(_) => Err(self.unavailable(format!(
                "no answer within {:?}",
                self.options.command_timeout
            ))),
        }
    }

    fn script_args<'a>(
        &self,
        script: &'a redis::Script,
        keys: &Keys,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&keys.meta)
            .key(&keys.vars)
            .key(&keys.feed)
            .key(&keys.gone)
            .arg(millis(self.options.expiry_grace))
            .arg(millis(self.options.end_linger).max(1))
            .arg(millis(self.options.remember_expired).max(1));
        invocation
    }

    /// The error for a session that is not live, by what the script said.
    fn gone(&self, id: &str, status: &str) -> BridgeError {
        match status {
            "expired" | "ended" => {
                BridgeError::new(ErrorKind::SessionExpired, format!("session `{id}` expired"))
                    .with("session_id", id)
            }
            _ => BridgeError::session_not_found(id),
        }
    }

    /// Tells every engine (this one too) that a session ended.
    async fn announce_end(&self, id: &str, expired: bool) {
        let mut conn = self.conn.clone();
        let mut pipe = events_pipe(&[
            ("session", id),
            ("expired", if expired { "1" } else { "0" }),
        ]);
        pipe.zrem(SESSIONS_KEY, id).ignore();
        // Best effort: the session is gone either way; a lost event leaves other engines'
        // per-session leftovers until they next look at the session.
        let _ = self.run(pipe.query_async::<()>(&mut conn)).await;
    }

    /// Reads a session, marking activity.
    async fn read(&self, id: &str, what: Read<'_>) -> Result<Snapshot> {
        let keys = Keys::of(id);
        let mut invocation = self.script_args(&self.scripts.read, &keys);
        match what {
            Read::Meta => {
                invocation.arg("meta");
            }
            Read::All => {
                invocation.arg("all");
            }
            Read::Names(names) => {
                invocation.arg("get");
                for name in names {
                    invocation.arg(name);
                }
            }
        }
        let mut conn = self.conn.clone();
        let reply: Vec<RedisValue> = self.run(invocation.invoke_async(&mut conn)).await?;
        let mut fields = reply.into_iter().map(bytes_of);
        let status = String::from_utf8_lossy(&fields.next().unwrap_or_default()).into_owned();
        if status != "ok" {
            if status == "ended" {
                self.announce_end(id, true).await;
            }
            return Err(self.gone(id, &status));
        }
        let mut next = || fields.next().unwrap_or_default();
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        let number = |bytes: Vec<u8>| text(bytes).parse::<u64>().unwrap_or(0);
        Ok(Snapshot {
            sequence: number(next()),
            revision: text(next()),
            incarnation: text(next()),
            created_ms: number(next()),
            active_ms: number(next()),
            ttl_ms: number(next()),
            info: next(),
            locks: next(),
            variable_count: number(next()) as usize,
            values: fields.collect(),
        })
    }

    /// One commit attempt.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        id: &str,
        request_id: &str,
        snapshot: &Snapshot,
        reply: Vec<u8>,
        fence: bool,
        sets: &[(String, Vec<u8>)],
        deletes: &[String],
        feed: &[(u64, Vec<u8>)],
        locks: Option<Vec<u8>>,
    ) -> Result<Commit> {
        let keys = Keys::of(id);
        let mut invocation = self.script_args(&self.scripts.commit, &keys);
        invocation
            .key(Keys::request(id, request_id))
            .arg(&snapshot.incarnation)
            .arg(&snapshot.revision)
            .arg(millis(self.options.request_ttl).max(1))
            .arg(reply)
            .arg(if fence { "fence" } else { "commit" })
            .arg(snapshot.sequence + feed.len() as u64)
            .arg(if locks.is_some() { "1" } else { "0" })
            .arg(locks.unwrap_or_default())
            .arg(self.limits.retained_changes.max(1))
            .arg(sets.len())
            .arg(deletes.len())
            .arg(feed.len());
        for (name, bytes) in sets {
            invocation.arg(name).arg(bytes);
        }
        for name in deletes {
            invocation.arg(name);
        }
        for (sequence, bytes) in feed {
            invocation.arg(format!("{sequence}-0")).arg(bytes);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<RedisValue> = self.run(invocation.invoke_async(&mut conn)).await?;
        let mut fields = reply.into_iter().map(bytes_of);
        let status = String::from_utf8_lossy(&fields.next().unwrap_or_default()).into_owned();
        Ok(match status.as_str() {
            "ok" => Commit::Ok,
            "done" => Commit::Done(fields.next().unwrap_or_default()),
            "conflict" => Commit::Conflict,
            "fenced" => Commit::Fenced,
            _ => Commit::Gone(status),
        })
    }

    /// Runs `step` on the session's current state and commits what it changed, atomically,
    /// once: retried from a fresh read when another engine committed first, and with the
    /// same request id after an ambiguous failure.
    async fn transact<T: Reply>(
        &self,
        id: &str,
        mut step: impl FnMut(&mut Variables) -> Result<(T, Vec<Arc<Change>>)>,
    ) -> Result<T> {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        // Set once a commit's fate is unknown: from then on every answer goes through the
        // request id, so that the first attempt cannot also apply.
        let mut ambiguous = false;
        let mut last_error = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let snapshot = match self.read(id, Read::All).await {
                Ok(snapshot) => snapshot,
                Err(err) if ambiguous && err.kind == ErrorKind::Unavailable => {
                    last_error = Some(err);
                    continue;
                }
                Err(err) => return Err(err),
            };
            let mut variables = snapshot.variables()?;
            let before: HashMap<String, (u64, usize, u64)> = variables
                .iter()
                .map(|state| (state.definition.name.clone(), fingerprint(state)))
                .collect();
            let locks_before = stored::encode_locks(variables.locks());
            let stepped = step(&mut variables);
            let (value, changes) = match stepped {
                Ok(done) => done,
                Err(err) => {
                    if ambiguous {
                        return self.settle(id, &request_id, &snapshot, Err(err)).await;
                    }
                    return Err(err);
                }
            };
            let locks_after = stored::encode_locks(variables.locks());
            let locks = (locks_after != locks_before).then_some(locks_after);
            let mut sets = Vec::new();
            let mut deletes = Vec::new();
            for state in variables.iter() {
                if before.get(&state.definition.name) != Some(&fingerprint(state)) {
                    sets.push((
                        state.definition.name.clone(),
                        stored::encode_variable(state),
                    ));
                }
            }
            for name in before.keys() {
                if variables.get(name).is_none() {
                    deletes.push(name.clone());
                }
            }
            let feed: Vec<(u64, Vec<u8>)> = changes
                .iter()
                .map(|change| (change.sequence, change.update().encode_to_vec()))
                .collect();
            if sets.is_empty() && deletes.is_empty() && feed.is_empty() && locks.is_none() {
                if ambiguous {
                    return self.settle(id, &request_id, &snapshot, Ok(value)).await;
                }
                return Ok(value);
            }
            let reply = value.encode();
            match self
                .commit(
                    id,
                    &request_id,
                    &snapshot,
                    reply,
                    false,
                    &sets,
                    &deletes,
                    &feed,
                    locks,
                )
                .await
            {
                Ok(Commit::Ok) => return Ok(value),
                Ok(Commit::Done(reply)) => return T::decode(&reply),
                Ok(Commit::Conflict) => continue,
                Ok(Commit::Fenced) => return Err(BridgeError::internal("unexpected fence")),
                Ok(Commit::Gone(status)) => {
                    if status == "ended" {
                        self.announce_end(id, true).await;
                    }
                    return Err(self.gone(id, &status));
                }
                Err(err) if err.kind == ErrorKind::Unavailable => {
                    ambiguous = true;
                    last_error = Some(err);
                }
                Err(err) => return Err(err),
            }
            if attempt >= 3 && ambiguous {
                break;
            }
        }
        Err(match last_error {
            Some(err) => err.with(
                "outcome",
                "unknown: the write may have been applied; read before retrying",
            ),
            None => BridgeError::new(
                ErrorKind::Unavailable,
                format!(
                    "session `{id}` changed on every one of {MAX_ATTEMPTS} attempts; try again"
                ),
            )
            .with("session_id", id),
        })
    }

    /// After an ambiguous failure, answers with what the first attempt stored if it was
    /// applied, else fences the request id (so that it never applies) and answers `local`.
    async fn settle<T: Reply>(
        &self,
        id: &str,
        request_id: &str,
        snapshot: &Snapshot,
        local: Result<T>,
    ) -> Result<T> {
        match self
            .commit(
                id,
                request_id,
                snapshot,
                Vec::new(),
                true,
                &[],
                &[],
                &[],
                None,
            )
            .await?
        {
            Commit::Done(reply) if !reply.is_empty() => T::decode(&reply),
            _ => local,
        }
    }
}

/// What says that a stored variable changed: its current version, how many versions it
/// retains and the oldest one's sequence.
fn fingerprint(state: &VariableState) -> (u64, usize, u64) {
    (
        state.current().number,
        state.history.len(),
        state.history.front().map_or(0, |v| v.sequence),
    )
}

/// A pipeline that first appends an entry of `fields` to `mlb:events` (trimmed to about
/// [`EVENTS_RETAINED`]); callers add their own commands after it.
fn events_pipe(fields: &[(&str, &str)]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    let add = pipe
        .cmd("XADD")
        .arg(EVENTS_KEY)
        .arg("MAXLEN")
        .arg("~")
        .arg(EVENTS_RETAINED)
        .arg("*");
    for (key, value) in fields {
        add.arg(*key).arg(*value);
    }
    add.ignore();
    pipe
}

/// A short, jittered pause before retry `attempt`.
async fn backoff(attempt: usize) {
    let cap = (1u64 << attempt.min(5)) * 500;
    let jitter = (uuid::Uuid::new_v4().as_u128() as u64) % (cap + 1);
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}

fn is_script_error(err: &RedisError) -> bool {
    matches!(err.kind(), redis::ErrorKind::Server(_))
        && !err.is_unrecoverable_error()
        && err.code().is_some_and(|code| code.starts_with("ERR"))
}

fn bytes_of(value: RedisValue) -> Vec<u8> {
    match value {
        RedisValue::BulkString(bytes) => bytes,
        RedisValue::SimpleString(text) => text.into_bytes(),
        RedisValue::Int(n) => n.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

/// Follows `mlb:events` and republishes ended sessions to this engine's subscribers.
async fn follow_events(inner: std::sync::Weak<Inner>) {
    let mut last = "$".to_owned();
    let mut conn: Option<MultiplexedConnection> = None;
    loop {
        let Some(backend) = inner.upgrade() else {
            return;
        };
        if conn.is_none() {
            conn = blocking_connection(&backend.client).await.ok();
            if conn.is_none() {
                drop(backend);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        let events = backend.events.clone();
        let tokens = std::sync::Arc::downgrade(&backend);
        drop(backend);
        let Some(connection) = conn.as_mut() else {
            continue;
        };
        let options = StreamReadOptions::default().count(100).block(5000);
        let reply: redis::RedisResult<Option<StreamReadReply>> = connection
            .xread_options(&[EVENTS_KEY], &[last.as_str()], &options)
            .await;
        match reply {
            Ok(Some(reply)) => {
                for entry in reply.keys.into_iter().flat_map(|key| key.ids) {
                    last.clone_from(&entry.id);
                    if let Some(session) = entry.get::<String>("tokens") {
                        // Tokens revoked through some engine: their streams end here too.
                        let revision: u64 = entry.get("revision").unwrap_or(0);
                        let ids: String = entry.get("ids").unwrap_or_default();
                        let ids: Vec<String> = ids.split(',').map(str::to_owned).collect();
                        if let Some(backend) = tokens.upgrade() {
                            backend.tokens.removed(&session, revision, &ids);
                        }
                        continue;
                    }
                    let session_id: Option<String> = entry.get("session");
                    let expired: Option<String> = entry.get("expired");
                    if let Some(session_id) = session_id {
                        let _ = events.send(SessionEvent::Ended {
                            session_id,
                            expired: expired.as_deref() == Some("1"),
                        });
                    }
                }
            }
            Ok(None) => {}
            Err(_) => {
                conn = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A connection of its own for blocking reads: no response timeout.
async fn blocking_connection(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

#[tonic::async_trait]
impl StateBackend for RedisBackend {
    async fn create_session(&self, new: NewSession) -> Result<(pb::Session, bool)> {
        let inner = &self.inner;
        let id = match new.id {
            Some(id) if !id.is_empty() => {
                check_session_id(&id)?;
                id
            }
            _ => new_session_id(),
        };
        let ttl = match new.ttl {
            Some(ttl) if ttl.is_zero() => {
                return Err(BridgeError::invalid_argument(
                    "ttl",
                    "session ttl must be greater than zero",
                ));
            }
            Some(ttl) => ttl.min(inner.limits.max_ttl),
            None => inner.limits.default_ttl.min(inner.limits.max_ttl),
        };
        let ttl_ms = millis(ttl).max(1);
        let cache = new.cache.unwrap_or(pb::CacheSettings {
            enabled: true,
            ttl: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
        });
        let info = stored::StoredSessionInfo {
            metadata: new.metadata,
            cache: Some(cache),
        }
        .encode_to_vec();
        let mut conn = inner.conn.clone();
        let count: usize = inner.run(conn.zcard(SESSIONS_KEY)).await?;
        if count >= inner.limits.max_sessions {
            // The index may still list sessions that ended; the sweeper prunes it.
            let exists: bool = inner.run(conn.exists(Keys::of(&id).meta)).await?;
            if !exists {
                return Err(BridgeError::new(
                    ErrorKind::SessionLimitExceeded,
                    format!(
                        "the state store already holds the maximum of {} sessions",
                        inner.limits.max_sessions
                    ),
                )
                .with("limit", inner.limits.max_sessions));
            }
        }
        // Indexed first, so that the sweeper finds every session that exists.
        let now_ms = millis(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let _: () = inner
            .run(conn.zadd(SESSIONS_KEY, &id, now_ms.saturating_add(ttl_ms)))
            .await?;
        let keys = Keys::of(&id);
        let mut invocation = inner.script_args(&inner.scripts.create, &keys);
        invocation
            .arg(uuid::Uuid::new_v4().simple().to_string())
            .arg(ttl_ms)
            .arg(info);
        let reply: Vec<RedisValue> = inner.run(invocation.invoke_async(&mut conn)).await?;
        let created = reply
            .into_iter()
            .next()
            .map(bytes_of)
            .is_some_and(|status| status == b"created");
        let snapshot = inner.read(&id, Read::Meta).await?;
        Ok((snapshot.describe(&id)?, created))
    }

    async fn session(&self, id: &str) -> Result<pb::Session> {
        self.inner.read(id, Read::Meta).await?.describe(id)
    }

    async fn remove_session(&self, id: &str) -> Result<Option<pb::CleanupSessionResponse>> {
        let inner = &self.inner;
        let keys = Keys::of(id);
        let invocation = inner.script_args(&inner.scripts.remove, &keys);
        let mut conn = inner.conn.clone();
        let reply: Vec<RedisValue> = inner.run(invocation.invoke_async(&mut conn)).await?;
        let mut fields = reply.into_iter().map(bytes_of);
        if fields.next().unwrap_or_default() != b"removed" {
            return Ok(None);
        }
        let count = String::from_utf8_lossy(&fields.next().unwrap_or_default())
            .parse::<u32>()
            .unwrap_or(0);
        inner.announce_end(id, false).await;
        Ok(Some(pb::CleanupSessionResponse {
            existed: true,
            variables_removed: count,
            resources_released: 0,
        }))
    }

    async fn expire_sessions(&self) -> Result<Vec<String>> {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let now_ms = millis(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let due: Vec<String> = inner
            .run(conn.zrangebyscore_limit(SESSIONS_KEY, "-inf", now_ms, 0, SWEEP_BATCH))
            .await?;
        let mut expired = Vec::new();
        for id in due {
            let keys = Keys::of(&id);
            let invocation = inner.script_args(&inner.scripts.sweep, &keys);
            let reply: Vec<RedisValue> = inner.run(invocation.invoke_async(&mut conn)).await?;
            let mut fields = reply.into_iter().map(bytes_of);
            match fields.next().unwrap_or_default().as_slice() {
                b"alive" => {
                    // Active since it was indexed: look again when it could expire.
                    let at = String::from_utf8_lossy(&fields.next().unwrap_or_default())
                        .parse::<u64>()
                        .unwrap_or(now_ms);
                    let _: () = inner.run(conn.zadd(SESSIONS_KEY, &id, at)).await?;
                }
                b"ended" => {
                    inner.announce_end(&id, true).await;
                    expired.push(id);
                }
                _ => {
                    let _: () = inner.run(conn.zrem(SESSIONS_KEY, &id)).await?;
                }
            }
        }
        Ok(expired)
    }

    async fn get(
        &self,
        session: &str,
        names: &[String],
    ) -> Result<(Vec<Option<pb::Variable>>, u64)> {
        let snapshot = self.inner.read(session, Read::Names(names)).await?;
        let locks = snapshot.locks()?;
        let now = SystemTime::now();
        let found = snapshot
            .values
            .iter()
            .map(|bytes| {
                if bytes.is_empty() {
                    return Ok(None);
                }
                let mut variable = stored::decode_variable(bytes)?.variable();
                locks.decorate(&mut variable, now);
                Ok(Some(variable))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((found, snapshot.sequence))
    }

    async fn list(&self, session: &str, pattern: &Glob) -> Result<(Vec<pb::Variable>, u64)> {
        let snapshot = self.inner.read(session, Read::All).await?;
        let variables = snapshot.variables()?;
        let mut found: Vec<pb::Variable> = variables
            .views(SystemTime::now())
            .filter(|v| pattern.matches(&v.name))
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((found, snapshot.sequence))
    }

    async fn write(
        &self,
        session: &str,
        ops: Vec<WriteOp>,
        atomic: bool,
        context: WriteContext,
    ) -> Result<Vec<Result<(pb::Variable, u64)>>> {
        let limits = self.inner.limits.clone();
        self.inner
            .transact(session, |variables| {
                variables.check_token(&ops, &context.lock_token, SystemTime::now())?;
                let (outcomes, changes) =
                    variables.apply(session, ops.clone(), atomic, &context, &limits);
                Ok((outcomes, changes))
            })
            .await
    }

    async fn start_optimization(
        &self,
        session: &str,
        request: LockRequest,
    ) -> Result<pb::StartOptimizationResponse> {
        let limits = self.inner.limits.clone();
        self.inner
            .transact(session, |variables| {
                let response =
                    variables.start_optimization(session, &request, &limits, SystemTime::now())?;
                Ok((response, Vec::new()))
            })
            .await
    }

    async fn stop_optimization(
        &self,
        session: &str,
        token: &str,
        final_values: HashMap<String, pb::Value>,
        context: WriteContext,
    ) -> Result<Vec<pb::Variable>> {
        let limits = self.inner.limits.clone();
        self.inner
            .transact(session, |variables| {
                variables.stop_optimization(
                    session,
                    token,
                    final_values.clone(),
                    context.clone(),
                    &limits,
                )
            })
            .await
    }

    async fn history(
        &self,
        session: &str,
        name: &str,
        limit: usize,
    ) -> Result<Vec<pb::VariableVersion>> {
        let names = [name.to_owned()];
        let snapshot = self.inner.read(session, Read::Names(&names)).await?;
        let bytes = snapshot.values.first().filter(|b| !b.is_empty());
        let Some(bytes) = bytes else {
            return Err(BridgeError::variable_not_found(session, name));
        };
        Ok(stored::decode_variable(bytes)?.recent_history(limit))
    }

    async fn watch(
        &self,
        session: &str,
        names: Vec<String>,
        start: WatchStart,
    ) -> Result<UpdateStream> {
        let inner = &self.inner;
        let filter: HashSet<String> = names.into_iter().collect();
        let wanted = move |name: &str| filter.is_empty() || filter.contains(name);
        let snapshot = inner
            .read(
                session,
                if start == WatchStart::Initial {
                    Read::All
                } else {
                    Read::Meta
                },
            )
            .await?;
        let current = snapshot.sequence;
        let mut prelude = Vec::new();
        let mut from = current;
        match start {
            WatchStart::Now => {}
            WatchStart::Initial => {
                prelude = snapshot
                    .variables()?
                    .initial(&wanted, SystemTime::now())
                    .iter()
                    .map(|change| change.update())
                    .collect();
            }
            WatchStart::Resume(after) => {
                if after > current {
                    return Err(BridgeError::invalid_argument(
                        "resume_from_sequence",
                        format!(
                            "cannot resume from sequence {after}: session `{session}` is at {current}"
                        ),
                    ));
                }
                if after < current {
                    let mut conn = inner.conn.clone();
                    let first: StreamRangeReply = inner
                        .run(conn.xrange_count(Keys::of(session).feed, "-", "+", 1))
                        .await?;
                    let oldest = first
                        .ids
                        .first()
                        .and_then(|entry| entry_id(&entry.id))
                        .map_or(current + 1, |(sequence, _)| sequence);
                    if after + 1 < oldest {
                        return Err(BridgeError::new(
                            ErrorKind::WatchLagged,
                            format!(
                                "cannot resume from sequence {after}: the oldest retained change is {oldest}; \
                                 re-subscribe with initial values"
                            ),
                        )
                        .with("last_sequence", after)
                        .with("oldest_retained_sequence", oldest));
                    }
                }
                from = after;
            }
        }
        {
            let mut watchers = inner.watchers.lock().expect("watchers lock");
            let count = watchers.entry(session.to_owned()).or_default();
            if *count >= inner.limits.max_watchers_per_session {
                return Err(BridgeError::new(
                    ErrorKind::SessionLimitExceeded,
                    format!(
                        "session `{session}` already has the maximum of {} watchers on this engine; close one first",
                        inner.limits.max_watchers_per_session
                    ),
                )
                .with("session_id", session)
                .with("limit", inner.limits.max_watchers_per_session));
            }
            *count += 1;
        }
        let (sender, stream) = mpsc::channel(1);
        let feeder = Feeder {
            inner: Arc::clone(inner),
            session: session.to_owned(),
            incarnation: snapshot.incarnation.clone(),
            sender,
            wanted: Box::new(wanted),
            synced_at: current,
            last: from,
        };
        tokio::spawn(feeder.run(prelude));
        Ok(Box::pin(ReceiverStream::new(stream)))
    }

    async fn session_count(&self) -> usize {
        let mut conn = self.inner.conn.clone();
        self.inner
            .run(conn.zcard::<_, usize>(SESSIONS_KEY))
            .await
            .unwrap_or(0)
    }

    async fn stats(&self) -> StateStats {
        StateStats {
            sessions: self.session_count().await,
            watchers: self
                .inner
                .watchers
                .lock()
                .expect("watchers lock")
                .values()
                .sum(),
            ..StateStats::default()
        }
    }

    fn token_store(&self) -> Arc<dyn crate::auth::TokenStore> {
        Arc::new(RedisTokens::new(self.clone()))
    }

    fn session_events(&self) -> SessionEvents {
        self.inner.events.subscribe()
    }
}

/// `<seq>-<n>` as numbers.
fn entry_id(id: &str) -> Option<(u64, u64)> {
    let (sequence, n) = id.split_once('-')?;
    Some((sequence.parse().ok()?, n.parse().ok()?))
}

/// Feeds one watcher from the session's feed: the prelude, the retained changes after the
/// start up to the sequence the watch began at, `SYNCED`, then live changes, reading on a
/// connection of its own and reconnecting (resuming after the last change sent) when
/// Redis goes away. Every change must follow the previous one: a gap (trimmed entries) is
/// `WATCH_LAGGED`, never skipped.
struct Feeder {
    inner: Arc<Inner>,
    session: String,
    incarnation: String,
    sender: mpsc::Sender<Result<pb::VariableUpdate>>,
    wanted: Box<dyn Fn(&str) -> bool + Send + Sync>,
    synced_at: u64,
    last: u64,
}

impl Feeder {
    async fn run(mut self, prelude: Vec<pb::VariableUpdate>) {
        let outcome = self.feed(prelude).await;
        if let Err(error) = outcome {
            let _ = self.sender.send(Err(error)).await;
        }
        let mut watchers = self.inner.watchers.lock().expect("watchers lock");
        if let Some(count) = watchers.get_mut(&self.session) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                watchers.remove(&self.session);
            }
        }
    }

    fn synced(&self) -> pb::VariableUpdate {
        pb::VariableUpdate {
            kind: VariableUpdateKind::Synced as i32,
            sequence: self.synced_at,
            timestamp: Some(SystemTime::now().into()),
            ..Default::default()
        }
    }

    /// Ok when the client hung up; the error to end the stream with otherwise.
    async fn feed(&mut self, prelude: Vec<pb::VariableUpdate>) -> Result<()> {
        let catching_up = self.last < self.synced_at;
        for update in prelude {
            if self.sender.send(Ok(update)).await.is_err() {
                return Ok(());
            }
        }
        let mut synced_sent = false;
        if !catching_up {
            if self.sender.send(Ok(self.synced())).await.is_err() {
                return Ok(());
            }
            synced_sent = true;
        }
        let feed = Keys::of(&self.session).feed;
        let mut conn: Option<MultiplexedConnection> = None;
        let mut failing_since: Option<tokio::time::Instant> = None;
        loop {
            if !synced_sent && self.last >= self.synced_at {
                if self.sender.send(Ok(self.synced())).await.is_err() {
                    return Ok(());
                }
                synced_sent = true;
            }
            if conn.is_none() {
                match blocking_connection(&self.inner.client).await {
                    Ok(fresh) => conn = Some(fresh),
                    Err(err) => {
                        self.failed(&mut failing_since, err).await?;
                        continue;
                    }
                }
            }
            let Some(connection) = conn.as_mut() else {
                continue;
            };
            let mut options = StreamReadOptions::default().count(WATCH_BATCH);
            if synced_sent {
                options = options.block(
                    usize::try_from(self.inner.options.watch_poll.as_millis())
                        .unwrap_or(usize::MAX)
                        .max(1),
                );
            }
            let after = format!("{}-0", self.last);
            let streams = [feed.as_str()];
            let ids = [after.as_str()];
            let read =
                connection.xread_options::<_, _, Option<StreamReadReply>>(&streams, &ids, &options);
            let reply = tokio::select! {
                reply = read => reply,
                () = self.sender.closed() => return Ok(()),
            };
            let entries = match reply {
                Ok(reply) => {
                    failing_since = None;
                    reply
                        .map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect())
                        .unwrap_or_else(Vec::new)
                }
                Err(err) => {
                    conn = None;
                    self.failed(&mut failing_since, err).await?;
                    continue;
                }
            };
            if entries.is_empty() {
                // Quiet (or, while catching up, nothing where changes should be): make
                // sure the session is still there.
                self.check_live(conn.as_mut()).await?;
                if !synced_sent {
                    return Err(self.lagged(self.synced_at));
                }
                continue;
            }
            for entry in entries {
                let Some((sequence, n)) = entry_id(&entry.id) else {
                    continue;
                };
                if n == 1 {
                    let why: Option<String> = entry.get("end");
                    return Err(self.inner.gone(&self.session, why.as_deref().unwrap_or("")));
                }
                if sequence != self.last + 1 {
                    return Err(self.lagged(sequence));
                }
                let bytes: Option<Vec<u8>> = entry.get("u");
                let update = pb::VariableUpdate::decode(bytes.unwrap_or_default().as_slice())
                    .map_err(|e| stored::corrupt("change", e))?;
                self.last = sequence;
                if (self.wanted)(&update.variable_name)
                    && self.sender.send(Ok(update)).await.is_err()
                {
                    return Ok(());
                }
                if !synced_sent && self.last >= self.synced_at {
                    if self.sender.send(Ok(self.synced())).await.is_err() {
                        return Ok(());
                    }
                    synced_sent = true;
                }
            }
        }
    }

    fn lagged(&self, oldest: u64) -> BridgeError {
        let last = self.last;
        BridgeError::new(
            ErrorKind::WatchLagged,
            format!(
                "watcher of session `{}` cannot go on after sequence {last}: the changes after it were \
                 trimmed from the session's feed, and the oldest retained change is {oldest}; \
                 re-subscribe with initial values",
                self.session
            ),
        )
        .with("last_sequence", last)
        .with("oldest_retained_sequence", oldest)
    }

    /// Waits before reconnecting; past the reconnection window, `UNAVAILABLE` (the client
    /// may resume from the last sequence it saw).
    async fn failed(
        &self,
        failing_since: &mut Option<tokio::time::Instant>,
        err: RedisError,
    ) -> Result<()> {
        let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() > self.inner.options.watch_reconnect_for {
            return Err(self.inner.unavailable(err).with("last_sequence", self.last));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => Ok(()),
            () = self.sender.closed() => Err(BridgeError::internal("watcher gone")),
        }
    }

    /// Ends the watch when the session ended meanwhile (also when Redis expired its keys
    /// without an engine noticing, or it was re-created as another incarnation).
    async fn check_live(&self, conn: Option<&mut MultiplexedConnection>) -> Result<()> {
        let Some(conn) = conn else {
            return Ok(());
        };
        let keys = Keys::of(&self.session);
        let (incarnation, gone): (Option<String>, Option<String>) = match redis::pipe()
            .hget(&keys.meta, "inc")
            .get(&keys.gone)
            .query_async(conn)
            .await
        {
            Ok(answer) => answer,
            // The next read reconnects.
            Err(_) => return Ok(()),
        };
        if incarnation.as_deref() == Some(self.incarnation.as_str()) {
            return Ok(());
        }
        let why = match gone.as_deref() {
            Some("removed") => "missing",
            _ => "expired",
        };
        Err(self.inner.gone(&self.session, why))
    }
}
