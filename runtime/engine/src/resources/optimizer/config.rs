//! Reading an optimizer's `config` and a method's arguments: plain checks with messages that
//! name the key and say what was expected.

use std::collections::HashMap;
use std::time::Duration;

use mlbridge_proto::mlbridge::v1::{self as pb, value::Kind};

use super::trials::Direction;
use crate::error::{BridgeError, Result};
use crate::value::number;

/// Variables one optimizer tunes at most.
pub const MAX_VARIABLES: usize = 32;
/// Retries of one candidate at most.
pub const MAX_RETRIES: i64 = 10;
/// Grid points per continuous dimension at most.
pub const MAX_GRID_POINTS: i64 = 1000;
/// Trials evaluated at once at most.
pub const MAX_PARALLEL: i64 = 64;

/// How `run` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Write the best trial's values.
    ApplyBest,
    /// Write back the values from before the first trial.
    Restore,
}

impl Finish {
    /// The name `run` reports.
    pub fn name(self) -> &'static str {
        match self {
            Finish::ApplyBest => "apply_best",
            Finish::Restore => "restore",
        }
    }
}

/// A checked optimizer configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The tuned variables, in config order.
    pub variables: Vec<String>,
    /// The metric callback.
    pub metric: Option<String>,
    /// Whether higher scores are better.
    pub direction: Direction,
    /// The seed, given or drawn (as given: an integer that reads back as one).
    pub seed: i64,
    /// A module resource run before each metric call.
    pub module: Option<String>,
    /// Re-evaluations of a failed candidate.
    pub retries: u32,
    /// A failed trial ends the run.
    pub stop_on_failure: bool,
    /// The lock's lease (`None`: the engine's default).
    pub lease: Option<Duration>,
    /// How `run` ends.
    pub on_finish: Finish,
    /// Grid points per continuous dimension.
    pub grid_points: usize,
    /// Random trials before TPE models.
    pub startup_trials: usize,
}

const KEYS: &[&str] = &[
    "direction",
    "grid_points",
    "lease",
    "metric",
    "module",
    "on_finish",
    "retries",
    "seed",
    "startup_trials",
    "stop_on_failure",
    "variables",
];

/// What a value holds, for messages.
fn what(value: &pb::Value) -> &'static str {
    mlbridge_client::values::kind_name(value)
}

fn bad(key: &str, message: String) -> BridgeError {
    BridgeError::invalid_argument(key, message).with("key", key)
}

/// An integer argument (a float with no fraction is accepted).
pub fn integer(key: &str, value: &pb::Value) -> Result<i64> {
    match value.kind {
        Some(Kind::IntValue(k)) => Ok(k),
        Some(Kind::FloatValue(x)) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(x as i64),
        _ => Err(bad(
            key,
            format!("`{key}` must be an integer, not {}", what(value)),
        )),
    }
}

/// An integer argument within `[low, high]`.
pub fn integer_in(key: &str, value: &pb::Value, low: i64, high: i64) -> Result<i64> {
    let k = integer(key, value)?;
    if k < low || k > high {
        return Err(bad(
            key,
            format!("`{key}` must be between {low} and {high}, not {k}"),
        ));
    }
    Ok(k)
}

/// A number of seconds greater than zero.
pub fn seconds(key: &str, value: &pb::Value) -> Result<Duration> {
    let s = match value.kind {
        Some(Kind::IntValue(k)) => k as f64,
        Some(Kind::FloatValue(x)) => x,
        _ => {
            return Err(bad(
                key,
                format!("`{key}` must be a number of seconds, not {}", what(value)),
            ));
        }
    };
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            bad(
                key,
                format!(
                    "`{key}` must be a number of seconds greater than zero, not {}",
                    number(s)
                ),
            )
        })
}

/// A string argument.
pub fn text<'v>(key: &str, value: &'v pb::Value) -> Result<&'v str> {
    match &value.kind {
        Some(Kind::StringValue(s)) => Ok(s),
        Some(Kind::ChoiceValue(c)) => Ok(&c.value),
        _ => Err(bad(
            key,
            format!("`{key}` must be a string, not {}", what(value)),
        )),
    }
}

/// A boolean argument.
pub fn boolean(key: &str, value: &pb::Value) -> Result<bool> {
    match value.kind {
        Some(Kind::BoolValue(b)) => Ok(b),
        _ => Err(bad(
            key,
            format!("`{key}` must be a boolean, not {}", what(value)),
        )),
    }
}

/// Refuses keys outside `known`, naming them and the known ones.
pub fn known_keys<V>(what: &str, given: &HashMap<String, V>, known: &[&str]) -> Result<()> {
    let mut unknown: Vec<&str> = given
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    Err(BridgeError::invalid_argument(
        what,
        format!(
            "unknown {what} {}; known: {}",
            unknown
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            known.join(", ")
        ),
    )
    .with("key", unknown[0]))
}

impl Config {
    /// Reads `config` for an optimizer of sampler `name`.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` naming the key at fault: unknown keys, missing or malformed
    /// `variables`, a bad `direction`, `on_finish`, number or bound.
    pub fn parse(mut config: HashMap<String, pb::Value>) -> Result<Config> {
        known_keys("config", &config, KEYS)?;
        let variables = match config.remove("variables") {
            None => {
                return Err(bad(
                    "variables",
                    "`variables` is required: a list of the variable names to tune".to_owned(),
                ));
            }
            Some(pb::Value {
                kind: Some(Kind::ListValue(list)),
            }) => {
                let mut names: Vec<String> = Vec::with_capacity(list.values.len());
                for value in &list.values {
                    let name = text("variables", value)?;
                    if names.iter().any(|n| n == name) {
                        return Err(bad(
                            "variables",
                            format!("`variables` names `{name}` twice"),
                        ));
                    }
                    names.push(name.to_owned());
                }
                names
            }
            Some(pb::Value {
                kind: Some(Kind::StringValue(name)),
            }) => vec![name],
            Some(other) => {
                return Err(bad(
                    "variables",
                    format!(
                        "`variables` must be a list of variable names, not {}",
                        what(&other)
                    ),
                ));
            }
        };
        if variables.is_empty() || variables.len() > MAX_VARIABLES {
            return Err(bad(
                "variables",
                format!(
                    "`variables` must name 1 to {MAX_VARIABLES} variables, not {}",
                    variables.len()
                ),
            ));
        }
        let get = |config: &mut HashMap<String, pb::Value>, key: &str| config.remove(key);
        let metric = get(&mut config, "metric")
            .map(|v| text("metric", &v).map(str::to_owned))
            .transpose()?;
        let direction = match get(&mut config, "direction") {
            None => Direction::Maximize,
            Some(v) => {
                let d = text("direction", &v)?;
                Direction::parse(d).ok_or_else(|| {
                    bad(
                        "direction",
                        format!("`direction` must be \"maximize\" or \"minimize\", not \"{d}\""),
                    )
                })?
            }
        };
        let seed = match get(&mut config, "seed") {
            None => (uuid::Uuid::new_v4().as_u64_pair().0 >> 1) as i64,
            Some(v) => integer("seed", &v)?,
        };
        let module = get(&mut config, "module")
            .map(|v| text("module", &v).map(str::to_owned))
            .transpose()?;
        let retries = match get(&mut config, "retries") {
            None => 1,
            Some(v) => integer_in("retries", &v, 0, MAX_RETRIES)? as u32,
        };
        let stop_on_failure = match get(&mut config, "stop_on_failure") {
            None => false,
            Some(v) => boolean("stop_on_failure", &v)?,
        };
        let lease = get(&mut config, "lease")
            .map(|v| seconds("lease", &v))
            .transpose()?;
        let on_finish = match get(&mut config, "on_finish") {
            None => Finish::ApplyBest,
            Some(v) => match text("on_finish", &v)? {
                "apply_best" => Finish::ApplyBest,
                "restore" => Finish::Restore,
                other => {
                    return Err(bad(
                        "on_finish",
                        format!(
                            "`on_finish` must be \"apply_best\" or \"restore\", not \"{other}\""
                        ),
                    ));
                }
            },
        };
        let grid_points = match get(&mut config, "grid_points") {
            None => 5,
            Some(v) => integer_in("grid_points", &v, 2, MAX_GRID_POINTS)? as usize,
        };
        let startup_trials = match get(&mut config, "startup_trials") {
            None => 10,
            Some(v) => {
                integer_in("startup_trials", &v, 1, super::trials::MAX_TRIALS as i64)? as usize
            }
        };
        Ok(Config {
            variables,
            metric,
            direction,
            seed,
            module,
            retries,
            stop_on_failure,
            lease,
            on_finish,
            grid_points,
            startup_trials,
        })
    }
}
