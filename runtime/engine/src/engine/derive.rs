//! Variable dependencies: a derived variable is computed by a host tool from the variables
//! it depends on. Every write goes through [`Engine::write`], which recomputes the derived
//! variables a change reaches (in dependency order) and stores them in the same atomic batch
//! as the change, each guarded by the versions of the inputs it was computed from; a
//! concurrent change of an input makes the batch fail on its guard, and the engine computes
//! again. So a reader never sees a derived value that disagrees with its inputs.
//!
//! A derived variable registered while a write is under way is the one case the guards
//! cannot see: the write looked up the derived variables before the registration and so
//! wrote no recomputation, while the registration computed its value from the inputs before
//! the write. [`Registrations`] tells the write that this may have happened, and the write
//! then recomputes the derived variables it did not know about (`catch_up`).

use std::collections::HashSet;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::value::{self, Subject};

/// Attempts at a write whose derived inputs keep changing underneath it.
const ATTEMPTS: usize = 8;

/// The engine's derived-variable registrations, as writes need to know them: whether any
/// exists (until then writes skip the lookup), how many are under way, and an epoch that
/// moves when one ends. Engine-wide rather than per session: registrations are rare, and a
/// write that finds the epoch moved only looks up its session's derived variables again.
#[derive(Debug, Default)]
pub(crate) struct Registrations {
    any: AtomicBool,
    under_way: AtomicUsize,
    epoch: AtomicU64,
}

/// A derived-variable registration under way; ends (moving the epoch) when dropped.
pub(super) struct Registering<'a>(&'a Registrations);

impl Drop for Registering<'_> {
    fn drop(&mut self) {
        self.0.epoch.fetch_add(1, SeqCst);
        self.0.under_way.fetch_sub(1, SeqCst);
    }
}

impl Registrations {
    /// What a write notes before it looks up the derived variables.
    fn epoch(&self) -> u64 {
        self.epoch.load(SeqCst)
    }

    /// Whether a registration ran (or runs) since `epoch` was read: then the derived
    /// variables a write looked up may lack one.
    fn moved_since(&self, epoch: u64) -> bool {
        self.under_way.load(SeqCst) > 0 || self.epoch.load(SeqCst) != epoch
    }
}

type Outcomes = Vec<Result<(pb::Variable, u64)>>;

impl Engine {
    /// Applies `ops` as [`StateBackend::write`] does, recomputing in the same atomic step
    /// every derived variable that a change reaches. Without `atomic`, each op is its own
    /// step with its own derived variables.
    pub(crate) async fn write(
        &self,
        session: &str,
        ops: Vec<WriteOp>,
        atomic: bool,
        context: WriteContext,
    ) -> Result<Outcomes> {
        let changes_values =
            |op: &WriteOp| matches!(op, WriteOp::Set { .. } | WriteOp::Rollback { .. });
        if !ops.iter().any(changes_values) {
            return self.state.write(session, ops, atomic, context).await;
        }
        let epoch = self.derived_registrations.epoch();
        let derived = self.derived(session).await?;
        let written: Vec<String> = ops
            .iter()
            .filter(|op| changes_values(op))
            .map(|op| op.name().to_owned())
            .collect();
        let outcomes = if derived.is_empty() {
            self.state
                .write(session, ops, atomic, context.clone())
                .await?
        } else if atomic {
            self.write_step(session, ops, &derived, &context).await?
        } else {
            let mut outcomes = Vec::with_capacity(ops.len());
            for op in ops {
                outcomes.extend(
                    self.write_step(session, vec![op], &derived, &context)
                        .await?,
                );
            }
            outcomes
        };
        if self.derived_registrations.moved_since(epoch) && outcomes.iter().any(Result::is_ok) {
            self.catch_up(session, &written, &derived, &context).await;
        }
        Ok(outcomes)
    }

    /// After a write that may have raced a derived-variable registration: recomputes the
    /// derived variables the write reaches that were not among `known` (and those that
    /// depend on them), guarded by their inputs' versions as always. A guard that fails
    /// means a later write changed an input, and that write recomputed them itself.
    async fn catch_up(
        &self,
        session: &str,
        written: &[String],
        known: &[pb::Variable],
        context: &WriteContext,
    ) {
        let Ok(derived) = self.derived(session).await else {
            return;
        };
        let written: Vec<&str> = written.iter().map(String::as_str).collect();
        let mut missed: HashSet<String> = HashSet::new();
        let mut recompute = Vec::new();
        for variable in reached(&derived, &written) {
            // Dependency order: a variable is missed when it is new or depends on a missed one.
            let new = !known.iter().any(|k| k.name == variable.name);
            if new || variable.depends_on.iter().any(|d| missed.contains(d)) {
                missed.insert(variable.name.clone());
                recompute.push(variable);
            }
        }
        if recompute.is_empty() {
            return;
        }
        if let Err(error) = self
            .write_reached(session, Vec::new(), recompute, context)
            .await
        {
            tracing::warn!(
                session_id = session,
                "recomputing derived variables after a registration raced a write: {}",
                error.message
            );
        }
    }

    /// The session's derived variables; none without a lookup while no session of this
    /// engine has registered one.
    pub(super) async fn derived(&self, session: &str) -> Result<Vec<pb::Variable>> {
        if !self.derived_registrations.any.load(SeqCst) {
            return Ok(Vec::new());
        }
        self.state.derived(session).await
    }

    /// Notes that a derived variable is being registered, so that writes look for them from
    /// now on and writes under way catch up; the registration ends when the guard drops.
    pub(super) fn registering_derived(&self) -> Registering<'_> {
        let registrations = &*self.derived_registrations;
        registrations.any.store(true, SeqCst);
        registrations.under_way.fetch_add(1, SeqCst);
        Registering(registrations)
    }

    /// One atomic step: `ops` plus the recomputed derived variables they reach.
    async fn write_step(
        &self,
        session: &str,
        ops: Vec<WriteOp>,
        derived: &[pb::Variable],
        context: &WriteContext,
    ) -> Result<Outcomes> {
        let written: Vec<&str> = ops.iter().map(WriteOp::name).collect();
        let reached = reached(derived, &written);
        if reached.is_empty() {
            return self.state.write(session, ops, true, context.clone()).await;
        }
        self.write_reached(session, ops, reached, context).await
    }

    /// One atomic step: `ops` plus the recomputation of `reached` (in dependency order).
    async fn write_reached(
        &self,
        session: &str,
        ops: Vec<WriteOp>,
        reached: Vec<pb::Variable>,
        context: &WriteContext,
    ) -> Result<Outcomes> {
        let written: Vec<&str> = ops.iter().map(WriteOp::name).collect();
        let count = ops.len();
        let mut names: Vec<String> = reached
            .iter()
            .flat_map(|d| d.depends_on.iter().cloned().chain([d.name.clone()]))
            .chain(written.iter().map(|n| (*n).to_owned()))
            .collect();
        names.sort();
        names.dedup();
        for attempt in 1..=ATTEMPTS {
            let (found, _) = self.state.get(session, &names).await?;
            let snapshot: HashMap<String, pb::Variable> = found
                .into_iter()
                .flatten()
                .map(|v| (v.name.clone(), v))
                .collect();
            let mut staged: HashMap<String, (pb::Value, u64)> = snapshot
                .values()
                .map(|v| {
                    (
                        v.name.clone(),
                        (v.value.clone().unwrap_or_default(), v.version),
                    )
                })
                .collect();
            if !self
                .stage_ops(session, &ops, &snapshot, &mut staged)
                .await?
            {
                // An op that cannot apply: the plain write reports why.
                return self.state.write(session, ops, true, context.clone()).await;
            }
            let mut batch = ops.clone();
            for variable in &reached {
                let value = match self.derive_value(session, variable, &staged).await {
                    Ok(value) => value,
                    Err(error) => return Ok((0..count).map(|_| Err(error.clone())).collect()),
                };
                let guards = variable
                    .depends_on
                    .iter()
                    .map(|input| (input.clone(), staged.get(input).map_or(0, |(_, v)| *v)))
                    .collect();
                let version = staged.get(&variable.name).map_or(0, |(_, v)| *v) + 1;
                staged.insert(variable.name.clone(), (value.clone(), version));
                batch.push(WriteOp::Derive {
                    name: variable.name.clone(),
                    value,
                    guards,
                });
            }
            let mut outcomes = self
                .state
                .write(session, batch, true, context.clone())
                .await?;
            let raced = outcomes.iter().any(|o| {
                matches!(o, Err(e) if e.kind == ErrorKind::VersionConflict && e.context.contains_key("guard"))
            });
            if raced && attempt < ATTEMPTS {
                continue;
            }
            outcomes.truncate(count);
            return Ok(outcomes);
        }
        unreachable!("the last attempt returns")
    }

    /// Applies the value changes of `ops` to `staged` (value, version by name), normalised as
    /// the state will store them (against the definitions in `snapshot`); false if one
    /// cannot apply (unknown variable, bad value, version not retained), which the plain
    /// write then reports.
    async fn stage_ops(
        &self,
        session: &str,
        ops: &[WriteOp],
        snapshot: &HashMap<String, pb::Variable>,
        staged: &mut HashMap<String, (pb::Value, u64)>,
    ) -> Result<bool> {
        for op in ops {
            let (name, value) = match op {
                WriteOp::Set { name, value, .. } => (name, value.clone()),
                WriteOp::Rollback {
                    name,
                    target_version,
                    ..
                } => {
                    let history = self.state.history(session, name, 0).await?;
                    let Some(entry) = history.into_iter().find(|e| e.version == *target_version)
                    else {
                        return Ok(false);
                    };
                    (name, entry.value.unwrap_or_default())
                }
                _ => continue,
            };
            let (Some((_, version)), Some(variable)) =
                (staged.get(name).cloned(), snapshot.get(name))
            else {
                return Ok(false);
            };
            let ty = pb::VariableType::try_from(variable.r#type).unwrap_or(pb::VariableType::Any);
            let constraints = variable.constraints.clone().unwrap_or_default();
            let Ok(value) = value::validate(Subject::Variable(name), ty, &constraints, value)
            else {
                return Ok(false);
            };
            staged.insert(name.clone(), (value, version + 1));
        }
        Ok(true)
    }

    /// The value of derived `variable` computed by its tool from the staged inputs.
    async fn derive_value(
        &self,
        session: &str,
        variable: &pb::Variable,
        staged: &HashMap<String, (pb::Value, u64)>,
    ) -> Result<pb::Value> {
        let arguments = variable
            .depends_on
            .iter()
            .filter_map(|input| staged.get(input).map(|(v, _)| (input.clone(), v.clone())))
            .collect();
        self.compute(session, &variable.name, &variable.derived_by, arguments)
            .await
    }

    /// Runs derivation tool `tool` for variable `name`.
    pub(super) async fn compute(
        &self,
        session: &str,
        name: &str,
        tool: &str,
        arguments: HashMap<String, pb::Value>,
    ) -> Result<pb::Value> {
        let context = |error: BridgeError| error.with("derived_variable", name).with("tool", tool);
        let (handler, args) = self
            .tools
            .prepare(session, tool, arguments)
            .map_err(context)?;
        let Handler::Unary(run) = handler else {
            return Err(context(BridgeError::invalid_argument(
                "derived_by",
                format!("tool `{tool}` streams its results; a derived variable needs a unary tool"),
            )));
        };
        self.tool_call(session, tool)
            .scope(run(args))
            .await
            .map_err(context)
    }
}

/// The derived variables that a change of `written` reaches, directly or through other
/// derived variables, each after the reached variables it depends on.
fn reached(derived: &[pb::Variable], written: &[&str]) -> Vec<pb::Variable> {
    // The closure: a derived variable is reached when one of its inputs changed or was
    // reached.
    let mut changed: HashSet<&str> = written.iter().copied().collect();
    let mut reached: HashSet<&str> = HashSet::new();
    loop {
        let before = reached.len();
        for variable in derived {
            if !reached.contains(variable.name.as_str())
                && variable
                    .depends_on
                    .iter()
                    .any(|d| changed.contains(d.as_str()))
            {
                reached.insert(variable.name.as_str());
                changed.insert(variable.name.as_str());
            }
        }
        if reached.len() == before {
            break;
        }
    }
    // Dependency order: a variable comes once every reached variable it depends on has.
    // Dependencies exist before their dependents, so there is no cycle to wait on.
    let mut ordered: Vec<pb::Variable> = Vec::with_capacity(reached.len());
    let mut done: HashSet<&str> = HashSet::new();
    while done.len() < reached.len() {
        let ready = derived.iter().find(|v| {
            reached.contains(v.name.as_str())
                && !done.contains(v.name.as_str())
                && v.depends_on
                    .iter()
                    .all(|d| !reached.contains(d.as_str()) || done.contains(d.as_str()))
        });
        let Some(ready) = ready else { break };
        done.insert(ready.name.as_str());
        ordered.push(ready.clone());
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derived(name: &str, inputs: &[&str]) -> pb::Variable {
        pb::Variable {
            name: name.to_owned(),
            depends_on: inputs.iter().map(|s| (*s).to_owned()).collect(),
            derived_by: "tool".to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn reached_variables_come_after_the_ones_they_depend_on() {
        // a -> b -> c; e depends on c and a; f depends on nothing written.
        let all = [
            derived("e", &["c", "a"]),
            derived("c", &["b"]),
            derived("f", &["z"]),
            derived("b", &["a"]),
        ];
        let names: Vec<String> = reached(&all, &["a"]).into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["b", "c", "e"]);
        let names: Vec<String> = reached(&all, &["b"]).into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["c", "e"]);
        assert!(reached(&all, &["q"]).is_empty());
    }
}
