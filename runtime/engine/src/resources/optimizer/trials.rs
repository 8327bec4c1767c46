//! Trials and the study that draws them: trial records and their states, the best trial,
//! and the deterministic scheduler. A batch of trials draws its candidates from the trials
//! finished before it, each with the RNG of its own number, so the same seed gives the same
//! candidates for the same batch size whatever the timing, also after failures (a failed
//! trial keeps its number and feeds no model).

use std::collections::HashMap;
use std::time::Duration;

use mlbridge_proto::mlbridge::v1::{self as pb, value::Kind};

use super::sampler::{Observation, Sampler, trial_rng};
use super::space::{Candidate, Space};
use crate::error::{BridgeError, Result};

/// Trials one optimizer keeps at most (memory stays bounded whatever clients ask).
pub const MAX_TRIALS: usize = 10_000;

/// Whether higher or lower scores are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Higher is better (the default).
    #[default]
    Maximize,
    /// Lower is better.
    Minimize,
}

impl Direction {
    /// Parses `maximize` / `minimize`.
    pub fn parse(text: &str) -> Option<Direction> {
        match text {
            "maximize" => Some(Direction::Maximize),
            "minimize" => Some(Direction::Minimize),
            _ => None,
        }
    }

    /// The loss samplers minimise.
    pub fn loss(self, score: f64) -> f64 {
        match self {
            Direction::Maximize => -score,
            Direction::Minimize => score,
        }
    }
}

/// Where a trial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialState {
    /// Asked, not yet told.
    Running,
    /// Scored.
    Complete,
    /// The metric (or the write, or the module) failed.
    Failed,
    /// The metric did not answer before its deadline.
    TimedOut,
    /// Stopped early by the caller (`tell` with state `pruned`).
    Pruned,
}

impl TrialState {
    /// The name trials report.
    pub fn name(self) -> &'static str {
        match self {
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Failed => "failed",
            TrialState::TimedOut => "timed_out",
            TrialState::Pruned => "pruned",
        }
    }
}

/// Why a trial failed, as data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrialError {
    /// The error kind, without its `ERROR_KIND_` prefix (`CALLBACK_ERROR`, `TIMEOUT`, ...).
    pub kind: String,
    /// The remote exception type, when foreign code raised it.
    pub remote_type: String,
    /// What happened.
    pub message: String,
    /// The remote traceback, when there is one.
    pub traceback: String,
}

impl From<&BridgeError> for TrialError {
    fn from(error: &BridgeError) -> Self {
        let kind = error.kind.as_str_name();
        TrialError {
            kind: kind.strip_prefix("ERROR_KIND_").unwrap_or(kind).to_owned(),
            remote_type: error.remote_type.clone(),
            message: error.message.clone(),
            traceback: error.remote_traceback.clone(),
        }
    }
}

/// How a finished trial ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Scored.
    Complete(f64),
    /// Failed with this error.
    Failed(TrialError),
    /// Timed out with this error.
    TimedOut(TrialError),
    /// Pruned, optionally with a reason.
    Pruned(Option<TrialError>),
}

/// One trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// Its number, from 0, in the order trials were drawn.
    pub number: u64,
    /// Where it stands.
    pub state: TrialState,
    /// What it tried.
    pub candidate: Candidate,
    /// The score, for complete trials.
    pub score: Option<f64>,
    /// The failure, for failed and timed-out trials (and pruned ones told with an error).
    pub error: Option<TrialError>,
    /// Time spent evaluating it, all attempts together.
    pub duration: Duration,
    /// Evaluations made (1 plus retries).
    pub attempts: u32,
}

fn value(kind: Kind) -> pb::Value {
    pb::Value { kind: Some(kind) }
}

fn map(entries: HashMap<String, pb::Value>) -> pb::Value {
    value(Kind::MapValue(pb::ValueMap { entries }))
}

impl Trial {
    /// The candidate values by variable name.
    pub fn values(&self, space: &Space) -> HashMap<String, pb::Value> {
        space
            .dimensions
            .iter()
            .zip(&self.candidate.values)
            .map(|(d, v)| (d.name.clone(), v.clone()))
            .collect()
    }

    /// The trial as methods return it: `{number, state, values, score?, error?,
    /// duration_us, attempts}`.
    pub fn to_value(&self, space: &Space) -> pb::Value {
        let mut entries = HashMap::from([
            (
                "number".to_owned(),
                value(Kind::IntValue(self.number as i64)),
            ),
            (
                "state".to_owned(),
                value(Kind::StringValue(self.state.name().to_owned())),
            ),
            ("values".to_owned(), map(self.values(space))),
            (
                "duration_us".to_owned(),
                value(Kind::IntValue(
                    i64::try_from(self.duration.as_micros()).unwrap_or(i64::MAX),
                )),
            ),
            (
                "attempts".to_owned(),
                value(Kind::IntValue(i64::from(self.attempts))),
            ),
        ]);
        if let Some(score) = self.score {
            entries.insert("score".to_owned(), value(Kind::FloatValue(score)));
        }
        if let Some(error) = &self.error {
            let text = |s: &str| value(Kind::StringValue(s.to_owned()));
            entries.insert(
                "error".to_owned(),
                map(HashMap::from([
                    ("kind".to_owned(), text(&error.kind)),
                    ("type".to_owned(), text(&error.remote_type)),
                    ("message".to_owned(), text(&error.message)),
                    ("traceback".to_owned(), text(&error.traceback)),
                ])),
            );
        }
        map(entries)
    }
}

/// The trials of one optimizer and the sampler that draws them.
#[derive(Debug)]
pub struct Study {
    space: Space,
    sampler: Box<dyn Sampler>,
    seed: u64,
    direction: Direction,
    /// Trial `n` at index `n`.
    trials: Vec<Trial>,
}

impl Study {
    /// A study with no trial yet.
    pub fn new(space: Space, sampler: Box<dyn Sampler>, seed: u64, direction: Direction) -> Self {
        Study {
            space,
            sampler,
            seed,
            direction,
            trials: Vec::new(),
        }
    }

    /// The search space.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The direction.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Every trial, in number order.
    pub fn trials(&self) -> &[Trial] {
        &self.trials
    }

    /// Trial `number`, if drawn.
    pub fn trial(&self, number: u64) -> Option<&Trial> {
        usize::try_from(number)
            .ok()
            .and_then(|i| self.trials.get(i))
    }

    /// How many more trials the sampler can propose (`None`: unbounded), within
    /// [`MAX_TRIALS`].
    pub fn remaining(&self) -> usize {
        let cap = self
            .sampler
            .capacity(&self.space)
            .map_or(MAX_TRIALS, |c| usize::try_from(c).unwrap_or(usize::MAX))
            .min(MAX_TRIALS);
        cap.saturating_sub(self.trials.len())
    }

    /// Draws the next batch of at most `size` trials, all from the trials finished now, and
    /// records them as running. Returns their numbers (fewer than `size`, or none, when the
    /// sampler or the trial bound is exhausted).
    pub fn ask_batch(&mut self, size: usize) -> Vec<u64> {
        let direction = self.direction;
        let history: Vec<Observation<'_>> = self
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .filter_map(|t| {
                t.score.map(|score| Observation {
                    coordinates: &t.candidate.coordinates,
                    loss: direction.loss(score),
                })
            })
            .collect();
        let first = self.trials.len() as u64;
        let mut drawn = Vec::new();
        for number in first..first + size.min(self.remaining()) as u64 {
            let mut rng = trial_rng(self.seed, number);
            let Some(xs) = self.sampler.sample(&self.space, number, &history, &mut rng) else {
                break;
            };
            drawn.push(self.space.candidate(&xs));
        }
        drop(history);
        let numbers = (first..first + drawn.len() as u64).collect();
        for (number, candidate) in (first..).zip(drawn) {
            self.trials.push(Trial {
                number,
                state: TrialState::Running,
                candidate,
                score: None,
                error: None,
                duration: Duration::ZERO,
                attempts: 0,
            });
        }
        numbers
    }

    /// Records how a running trial ended and returns it.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` for a number never drawn or already told, or a non-finite score.
    pub fn tell(
        &mut self,
        number: u64,
        outcome: Outcome,
        duration: Duration,
        attempts: u32,
    ) -> Result<&Trial> {
        let Some(trial) = usize::try_from(number)
            .ok()
            .and_then(|i| self.trials.get_mut(i))
        else {
            return Err(BridgeError::invalid_argument(
                "number",
                format!("trial {number} was never asked for"),
            )
            .with("number", number));
        };
        if trial.state != TrialState::Running {
            return Err(BridgeError::invalid_argument(
                "number",
                format!(
                    "trial {number} was already told (it is {})",
                    trial.state.name()
                ),
            )
            .with("number", number));
        }
        let (state, score, error) = match outcome {
            Outcome::Complete(score) if !score.is_finite() => {
                return Err(BridgeError::invalid_argument(
                    "score",
                    format!("trial {number}: the score must be a finite number, not {score}"),
                ));
            }
            Outcome::Complete(score) => (TrialState::Complete, Some(score), None),
            Outcome::Failed(error) => (TrialState::Failed, None, Some(error)),
            Outcome::TimedOut(error) => (TrialState::TimedOut, None, Some(error)),
            Outcome::Pruned(error) => (TrialState::Pruned, None, error),
        };
        trial.state = state;
        trial.score = score;
        trial.error = error;
        trial.duration = duration;
        trial.attempts = attempts;
        Ok(trial)
    }

    /// The best complete trial (the earliest among equals), if any.
    pub fn best(&self) -> Option<&Trial> {
        let direction = self.direction;
        self.trials
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .filter_map(|t| t.score.map(|s| (t, direction.loss(s))))
            .fold(None, |best: Option<(&Trial, f64)>, (t, loss)| match best {
                Some((_, b)) if b <= loss => best,
                _ => Some((t, loss)),
            })
            .map(|(t, _)| t)
    }

    /// Counts of trials by state: (complete, failed, timed_out, pruned).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let count = |s: TrialState| self.trials.iter().filter(|t| t.state == s).count();
        (
            count(TrialState::Complete),
            count(TrialState::Failed),
            count(TrialState::TimedOut),
            count(TrialState::Pruned),
        )
    }
}

#[cfg(test)]
mod tests;
