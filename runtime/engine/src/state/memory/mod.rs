//! The embedded in-memory backend: a map of sessions, each behind its own lock. Watchers
//! read the session's ring of recent changes (shared, never copied) as they go, woken by a
//! sequence number that every write publishes; large values are validated on a blocking
//! thread before the session's lock is taken.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use mlbridge_proto::mlbridge::v1::{self as pb, VariableUpdateKind};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::budget::EngineMemory;
use super::shared::Change;
use super::variables::{self, Prepared, Variables, WriteContext, WriteOp};
use super::{
    Limits, LockRequest, NewSession, SessionEvent, SessionEvents, StateBackend, UpdateStream,
    WatchStart, check_session_id, new_session_id,
};
use crate::error::{BridgeError, ErrorKind, Result};
use crate::glob::Glob;

/// Session events buffered per subscriber before it lags.
const SESSION_EVENT_BUFFER: usize = 1024;
/// Updates queued between a watcher's feeder and its stream. They share the ring's
/// versions, so this (with the one change the feeder is sending) bounds what a slow watcher
/// keeps alive after the ring has let go of it: two changes, at most four versions.
const WATCH_QUEUE: usize = 1;
/// Changes a watcher's feeder takes from the ring per look: one, so that it never holds
/// changes the budget has dropped while it waits for a slow client.
const WATCH_BATCH: usize = 1;

/// Sessions held in this process's memory.
#[derive(Debug)]
pub struct MemoryBackend {
    sessions: RwLock<HashMap<String, Arc<Slot>>>,
    expired: Mutex<Expired>,
    limits: Limits,
    events: broadcast::Sender<SessionEvent>,
    memory: Arc<EngineMemory>,
}

/// Ids of recently expired sessions, oldest first, bounded.
#[derive(Debug, Default)]
struct Expired {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

#[derive(Debug)]
struct Slot {
    state: Mutex<SessionState>,
    /// The session's latest sequence, published after every write to wake watchers.
    latest: tokio::sync::watch::Sender<u64>,
    /// Set when the session is removed, so that watchers end.
    removed: tokio::sync::watch::Sender<bool>,
    /// Whether the removal was an expiry (watchers then end with SESSION_EXPIRED).
    expired: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct SessionState {
    id: String,
    created_at: SystemTime,
    last_activity: SystemTime,
    ttl: Duration,
    metadata: HashMap<String, String>,
    cache: pb::CacheSettings,
    variables: Variables,
    watchers: usize,
}

impl SessionState {
    fn expires_at(&self) -> SystemTime {
        self.last_activity + self.ttl
    }

    fn describe(&self) -> pb::Session {
        pb::Session {
            session_id: self.id.clone(),
            created_at: Some(self.created_at.into()),
            last_activity_at: Some(self.last_activity.into()),
            expires_at: Some(self.expires_at().into()),
            ttl: prost_types::Duration::try_from(self.ttl).ok(),
            metadata: self.metadata.clone(),
            cache: Some(self.cache),
            variable_count: self.variables.len() as u32,
            tool_count: 0,
            callback_count: 0,
            resource_count: 0,
            current_sequence: self.variables.sequence(),
        }
    }
}

impl MemoryBackend {
    /// An empty backend with `limits`.
    pub fn new(limits: Limits) -> Self {
        MemoryBackend {
            sessions: RwLock::new(HashMap::new()),
            expired: Mutex::new(Expired::default()),
            limits,
            events: broadcast::channel(SESSION_EVENT_BUFFER).0,
            memory: Arc::default(),
        }
    }

    /// Bytes held by all sessions, as the engine-wide budget counts them.
    pub fn memory_used(&self) -> usize {
        self.memory.used()
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Wakes the session's watchers after committed changes.
    fn publish(slot: &Slot, state: &SessionState, changes: &[Arc<Change>]) {
        if !changes.is_empty() {
            slot.latest.send_replace(state.variables.sequence());
        }
    }

    /// Checks the values of `ops` that are at least `blocking_validation_bytes` long on a
    /// blocking thread, against their variables' current definitions; the write then only
    /// compares definitions.
    async fn prepare(&self, slot: &Slot, ops: Vec<WriteOp>) -> Result<Vec<Prepared>> {
        let threshold = self.limits.blocking_validation_bytes;
        let large: Vec<bool> = ops
            .iter()
            .map(|op| match op {
                WriteOp::Register { value, .. } | WriteOp::Set { value, .. } => {
                    prost::Message::encoded_len(value) >= threshold
                }
                _ => false,
            })
            .collect();
        if !large.contains(&true) {
            return Ok(ops.into_iter().map(Prepared::from).collect());
        }
        let definitions: Vec<_> = {
            let state = slot.state.lock().expect("session lock");
            ops.iter()
                .zip(&large)
                .map(|(op, large)| {
                    large
                        .then(|| state.variables.definition_of(op.name()))
                        .flatten()
                })
                .collect()
        };
        let limits = self.limits.clone();
        tokio::task::spawn_blocking(move || {
            ops.into_iter()
                .zip(definitions)
                .zip(large)
                .map(|((op, definition), large)| {
                    if large {
                        variables::check_in_advance(op, definition, &limits)
                    } else {
                        op.into()
                    }
                })
                .collect()
        })
        .await
        .map_err(|err| {
            BridgeError::new(
                ErrorKind::Internal,
                format!("validating a large value failed: {err}"),
            )
        })
    }

    /// The live session `id`, marking activity; an expired one is removed and reported.
    fn slot(&self, id: &str) -> Result<Arc<Slot>> {
        let slot = self
            .sessions
            .read()
            .expect("sessions lock")
            .get(id)
            .cloned();
        let Some(slot) = slot else {
            return Err(self.missing(id));
        };
        let now = SystemTime::now();
        {
            let mut state = slot.state.lock().expect("session lock");
            if state.expires_at() <= now {
                drop(state);
                self.forget(id, Some(&slot), true);
                return Err(self.missing(id));
            }
            state.last_activity = now;
        }
        Ok(slot)
    }

    fn missing(&self, id: &str) -> BridgeError {
        if self.expired.lock().expect("expired lock").ids.contains(id) {
            BridgeError::new(ErrorKind::SessionExpired, format!("session `{id}` expired"))
                .with("session_id", id)
        } else {
            BridgeError::session_not_found(id)
        }
    }

    /// Removes a session (only `slot` when given, so that a session re-created under the
    /// same id meanwhile survives); with `expired`, remembers its id for a while.
    fn forget(&self, id: &str, slot: Option<&Arc<Slot>>, expired: bool) -> Option<Arc<Slot>> {
        let removed = {
            let mut sessions = self.sessions.write().expect("sessions lock");
            match (sessions.get(id), slot) {
                (Some(current), Some(slot)) if !Arc::ptr_eq(current, slot) => None,
                _ => sessions.remove(id),
            }
        };
        if let Some(slot) = &removed {
            slot.expired
                .store(expired, std::sync::atomic::Ordering::SeqCst);
            slot.removed.send_replace(true);
            // No subscribers is fine: nobody keeps anything per session.
            let _ = self.events.send(SessionEvent::Ended {
                session_id: id.to_owned(),
                expired,
            });
        }
        if removed.is_some() && expired {
            let mut memory = self.expired.lock().expect("expired lock");
            if memory.ids.insert(id.to_owned()) {
                memory.order.push_back(id.to_owned());
            }
            while memory.order.len() > self.limits.remembered_expired_sessions {
                if let Some(old) = memory.order.pop_front() {
                    memory.ids.remove(&old);
                }
            }
        }
        removed
    }
}

#[tonic::async_trait]
impl StateBackend for MemoryBackend {
    async fn create_session(&self, new: NewSession) -> Result<(pb::Session, bool)> {
        let id = match new.id {
            Some(id) if !id.is_empty() => {
                check_session_id(&id)?;
                id
            }
            _ => new_session_id(),
        };
        if let Ok(slot) = self.slot(&id) {
            return Ok((slot.state.lock().expect("session lock").describe(), false));
        }
        let ttl = match new.ttl {
            Some(ttl) if ttl.is_zero() => {
                return Err(BridgeError::invalid_argument(
                    "ttl",
                    "session ttl must be greater than zero",
                ));
            }
            Some(ttl) => ttl.min(self.limits.max_ttl),
            None => self.limits.default_ttl.min(self.limits.max_ttl),
        };
        let cache = new.cache.unwrap_or(pb::CacheSettings {
            enabled: true,
            ttl: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
        });
        let now = SystemTime::now();
        let state = SessionState {
            id: id.clone(),
            created_at: now,
            last_activity: now,
            ttl,
            metadata: new.metadata,
            cache,
            variables: Variables::new(Arc::clone(&self.memory)),
            watchers: 0,
        };
        let described = state.describe();
        let mut sessions = self.sessions.write().expect("sessions lock");
        if let Some(existing) = sessions.get(&id) {
            // Created concurrently by another call.
            return Ok((
                existing.state.lock().expect("session lock").describe(),
                false,
            ));
        }
        if sessions.len() >= self.limits.max_sessions {
            return Err(BridgeError::new(
                ErrorKind::SessionLimitExceeded,
                format!(
                    "the engine already holds the maximum of {} sessions",
                    self.limits.max_sessions
                ),
            )
            .with("limit", self.limits.max_sessions));
        }
        let (latest, _) = tokio::sync::watch::channel(0);
        let (removed, _) = tokio::sync::watch::channel(false);
        sessions.insert(
            id.clone(),
            Arc::new(Slot {
                state: Mutex::new(state),
                latest,
                removed,
                expired: Default::default(),
            }),
        );
        let mut memory = self.expired.lock().expect("expired lock");
        if memory.ids.remove(&id) {
            memory.order.retain(|old| old != &id);
        }
        Ok((described, true))
    }

    async fn session(&self, id: &str) -> Result<pb::Session> {
        Ok(self
            .slot(id)?
            .state
            .lock()
            .expect("session lock")
            .describe())
    }

    async fn remove_session(&self, id: &str) -> Result<Option<pb::CleanupSessionResponse>> {
        Ok(self.forget(id, None, false).map(|slot| {
            let state = slot.state.lock().expect("session lock");
            pb::CleanupSessionResponse {
                existed: true,
                variables_removed: state.variables.len() as u32,
                resources_released: 0,
            }
        }))
    }

    async fn expire_sessions(&self) -> Result<Vec<String>> {
        let now = SystemTime::now();
        let expired: Vec<String> = self
            .sessions
            .read()
            .expect("sessions lock")
            .iter()
            .filter(|(_, slot)| slot.state.lock().expect("session lock").expires_at() <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            let slot = self
                .sessions
                .read()
                .expect("sessions lock")
                .get(id)
                .cloned();
            if let Some(slot) = slot {
                // Re-check under the session lock: activity since the scan keeps it alive.
                let still_expired =
                    slot.state.lock().expect("session lock").expires_at() <= SystemTime::now();
                if still_expired {
                    self.forget(id, Some(&slot), true);
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
        let slot = self.slot(session)?;
        let state = slot.state.lock().expect("session lock");
        let now = SystemTime::now();
        let found = names
            .iter()
            .map(|name| state.variables.view(name, now))
            .collect();
        Ok((found, state.variables.sequence()))
    }

    async fn derived(&self, session: &str) -> Result<Vec<pb::Variable>> {
        let slot = self.slot(session)?;
        let state = slot.state.lock().expect("session lock");
        Ok(state
            .variables
            .derived()
            .map(variables::VariableState::variable)
            .collect())
    }

    async fn list(&self, session: &str, pattern: &Glob) -> Result<(Vec<pb::Variable>, u64)> {
        let slot = self.slot(session)?;
        let state = slot.state.lock().expect("session lock");
        let mut found: Vec<pb::Variable> = state
            .variables
            .views(SystemTime::now())
            .filter(|v| pattern.matches(&v.name))
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((found, state.variables.sequence()))
    }

    async fn write(
        &self,
        session: &str,
        ops: Vec<WriteOp>,
        atomic: bool,
        context: WriteContext,
    ) -> Result<Vec<Result<(pb::Variable, u64)>>> {
        let slot = self.slot(session)?;
        let ops = self.prepare(&slot, ops).await?;
        let mut state = slot.state.lock().expect("session lock");
        state.variables.check_token(
            ops.iter().map(|prepared| &prepared.op),
            &context.lock_token,
            SystemTime::now(),
        )?;
        let (outcomes, changes) =
            state
                .variables
                .apply_prepared(session, ops, atomic, &context, &self.limits);
        MemoryBackend::publish(&slot, &state, &changes);
        Ok(outcomes)
    }

    async fn start_optimization(
        &self,
        session: &str,
        request: LockRequest,
    ) -> Result<pb::StartOptimizationResponse> {
        let slot = self.slot(session)?;
        let mut state = slot.state.lock().expect("session lock");
        state
            .variables
            .start_optimization(session, &request, &self.limits, SystemTime::now())
    }

    async fn stop_optimization(
        &self,
        session: &str,
        token: &str,
        final_values: HashMap<String, pb::Value>,
        context: WriteContext,
    ) -> Result<Vec<pb::Variable>> {
        let slot = self.slot(session)?;
        let mut state = slot.state.lock().expect("session lock");
        let (variables, changes) = state.variables.stop_optimization(
            session,
            token,
            final_values,
            context,
            &self.limits,
        )?;
        MemoryBackend::publish(&slot, &state, &changes);
        Ok(variables)
    }

    async fn history(
        &self,
        session: &str,
        name: &str,
        limit: usize,
    ) -> Result<Vec<pb::VariableVersion>> {
        let slot = self.slot(session)?;
        let state = slot.state.lock().expect("session lock");
        let variable = state
            .variables
            .get(name)
            .ok_or_else(|| BridgeError::variable_not_found(session, name))?;
        Ok(variable.recent_history(limit))
    }

    async fn watch(
        &self,
        session: &str,
        names: Vec<String>,
        start: WatchStart,
    ) -> Result<UpdateStream> {
        let slot = self.slot(session)?;
        let filter: HashSet<String> = names.into_iter().collect();
        let wanted = move |name: &str| filter.is_empty() || filter.contains(name);
        let (prelude, synced_at) = {
            let mut state = slot.state.lock().expect("session lock");
            if state.watchers >= self.limits.max_watchers_per_session {
                return Err(BridgeError::new(
                    ErrorKind::SessionLimitExceeded,
                    format!(
                        "session `{session}` already has the maximum of {} watchers; close one \
                         first",
                        self.limits.max_watchers_per_session
                    ),
                )
                .with("session_id", session)
                .with("limit", self.limits.max_watchers_per_session));
            }
            let current = state.variables.sequence();
            let prelude: Vec<Arc<Change>> = match start {
                WatchStart::Now => Vec::new(),
                WatchStart::Initial => state.variables.initial(&wanted, SystemTime::now()),
                WatchStart::Resume(from) => {
                    if from > current {
                        return Err(BridgeError::invalid_argument(
                            "resume_from_sequence",
                            format!(
                                "cannot resume from sequence {from}: session `{session}` is at {current}"
                            ),
                        ));
                    }
                    match state.variables.changes_after(from, usize::MAX) {
                        Ok(changes) => changes
                            .into_iter()
                            .filter(|change| wanted(&change.definition.name))
                            .collect(),
                        Err(oldest) => {
                            return Err(BridgeError::new(
                                ErrorKind::WatchLagged,
                                format!(
                                    "cannot resume from sequence {from}: the oldest retained change is {oldest}; \
                                     re-subscribe with initial values"
                                ),
                            )
                            .with("last_sequence", from)
                            .with("oldest_retained_sequence", oldest));
                        }
                    }
                }
            };
            state.watchers += 1;
            (prelude, current)
        };
        let (sender, stream) = mpsc::channel(WATCH_QUEUE);
        let session = session.to_owned();
        let watch_buffer = self.limits.watch_buffer;
        tokio::spawn(forward(
            slot,
            session,
            prelude,
            synced_at,
            sender,
            wanted,
            watch_buffer,
        ));
        // The update message is built as the stream is read, one at a time.
        Ok(Box::pin(ReceiverStream::new(stream).map(|item| {
            item.map(|outgoing| match outgoing {
                Outgoing::Change(change) => change.update(),
                Outgoing::Synced(update) => *update,
            })
        })))
    }

    async fn session_count(&self) -> usize {
        self.sessions.read().expect("sessions lock").len()
    }
    async fn stats(&self) -> super::StateStats {
        let slots: Vec<Arc<Slot>> = self
            .sessions
            .read()
            .expect("sessions lock")
            .values()
            .cloned()
            .collect();
        let mut stats = super::StateStats {
            sessions: slots.len(),
            memory_bytes: self.memory_used(),
            ..super::StateStats::default()
        };
        for slot in slots {
            let state = slot.state.lock().expect("session lock");
            stats.variables += state.variables.len();
            stats.watchers += state.watchers;
        }
        stats
    }
    fn session_events(&self) -> SessionEvents {
        self.events.subscribe()
    }
}

/// What a watcher's feeder hands its stream.
enum Outgoing {
    /// A change, shared with the ring.
    Change(Arc<Change>),
    /// The `SYNCED` marker.
    Synced(Box<pb::VariableUpdate>),
}

/// Feeds one watcher: prelude, `SYNCED`, then every later change read from the ring, until
/// the watcher falls behind or the ring no longer holds what it needs next, the session
/// goes away, or the client hangs up.
#[allow(clippy::too_many_arguments)]
async fn forward(
    slot: Arc<Slot>,
    session: String,
    prelude: Vec<Arc<Change>>,
    synced_at: u64,
    sender: mpsc::Sender<Result<Outgoing>>,
    wanted: impl Fn(&str) -> bool + Send,
    watch_buffer: usize,
) {
    let synced = pb::VariableUpdate {
        kind: VariableUpdateKind::Synced as i32,
        sequence: synced_at,
        timestamp: Some(SystemTime::now().into()),
        ..Default::default()
    };
    let mut last = synced_at;
    let mut latest = slot.latest.subscribe();
    let mut removed = slot.removed.subscribe();
    'feed: {
        let prelude = prelude
            .into_iter()
            .map(Outgoing::Change)
            .chain([Outgoing::Synced(Box::new(synced))]);
        for outgoing in prelude {
            if sender.send(Ok(outgoing)).await.is_err() {
                break 'feed;
            }
        }
        loop {
            // Seen before looking, so that a write after the look wakes us.
            latest.borrow_and_update();
            let next = {
                let state = slot.state.lock().expect("session lock");
                let current = state.variables.sequence();
                let behind = current.saturating_sub(last);
                crate::telemetry::metrics::watch_lag(behind);
                if behind > watch_buffer as u64 {
                    Err(BridgeError::new(
                        ErrorKind::WatchLagged,
                        format!(
                            "watcher of session `{session}` fell {behind} updates behind, more than its buffer of {watch_buffer}; \
                             resume from sequence {last}"
                        ),
                    )
                    .with("last_sequence", last)
                    .with("oldest_retained_sequence", state.variables.oldest_retained()))
                } else {
                    state.variables.changes_after(last, WATCH_BATCH).map_err(|oldest| {
                        BridgeError::new(
                            ErrorKind::WatchLagged,
                            format!(
                                "watcher of session `{session}` cannot go on after sequence {last}: the changes after it \
                                 were dropped to stay within the session's retention limits, and the oldest retained \
                                 change is {oldest}; re-subscribe with initial values"
                            ),
                        )
                        .with("last_sequence", last)
                        .with("oldest_retained_sequence", oldest)
                    })
                }
            };
            let error = match next {
                Ok(changes) if changes.is_empty() => {
                    tokio::select! {
                        biased;
                        changed = latest.changed() => {
                            if changed.is_err() {
                                break 'feed;
                            }
                            continue;
                        }
                        () = sender.closed() => break 'feed,
                        _ = removed.wait_for(|gone| *gone) => {}
                    }
                    if slot.expired.load(std::sync::atomic::Ordering::SeqCst) {
                        BridgeError::new(
                            ErrorKind::SessionExpired,
                            format!("session `{session}` expired"),
                        )
                        .with("session_id", &session)
                    } else {
                        BridgeError::session_not_found(&session)
                    }
                }
                Ok(changes) => {
                    for change in changes {
                        last = change.sequence;
                        if wanted(&change.definition.name)
                            && sender.send(Ok(Outgoing::Change(change))).await.is_err()
                        {
                            break 'feed;
                        }
                    }
                    continue;
                }
                Err(error) => error,
            };
            let _ = sender.send(Err(error)).await;
            break 'feed;
        }
    }
    slot.state.lock().expect("session lock").watchers -= 1;
}

#[cfg(test)]
mod tests;
