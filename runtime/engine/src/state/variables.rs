//! The variable rules every backend shares: registration, validated writes, versions,
//! optimistic concurrency, bounded history, rollback, deletion, and all-or-nothing batches.
//! Pure data in, data and events out; no I/O.

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use mlbridge_proto::mlbridge::v1::{
    self as pb, Constraints, Value, VariableType, VariableUpdateKind,
};
use prost::Message;

use super::Limits;
use super::locks::{LockRequest, Locks};
use crate::error::{BridgeError, ErrorKind, Result};
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

/// A variable with its retained history (newest last).
#[derive(Debug, Clone)]
pub struct VariableState {
    /// The current state.
    pub variable: pb::Variable,
    /// Earlier and current versions, oldest first, bounded by the history limit.
    pub history: VecDeque<pb::VariableVersion>,
}

/// The variables of one session and its change counter.
#[derive(Debug, Default)]
pub struct Variables {
    vars: HashMap<String, VariableState>,
    sequence: u64,
    locks: Locks,
    /// Names of the derived variables, so that a write finds them without a scan.
    derived: std::collections::BTreeSet<String>,
}

/// The outcome of one op: the variable after it (before, for a delete) and the update.
type Applied = (pb::Variable, pb::VariableUpdate);

impl Variables {
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

    /// A variable by name.
    pub fn get(&self, name: &str) -> Option<&VariableState> {
        self.vars.get(name)
    }

    /// Every variable, unordered.
    pub fn iter(&self) -> impl Iterator<Item = &VariableState> {
        self.vars.values()
    }

    /// The derived variables, by name.
    pub fn derived(&self) -> impl Iterator<Item = &VariableState> {
        self.derived.iter().filter_map(|name| self.vars.get(name))
    }

    /// The optimization locks.
    pub fn locks(&self) -> &Locks {
        &self.locks
    }

    /// A variable as reads show it: with `optimizing` / `optimizer_id` from the live lock
    /// covering it at `now`.
    pub fn view(&self, name: &str, now: SystemTime) -> Option<pb::Variable> {
        self.vars.get(name).map(|state| {
            let mut variable = state.variable.clone();
            self.locks.decorate(&mut variable, now);
            variable
        })
    }

    /// Every variable as reads show it (see [`Variables::view`]), unordered.
    pub fn views(&self, now: SystemTime) -> impl Iterator<Item = pb::Variable> + '_ {
        self.vars.values().map(move |state| {
            let mut variable = state.variable.clone();
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
    /// updates to publish.
    pub fn stop_optimization(
        &mut self,
        session_id: &str,
        token: &str,
        final_values: HashMap<String, Value>,
        context: WriteContext,
        limits: &Limits,
    ) -> Result<(Vec<pb::Variable>, Vec<pb::VariableUpdate>)> {
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
        let ops: Vec<WriteOp> = {
            let mut names: Vec<String> = final_values.keys().cloned().collect();
            names.sort();
            names
                .into_iter()
                .map(|name| WriteOp::Set {
                    value: final_values.remove(&name).unwrap_or_default(),
                    name,
                    expected_version: None,
                })
                .collect()
        };
        let (outcomes, mut updates) = self.apply_at(session_id, ops, true, &context, limits, now);
        let mut variables = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            variables.push(outcome?.0);
        }
        self.locks.release(token);
        for variable in &mut variables {
            self.locks.decorate(variable, now);
        }
        for update in &mut updates {
            if let Some(variable) = &mut update.variable {
                self.locks.decorate(variable, now);
            }
        }
        Ok((variables, updates))
    }

    /// The request-level lock check of a write: a token, when given, must name a live lock
    /// covering every variable the ops change (`LOCK_NOT_HELD` otherwise).
    pub fn check_token(&self, ops: &[WriteOp], token: &str, now: SystemTime) -> Result<()> {
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

    /// Applies `ops`. Returns per-op outcomes and the updates to publish (already numbered),
    /// in order. With `atomic`, the first failure leaves everything unchanged and becomes
    /// every op's outcome.
    pub fn apply(
        &mut self,
        session_id: &str,
        ops: Vec<WriteOp>,
        atomic: bool,
        context: &WriteContext,
        limits: &Limits,
    ) -> (Vec<Result<(pb::Variable, u64)>>, Vec<pb::VariableUpdate>) {
        let now = SystemTime::now();
        let (mut outcomes, mut updates) =
            self.apply_at(session_id, ops, atomic, context, limits, now);
        for (variable, _) in outcomes.iter_mut().flatten() {
            self.locks.decorate(variable, now);
        }
        for update in &mut updates {
            if let Some(variable) = &mut update.variable {
                self.locks.decorate(variable, now);
            }
        }
        (outcomes, updates)
    }

    /// [`Variables::apply`] at `now`, without showing locks on the results.
    fn apply_at(
        &mut self,
        session_id: &str,
        ops: Vec<WriteOp>,
        atomic: bool,
        context: &WriteContext,
        limits: &Limits,
        now: SystemTime,
    ) -> (Vec<Result<(pb::Variable, u64)>>, Vec<pb::VariableUpdate>) {
        if atomic {
            let mut staged = Staged {
                base: &self.vars,
                locks: &self.locks,
                overlay: HashMap::new(),
            };
            let mut applied = Vec::with_capacity(ops.len());
            for op in ops.iter().cloned() {
                match staged.apply(session_id, op, context, limits, now) {
                    Ok(outcome) => applied.push(outcome),
                    Err(err) => {
                        let err = if ops.len() > 1 {
                            err.with("batch_failed_at", op_index(&ops, applied.len()))
                        } else {
                            err
                        };
                        return (ops.iter().map(|_| Err(err.clone())).collect(), Vec::new());
                    }
                }
            }
            let overlay = staged.overlay;
            self.commit(overlay, applied)
        } else {
            let mut outcomes = Vec::with_capacity(ops.len());
            let mut updates = Vec::new();
            for op in ops {
                let mut staged = Staged {
                    base: &self.vars,
                    locks: &self.locks,
                    overlay: HashMap::new(),
                };
                match staged.apply(session_id, op, context, limits, now) {
                    Ok(outcome) => {
                        let overlay = staged.overlay;
                        let (mut results, mut published) = self.commit(overlay, vec![outcome]);
                        outcomes.append(&mut results);
                        updates.append(&mut published);
                    }
                    Err(err) => outcomes.push(Err(err)),
                }
            }
            (outcomes, updates)
        }
    }

    fn commit(
        &mut self,
        overlay: HashMap<String, Option<VariableState>>,
        applied: Vec<Applied>,
    ) -> (Vec<Result<(pb::Variable, u64)>>, Vec<pb::VariableUpdate>) {
        for (name, state) in overlay {
            match state {
                Some(state) => {
                    if state.variable.derived_by.is_empty() {
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
        let mut outcomes = Vec::with_capacity(applied.len());
        let mut updates = Vec::with_capacity(applied.len());
        for (variable, mut update) in applied {
            self.sequence += 1;
            update.sequence = self.sequence;
            outcomes.push(Ok((variable, self.sequence)));
            updates.push(update);
        }
        (outcomes, updates)
    }
}

fn op_index(ops: &[WriteOp], index: usize) -> String {
    format!("{index} ({})", ops.get(index).map_or("", WriteOp::name))
}

/// The position of the write that failed an atomic batch, from the error's
/// `batch_failed_at` context (see `op_index`); `None` for a batch of one write.
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
}

impl Staged<'_> {
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
    fn existing(
        &self,
        session_id: &str,
        name: &str,
        expected: Option<u64>,
        (token, now): (&str, SystemTime),
    ) -> Result<VariableState> {
        let state = self
            .current(name)
            .ok_or_else(|| BridgeError::variable_not_found(session_id, name))?;
        self.locks.check_write(name, token, now)?;
        if let Some(expected) = expected
            && expected != state.variable.version
        {
            return Err(BridgeError::new(
                ErrorKind::VersionConflict,
                format!(
                    "variable `{name}` is at version {}, not the expected version {expected}",
                    state.variable.version
                ),
            )
            .with("variable", name)
            .with("expected_version", expected)
            .with("current_version", state.variable.version));
        }
        Ok(state.clone())
    }

    /// `VERSION_CONFLICT` unless every dependency is at the version a derived value was
    /// computed from.
    fn check_guards(
        &self,
        session_id: &str,
        derived: &str,
        guards: &[(String, u64)],
    ) -> Result<()> {
        for (input, version) in guards {
            let current = self
                .current(input)
                .ok_or_else(|| BridgeError::variable_not_found(session_id, input))?;
            if current.variable.version != *version {
                return Err(BridgeError::new(
                    ErrorKind::VersionConflict,
                    format!(
                        "input `{input}` of derived variable `{derived}` changed while it was \
                         computed (version {}, computed from {version})",
                        current.variable.version
                    ),
                )
                .with("variable", derived)
                .with("guard", input)
                .with("expected_version", version)
                .with("current_version", current.variable.version));
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
                    .is_some_and(|s| s.variable.depends_on.iter().any(|d| d == name))
            })
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Checks the dependencies a new variable declares.
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
                    format!("variable `{name}` names dependency `{input}` twice"),
                )
                .with("variable", name));
            }
            if self.current(input).is_none() {
                return Err(BridgeError::new(
                    ErrorKind::VariableNotFound,
                    format!(
                        "variable `{name}` depends on `{input}`, which does not exist in session \
                         `{session_id}`; register it first (so dependencies never form a cycle)"
                    ),
                )
                .with("variable", name)
                .with("dependency", input));
            }
        }
        Ok(())
    }

    fn apply(
        &mut self,
        session_id: &str,
        op: WriteOp,
        context: &WriteContext,
        limits: &Limits,
        now: SystemTime,
    ) -> Result<Applied> {
        let timestamp = Some(prost_types::Timestamp::from(now));
        let entry = |kind: VariableUpdateKind, version: u64, value: &Value, restored: u64| {
            pb::VariableVersion {
                version,
                value: Some(value.clone()),
                timestamp,
                source: context.source.clone(),
                metadata: context.metadata.clone(),
                kind: kind as i32,
                restored_from_version: restored,
            }
        };
        let update = |kind: VariableUpdateKind, variable: &pb::Variable, old: Option<Value>| {
            pb::VariableUpdate {
                kind: kind as i32,
                variable_name: variable.name.clone(),
                variable: Some(variable.clone()),
                old_value: old,
                sequence: 0,
                source: context.source.clone(),
                timestamp,
                metadata: context.metadata.clone(),
            }
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
                value::check_definition(&name, ty, &constraints)?;
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
                let value = checked(&name, ty, &constraints, value, limits)?;
                let variable = pb::Variable {
                    name: name.clone(),
                    r#type: ty as i32,
                    value: Some(value.clone()),
                    constraints: Some(constraints),
                    version: 1,
                    description,
                    metadata,
                    created_at: timestamp,
                    updated_at: timestamp,
                    optimizing: false,
                    optimizer_id: String::new(),
                    source: context.source.clone(),
                    depends_on,
                    derived_by,
                };
                let history = VecDeque::from([entry(VariableUpdateKind::Registered, 1, &value, 0)]);
                let published = update(VariableUpdateKind::Registered, &variable, None);
                self.overlay.insert(
                    name,
                    Some(VariableState {
                        variable: variable.clone(),
                        history,
                    }),
                );
                Ok((variable, published))
            }
            WriteOp::Set {
                name,
                value,
                expected_version,
            } => {
                let mut state = self.existing(
                    session_id,
                    &name,
                    expected_version,
                    (&context.lock_token, now),
                )?;
                refuse_derived(&state.variable)?;
                let ty = VariableType::try_from(state.variable.r#type).unwrap_or(VariableType::Any);
                let constraints = state.variable.constraints.clone().unwrap_or_default();
                let value = checked(&name, ty, &constraints, value, limits)?;
                let old = state.variable.value.replace(value.clone());
                state.variable.version += 1;
                state.variable.updated_at = timestamp;
                state.variable.source = context.source.clone();
                let version = state.variable.version;
                push_history(
                    &mut state,
                    entry(VariableUpdateKind::Set, version, &value, 0),
                    limits,
                );
                let published = update(VariableUpdateKind::Set, &state.variable, old);
                let variable = state.variable.clone();
                self.overlay.insert(name, Some(state));
                Ok((variable, published))
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
                let ty = VariableType::try_from(state.variable.r#type).unwrap_or(VariableType::Any);
                let constraints = state.variable.constraints.clone().unwrap_or_default();
                let value = checked(&name, ty, &constraints, value, limits)?;
                let old = state.variable.value.replace(value.clone());
                state.variable.version += 1;
                state.variable.updated_at = timestamp;
                let source = format!("derived:{}", state.variable.derived_by);
                state.variable.source.clone_from(&source);
                let version = state.variable.version;
                let mut derived = entry(VariableUpdateKind::Set, version, &value, 0);
                derived.source.clone_from(&source);
                push_history(&mut state, derived, limits);
                let mut published = update(VariableUpdateKind::Set, &state.variable, old);
                published.source = source;
                let variable = state.variable.clone();
                self.overlay.insert(name, Some(state));
                Ok((variable, published))
            }
            WriteOp::Delete {
                name,
                expected_version,
            } => {
                let state = self.existing(
                    session_id,
                    &name,
                    expected_version,
                    (&context.lock_token, now),
                )?;
                let dependents = self.dependents(&name);
                if !dependents.is_empty() {
                    return Err(BridgeError::new(
                        ErrorKind::VariableInUse,
                        format!(
                            "variable `{name}` cannot be deleted: {} depend{} on it; delete {} first",
                            dependents.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", "),
                            if dependents.len() == 1 { "s" } else { "" },
                            if dependents.len() == 1 { "it" } else { "them" },
                        ),
                    )
                    .with("variable", &name)
                    .with("dependents", dependents.join(",")));
                }
                let published = update(
                    VariableUpdateKind::Deleted,
                    &state.variable,
                    state.variable.value.clone(),
                );
                self.overlay.insert(name, None);
                Ok((state.variable, published))
            }
            WriteOp::Rollback {
                name,
                target_version,
                expected_version,
            } => {
                let mut state = self.existing(
                    session_id,
                    &name,
                    expected_version,
                    (&context.lock_token, now),
                )?;
                refuse_derived(&state.variable)?;
                let Some(target) = state
                    .history
                    .iter()
                    .find(|e| e.version == target_version)
                    .cloned()
                else {
                    let oldest = state.history.front().map_or(0, |e| e.version);
                    return Err(BridgeError::invalid_argument(
                        "target_version",
                        format!(
                            "version {target_version} of variable `{name}` is not retained (retained: {oldest} to {})",
                            state.variable.version
                        ),
                    )
                    .with("variable", &name)
                    .with("oldest_retained_version", oldest));
                };
                let value = target.value.unwrap_or_default();
                let old = state.variable.value.replace(value.clone());
                state.variable.version += 1;
                state.variable.updated_at = timestamp;
                state.variable.source = context.source.clone();
                let restored = entry(
                    VariableUpdateKind::RolledBack,
                    state.variable.version,
                    &value,
                    target_version,
                );
                push_history(&mut state, restored, limits);
                let published = update(VariableUpdateKind::RolledBack, &state.variable, old);
                let variable = state.variable.clone();
                self.overlay.insert(name, Some(state));
                Ok((variable, published))
            }
        }
    }
}

/// `INVALID_ARGUMENT` for a client write to a derived variable.
fn refuse_derived(variable: &pb::Variable) -> Result<()> {
    if variable.derived_by.is_empty() {
        return Ok(());
    }
    Err(BridgeError::invalid_argument(
        "name",
        format!(
            "variable `{}` is derived: tool `{}` computes it from {}; write those instead",
            variable.name,
            variable.derived_by,
            variable
                .depends_on
                .iter()
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .with("variable", &variable.name)
    .with("derived_by", &variable.derived_by))
}

fn push_history(state: &mut VariableState, entry: pb::VariableVersion, limits: &Limits) {
    state.history.push_back(entry);
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
    value::validate(value::Subject::Variable(name), ty, constraints, value)
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
            .map(|e| e.version)
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
        assert_eq!(updates[0].kind, VariableUpdateKind::RolledBack as i32);
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
        assert_eq!(vars.get("a").unwrap().variable.version, 1);
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
        assert_eq!(vars.get("a").unwrap().variable.version, 3);
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
