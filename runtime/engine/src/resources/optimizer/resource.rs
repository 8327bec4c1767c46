//! The optimizer as a resource: `run`, `ask`, `tell`, `best`, `trials`, `apply_best` and
//! `restore` over a [`Study`].
//!
//! While it works it holds an optimization lock on its variables (lock id = resource id),
//! renewed in the background during a run, and writes every candidate through it with
//! source `optimizer:<id>` and metadata `{"trial": "<n>"}`. A trial calls the metric
//! callback (after the module, when one is configured); every failure is recorded in the
//! trial as data (kind, remote type, message, traceback), a `TIMEOUT` as `timed_out`, after
//! `retries` re-evaluations of the same values. A run dropped by its caller stops where it
//! is (its trials are aborted) and its lock lapses at the end of the lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mlbridge_proto::mlbridge::v1::{self as pb, value::Kind};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::config::{self, Config, Finish, MAX_PARALLEL};
use super::sampler::{GridSampler, RandomSampler, Sampler, TpeSampler};
use super::space::Space;
use super::trials::{MAX_TRIALS, Outcome, Study, TrialError, TrialState};
use crate::engine::Engine;
use crate::error::{BridgeError, ErrorKind, Result};
use crate::resources::module::map_value;
use crate::resources::{Invoked, NativeResource, ResourceCall};
use crate::state::{LockRequest, WriteContext, WriteOp};

/// Trials `run` makes when given neither `n_trials` nor `timeout`.
pub const DEFAULT_TRIALS: usize = 20;

/// Metric parameters the optimizer fills besides the tuned variables.
const VALUES: &str = "values";
const TRIAL: &str = "trial";
const OUTPUTS: &str = "outputs";

/// An optimizer resource.
#[derive(Debug)]
pub struct Optimizer {
    core: Arc<Core>,
}

#[derive(Debug)]
struct Core {
    id: String,
    session_id: String,
    source: String,
    config: Config,
    state: Mutex<State>,
    /// Serialises the methods that take or give up the lock.
    op: tokio::sync::Mutex<()>,
    running: AtomicBool,
    /// Set when the resource is released or its session ends.
    stop: watch::Sender<Option<Stop>>,
}

/// Why a run was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Released,
    SessionEnded,
}

#[derive(Debug)]
struct State {
    study: Study,
    /// Token of the lock, while this optimizer believes it holds one.
    token: Option<String>,
    /// Values of the variables before the first trial.
    originals: Option<HashMap<String, pb::Value>>,
    /// When each trial of the manual loop was asked for.
    asked: HashMap<u64, Instant>,
}

fn value(kind: Kind) -> pb::Value {
    pb::Value { kind: Some(kind) }
}

fn int(k: i64) -> pb::Value {
    value(Kind::IntValue(k))
}

fn null() -> pb::Value {
    value(Kind::NullValue(0))
}

/// How much `run` may do.
struct Budget {
    /// Trials at most (`usize::MAX` with a time budget alone).
    trials: usize,
    /// No batch starts after this long.
    timeout: Option<Duration>,
    /// Trials evaluated at once.
    parallel: usize,
}

impl Budget {
    fn parse(mut arguments: HashMap<String, pb::Value>) -> Result<Budget> {
        config::known_keys(
            "arguments",
            &arguments,
            &["n_trials", "parallel", "timeout"],
        )?;
        let n_trials = arguments
            .remove("n_trials")
            .map(|v| config::integer_in("n_trials", &v, 1, MAX_TRIALS as i64))
            .transpose()?;
        let timeout = arguments
            .remove("timeout")
            .map(|v| config::seconds("timeout", &v))
            .transpose()?;
        let parallel = arguments
            .remove("parallel")
            .map(|v| config::integer_in("parallel", &v, 1, MAX_PARALLEL))
            .transpose()?
            .unwrap_or(1) as usize;
        let trials = match (n_trials, timeout) {
            (None, None) => DEFAULT_TRIALS,
            (Some(n), _) => n as usize,
            (None, Some(_)) => usize::MAX,
        };
        Ok(Budget {
            trials,
            timeout,
            parallel,
        })
    }
}

/// The trials of one batch while they run. Dropped before they are told (the run was
/// stopped or its caller went away), it records them as pruned, so no trial stays running.
struct Batch<'a> {
    core: &'a Arc<Core>,
    numbers: Vec<u64>,
}

type Evaluated = (Outcome, Duration, u32);

impl Batch<'_> {
    /// Evaluates the batch's trials at once; answers their outcomes in number order.
    async fn evaluate(&self, engine: &Engine, token: &str, metric: &str) -> Vec<(u64, Evaluated)> {
        let mut set = JoinSet::new();
        let mut numbers = HashMap::new();
        for &number in &self.numbers {
            let values = {
                let state = self.core.state();
                let space = state.study.space();
                state
                    .study
                    .trial(number)
                    .map(|t| t.values(space))
                    .unwrap_or_default()
            };
            let core = Arc::clone(self.core);
            let (engine, token, metric) = (engine.clone(), token.to_owned(), metric.to_owned());
            let task = set.spawn(async move {
                core.evaluate(&engine, &token, &metric, number, values)
                    .await
            });
            numbers.insert(task.id(), number);
        }
        let mut outcomes = Vec::with_capacity(self.numbers.len());
        while let Some(joined) = set.join_next_with_id().await {
            let (number, evaluated) = match joined {
                Ok((id, evaluated)) => (numbers[&id], evaluated),
                Err(e) => {
                    let error = BridgeError::internal(format!("the trial's task failed: {e}"));
                    (
                        numbers[&e.id()],
                        (Outcome::Failed((&error).into()), Duration::ZERO, 1),
                    )
                }
            };
            outcomes.push((number, evaluated));
        }
        outcomes.sort_by_key(|(number, _)| *number);
        outcomes
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        let mut state = self.core.state();
        for &number in &self.numbers {
            if state
                .study
                .trial(number)
                .is_some_and(|t| t.state == TrialState::Running)
            {
                let error = TrialError {
                    kind: "STOPPED".to_owned(),
                    message: "the run stopped before this trial finished".to_owned(),
                    ..TrialError::default()
                };
                let _ = state
                    .study
                    .tell(number, Outcome::Pruned(Some(error)), Duration::ZERO, 0);
            }
        }
    }
}

/// Resets the running flag however the run ends, even when its future is dropped.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Renews the lock's lease in the background until dropped.
struct Renewer(tokio::task::JoinHandle<()>);

impl Drop for Renewer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Optimizer {
    /// Checks the configuration against the session (variables, metric, module) and builds
    /// the optimizer.
    ///
    /// # Errors
    ///
    /// `VARIABLE_NOT_FOUND`, `INVALID_ARGUMENT` for a variable without a search space or a
    /// metric parameter the optimizer cannot fill, `CALLBACK_NOT_FOUND`,
    /// `RESOURCE_NOT_FOUND` or `INVALID_ARGUMENT` for a `module` that is not a module.
    pub async fn create(
        engine: &Engine,
        session_id: &str,
        resource_id: &str,
        name: &str,
        config: Config,
    ) -> Result<Optimizer> {
        let (found, _) = engine.state().get(session_id, &config.variables).await?;
        let mut variables = Vec::with_capacity(found.len());
        for (name, variable) in config.variables.iter().zip(found) {
            variables.push(variable.ok_or_else(|| {
                BridgeError::variable_not_found(session_id, name).with("field", "variables")
            })?);
        }
        let space = Space::of(&variables)?;
        if let Some(module) = &config.module
            && engine.resource(session_id, module)?.as_module().is_none()
        {
            return Err(BridgeError::invalid_argument(
                "module",
                format!("resource `{module}` is not a module"),
            )
            .with("resource_id", module));
        }
        if let Some(metric) = &config.metric {
            let callback = engine.callbacks().get(session_id, metric)?;
            for parameter in &callback.parameters {
                let filled = config.variables.contains(&parameter.name)
                    || parameter.name == VALUES
                    || parameter.name == TRIAL
                    || (parameter.name == OUTPUTS && config.module.is_some());
                if parameter.required && !filled {
                    return Err(BridgeError::invalid_argument(
                        "metric",
                        format!(
                            "metric `{metric}` requires parameter `{}`, which the optimizer cannot fill: \
                             a metric's parameters are named after tuned variables, or `values`, `trial`, \
                             and `outputs` when a module is configured",
                            parameter.name
                        ),
                    )
                    .with("callback", metric)
                    .with("parameter", &parameter.name));
                }
            }
        }
        let sampler: Box<dyn Sampler> = match name {
            "grid" => Box::new(GridSampler {
                points: config.grid_points,
            }),
            "random" => Box::new(RandomSampler),
            _ => Box::new(TpeSampler::new(config.startup_trials)),
        };
        // The RNG takes the seed's bits; a negative seed is as good as any.
        let study = Study::new(space, sampler, config.seed as u64, config.direction);
        Ok(Optimizer {
            core: Arc::new(Core {
                id: resource_id.to_owned(),
                session_id: session_id.to_owned(),
                source: format!("optimizer:{resource_id}"),
                config,
                state: Mutex::new(State {
                    study,
                    token: None,
                    originals: None,
                    asked: HashMap::new(),
                }),
                op: tokio::sync::Mutex::new(()),
                running: AtomicBool::new(false),
                stop: watch::channel(None).0,
            }),
        })
    }
}

impl Core {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lease(&self, engine: &Engine) -> Duration {
        self.config
            .lease
            .unwrap_or(engine.limits().default_lease)
            .min(engine.limits().max_lease)
    }

    fn not_running(&self) -> Result<()> {
        if self.running.load(Ordering::SeqCst) {
            return Err(BridgeError::invalid_argument(
                "method",
                format!("optimizer `{}` is already running", self.id),
            )
            .with("resource_id", &self.id));
        }
        Ok(())
    }

    fn stopped(&self, why: Stop) -> BridgeError {
        match why {
            Stop::Released => crate::resources::not_found(&self.session_id, &self.id)
                .with("reason", "released during the run"),
            Stop::SessionEnded => BridgeError::session_not_found(&self.session_id)
                .with("reason", "the session ended during the run"),
        }
    }

    fn context(&self, token: &str, metadata: HashMap<String, String>) -> WriteContext {
        WriteContext {
            source: self.source.clone(),
            metadata,
            lock_token: token.to_owned(),
        }
    }

    /// Renews the lock this optimizer holds, or acquires it; on first acquisition, keeps the
    /// variables' values for `restore`. Another holder is `VARIABLE_LOCKED`.
    async fn acquire(&self, engine: &Engine) -> Result<String> {
        let lease = self.lease(engine);
        let held = self.state().token.clone();
        if let Some(token) = held {
            let renewal = LockRequest {
                names: Vec::new(),
                optimizer_id: self.id.clone(),
                lease,
                renew_token: token.clone(),
            };
            match engine
                .state()
                .start_optimization(&self.session_id, renewal)
                .await
            {
                Ok(_) => return Ok(token),
                // The lease lapsed: take the lock anew.
                Err(e) if e.kind == ErrorKind::LockNotHeld => self.state().token = None,
                Err(e) => return Err(e),
            }
        }
        let request = LockRequest {
            names: self.config.variables.clone(),
            optimizer_id: self.id.clone(),
            lease,
            renew_token: String::new(),
        };
        let response = engine
            .state()
            .start_optimization(&self.session_id, request)
            .await?;
        if !response.granted {
            return Err(locked(&response.conflicts));
        }
        let token = response.lock_token;
        if self.state().originals.is_none() {
            let (found, _) = engine
                .state()
                .get(&self.session_id, &self.config.variables)
                .await?;
            let originals = found
                .into_iter()
                .flatten()
                .filter_map(|v| v.value.map(|value| (v.name, value)))
                .collect();
            self.state().originals = Some(originals);
        }
        self.state().token = Some(token.clone());
        Ok(token)
    }

    /// Writes `values` atomically with `context`; answers `{variable: version}`.
    async fn write(
        &self,
        engine: &Engine,
        values: &HashMap<String, pb::Value>,
        context: WriteContext,
    ) -> Result<pb::Value> {
        let mut names: Vec<&String> = values.keys().collect();
        names.sort();
        let ops = names
            .into_iter()
            .map(|name| WriteOp::Set {
                name: name.clone(),
                value: values[name].clone(),
                expected_version: None,
            })
            .collect();
        let outcomes = engine.write(&self.session_id, ops, true, context).await?;
        let mut versions = HashMap::new();
        for outcome in outcomes {
            let (variable, _) = outcome?;
            versions.insert(variable.name, int(variable.version as i64));
        }
        Ok(map_value(versions.into_iter()))
    }

    /// Writes `values` and gives up the lock: atomically through it when it is held, else
    /// as a plain write. Answers `{variable: version}`.
    async fn write_and_release(
        &self,
        engine: &Engine,
        values: &HashMap<String, pb::Value>,
        metadata: HashMap<String, String>,
    ) -> Result<pb::Value> {
        let token = self.state().token.take();
        if let Some(token) = token {
            match engine
                .release_lock(
                    &self.session_id,
                    &token,
                    values.clone(),
                    self.context("", metadata.clone()),
                )
                .await
            {
                Ok(variables) => {
                    return Ok(map_value(
                        variables
                            .into_iter()
                            .map(|v| (v.name, int(v.version as i64))),
                    ));
                }
                // The lease lapsed: the variables are free, write them plainly.
                Err(e) if e.kind == ErrorKind::LockNotHeld => {}
                Err(e) => {
                    self.state().token = Some(token);
                    return Err(e);
                }
            }
        }
        self.write(engine, values, self.context("", metadata)).await
    }

    fn best_values(&self) -> Result<(u64, HashMap<String, pb::Value>)> {
        let state = self.state();
        let best = state.study.best().ok_or_else(|| {
            BridgeError::invalid_argument(
                "method",
                format!("optimizer `{}` has no complete trial yet", self.id),
            )
            .with("resource_id", &self.id)
        })?;
        Ok((best.number, best.values(state.study.space())))
    }

    fn originals(&self) -> Result<HashMap<String, pb::Value>> {
        self.state().originals.clone().ok_or_else(|| {
            BridgeError::invalid_argument(
                "method",
                format!(
                    "optimizer `{}` has not tried anything yet; there is nothing to restore",
                    self.id
                ),
            )
            .with("resource_id", &self.id)
        })
    }

    fn best_value(&self) -> Option<pb::Value> {
        let state = self.state();
        state.study.best().map(|t| t.to_value(state.study.space()))
    }

    /// `run`: trials in batches of `parallel` under the lock, then `on_finish`.
    async fn run(
        self: &Arc<Self>,
        engine: &Engine,
        arguments: HashMap<String, pb::Value>,
    ) -> Result<pb::Value> {
        let budget = Budget::parse(arguments)?;
        let Some(metric) = self.config.metric.clone() else {
            return Err(BridgeError::invalid_argument(
                "metric",
                format!(
                    "optimizer `{}` has no `metric`; `run` needs one (use ask/tell without)",
                    self.id
                ),
            ));
        };
        if self
            .running
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(BridgeError::invalid_argument(
                "method",
                format!("optimizer `{}` is already running", self.id),
            )
            .with("resource_id", &self.id));
        }
        let _running = Running(&self.running);
        let mut stop = self.stop.subscribe();
        if let Some(why) = *stop.borrow() {
            return Err(self.stopped(why));
        }
        let token = {
            let _op = self.op.lock().await;
            self.acquire(engine).await?
        };
        let _renewer = self.renewer(engine, &token);
        let deadline = budget.timeout.map(|t| Instant::now() + t);
        let mut ran: Vec<u64> = Vec::new();
        let mut failed = false;
        while ran.len() < budget.trials
            && !(failed && self.config.stop_on_failure)
            && deadline.is_none_or(|d| Instant::now() < d)
        {
            if let Some(why) = *stop.borrow() {
                return Err(self.stopped(why));
            }
            let size = budget.parallel.min(budget.trials - ran.len());
            let batch = Batch {
                core: self,
                numbers: self.state().study.ask_batch(size),
            };
            if batch.numbers.is_empty() {
                break;
            }
            let outcomes = tokio::select! {
                outcomes = batch.evaluate(engine, &token, &metric) => outcomes,
                why = stop.wait_for(Option::is_some) => {
                    let why = why.ok().and_then(|why| *why).unwrap_or(Stop::SessionEnded);
                    return Err(self.stopped(why));
                }
            };
            let mut lost = false;
            let mut state = self.state();
            for (number, (outcome, duration, attempts)) in outcomes {
                failed |= !matches!(outcome, Outcome::Complete(_));
                lost |= matches!(&outcome, Outcome::Failed(e) if e.kind == "LOCK_NOT_HELD");
                state.study.tell(number, outcome, duration, attempts)?;
                ran.push(number);
            }
            // The lock is gone (its lease lapsed): no later trial could write either.
            if lost {
                break;
            }
        }
        let finished = self.finish(engine).await?;
        Ok(self.summary(&ran, finished))
    }

    /// Renews the lock's lease every third of it until the returned guard is dropped (or a
    /// renewal fails: then the next write through the lock says so).
    fn renewer(&self, engine: &Engine, token: &str) -> Renewer {
        let lease = self.lease(engine);
        let engine = engine.clone();
        let (session, id, token) = (self.session_id.clone(), self.id.clone(), token.to_owned());
        Renewer(tokio::spawn(async move {
            let every = (lease / 3).max(Duration::from_millis(10));
            loop {
                tokio::time::sleep(every).await;
                let renewal = LockRequest {
                    names: Vec::new(),
                    optimizer_id: id.clone(),
                    lease,
                    renew_token: token.clone(),
                };
                if engine
                    .state()
                    .start_optimization(&session, renewal)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }))
    }

    /// Ends a run as `on_finish` says (restoring when there is no best to apply), writing
    /// and releasing the lock in one step.
    async fn finish(&self, engine: &Engine) -> Result<Finish> {
        let _op = self.op.lock().await;
        if self.config.on_finish == Finish::ApplyBest
            && let Ok((number, values)) = self.best_values()
        {
            let metadata = HashMap::from([
                ("trial".to_owned(), number.to_string()),
                ("applied".to_owned(), "best".to_owned()),
            ]);
            self.write_and_release(engine, &values, metadata).await?;
            return Ok(Finish::ApplyBest);
        }
        let metadata = HashMap::from([("applied".to_owned(), "restore".to_owned())]);
        self.write_and_release(engine, &self.originals()?, metadata)
            .await?;
        Ok(Finish::Restore)
    }

    /// What `run` answers about the trials `ran`.
    fn summary(&self, ran: &[u64], finished: Finish) -> pb::Value {
        let state = self.state();
        let count = |s: TrialState| {
            ran.iter()
                .filter(|n| state.study.trial(**n).is_some_and(|t| t.state == s))
                .count() as i64
        };
        let best = state
            .study
            .best()
            .map_or_else(null, |t| t.to_value(state.study.space()));
        map_value(
            [
                ("best", best),
                ("trials", int(ran.len() as i64)),
                ("complete", int(count(TrialState::Complete))),
                ("failed", int(count(TrialState::Failed))),
                ("timed_out", int(count(TrialState::TimedOut))),
                ("pruned", int(count(TrialState::Pruned))),
                (
                    "finished",
                    value(Kind::StringValue(finished.name().to_owned())),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
        )
    }

    /// Evaluates one trial: writes its values, then up to `1 + retries` attempts of module
    /// and metric. Answers the outcome, the time spent and the attempts made.
    async fn evaluate(
        &self,
        engine: &Engine,
        token: &str,
        metric: &str,
        number: u64,
        values: HashMap<String, pb::Value>,
    ) -> (Outcome, Duration, u32) {
        let started = Instant::now();
        let metadata = HashMap::from([("trial".to_owned(), number.to_string())]);
        if let Err(e) = self
            .write(engine, &values, self.context(token, metadata))
            .await
        {
            return (Outcome::Failed((&e).into()), started.elapsed(), 1);
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = match self.attempt(engine, metric, number, &values).await {
                Ok(score) => return (Outcome::Complete(score), started.elapsed(), attempts),
                Err(e) if e.kind == ErrorKind::Timeout => Outcome::TimedOut((&e).into()),
                Err(e) => Outcome::Failed((&e).into()),
            };
            if attempts > self.config.retries {
                return (outcome, started.elapsed(), attempts);
            }
        }
    }

    /// One evaluation: the module (when configured), then the metric; answers the score.
    async fn attempt(
        &self,
        engine: &Engine,
        metric: &str,
        number: u64,
        values: &HashMap<String, pb::Value>,
    ) -> Result<f64> {
        let outputs = match &self.config.module {
            None => None,
            Some(id) => {
                let resource = engine.resource(&self.session_id, id)?;
                let module = resource.as_module().ok_or_else(|| {
                    BridgeError::invalid_argument(
                        "module",
                        format!("resource `{id}` is not a module"),
                    )
                })?;
                Some(
                    module
                        .forward_with(engine, &self.session_id, values, HashMap::new())
                        .await?,
                )
            }
        };
        let callback = engine.callbacks().get(&self.session_id, metric)?;
        let mut arguments = HashMap::new();
        for parameter in &callback.parameters {
            let name = parameter.name.as_str();
            let argument = if let Some(v) = values.get(name) {
                v.clone()
            } else if name == VALUES {
                map_value(values.clone().into_iter())
            } else if name == TRIAL {
                int(number as i64)
            } else if name == OUTPUTS
                && let Some(outputs) = &outputs
            {
                outputs.clone()
            } else {
                continue;
            };
            arguments.insert(name.to_owned(), argument);
        }
        let metadata = HashMap::from([
            ("trial".to_owned(), number.to_string()),
            ("optimizer".to_owned(), self.id.clone()),
        ]);
        let response = engine
            .call_callback(
                &self.session_id,
                metric,
                arguments,
                metadata,
                &format!("resource:{}", self.id),
            )
            .await?;
        let score = match response.result.as_ref().and_then(|v| v.kind.as_ref()) {
            Some(Kind::FloatValue(x)) if x.is_finite() => Some(*x),
            Some(Kind::IntValue(k)) => Some(*k as f64),
            _ => None,
        };
        score.ok_or_else(|| {
            let got = match response.result.as_ref().map(|v| &v.kind) {
                None | Some(None) => "nothing".to_owned(),
                Some(Some(Kind::FloatValue(x))) => format!("the non-finite number {x}"),
                Some(Some(_)) => format!(
                    "a {}",
                    mlbridge_client::values::kind_name(response.result.as_ref().unwrap_or(&null()))
                ),
            };
            BridgeError::new(
                ErrorKind::TypeMismatch,
                format!("metric `{metric}` returned {got}, not a finite number"),
            )
            .with("callback", metric)
        })
    }

    async fn ask(&self, engine: &Engine) -> Result<pb::Value> {
        let _op = self.op.lock().await;
        self.not_running()?;
        let token = self.acquire(engine).await?;
        let (number, values) = {
            let mut state = self.state();
            let Some(&number) = state.study.ask_batch(1).first() else {
                return Err(BridgeError::invalid_argument(
                    "method",
                    format!(
                        "optimizer `{}` has no candidate left (its grid is done or it reached {} trials)",
                        self.id,
                        super::trials::MAX_TRIALS
                    ),
                ));
            };
            let trial = state.study.trial(number).expect("just drawn");
            let values = trial.values(state.study.space());
            state.asked.insert(number, Instant::now());
            (number, values)
        };
        let metadata = HashMap::from([("trial".to_owned(), number.to_string())]);
        if let Err(e) = self
            .write(engine, &values, self.context(&token, metadata))
            .await
        {
            let mut state = self.state();
            state.asked.remove(&number);
            state
                .study
                .tell(number, Outcome::Failed((&e).into()), Duration::ZERO, 1)?;
            return Err(e);
        }
        Ok(map_value(
            [
                ("number".to_owned(), int(number as i64)),
                ("values".to_owned(), map_value(values.into_iter())),
            ]
            .into_iter(),
        ))
    }

    fn tell(&self, mut arguments: HashMap<String, pb::Value>) -> Result<pb::Value> {
        config::known_keys(
            "arguments",
            &arguments,
            &["error", "number", "score", "state"],
        )?;
        self.not_running()?;
        let number = arguments
            .remove("number")
            .ok_or_else(|| {
                BridgeError::invalid_argument("number", "`tell` needs the trial `number`")
            })
            .and_then(|v| config::integer("number", &v))?;
        let number = u64::try_from(number).map_err(|_| {
            BridgeError::invalid_argument("number", format!("trial {number} was never asked for"))
        })?;
        let score = match arguments.remove("score").map(|v| v.kind) {
            None | Some(None | Some(Kind::NullValue(_))) => None,
            Some(Some(Kind::FloatValue(x))) => Some(x),
            Some(Some(Kind::IntValue(k))) => Some(k as f64),
            Some(kind) => {
                return Err(BridgeError::invalid_argument(
                    "score",
                    format!(
                        "`score` must be a number, not {}",
                        mlbridge_client::values::kind_name(&pb::Value { kind })
                    ),
                ));
            }
        };
        let error = arguments
            .remove("error")
            .map(|v| config::text("error", &v).map(str::to_owned))
            .transpose()?;
        let reported = |message: Option<String>| TrialError {
            kind: "REPORTED".to_owned(),
            remote_type: String::new(),
            message: message.unwrap_or_else(|| "reported by tell".to_owned()),
            traceback: String::new(),
        };
        let state_name = arguments
            .remove("state")
            .map(|v| config::text("state", &v).map(str::to_owned))
            .transpose()?;
        let outcome = match (state_name.as_deref(), score) {
            (None | Some("complete"), Some(score)) => Outcome::Complete(score),
            (None | Some("complete"), None) => {
                return Err(BridgeError::invalid_argument(
                    "score",
                    "`tell` needs a `score` for a complete trial (or a `state`: failed, pruned)",
                ));
            }
            (Some("failed"), _) => Outcome::Failed(reported(error)),
            (Some("pruned"), _) => Outcome::Pruned(error.map(|e| reported(Some(e)))),
            (Some(other), _) => {
                return Err(BridgeError::invalid_argument(
                    "state",
                    format!("`state` must be complete, failed or pruned, not `{other}`"),
                ));
            }
        };
        let mut state = self.state();
        let duration = state
            .asked
            .get(&number)
            .map_or(Duration::ZERO, Instant::elapsed);
        let State { study, asked, .. } = &mut *state;
        study.tell(number, outcome, duration, 1)?;
        let told = study
            .trial(number)
            .map_or_else(null, |t| t.to_value(study.space()));
        asked.remove(&number);
        Ok(told)
    }

    async fn apply_best(&self, engine: &Engine) -> Result<pb::Value> {
        let _op = self.op.lock().await;
        self.not_running()?;
        let (number, values) = self.best_values()?;
        let metadata = HashMap::from([
            ("trial".to_owned(), number.to_string()),
            ("applied".to_owned(), "best".to_owned()),
        ]);
        let token = self.state().token.clone();
        if let Some(token) = token {
            match self
                .write(engine, &values, self.context(&token, metadata.clone()))
                .await
            {
                Err(e) if e.kind == ErrorKind::LockNotHeld => self.state().token = None,
                other => return other,
            }
        }
        self.write(engine, &values, self.context("", metadata))
            .await
    }

    async fn restore(&self, engine: &Engine) -> Result<pb::Value> {
        let _op = self.op.lock().await;
        self.not_running()?;
        let originals = self.originals()?;
        let metadata = HashMap::from([("applied".to_owned(), "restore".to_owned())]);
        self.write_and_release(engine, &originals, metadata).await
    }
}

/// `VARIABLE_LOCKED` for a refused acquisition, naming the holder of the first conflict.
fn locked(conflicts: &[pb::LockConflict]) -> BridgeError {
    let Some(conflict) = conflicts.first() else {
        return BridgeError::internal("the lock was refused without a conflict");
    };
    let expires_at = conflict
        .expires_at
        .map(|t| t.to_string())
        .unwrap_or_default();
    BridgeError::new(
        ErrorKind::VariableLocked,
        format!(
            "variable `{}` is locked by optimizer `{}` until {expires_at} unless renewed",
            conflict.variable_name, conflict.optimizer_id
        ),
    )
    .with("variable", &conflict.variable_name)
    .with("optimizer_id", &conflict.optimizer_id)
    .with("expires_at", expires_at)
}

#[tonic::async_trait]
impl NativeResource for Optimizer {
    fn methods(&self) -> &'static [&'static str] {
        &[
            "apply_best",
            "ask",
            "best",
            "restore",
            "run",
            "tell",
            "trials",
        ]
    }

    async fn invoke(&self, call: ResourceCall<'_>) -> Result<Invoked> {
        let core = &self.core;
        let no_arguments = |arguments: &HashMap<String, pb::Value>| {
            config::known_keys("arguments", arguments, &[])
        };
        let result = match call.method {
            "run" => Some(core.run(call.engine, call.arguments).await?),
            "ask" => {
                no_arguments(&call.arguments)?;
                Some(core.ask(call.engine).await?)
            }
            "tell" => Some(core.tell(call.arguments)?),
            "best" => {
                no_arguments(&call.arguments)?;
                core.best_value()
            }
            "trials" => {
                no_arguments(&call.arguments)?;
                let state = core.state();
                let space = state.study.space();
                Some(value(Kind::ListValue(pb::ValueList {
                    values: state
                        .study
                        .trials()
                        .iter()
                        .map(|t| t.to_value(space))
                        .collect(),
                })))
            }
            "apply_best" => {
                no_arguments(&call.arguments)?;
                Some(core.apply_best(call.engine).await?)
            }
            "restore" => {
                no_arguments(&call.arguments)?;
                Some(core.restore(call.engine).await?)
            }
            other => {
                return Err(BridgeError::internal(format!(
                    "optimizer method `{other}` reached invoke"
                )));
            }
        };
        Ok(Invoked {
            result,
            metadata: HashMap::new(),
        })
    }

    async fn release(&self, engine: &Engine, session_id: &str) {
        self.core.stop.send_replace(Some(Stop::Released));
        let token = self.core.state().token.take();
        if let Some(token) = token {
            // Gives the lock up without writing; an expired one is already gone.
            let _ = engine
                .state()
                .stop_optimization(
                    session_id,
                    &token,
                    HashMap::new(),
                    self.core.context("", HashMap::new()),
                )
                .await;
        }
    }

    fn ended(&self) {
        self.core.stop.send_replace(Some(Stop::SessionEnded));
    }

    fn labels(&self) -> HashMap<String, String> {
        HashMap::from([("seed".to_owned(), self.core.config.seed.to_string())])
    }
}
