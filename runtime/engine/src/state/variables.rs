//! The variable rules every backend shares: registration, validated writes, versions,
//! optimistic concurrency, bounded history, rollback, deletion, all-or-nothing batches, the
//! ring of recent changes that watchers read and resume from, and the byte budgets over
//! them. Pure data in, data out; no I/O.
//!
//! A value is stored once ([`Version`] behind an `Arc`) and shared by the current state,
//! the history, the change ring and watchers. A session's bytes are counted by a ledger:
//! each version counts once while a history or ring entry holds it. A change that would go
//! over the session's or the engine's budget first drops the oldest history and ring
//! entries (never a current value); if that is not enough it is refused with
//! `MEMORY_BUDGET_EXCEEDED` and nothing is dropped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use mlbridge_proto::mlbridge::v1::{
    self as pb, Constraints, Value, VariableType, VariableUpdateKind,
};
use prost::Message;

use super::Limits;
use super::budget::{self, Budget, EngineMemory, Scratch};
use super::locks::{LockRequest, Locks};
use super::shared::{self, Change, Definition, Version, Written};
use crate::error::{BridgeError, ErrorKind, Result, clip};
use crate::value;

/// Longest variable name accepted, in characters (names are ASCII).
pub const MAX_NAME_BYTES: usize = 255;
/// Dependencies a variable declares at most.
pub const MAX_DEPENDENCIES: usize = 64;

/// One change to apply.
// Ops live for one request; boxing the large Register variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Create a variable at version 1.
    Register {
        /// Variable name.
        name: String,
        /// Declared type.
        ty: VariableType,
        /// Initial value.
        value: Value,
        /// Validation rules.
        constraints: Constraints,
        /// Free text.
        description: String,
        /// Free-form labels stored on the variable.
        metadata: HashMap<String, String>,
        /// The variables it depends on (each must exist).
        depends_on: Vec<String>,
        /// For a derived variable, the host tool that computed `value`; empty otherwise.
        derived_by: String,
        /// Versions the dependencies must be at (those `value` was computed from).
        guards: Vec<(String, u64)>,
    },
    /// Store a derived variable's recomputed value, as a new version, provided that its
    /// dependencies are at the versions it was computed from (`guards`, as staged by the
    /// earlier ops of the batch), else `VERSION_CONFLICT`.
    Derive {
        /// The derived variable.
        name: String,
        /// Its new value.
        value: Value,
        /// Dependency → the version `value` was computed from.
        guards: Vec<(String, u64)>,
    },
    /// Replace the value, as a new version.
    Set {
        /// Variable name.
        name: String,
        /// New value.
        value: Value,
        /// Fail with `VERSION_CONFLICT` unless the current version is this.
        expected_version: Option<u64>,
    },
    /// Remove the variable and its history.
    Delete {
        /// Variable name.
        name: String,
        /// Fail with `VERSION_CONFLICT` unless the current version is this.
        expected_version: Option<u64>,
    },
    /// Restore an earlier version's value as a new version.
    Rollback {
        /// Variable name.
        name: String,
        /// The retained version whose value to restore.
        target_version: u64,
        /// Fail with `VERSION_CONFLICT` unless the current version is this.
        expected_version: Option<u64>,
    },
}

impl WriteOp {
    /// The variable the op is about.
    pub fn name(&self) -> &str {
        match self {
            WriteOp::Register { name, .. }
            | WriteOp::Derive { name, .. }
            | WriteOp::Set { name, .. }
            | WriteOp::Delete { name, .. }
            | WriteOp::Rollback { name, .. } => name,
        }
    }

    /// The value the op carries, if any, and the type and rules it must satisfy when the
    /// op itself says (a registration).
    pub fn value_mut(&mut self) -> Option<&mut Value> {
        match self {
            WriteOp::Register { value, .. }
            | WriteOp::Set { value, .. }
            | WriteOp::Derive { value, .. } => Some(value),
            WriteOp::Delete { .. } | WriteOp::Rollback { .. } => None,
        }
    }
}

/// The outcome of checking an op's value ahead of the write, away from the session's lock
/// (large values are checked on a blocking thread), against the definition it had then.
#[derive(Debug)]
pub struct Checked {
    /// The type checked against.
    pub ty: VariableType,
    /// The rules checked against.
    pub constraints: Constraints,
    /// The normalised value, or why it was refused.
    pub outcome: Result<Value>,
}

/// An op, with its value checked in advance or not. A checked op's own value has been
/// moved into [`Checked::outcome`].
#[derive(Debug)]
pub struct Prepared {
    /// The op.
    pub op: WriteOp,
    /// Its value's check, if done in advance.
    pub checked: Option<Checked>,
}

impl From<WriteOp> for Prepared {
    fn from(op: WriteOp) -> Self {
        Prepared { op, checked: None }
    }
}

/// Checks the value of `op` against `definition` (the variable's type and rules; for a
/// registration, the op's own), as the write will: the size limit, the definition's
/// validity for a registration, type and constraints. Meant to run away from the session's
/// lock; the write then only compares definitions.
pub fn check_in_advance(
    mut op: WriteOp,
    definition: Option<(VariableType, Constraints)>,
    limits: &Limits,
) -> Prepared {
    let definition = match &op {
        WriteOp::Register {
            ty, constraints, ..
        } => Some((*ty, constraints.clone())),
        _ => definition,
    };
    let Some((ty, constraints)) = definition else {
        return op.into();
    };
    let name = op.name().to_owned();
    let register = matches!(op, WriteOp::Register { .. });
    let Some(value) = op.value_mut().map(std::mem::take) else {
        return op.into();
    };
    let outcome = if register {
        value::check_definition(&name, ty, &constraints)
            .and_then(|()| checked(&name, ty, &constraints, value, limits))
    } else {
        checked(&name, ty, &constraints, value, limits)
    };
    Prepared {
        op,
        checked: Some(Checked {
            ty,
            constraints,
            outcome,
        }),
    }
}

/// Who writes, recorded on history entries and updates.
#[derive(Debug, Clone, Default)]
pub struct WriteContext {
    /// Free-form writer identity, e.g. `python:pid-123`.
    pub source: String,
    /// Labels stored on the history entry and sent with the update.
    pub metadata: HashMap<String, String>,
    /// Token of an optimization lock; required to change a locked variable, empty
    /// otherwise.
    pub lock_token: String,
}

/// A variable: its definition and its retained versions (oldest first; the last is the
/// current one, always present).
#[derive(Debug, Clone)]
pub struct VariableState {
    /// What the variable is.
    pub definition: Arc<Definition>,
    /// Retained versions, oldest first, bounded by the history limit and the budgets.
    pub history: VecDeque<Arc<Version>>,
}

impl VariableState {
    /// Retained versions as `history` answers them: newest first, at most `limit` (0: all).
    pub fn recent_history(&self, limit: usize) -> Vec<pb::VariableVersion> {
        let take = if limit == 0 { usize::MAX } else { limit };
        self.history
            .iter()
            .rev()
            .take(take)
            .map(|version| version.entry())
            .collect()
    }

    /// The current version.
    pub fn current(&self) -> &Arc<Version> {
        self.history
            .back()
            .expect("a variable always retains its current version")
    }

    /// The variable as reads show it, without lock decoration.
    pub fn variable(&self) -> pb::Variable {
        shared::variable(&self.definition, self.current())
    }
}

/// The variables of one session, its change counter, its ring of recent changes and the
/// bytes they hold.
#[derive(Debug)]
pub struct Variables {
    vars: HashMap<String, VariableState>,
    sequence: u64,
    locks: Locks,
    /// Recent changes, oldest first, with consecutive sequence numbers.
    changes: VecDeque<Arc<Change>>,
    /// Bytes counted against the session's budget.
    used: usize,
    /// The engine's count, which this session's bytes are part of.
    engine: Arc<EngineMemory>,
    /// Names of the derived variables, so that a write finds them without a scan.
    derived: std::collections::BTreeSet<String>,
}

impl Default for Variables {
    fn default() -> Self {
        Variables::new(Arc::default())
    }
}

impl Drop for Variables {
    fn drop(&mut self) {
        self.engine.release(self.used);
    }
}

/// The outcome of one op: the variable after it (before, for a delete) and the update.
type Outcomes = Vec<Result<(pb::Variable, u64)>>;

impl Variables {
    /// No variables, counting their bytes into `engine` too.
    pub fn new(engine: Arc<EngineMemory>) -> Self {
        Variables {
            vars: HashMap::new(),
            sequence: 0,
            locks: Locks::default(),
            changes: VecDeque::new(),
            used: 0,
            engine,
            derived: std::collections::BTreeSet::new(),
        }
    }

    /// A session's variables as a backend that stores them outside this process loaded
    /// them: `vars` with their retained histories, at change `sequence`, under `locks`. The
    /// change ring starts empty (such a backend keeps its own change feed); the ledger
    /// counts the histories and definitions, so the session budget applies to what was
    /// loaded.
    pub fn restore(
        engine: Arc<EngineMemory>,
        vars: impl IntoIterator<Item = VariableState>,
        sequence: u64,
        locks: Locks,
    ) -> Self {
        let mut restored = Variables::new(engine);
        restored.sequence = sequence;
        restored.locks = locks;
        let mut used = 0;
        for state in vars {
            used += state.definition.bytes;
            for version in &state.history {
                if version.hold() {
                    used += version.bytes;
                }
            }
            if !state.definition.derived_by.is_empty() {
                restored.derived.insert(state.definition.name.clone());
            }
            restored.vars.insert(state.definition.name.clone(), state);
        }
        restored.used = used;
        restored.engine.add(used);
        restored
    }

    /// The derived variables, by name.
    pub fn derived(&self) -> impl Iterator<Item = &VariableState> {
        self.derived.iter().filter_map(|name| self.vars.get(name))
    }

    /// The current change sequence number (0 before any change).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether there are no variables.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Bytes counted against the session's budget.
    pub fn memory_used(&self) -> usize {
        self.used
    }

    /// A variable by name.
    pub fn get(&self, name: &str) -> Option<&VariableState> {
        self.vars.get(name)
    }

    /// Every variable, unordered.
    pub fn iter(&self) -> impl Iterator<Item = &VariableState> {
        self.vars.values()
    }

    /// The type and rules of a variable, to check a value against ahead of a write.
    pub fn definition_of(&self, name: &str) -> Option<(VariableType, Constraints)> {
        self.vars
            .get(name)
            .map(|state| (state.definition.ty, state.definition.constraints.clone()))
    }

    /// The optimization locks.
    pub fn locks(&self) -> &Locks {
        &self.locks
    }

    /// The sequence of the oldest retained change (the next one when none is retained).
    pub fn oldest_retained(&self) -> u64 {
        self.changes
            .front()
            .map_or(self.sequence + 1, |change| change.sequence)
    }

    /// Up to `max` retained changes after sequence `after`, in order; `Err(oldest
    /// retained)` when some of the changes after it are no longer retained.
    pub fn changes_after(
        &self,
        after: u64,
        max: usize,
    ) -> std::result::Result<Vec<Arc<Change>>, u64> {
        if after >= self.sequence {
            return Ok(Vec::new());
        }
        let oldest = self.oldest_retained();
        if after + 1 < oldest {
            return Err(oldest);
        }
        let skip = usize::try_from(after + 1 - oldest).unwrap_or(usize::MAX);
        Ok(self.changes.iter().skip(skip).take(max).cloned().collect())
    }

    /// The current state of every variable `wanted` keeps, as `INITIAL` changes at the
    /// current sequence, sorted by name.
    pub fn initial(&self, wanted: impl Fn(&str) -> bool, now: SystemTime) -> Vec<Arc<Change>> {
        let mut initial: Vec<Arc<Change>> = self
            .vars
            .values()
            .filter(|state| wanted(&state.definition.name))
            .map(|state| {
                let version = state.current();
                Arc::new(Change {
                    kind: VariableUpdateKind::Initial,
                    sequence: self.sequence,
                    definition: Arc::clone(&state.definition),
                    version: Arc::clone(version),
                    old: None,
                    written: Arc::clone(&version.written),
                    optimizer: self.optimizer(&state.definition.name, now),
                })
            })
            .collect();
        initial.sort_by(|a, b| a.definition.name.cmp(&b.definition.name));
        initial
    }

    fn optimizer(&self, name: &str, now: SystemTime) -> Option<String> {
        self.locks
            .holder(name, now)
            .map(|lock| lock.optimizer_id.clone())
    }

    /// A variable as reads show it: with `optimizing` / `optimizer_id` from the live lock
    /// covering it at `now`.
    pub fn view(&self, name: &str, now: SystemTime) -> Option<pb::Variable> {
        self.vars.get(name).map(|state| {
            let mut variable = state.variable();
            self.locks.decorate(&mut variable, now);
            variable
        })
    }

    /// Every variable as reads show it (see [`Variables::view`]), unordered.
    pub fn views(&self, now: SystemTime) -> impl Iterator<Item = pb::Variable> + '_ {
        self.vars.values().map(move |state| {
            let mut variable = state.variable();
            self.locks.decorate(&mut variable, now);
            variable
        })
    }

    /// Acquires or renews an optimization lock (`StartOptimization`).
    pub fn start_optimization(
        &mut self,
        session_id: &str,
        request: &LockRequest,
        limits: &Limits,
        now: SystemTime,
    ) -> Result<pb::StartOptimizationResponse> {
        if request.renew_token.is_empty() {
            let vars = &self.vars;
            self.locks.acquire(
                request,
                |name| vars.contains_key(name),
                session_id,
                limits.max_locks_per_session,
                now,
            )
        } else {
            self.locks.renew(request, now)
        }
    }

    /// Writes `final_values` atomically under the lock named by `token`, then releases it
    /// (`StopOptimization`). On any failure nothing is written and the lock is kept. The
    /// written variables come back sorted by name, already free of the lock, with the
    /// changes to publish.
    pub fn stop_optimization(
        &mut self,
        session_id: &str,
        token: &str,
        final_values: HashMap<String, Value>,
        context: WriteContext,
        limits: &Limits,
    ) -> Result<(Vec<pb::Variable>, Vec<Arc<Change>>)> {
        let now = SystemTime::now();
        let lock = self.locks.live(token, now)?;
        let mut names: Vec<&String> = final_values.keys().collect();
        names.sort();
        if let Some(stray) = names.iter().find(|n| !lock.variables.contains(**n)) {
            return Err(BridgeError::invalid_argument(
                "final_values",
                format!(
                    "variable `{stray}` is not covered by the lock of optimizer `{}`",
                    lock.optimizer_id
                ),
            )
            .with("variable", stray.as_str()));
        }
        let context = WriteContext {
            source: if context.source.is_empty() {
                format!("optimizer:{}", lock.optimizer_id)
            } else {
                context.source
            },
            lock_token: token.to_owned(),
            metadata: context.metadata,
        };
        let mut final_values = final_values;
        let ops: Vec<Prepared> = {
            let mut names: Vec<String> = final_values.keys().cloned().collect();
            names.sort();
            names
                .into_iter()
                .map(|name| {
                    Prepared::from(WriteOp::Set {
                        value: final_values.remove(&name).unwrap_or_default(),
                        name,
                        expected_version: None,
                    })
                })
                .collect()
        };
        // The lock goes in the same step, so neither the results nor the updates show it.
        let (outcomes, changes) =
            self.apply_at(session_id, ops, true, &context, limits, now, false);
        let mut variables = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            variables.push(outcome?.0);
        }
        self.locks.release(token);
        Ok((variables, changes))
    }

    /// The request-level lock check of a write: a token, when given, must name a live lock
    /// covering every variable the ops change (`LOCK_NOT_HELD` otherwise).
    pub fn check_token<'a>(
        &self,
        ops: impl IntoIterator<Item = &'a WriteOp>,
        token: &str,
        now: SystemTime,
    ) -> Result<()> {
        if token.is_empty() {
            return Ok(());
        }
        for op in ops {
            if !matches!(op, WriteOp::Register { .. }) {
                self.locks.check_write(op.name(), token, now)?;
            }
        }
        self.locks.live(token, now).map(|_| ())
    }

    /// Applies `ops`. Returns per-op outcomes and the committed changes, in order. With
    /// `atomic`, the first failure leaves everything unchanged and becomes every op's
    /// outcome.
    pub fn apply(
        &mut self,
        session_id: &str,
        ops: Vec<WriteOp>,
        atomic: bool,
        context: &WriteContext,
        limits: &Limits,
    ) -> (Outcomes, Vec<Arc<Change>>) {
        let ops = ops.into_iter().map(Prepared::from).collect();
        self.apply_prepared(session_id, ops, atomic, context, limits)
    }

    /// [`Variables::apply`] for ops whose values may have been checked in advance.
    pub fn apply_prepared(
        &mut self,
        session_id: &str,
        ops: Vec<Prepared>,
        atomic: bool,
        context: &WriteContext,
        limits: &Limits,
    ) -> (Outcomes, Vec<Arc<Change>>) {
        self.apply_at(
            session_id,
            ops,
            atomic,
            context,
            limits,
            SystemTime::now(),
            true,
        )
    }

    /// [`Variables::apply`] at `now`; `show_locks` decides whether results and updates show
    /// the locks covering the variables.
    #[allow(clippy::too_many_arguments)]
    fn apply_at(
        &mut self,
        session_id: &str,
        ops: Vec<Prepared>,
        atomic: bool,
        context: &WriteContext,
        limits: &Limits,
        now: SystemTime,
        show_locks: bool,
    ) -> (Outcomes, Vec<Arc<Change>>) {
        let count = ops.len();
        if atomic {
            let names: Vec<String> = ops.iter().map(|p| p.op.name().to_owned()).collect();
            let blame = |err: BridgeError, index: usize| {
                if count > 1 {
                    let name = names.get(index).map_or("", String::as_str);
                    err.with("batch_failed_at", format!("{index} ({name})"))
                } else {
                    err
                }
            };
            let mut staged = Staged::new(&self.vars, &self.locks, now);
            let mut changes = Vec::with_capacity(count);
            for (index, op) in ops.into_iter().enumerate() {
                let sequence = self.sequence + 1 + index as u64;
                match staged.apply(session_id, op, context, limits, sequence) {
                    Ok(change) => changes.push(change),
                    Err(err) => {
                        let err = blame(err, index);
                        return ((0..count).map(|_| Err(err.clone())).collect(), Vec::new());
                    }
                }
            }
            let overlay = staged.overlay;
            match self.commit(session_id, overlay, changes, limits, now, show_locks) {
                Ok(done) => done,
                Err(err) => {
                    // A batch that does not fit as a whole: its last write is the one that
                    // would have gone over.
                    let err = blame(err, count.saturating_sub(1));
                    ((0..count).map(|_| Err(err.clone())).collect(), Vec::new())
                }
            }
        } else {
            let mut outcomes = Vec::with_capacity(count);
            let mut committed = Vec::new();
            for op in ops {
                let mut staged = Staged::new(&self.vars, &self.locks, now);
                let change = staged.apply(session_id, op, context, limits, self.sequence + 1);
                let overlay = staged.overlay;
                match change.and_then(|change| {
                    self.commit(session_id, overlay, vec![change], limits, now, show_locks)
                }) {
                    Ok((mut results, mut changes)) => {
                        outcomes.append(&mut results);
                        committed.append(&mut changes);
                    }
                    Err(err) => outcomes.push(Err(err)),
                }
            }
            (outcomes, committed)
        }
    }

    /// Commits staged changes: makes room within the budgets by dropping the oldest
    /// history and ring entries (or refuses, changing nothing), then stores the variables,
    /// numbers the changes and records them in the ring.
    fn commit(
        &mut self,
        session_id: &str,
        mut overlay: HashMap<String, Option<VariableState>>,
        changes: Vec<Change>,
        limits: &Limits,
        now: SystemTime,
        show_locks: bool,
    ) -> Result<(Outcomes, Vec<Arc<Change>>)> {
        // The ledger's dry run: the bytes the session would hold after the changes.
        let mut scratch = Scratch::default();
        let mut delta: isize = 0;
        for (name, new) in &overlay {
            let old = self.vars.get(name);
            let (added, removed) = history_diff(old, new.as_ref());
            for version in added {
                delta += scratch.adjust(version, 1);
            }
            for version in removed {
                delta += scratch.adjust(version, -1);
            }
            delta += definition_delta(old, new.as_ref());
        }
        for change in &changes {
            for version in change.versions() {
                delta += scratch.adjust(version, 1);
            }
            delta += change.bytes() as isize;
        }
        let retained = limits.retained_changes.max(1);
        let dropped = (self.changes.len() + changes.len())
            .saturating_sub(retained)
            .min(self.changes.len());
        for change in self.changes.iter().take(dropped) {
            for version in change.versions() {
                delta += scratch.adjust(version, -1);
            }
            delta -= change.bytes() as isize;
        }
        let requested = delta;

        // Over a budget: plan to drop the oldest entries, history and ring alike.
        let engine_used = self.engine.used();
        let used = self.used;
        let over = |delta: isize| -> Option<Budget> {
            if delta <= 0 {
                None
            } else if used.saturating_add(delta as usize) > limits.session_memory_bytes {
                Some(Budget::Session)
            } else if engine_used.saturating_add(delta as usize) > limits.engine_memory_bytes {
                Some(Budget::Engine)
            } else {
                None
            }
        };
        let mut evict_ring = 0;
        let mut evict_history: Vec<(String, usize)> = Vec::new();
        if over(delta).is_some() {
            let histories: Vec<(&String, &VecDeque<Arc<Version>>)> = overlay
                .iter()
                .filter_map(|(name, state)| state.as_ref().map(|s| (name, &s.history)))
                .chain(
                    self.vars
                        .iter()
                        .filter(|(name, _)| !overlay.contains_key(*name))
                        .map(|(name, s)| (name, &s.history)),
                )
                .collect();
            // (sequence, 0 for the ring / 1 for a history, which history, position)
            let mut heap = BinaryHeap::new();
            if let Some(change) = self.changes.get(dropped) {
                heap.push(Reverse((change.sequence, 0u8, 0usize, dropped)));
            }
            for (index, (_, history)) in histories.iter().enumerate() {
                if history.len() > 1 {
                    heap.push(Reverse((history[0].sequence, 1u8, index, 0usize)));
                }
            }
            let mut evicted = vec![0usize; histories.len()];
            while over(delta).is_some() {
                let Some(Reverse((_, which, index, position))) = heap.pop() else {
                    break;
                };
                if which == 0 {
                    let change = &self.changes[position];
                    for version in change.versions() {
                        delta += scratch.adjust(version, -1);
                    }
                    delta -= change.bytes() as isize;
                    evict_ring += 1;
                    if let Some(next) = self.changes.get(position + 1) {
                        heap.push(Reverse((next.sequence, 0, 0, position + 1)));
                    }
                } else {
                    let history = histories[index].1;
                    delta += scratch.adjust(&history[position], -1);
                    evicted[index] += 1;
                    // The current version stays.
                    if position + 2 < history.len() {
                        let next = &history[position + 1];
                        heap.push(Reverse((next.sequence, 1, index, position + 1)));
                    }
                }
            }
            if let Some(budget) = over(delta) {
                let (limit, held) = match budget {
                    Budget::Session => (limits.session_memory_bytes, used),
                    Budget::Engine => (limits.engine_memory_bytes, engine_used),
                };
                return Err(budget::exceeded(
                    budget,
                    session_id,
                    &describe(&changes),
                    requested.max(0) as usize,
                    limit,
                    held.saturating_add(delta.max(0) as usize),
                ));
            }
            evict_history = histories
                .iter()
                .zip(evicted)
                .filter(|(_, n)| *n > 0)
                .map(|((name, _), n)| ((*name).clone(), n))
                .collect();
        }
        if delta > 0
            && !self
                .engine
                .reserve(delta as usize, limits.engine_memory_bytes)
        {
            // Another session took the room meanwhile.
            return Err(budget::exceeded(
                Budget::Engine,
                session_id,
                &describe(&changes),
                delta as usize,
                limits.engine_memory_bytes,
                self.engine.used().saturating_add(delta as usize),
            ));
        }
        drop(scratch);

        // Carry it out. Dropped history entries of untouched variables are released here;
        // those of touched ones fall out of the history difference below.
        let mut released: Vec<Arc<Version>> = Vec::new();
        for (name, count) in evict_history {
            let touched = overlay.contains_key(&name);
            let state = match overlay.get_mut(&name) {
                Some(Some(state)) => state,
                _ => self
                    .vars
                    .get_mut(&name)
                    .expect("an evicted variable exists"),
            };
            for _ in 0..count {
                if let Some(version) = state.history.pop_front()
                    && !touched
                {
                    released.push(version);
                }
            }
        }
        let before = self.used as isize;
        let mut used = before;
        let mut removed_versions = Vec::new();
        for (name, new) in &overlay {
            let old = self.vars.get(name);
            let (added, removed) = history_diff(old, new.as_ref());
            for version in added {
                if version.hold() {
                    used += version.bytes as isize;
                }
            }
            removed_versions.extend(removed.into_iter().cloned());
            used += definition_delta(old, new.as_ref());
        }
        let changes: Vec<Change> = changes;
        for change in &changes {
            for version in change.versions() {
                if version.hold() {
                    used += version.bytes as isize;
                }
            }
            used += change.bytes() as isize;
        }
        for version in removed_versions.iter().chain(&released) {
            if version.release() {
                used -= version.bytes as isize;
            }
        }
        for _ in 0..dropped + evict_ring {
            if let Some(change) = self.changes.pop_front() {
                for version in change.versions() {
                    if version.release() {
                        used -= version.bytes as isize;
                    }
                }
                used -= change.bytes() as isize;
            }
        }
        debug_assert_eq!(used - before, delta, "the ledger agrees with its dry run");
        self.used = used.max(0) as usize;
        if delta < 0 {
            self.engine.release(delta.unsigned_abs());
        }

        for (name, state) in overlay {
            match state {
                Some(state) => {
                    if state.definition.derived_by.is_empty() {
                        self.derived.remove(&name);
                    } else {
                        self.derived.insert(name.clone());
                    }
                    self.vars.insert(name, state);
                }
                None => {
                    self.derived.remove(&name);
                    self.vars.remove(&name);
                    // Deleting a variable frees it from its lock.
                    self.locks.forget_variable(&name);
                }
            }
        }
        let mut outcomes = Vec::with_capacity(changes.len());
        let mut committed = Vec::with_capacity(changes.len());
        for mut change in changes {
            self.sequence += 1;
            debug_assert_eq!(change.sequence, self.sequence);
            change.sequence = self.sequence;
            if show_locks {
                change.optimizer = self.optimizer(&change.definition.name, now);
            }
            let mut variable = shared::variable(&change.definition, &change.version);
            if let Some(optimizer) = &change.optimizer {
                variable.optimizing = true;
                variable.optimizer_id.clone_from(optimizer);
            }
            outcomes.push(Ok((variable, self.sequence)));
            let change = Arc::new(change);
            self.changes.push_back(Arc::clone(&change));
            committed.push(change);
        }
        // A batch larger than the ring keeps only its newest changes.
        while self.changes.len() > retained {
            if let Some(change) = self.changes.pop_front() {
                let mut freed = 0;
                for version in change.versions() {
                    if version.release() {
                        freed += version.bytes;
                    }
                }
                freed += change.bytes();
                self.used = self.used.saturating_sub(freed);
                self.engine.release(freed);
            }
        }
        Ok((outcomes, committed))
    }
}

/// Versions `(added, removed)` between two histories.
type HistoryDiff<'a> = (Vec<&'a Arc<Version>>, Vec<&'a Arc<Version>>);

/// Versions in `new`'s history but not `old`'s, and the other way round.
fn history_diff<'a>(
    old: Option<&'a VariableState>,
    new: Option<&'a VariableState>,
) -> HistoryDiff<'a> {
    if let (Some(old), Some(new)) = (old, new)
        && let Some(diff) = history_shift(&old.history, &new.history)
    {
        return diff;
    }
    let set = |state: Option<&'a VariableState>| -> HashSet<*const Version> {
        state
            .map(|s| s.history.iter().map(Arc::as_ptr).collect())
            .unwrap_or_default()
    };
    let (old_set, new_set) = (set(old), set(new));
    let added = new
        .map(|s| {
            s.history
                .iter()
                .filter(|v| !old_set.contains(&Arc::as_ptr(v)))
                .collect()
        })
        .unwrap_or_default();
    let removed = old
        .map(|s| {
            s.history
                .iter()
                .filter(|v| !new_set.contains(&Arc::as_ptr(v)))
                .collect()
        })
        .unwrap_or_default();
    (added, removed)
}

/// The diff of a write's usual change to a history, found with pointer comparisons alone:
/// a history only grows at the back and is trimmed at the front, so `new` is `old` without
/// its first few entries and with some appended. `None` when `new` is not of that shape
/// (the general diff then applies).
fn history_shift<'a>(
    old: &'a VecDeque<Arc<Version>>,
    new: &'a VecDeque<Arc<Version>>,
) -> Option<HistoryDiff<'a>> {
    let first = new.front()?;
    let dropped = old.iter().position(|v| Arc::ptr_eq(v, first))?;
    let kept = old.len() - dropped;
    if kept > new.len()
        || !old
            .iter()
            .skip(dropped)
            .zip(new)
            .all(|(a, b)| Arc::ptr_eq(a, b))
    {
        return None;
    }
    Some((
        new.iter().skip(kept).collect(),
        old.iter().take(dropped).collect(),
    ))
}

/// The change in definition bytes when a variable goes from `old` to `new`.
fn definition_delta(old: Option<&VariableState>, new: Option<&VariableState>) -> isize {
    let bytes = |state: Option<&VariableState>| state.map_or(0, |s| s.definition.bytes as isize);
    match (old, new) {
        (Some(old), Some(new)) if Arc::ptr_eq(&old.definition, &new.definition) => 0,
        _ => bytes(new) - bytes(old),
    }
}

/// What a refused change was, for its error message.
fn describe(changes: &[Change]) -> String {
    match changes {
        [change] => format!(
            "the new version of variable `{}`",
            crate::error::clip(&change.definition.name)
        ),
        _ => format!("a batch of {} writes", changes.len()),
    }
}

/// The position of the write that failed an atomic batch, from the error's
/// `batch_failed_at` context (`"{index} ({name})"`); `None` for a batch of one write.
pub fn failed_index(error: &BridgeError) -> Option<usize> {
    error
        .context
        .get("batch_failed_at")?
        .split_once(' ')?
        .0
        .parse()
        .ok()
}

/// Changes staged over the committed variables, read through by later ops of a batch.
struct Staged<'a> {
    base: &'a HashMap<String, VariableState>,
    locks: &'a Locks,
    overlay: HashMap<String, Option<VariableState>>,
    now: SystemTime,
}

impl<'a> Staged<'a> {
    fn new(base: &'a HashMap<String, VariableState>, locks: &'a Locks, now: SystemTime) -> Self {
        Staged {
            base,
            locks,
            overlay: HashMap::new(),
            now,
        }
    }

    fn current(&self, name: &str) -> Option<&VariableState> {
        match self.overlay.get(name) {
            Some(staged) => staged.as_ref(),
            None => self.base.get(name),
        }
    }

    fn count(&self) -> usize {
        let added = self
            .overlay
            .iter()
            .filter(|(k, v)| v.is_some() && !self.base.contains_key(*k))
            .count();
        let removed = self
            .overlay
            .iter()
            .filter(|(k, v)| v.is_none() && self.base.contains_key(*k))
            .count();
        self.base.len() + added - removed
    }

    /// The variable to change: it exists, no lock forbids the write, and it is at the
    /// expected version.
    /// `VERSION_CONFLICT` unless every dependency is at the version a derived value was
    /// computed from.
    fn check_guards(
        &self,
        session_id: &str,
        derived: &str,
        guards: &[(String, u64)],
    ) -> Result<()> {
        for (input, expected) in guards {
            let current = self
                .current(input)
                .ok_or_else(|| BridgeError::variable_not_found(session_id, input))?
                .current()
                .number;
            if current != *expected {
                return Err(BridgeError::new(
                    ErrorKind::VersionConflict,
                    format!(
                        "input `{input}` of derived variable `{derived}` changed while it was \
                         computed (version {current}, computed from {expected})"
                    ),
                )
                .with("variable", derived)
                .with("guard", input)
                .with("expected_version", expected)
                .with("current_version", current));
            }
        }
        Ok(())
    }

    /// The variables that depend on `name`, sorted.
    fn dependents(&self, name: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .base
            .keys()
            .chain(self.overlay.keys())
            .filter(|other| other.as_str() != name)
            .filter(|other| {
                self.current(other)
                    .is_some_and(|s| s.definition.depends_on.iter().any(|d| d == name))
            })
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Checks the dependencies a new variable declares: they exist (so no cycle can form),
    /// are distinct, and are not the variable itself.
    fn check_dependencies(
        &self,
        session_id: &str,
        name: &str,
        depends_on: &[String],
    ) -> Result<()> {
        if depends_on.len() > MAX_DEPENDENCIES {
            return Err(BridgeError::invalid_argument(
                "depends_on",
                format!(
                    "variable `{name}` declares {} dependencies, over the limit of {MAX_DEPENDENCIES}",
                    depends_on.len()
                ),
            )
            .with("variable", name));
        }
        let mut seen = std::collections::HashSet::new();
        for input in depends_on {
            if input == name {
                return Err(BridgeError::invalid_argument(
                    "depends_on",
                    format!(
                        "dependency cycle: `{name}` → `{name}` (a variable cannot depend on itself)"
                    ),
                )
                .with("variable", name)
                .with("cycle", format!("{name} -> {name}")));
            }
            if !seen.insert(input.as_str()) {
                return Err(BridgeError::invalid_argument(
                    "depends_on",
                    format!("variable `{name}` names dependency `{}` twice", clip(input)),
                )
                .with("variable", name));
            }
            if self.current(input).is_none() {
                return Err(BridgeError::new(
                    ErrorKind::VariableNotFound,
                    format!(
                        "variable `{name}` depends on `{}`, which does not exist in session \
                         `{}`; register it first (so dependencies never form a cycle)",
                        clip(input),
                        clip(session_id)
                    ),
                )
                .with("variable", name)
                .with("dependency", input));
            }
        }
        Ok(())
    }

    fn existing(
        &self,
        session_id: &str,
        name: &str,
        expected: Option<u64>,
        token: &str,
    ) -> Result<VariableState> {
        let state = self
            .current(name)
            .ok_or_else(|| BridgeError::variable_not_found(session_id, name))?;
        self.locks.check_write(name, token, self.now)?;
        let current = state.current().number;
        if let Some(expected) = expected
            && expected != current
        {
            return Err(BridgeError::new(
                ErrorKind::VersionConflict,
                format!(
                    "variable `{name}` is at version {current}, not the expected version {expected}"
                ),
            )
            .with("variable", name)
            .with("expected_version", expected)
            .with("current_version", current));
        }
        Ok(state.clone())
    }

    fn apply(
        &mut self,
        session_id: &str,
        prepared: Prepared,
        context: &WriteContext,
        limits: &Limits,
        sequence: u64,
    ) -> Result<Change> {
        let Prepared { op, checked: pre } = prepared;
        let written = Arc::new(Written {
            source: context.source.clone(),
            metadata: context.metadata.clone(),
            timestamp: Some(prost_types::Timestamp::from(self.now)),
        });
        let version = |number: u64, value: Arc<Value>, kind: VariableUpdateKind, restored: u64| {
            Arc::new(Version::new(
                number,
                value,
                kind,
                restored,
                Arc::clone(&written),
                sequence,
            ))
        };
        match op {
            WriteOp::Register {
                name,
                ty,
                value,
                constraints,
                description,
                metadata,
                depends_on,
                derived_by,
                guards,
            } => {
                check_name(&name)?;
                if self.current(&name).is_some() {
                    return Err(BridgeError::new(
                        ErrorKind::VariableAlreadyExists,
                        format!("variable `{name}` already exists in session `{session_id}`"),
                    )
                    .with("variable", &name));
                }
                if self.count() >= limits.max_variables_per_session {
                    return Err(BridgeError::new(
                        ErrorKind::InvalidArgument,
                        format!(
                            "session `{session_id}` already holds the maximum of {} variables",
                            limits.max_variables_per_session
                        ),
                    )
                    .with("limit", limits.max_variables_per_session));
                }
                self.check_dependencies(session_id, &name, &depends_on)?;
                if !derived_by.is_empty() && depends_on.is_empty() {
                    return Err(BridgeError::invalid_argument(
                        "depends_on",
                        format!(
                            "derived variable `{name}` needs the variables it is computed from"
                        ),
                    )
                    .with("variable", &name));
                }
                self.check_guards(session_id, &name, &guards)?;
                let value = match pre {
                    Some(checked) => checked.outcome?,
                    None => {
                        value::check_definition(&name, ty, &constraints)?;
                        checked(&name, ty, &constraints, value, limits)?
                    }
                };
                let mut definition = Definition::new(
                    name.clone(),
                    ty,
                    constraints,
                    description,
                    metadata,
                    written.timestamp,
                );
                definition.bytes +=
                    depends_on.iter().map(String::len).sum::<usize>() + derived_by.len();
                definition.depends_on = depends_on;
                definition.derived_by = derived_by;
                let definition = Arc::new(definition);
                let first = version(1, Arc::new(value), VariableUpdateKind::Registered, 0);
                self.overlay.insert(
                    name,
                    Some(VariableState {
                        definition: Arc::clone(&definition),
                        history: VecDeque::from([Arc::clone(&first)]),
                    }),
                );
                Ok(Change {
                    kind: VariableUpdateKind::Registered,
                    sequence,
                    definition,
                    version: first,
                    old: None,
                    written,
                    optimizer: None,
                })
            }
            WriteOp::Set {
                name,
                value,
                expected_version,
            } => {
                let mut state =
                    self.existing(session_id, &name, expected_version, &context.lock_token)?;
                refuse_derived(&state.definition)?;
                let definition = Arc::clone(&state.definition);
                let value = match pre {
                    Some(c) if c.ty == definition.ty && c.constraints == definition.constraints => {
                        c.outcome?
                    }
                    // Checked against a definition that has changed since (the variable was
                    // deleted and registered again): check the normalised value again.
                    Some(c) => checked(
                        &name,
                        definition.ty,
                        &definition.constraints,
                        c.outcome?,
                        limits,
                    )?,
                    None => checked(&name, definition.ty, &definition.constraints, value, limits)?,
                };
                let old = Arc::clone(state.current());
                let new = version(old.number + 1, Arc::new(value), VariableUpdateKind::Set, 0);
                push_history(&mut state, Arc::clone(&new), limits);
                self.overlay.insert(name, Some(state));
                Ok(Change {
                    kind: VariableUpdateKind::Set,
                    sequence,
                    definition,
                    version: new,
                    old: Some(old),
                    written,
                    optimizer: None,
                })
            }
            WriteOp::Derive {
                name,
                value,
                guards,
            } => {
                let mut state = self
                    .current(&name)
                    .cloned()
                    .ok_or_else(|| BridgeError::variable_not_found(session_id, &name))?;
                self.check_guards(session_id, &name, &guards)?;
                let definition = Arc::clone(&state.definition);
                let value = match pre {
                    Some(c) if c.ty == definition.ty && c.constraints == definition.constraints => {
                        c.outcome?
                    }
                    Some(c) => checked(
                        &name,
                        definition.ty,
                        &definition.constraints,
                        c.outcome?,
                        limits,
                    )?,
                    None => checked(&name, definition.ty, &definition.constraints, value, limits)?,
                };
                let derived = Arc::new(Written {
                    source: format!("derived:{}", definition.derived_by),
                    metadata: context.metadata.clone(),
                    timestamp: written.timestamp,
                });
                let old = Arc::clone(state.current());
                let new = Arc::new(Version::new(
                    old.number + 1,
                    Arc::new(value),
                    VariableUpdateKind::Set,
                    0,
                    Arc::clone(&derived),
                    sequence,
                ));
                push_history(&mut state, Arc::clone(&new), limits);
                self.overlay.insert(name, Some(state));
                Ok(Change {
                    kind: VariableUpdateKind::Set,
                    sequence,
                    definition,
                    version: new,
                    old: Some(old),
                    written: derived,
                    optimizer: None,
                })
            }
            WriteOp::Delete {
                name,
                expected_version,
            } => {
                let state =
                    self.existing(session_id, &name, expected_version, &context.lock_token)?;
                let dependents = self.dependents(&name);
                if !dependents.is_empty() {
                    let listed: Vec<String> = dependents.iter().map(|d| format!("`{d}`")).collect();
                    return Err(BridgeError::new(
                        ErrorKind::VariableInUse,
                        format!(
                            "variable `{name}` cannot be deleted: {} depend{} on it; delete {} first",
                            listed.join(", "),
                            if dependents.len() == 1 { "s" } else { "" },
                            if dependents.len() == 1 { "it" } else { "them" },
                        ),
                    )
                    .with("variable", &name)
                    .with("dependents", dependents.join(",")));
                }
                self.overlay.insert(name, None);
                Ok(Change {
                    kind: VariableUpdateKind::Deleted,
                    sequence,
                    definition: Arc::clone(&state.definition),
                    version: Arc::clone(state.current()),
                    old: None,
                    written,
                    optimizer: None,
                })
            }
            WriteOp::Rollback {
                name,
                target_version,
                expected_version,
            } => {
                let mut state =
                    self.existing(session_id, &name, expected_version, &context.lock_token)?;
                refuse_derived(&state.definition)?;
                let Some(target) = state
                    .history
                    .iter()
                    .find(|v| v.number == target_version)
                    .cloned()
                else {
                    let oldest = state.history.front().map_or(0, |v| v.number);
                    return Err(BridgeError::invalid_argument(
                        "target_version",
                        format!(
                            "version {target_version} of variable `{name}` is not retained (retained: {oldest} to {})",
                            state.current().number
                        ),
                    )
                    .with("variable", &name)
                    .with("oldest_retained_version", oldest));
                };
                let old = Arc::clone(state.current());
                let new = version(
                    old.number + 1,
                    Arc::clone(&target.value),
                    VariableUpdateKind::RolledBack,
                    target_version,
                );
                push_history(&mut state, Arc::clone(&new), limits);
                let definition = Arc::clone(&state.definition);
                self.overlay.insert(name, Some(state));
                Ok(Change {
                    kind: VariableUpdateKind::RolledBack,
                    sequence,
                    definition,
                    version: new,
                    old: Some(old),
                    written,
                    optimizer: None,
                })
            }
        }
    }
}

/// `INVALID_ARGUMENT` for a client write to a derived variable.
fn refuse_derived(definition: &Definition) -> Result<()> {
    if definition.derived_by.is_empty() {
        return Ok(());
    }
    let inputs: Vec<String> = definition
        .depends_on
        .iter()
        .map(|d| format!("`{d}`"))
        .collect();
    Err(BridgeError::invalid_argument(
        "name",
        format!(
            "variable `{}` is derived: tool `{}` computes it from {}; write those instead",
            definition.name,
            definition.derived_by,
            inputs.join(", ")
        ),
    )
    .with("variable", &definition.name)
    .with("derived_by", &definition.derived_by))
}

fn push_history(state: &mut VariableState, version: Arc<Version>, limits: &Limits) {
    state.history.push_back(version);
    while state.history.len() > limits.history_per_variable.max(1) {
        state.history.pop_front();
    }
}

/// Size limit first (cheap and protects the validator), then type and constraints.
fn checked(
    name: &str,
    ty: VariableType,
    constraints: &Constraints,
    value: Value,
    limits: &Limits,
) -> Result<Value> {
    let size = value.encoded_len();
    if size > limits.max_value_bytes {
        return Err(BridgeError::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "value of variable `{name}` is {size} bytes, over the limit of {} bytes",
                limits.max_value_bytes
            ),
        )
        .with("variable", name)
        .with("limit_bytes", limits.max_value_bytes));
    }
    let mut value = value::validate(value::Subject::Variable(name), ty, constraints, value)?;
    own_buffers(&mut value);
    Ok(value)
}

/// Gives every binary field of a value to be stored an allocation of its own. A value
/// decoded from a request shares the request's whole receive buffer, which may be far
/// larger than the field (a batch, or a buffer grown by doubling); stored as it is, a small
/// slice would keep the whole buffer alive for as long as the version is retained, out of
/// the budgets' sight.
fn own_buffers(value: &mut Value) {
    use pb::value::Kind;
    match &mut value.kind {
        Some(Kind::BytesValue(bytes)) => *bytes = prost::bytes::Bytes::copy_from_slice(bytes),
        Some(Kind::TensorValue(tensor)) => {
            tensor.data = prost::bytes::Bytes::copy_from_slice(&tensor.data);
        }
        Some(Kind::ListValue(list)) => list.values.iter_mut().for_each(own_buffers),
        Some(Kind::MapValue(map)) => map.entries.values_mut().for_each(own_buffers),
        Some(Kind::ModuleValue(module)) => module.config.values_mut().for_each(own_buffers),
        _ => {}
    }
}

/// Variable names, as `ml_bridge.proto` defines them: `[A-Za-z_][A-Za-z0-9_.:/-]{0,254}`,
/// so they never contain glob characters or spaces.
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.:/-".contains(c))
        && name.len() <= MAX_NAME_BYTES;
    if valid {
        return Ok(());
    }
    let shown: String = name.chars().take(40).collect();
    let shown = if shown.len() < name.len() {
        format!("{shown}...")
    } else {
        shown
    };
    let message = if name.is_empty() {
        "a variable name cannot be empty".to_owned()
    } else {
        format!(
            "invalid variable name {shown:?}: a name starts with a letter or `_` and continues with letters, \
             digits or `_.:/-`, at most {MAX_NAME_BYTES} characters"
        )
    };
    Err(BridgeError::invalid_argument("name", message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlbridge_proto::mlbridge::v1::value::Kind;

    #[test]
    fn the_shift_diff_agrees_with_the_general_one_and_declines_other_shapes() {
        let versions: Vec<Arc<Version>> = (0..8)
            .map(|n| {
                Arc::new(Version::new(
                    n,
                    Arc::new(int(n as i64)),
                    VariableUpdateKind::Set,
                    0,
                    Arc::default(),
                    n,
                ))
            })
            .collect();
        let history = |range: std::ops::Range<usize>| -> VecDeque<Arc<Version>> {
            versions[range].iter().cloned().collect()
        };
        let numbers = |list: Vec<&Arc<Version>>| list.iter().map(|v| v.number).collect::<Vec<_>>();
        // Appended two, trimmed one; appended only; trimmed only; unchanged.
        for (old, new, added, removed) in [
            (0..4, 1..6, vec![4, 5], vec![0]),
            (0..4, 0..5, vec![4], vec![]),
            (0..4, 2..4, vec![], vec![0, 1]),
            (0..4, 0..4, vec![], vec![]),
        ] {
            let (old, new) = (history(old), history(new));
            let (a, r) = history_shift(&old, &new).expect("a shift");
            assert_eq!((numbers(a), numbers(r)), (added, removed));
        }
        // Not a shift: all replaced, a gap, an empty side.
        assert!(history_shift(&history(0..3), &history(4..6)).is_none());
        let gap: VecDeque<_> = [0, 2].iter().map(|&i| Arc::clone(&versions[i])).collect();
        assert!(history_shift(&history(0..3), &gap).is_none());
        assert!(history_shift(&history(0..3), &VecDeque::new()).is_none());
    }

    fn int(v: i64) -> Value {
        Value {
            kind: Some(Kind::IntValue(v)),
        }
    }

    fn register(name: &str, v: i64) -> WriteOp {
        WriteOp::Register {
            name: name.into(),
            ty: VariableType::Integer,
            value: int(v),
            constraints: Constraints {
                max: Some(100.0),
                ..Default::default()
            },
            description: String::new(),
            metadata: HashMap::new(),
            depends_on: Vec::new(),
            derived_by: String::new(),
            guards: Vec::new(),
        }
    }

    fn set(name: &str, v: i64) -> WriteOp {
        WriteOp::Set {
            name: name.into(),
            value: int(v),
            expected_version: None,
        }
    }

    #[test]
    fn versions_history_and_rollback() {
        let mut vars = Variables::default();
        let limits = Limits {
            history_per_variable: 3,
            ..Limits::default()
        };
        let ctx = WriteContext::default();
        vars.apply("s", vec![register("x", 1)], false, &ctx, &limits);
        for v in 2..=5 {
            let (out, _) = vars.apply("s", vec![set("x", v)], false, &ctx, &limits);
            assert_eq!(out[0].as_ref().unwrap().0.version, v as u64);
        }
        let history: Vec<u64> = vars
            .get("x")
            .unwrap()
            .history
            .iter()
            .map(|e| e.number)
            .collect();
        assert_eq!(history, vec![3, 4, 5]);
        let (out, _) = vars.apply(
            "s",
            vec![WriteOp::Rollback {
                name: "x".into(),
                target_version: 1,
                expected_version: None,
            }],
            false,
            &ctx,
            &limits,
        );
        assert!(
            out[0]
                .as_ref()
                .unwrap_err()
                .message
                .contains("not retained")
        );
        let (out, updates) = vars.apply(
            "s",
            vec![WriteOp::Rollback {
                name: "x".into(),
                target_version: 3,
                expected_version: Some(5),
            }],
            false,
            &ctx,
            &limits,
        );
        let (variable, sequence) = out[0].as_ref().unwrap();
        assert_eq!(
            (variable.version, variable.value.clone()),
            (6, Some(int(3)))
        );
        assert_eq!(*sequence, 6);
        assert_eq!(updates[0].kind, VariableUpdateKind::RolledBack);
    }

    #[test]
    fn atomic_batches_are_all_or_nothing() {
        let mut vars = Variables::default();
        let limits = Limits::default();
        let ctx = WriteContext::default();
        vars.apply(
            "s",
            vec![register("a", 1), register("b", 1)],
            true,
            &ctx,
            &limits,
        );
        let (out, updates) =
            vars.apply("s", vec![set("a", 2), set("b", 1000)], true, &ctx, &limits);
        assert!(
            out.iter()
                .all(|o| o.as_ref().unwrap_err().kind == ErrorKind::ConstraintViolation)
        );
        assert!(updates.is_empty());
        assert_eq!(vars.get("a").unwrap().current().number, 1);
        assert_eq!(vars.sequence(), 2);
        // Later ops of a batch see earlier ones.
        let (out, _) = vars.apply(
            "s",
            vec![
                set("a", 2),
                WriteOp::Set {
                    name: "a".into(),
                    value: int(3),
                    expected_version: Some(2),
                },
            ],
            true,
            &ctx,
            &limits,
        );
        assert!(out.iter().all(Result::is_ok));
        assert_eq!(vars.get("a").unwrap().current().number, 3);
    }

    #[test]
    fn expected_version_conflicts() {
        let mut vars = Variables::default();
        let limits = Limits::default();
        let ctx = WriteContext::default();
        vars.apply("s", vec![register("a", 1)], false, &ctx, &limits);
        let op = WriteOp::Set {
            name: "a".into(),
            value: int(2),
            expected_version: Some(7),
        };
        let (out, _) = vars.apply("s", vec![op], false, &ctx, &limits);
        let err = out[0].as_ref().unwrap_err();
        assert_eq!(err.kind, ErrorKind::VersionConflict);
        assert_eq!(err.context["current_version"], "1");
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn names_follow_the_proto_syntax() {
        for good in ["temperature", "_x", "model.temperature", "a:b/c-d_9"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "9lives",
            "a*b",
            "with space",
            "é",
            &"€".repeat(100),
            &"a".repeat(256),
        ] {
            let err = check_name(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidArgument, "{bad}");
        }
        assert!(check_name(&"a".repeat(255)).is_ok());
    }
}

#[cfg(test)]
mod budget_tests {
    //! The byte budgets: the oldest history and ring entries go first, current values never,
    //! a write that cannot fit is refused with the named budget and drops nothing, and the
    //! engine-wide count spans sessions.
    use super::*;
    use mlbridge_proto::mlbridge::v1::value::Kind;

    /// Encoded size of `blob(_, n)`, about `n`.
    const N: usize = 10_000;

    fn blob(marker: u8, n: usize) -> Value {
        Value {
            kind: Some(Kind::BytesValue(vec![marker; n].into())),
        }
    }

    fn register(name: &str, marker: u8) -> WriteOp {
        WriteOp::Register {
            name: name.into(),
            ty: VariableType::Bytes,
            value: blob(marker, N),
            constraints: Constraints::default(),
            description: String::new(),
            metadata: HashMap::new(),
            depends_on: Vec::new(),
            derived_by: String::new(),
            guards: Vec::new(),
        }
    }

    fn set(name: &str, marker: u8, n: usize) -> WriteOp {
        WriteOp::Set {
            name: name.into(),
            value: blob(marker, n),
            expected_version: None,
        }
    }

    /// Room for `values` versions of `N` bytes, with their bookkeeping.
    fn limits(values: f64) -> Limits {
        Limits {
            session_memory_bytes: (values * (N + 400) as f64) as usize,
            ..Limits::default()
        }
    }

    fn apply(vars: &mut Variables, op: WriteOp, limits: &Limits) -> Result<(pb::Variable, u64)> {
        let (mut out, _) = vars.apply("s", vec![op], true, &WriteContext::default(), limits);
        out.remove(0)
    }

    fn versions(vars: &Variables, name: &str) -> Vec<u64> {
        vars.get(name)
            .unwrap()
            .history
            .iter()
            .map(|v| v.number)
            .collect()
    }

    /// The bytes the ledger should count, recomputed from scratch: every distinct version
    /// held by a history or ring entry once, every definition, every ring entry.
    fn recount(vars: &Variables) -> usize {
        let mut seen = HashSet::new();
        let mut total = 0;
        let versions = vars
            .vars
            .values()
            .flat_map(|s| s.history.iter())
            .chain(vars.changes.iter().flat_map(|c| c.versions()));
        for version in versions {
            if seen.insert(Arc::as_ptr(version)) {
                total += version.bytes;
            }
        }
        total += vars
            .vars
            .values()
            .map(|s| s.definition.bytes)
            .sum::<usize>();
        total += vars.changes.iter().map(|c| c.bytes()).sum::<usize>();
        total
    }

    #[test]
    fn the_oldest_history_and_ring_entries_go_first() {
        let limits = limits(4.5);
        let mut vars = Variables::default();
        apply(&mut vars, register("x", 1), &limits).unwrap();
        for marker in 2..=10 {
            let (variable, _) = apply(&mut vars, set("x", marker, N), &limits).unwrap();
            assert_eq!(variable.version, u64::from(marker));
            assert!(vars.memory_used() <= limits.session_memory_bytes);
            assert_eq!(vars.memory_used(), recount(&vars));
        }
        // Four versions fit: the newest, consecutive, each with its own value.
        assert_eq!(versions(&vars, "x"), vec![7, 8, 9, 10]);
        for version in &vars.get("x").unwrap().history {
            assert_eq!(*version.value, blob(version.number as u8, N));
        }
        // The ring went the same way: a watcher resuming from before 8 learns where it
        // starts again (change 8 set version 8 and still holds version 7 as its old value).
        assert_eq!(vars.changes_after(3, 100).unwrap_err(), 8);
        let kept: Vec<u64> = vars
            .changes_after(7, 100)
            .unwrap()
            .iter()
            .map(|c| c.sequence)
            .collect();
        assert_eq!(kept, vec![8, 9, 10]);
        assert_eq!(vars.engine.used(), vars.memory_used());
    }

    #[test]
    fn values_are_shared_by_the_state_the_history_and_the_ring() {
        let limits = Limits::default();
        let mut vars = Variables::default();
        apply(&mut vars, register("x", 1), &limits).unwrap();
        apply(&mut vars, set("x", 2, N), &limits).unwrap();
        let rollback = WriteOp::Rollback {
            name: "x".into(),
            target_version: 1,
            expected_version: None,
        };
        apply(&mut vars, rollback, &limits).unwrap();
        let history = &vars.get("x").unwrap().history;
        let ring: Vec<&Arc<Change>> = vars.changes.iter().collect();
        // The ring's changes hold the very versions of the history, and a rollback holds
        // the very value it restores.
        assert!(Arc::ptr_eq(&ring[1].version, &history[1]));
        assert!(Arc::ptr_eq(ring[1].old.as_ref().unwrap(), &history[0]));
        assert!(Arc::ptr_eq(&history[2].value, &history[0].value));
        assert_eq!(vars.memory_used(), recount(&vars));
    }

    #[test]
    fn a_write_larger_than_the_budget_is_refused_and_drops_nothing() {
        let limits = limits(4.5);
        let mut vars = Variables::default();
        apply(&mut vars, register("x", 1), &limits).unwrap();
        apply(&mut vars, set("x", 2, N), &limits).unwrap();
        let used = vars.memory_used();
        let error = apply(&mut vars, set("x", 3, 5 * N), &limits).unwrap_err();
        assert_eq!(error.kind, ErrorKind::MemoryBudgetExceeded, "{error}");
        assert_eq!(error.context["budget"], "session");
        assert_eq!(
            error.context["limit_bytes"],
            limits.session_memory_bytes.to_string()
        );
        assert!(error.message.contains("--session-memory"), "{error}");
        assert!(error.message.contains("variable `x`"), "{error}");
        assert_eq!(versions(&vars, "x"), vec![1, 2]);
        assert_eq!(vars.changes_after(0, 100).unwrap().len(), 2);
        assert_eq!(vars.memory_used(), used);
        assert_eq!(vars.sequence(), 2);
    }

    #[test]
    fn current_values_are_never_dropped_to_make_room() {
        let limits = limits(2.5);
        let mut vars = Variables::default();
        apply(&mut vars, register("a", 1), &limits).unwrap();
        apply(&mut vars, register("b", 1), &limits).unwrap();
        // A third current value cannot fit: the other two stay and so does everything else.
        let error = apply(&mut vars, register("c", 1), &limits).unwrap_err();
        assert_eq!(error.kind, ErrorKind::MemoryBudgetExceeded, "{error}");
        assert!(vars.get("c").is_none());
        assert_eq!(versions(&vars, "a"), vec![1]);
        assert_eq!(vars.sequence(), 2);
        // A new version fits beside the value it replaces (which its update carries as the
        // old value) while it is small; a full-size one drops the oldest version first.
        apply(&mut vars, set("a", 2, N / 4), &limits).unwrap();
        assert_eq!(versions(&vars, "a"), vec![1, 2]);
        apply(&mut vars, set("a", 3, N), &limits).unwrap();
        assert_eq!(versions(&vars, "a"), vec![2, 3]);
        assert_eq!(versions(&vars, "b"), vec![1]);
        assert_eq!(vars.memory_used(), recount(&vars));
        // Deleting gives the bytes back once the ring lets go of the deleted value.
        apply(
            &mut vars,
            WriteOp::Delete {
                name: "b".into(),
                expected_version: None,
            },
            &limits,
        )
        .unwrap();
        apply(&mut vars, register("c", 4), &limits).unwrap();
        assert_eq!(vars.memory_used(), recount(&vars));
        assert!(vars.memory_used() <= limits.session_memory_bytes);
    }

    #[test]
    fn an_atomic_batch_that_cannot_fit_changes_nothing() {
        let limits = limits(3.5);
        let mut vars = Variables::default();
        apply(&mut vars, register("a", 1), &limits).unwrap();
        apply(&mut vars, register("b", 1), &limits).unwrap();
        let (out, changes) = vars.apply(
            "s",
            vec![set("a", 2, N), set("b", 2, 2 * N)],
            true,
            &WriteContext::default(),
            &limits,
        );
        assert!(changes.is_empty());
        for outcome in out {
            let error = outcome.unwrap_err();
            assert_eq!(error.kind, ErrorKind::MemoryBudgetExceeded, "{error}");
            assert!(error.message.contains("a batch of 2 writes"), "{error}");
        }
        assert_eq!(versions(&vars, "a"), vec![1]);
        assert_eq!(vars.sequence(), 2);
        assert_eq!(vars.memory_used(), recount(&vars));
    }

    #[test]
    fn the_engine_budget_counts_every_session_and_names_itself() {
        let engine = Arc::new(EngineMemory::default());
        let limits = Limits {
            session_memory_bytes: 100 * N,
            engine_memory_bytes: 4 * (N + 400),
            ..Limits::default()
        };
        let mut a = Variables::new(Arc::clone(&engine));
        let mut b = Variables::new(Arc::clone(&engine));
        apply(&mut a, register("x", 1), &limits).unwrap();
        apply(&mut a, register("y", 1), &limits).unwrap();
        apply(&mut b, register("x", 1), &limits).unwrap();
        apply(&mut b, set("x", 2, N), &limits).unwrap();
        assert_eq!(versions(&b, "x"), vec![1, 2]);
        assert_eq!(engine.used(), a.memory_used() + b.memory_used());
        // B's next value fits in the engine only by dropping B's own old version.
        apply(&mut b, register("z", 1), &limits).unwrap();
        assert_eq!(versions(&b, "x"), vec![2]);
        // Then nothing of B's can go: refused, naming the engine's budget; A keeps its own.
        let error = apply(&mut b, register("w", 1), &limits).unwrap_err();
        assert_eq!(error.kind, ErrorKind::MemoryBudgetExceeded, "{error}");
        assert_eq!(error.context["budget"], "engine");
        assert!(error.message.contains("--engine-memory"), "{error}");
        assert_eq!(versions(&a, "x"), vec![1]);
        assert!(engine.used() <= limits.engine_memory_bytes);
        // A session that goes away gives its bytes back to the engine.
        drop(a);
        assert_eq!(engine.used(), b.memory_used());
        apply(&mut b, register("w", 1), &limits).unwrap();
        assert_eq!(engine.used(), b.memory_used());
    }

    #[test]
    fn each_session_has_its_own_budget() {
        let engine = Arc::new(EngineMemory::default());
        let limits = limits(2.5);
        let mut a = Variables::new(Arc::clone(&engine));
        let mut b = Variables::new(Arc::clone(&engine));
        apply(&mut a, register("x", 1), &limits).unwrap();
        apply(&mut a, register("y", 1), &limits).unwrap();
        // A is full; B is not.
        assert!(apply(&mut a, register("z", 1), &limits).is_err());
        apply(&mut b, register("x", 1), &limits).unwrap();
        apply(&mut b, register("y", 1), &limits).unwrap();
        assert_eq!(engine.used(), a.memory_used() + b.memory_used());
    }

    #[test]
    fn the_ledger_matches_a_recount_through_every_kind_of_change() {
        let limits = Limits {
            history_per_variable: 3,
            retained_changes: 5,
            ..limits(6.5)
        };
        let mut vars = Variables::default();
        let ops = [
            register("a", 1),
            register("b", 1),
            set("a", 2, N / 2),
            set("a", 3, N),
            WriteOp::Rollback {
                name: "a".into(),
                target_version: 2,
                expected_version: None,
            },
            set("b", 2, N),
            set("a", 4, 2 * N),
            WriteOp::Delete {
                name: "a".into(),
                expected_version: None,
            },
            register("a", 5),
            set("b", 3, 3 * N),
            set("b", 4, N),
            set("a", 6, N),
            WriteOp::Delete {
                name: "b".into(),
                expected_version: None,
            },
        ];
        for op in ops {
            let _ = apply(&mut vars, op, &limits);
            assert_eq!(vars.memory_used(), recount(&vars));
            assert!(vars.memory_used() <= limits.session_memory_bytes);
            assert_eq!(vars.engine.used(), vars.memory_used());
        }
    }
}
