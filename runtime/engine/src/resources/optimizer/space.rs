//! The search space of an optimizer, read from the tuned variables themselves: FLOAT and
//! INTEGER from `min`/`max` (log scale when the variable's metadata says `"scale": "log"`),
//! CHOICE from its choices, BOOLEAN as {false, true}, STRING with allowed values as a
//! categorical. Samplers work on an internal coordinate per dimension (the value itself,
//! its logarithm, or a category index); [`Space::snap`] turns a coordinate into the value
//! written to the variable and the coordinate that value stands for.

use mlbridge_proto::mlbridge::v1::{self as pb, VariableType, value::Kind};

use crate::error::{BridgeError, Result};
use crate::value::number;

/// Metadata key of a variable that asks for a log-scale dimension.
pub const SCALE_KEY: &str = "scale";

/// One dimension's domain.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// Real numbers in `[low, high]` (bounds already moved inside exclusive constraints).
    Float {
        /// Smallest value allowed.
        low: f64,
        /// Largest value allowed.
        high: f64,
        /// Sampled uniformly in the logarithm.
        log: bool,
    },
    /// Integers in `[low, high]`.
    Integer {
        /// Smallest value allowed.
        low: i64,
        /// Largest value allowed.
        high: i64,
        /// Sampled uniformly in the logarithm.
        log: bool,
    },
    /// One of a fixed list of values; the coordinate is the index.
    Categorical {
        /// The values, in the variable's order.
        choices: Vec<pb::Value>,
    },
}

/// One tuned variable.
#[derive(Debug, Clone, PartialEq)]
pub struct Dimension {
    /// The variable's name.
    pub name: String,
    /// Its domain.
    pub domain: Domain,
}

/// The dimensions, in the order the optimizer's config names the variables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Space {
    /// One per tuned variable.
    pub dimensions: Vec<Dimension>,
}

/// A point of the space: coordinates for the samplers and values for the variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// One internal coordinate per dimension.
    pub coordinates: Vec<f64>,
    /// One value per dimension, as written to the variable.
    pub values: Vec<pb::Value>,
}

fn refuse(variable: &str, message: String) -> BridgeError {
    BridgeError::invalid_argument("variables", message).with("variable", variable)
}

impl Dimension {
    /// The dimension of a variable, from its type, constraints and metadata.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` naming the variable when it cannot be searched: a number without
    /// `min` and `max`, an empty range, log scale without a positive minimum, a string
    /// without allowed values, or a type with no search space.
    pub fn of(variable: &pb::Variable) -> Result<Dimension> {
        let name = variable.name.as_str();
        let c = variable.constraints.clone().unwrap_or_default();
        let ty = VariableType::try_from(variable.r#type).unwrap_or(VariableType::Unspecified);
        let scale = variable.metadata.get(SCALE_KEY).map(String::as_str);
        let log = match scale {
            None | Some("linear") => false,
            Some("log") => true,
            Some(other) => {
                return Err(refuse(
                    name,
                    format!(
                        "variable `{name}` has metadata scale `{other}`; the scales are `linear` and `log`"
                    ),
                ));
            }
        };
        let domain = match ty {
            VariableType::Float | VariableType::Integer => {
                let (Some(min), Some(max)) = (c.min, c.max) else {
                    return Err(refuse(
                        name,
                        format!(
                            "variable `{name}` ({}) needs `min` and `max` constraints to be tuned",
                            ty.name()
                        ),
                    ));
                };
                if !(min.is_finite() && max.is_finite()) {
                    return Err(refuse(
                        name,
                        format!("variable `{name}` needs finite `min` and `max` to be tuned"),
                    ));
                }
                if log && min <= 0.0 {
                    return Err(refuse(
                        name,
                        format!(
                            "variable `{name}` asks for log scale, which needs `min` > 0 (it is {})",
                            number(min)
                        ),
                    ));
                }
                if ty == VariableType::Float {
                    let low = if c.min_exclusive { min.next_up() } else { min };
                    let high = if c.max_exclusive {
                        max.next_down()
                    } else {
                        max
                    };
                    if low > high {
                        return Err(empty(name, min, max));
                    }
                    Domain::Float { low, high, log }
                } else {
                    let low = if c.min_exclusive {
                        min.floor() + 1.0
                    } else {
                        min.ceil()
                    };
                    let high = if c.max_exclusive {
                        max.ceil() - 1.0
                    } else {
                        max.floor()
                    };
                    if low > high || low < i64::MIN as f64 || high > i64::MAX as f64 {
                        return Err(empty(name, min, max));
                    }
                    Domain::Integer {
                        low: low as i64,
                        high: high as i64,
                        log,
                    }
                }
            }
            VariableType::Choice | VariableType::String if !c.choices.is_empty() => {
                let choice = ty == VariableType::Choice;
                let mut choices: Vec<pb::Value> = Vec::with_capacity(c.choices.len());
                for option in &c.choices {
                    let kind = if choice {
                        Kind::ChoiceValue(pb::Choice {
                            value: option.clone(),
                        })
                    } else {
                        Kind::StringValue(option.clone())
                    };
                    let value = pb::Value { kind: Some(kind) };
                    if !choices.contains(&value) {
                        choices.push(value);
                    }
                }
                Domain::Categorical { choices }
            }
            VariableType::Boolean => Domain::Categorical {
                choices: vec![
                    pb::Value {
                        kind: Some(Kind::BoolValue(false)),
                    },
                    pb::Value {
                        kind: Some(Kind::BoolValue(true)),
                    },
                ],
            },
            VariableType::String => {
                return Err(refuse(
                    name,
                    format!(
                        "variable `{name}` is a string without allowed values (`choices`); only those can be tuned"
                    ),
                ));
            }
            other => {
                return Err(refuse(
                    name,
                    format!(
                        "variable `{name}` is of type {}, which has no search space (float, integer, choice, boolean and string with allowed values do)",
                        other.name()
                    ),
                ));
            }
        };
        if log && matches!(domain, Domain::Categorical { .. }) {
            return Err(refuse(
                name,
                format!("variable `{name}` asks for log scale, which only numbers have"),
            ));
        }
        Ok(Dimension {
            name: name.to_owned(),
            domain,
        })
    }

    /// The half-open interval `[start, end)` of internal coordinates the samplers draw
    /// from. Every coordinate inside it snaps to an allowed value.
    pub fn interval(&self) -> (f64, f64) {
        match &self.domain {
            Domain::Float { low, high, log } => {
                let (a, b) = if *log {
                    (low.ln(), high.ln())
                } else {
                    (*low, *high)
                };
                // A single-point range still needs a non-empty interval.
                if a < b { (a, b) } else { (a, a + 1.0) }
            }
            Domain::Integer { low, high, log } => {
                let (a, b) = (*low as f64 - 0.5, *high as f64 + 0.5);
                if *log {
                    (a.max(0.5).ln(), b.ln())
                } else {
                    (a, b)
                }
            }
            Domain::Categorical { choices } => (0.0, choices.len() as f64),
        }
    }

    /// Whether the coordinate is a category index (TPE models those with a histogram).
    pub fn categorical(&self) -> bool {
        matches!(self.domain, Domain::Categorical { .. })
    }

    /// The value at internal coordinate `x` and the coordinate that value stands for (an
    /// integer's coordinate is that of the rounded integer; a category's is its index).
    pub fn snap(&self, x: f64) -> (f64, pb::Value) {
        match &self.domain {
            Domain::Float { low, high, log } => {
                let v = if *log { x.exp() } else { x };
                let v = v.clamp(*low, *high);
                let coordinate = if *log { v.ln() } else { v };
                let (start, end) = self.interval();
                (coordinate.clamp(start, end.next_down()), float(v))
            }
            Domain::Integer { low, high, log } => {
                let v = if *log { x.exp() } else { x };
                let k = (v.round() as i64).clamp(*low, *high);
                let coordinate = if *log { (k as f64).ln() } else { k as f64 };
                (coordinate, int(k))
            }
            Domain::Categorical { choices } => {
                let last = choices.len().saturating_sub(1);
                let i = if x.is_finite() && x > 0.0 {
                    (x.floor() as usize).min(last)
                } else {
                    0
                };
                (i as f64, choices[i].clone())
            }
        }
    }

    /// The grid of this dimension, as raw coordinates for [`Dimension::snap`]: every choice,
    /// every integer when there are at most `points` of them, else `points` values evenly
    /// spaced from low to high (in the logarithm for log scale), each value once.
    pub fn grid(&self, points: usize) -> Vec<f64> {
        let points = points.max(2);
        let spaced = |a: f64, b: f64| -> Vec<f64> {
            (0..points)
                .map(|i| a + (b - a) * i as f64 / (points - 1) as f64)
                .collect()
        };
        let mut grid: Vec<f64> = match &self.domain {
            Domain::Categorical { choices } => (0..choices.len()).map(|i| i as f64).collect(),
            Domain::Integer { low, high, .. }
                if (*high as i128 - *low as i128) < points as i128 =>
            {
                (*low..=*high).map(|k| self.coordinate_of_int(k)).collect()
            }
            Domain::Integer { low, high, log } => {
                let (a, b) = (*low as f64, *high as f64);
                if *log {
                    spaced(a.ln(), b.ln())
                } else {
                    spaced(a, b)
                }
            }
            Domain::Float { low, high, log } => {
                if low == high {
                    vec![if *log { low.ln() } else { *low }]
                } else if *log {
                    spaced(low.ln(), high.ln())
                } else {
                    spaced(*low, *high)
                }
            }
        };
        // Keep each distinct value once (rounded integers may coincide).
        let mut seen: Vec<pb::Value> = Vec::with_capacity(grid.len());
        grid.retain(|x| {
            let (_, value) = self.snap(*x);
            let new = !seen.contains(&value);
            if new {
                seen.push(value);
            }
            new
        });
        grid
    }

    fn coordinate_of_int(&self, k: i64) -> f64 {
        match self.domain {
            Domain::Integer { log: true, .. } => (k as f64).ln(),
            _ => k as f64,
        }
    }
}

fn empty(name: &str, min: f64, max: f64) -> BridgeError {
    refuse(
        name,
        format!(
            "variable `{name}` has an empty range [{}, {}]; nothing to tune",
            number(min),
            number(max)
        ),
    )
}

fn float(v: f64) -> pb::Value {
    pb::Value {
        kind: Some(Kind::FloatValue(v)),
    }
}

fn int(k: i64) -> pb::Value {
    pb::Value {
        kind: Some(Kind::IntValue(k)),
    }
}

impl Space {
    /// The space of `variables`, in that order.
    ///
    /// # Errors
    ///
    /// The first variable that cannot be searched (see [`Dimension::of`]).
    pub fn of(variables: &[pb::Variable]) -> Result<Space> {
        Ok(Space {
            dimensions: variables.iter().map(Dimension::of).collect::<Result<_>>()?,
        })
    }

    /// Number of dimensions.
    pub fn len(&self) -> usize {
        self.dimensions.len()
    }

    /// Whether there is no dimension.
    pub fn is_empty(&self) -> bool {
        self.dimensions.is_empty()
    }

    /// The candidate at raw coordinates `xs` (one per dimension), snapped to allowed values.
    pub fn candidate(&self, xs: &[f64]) -> Candidate {
        let (coordinates, values) = self
            .dimensions
            .iter()
            .zip(xs)
            .map(|(dimension, x)| dimension.snap(*x))
            .unzip();
        Candidate {
            coordinates,
            values,
        }
    }

    /// The number of grid points with `points` per continuous dimension, saturating.
    pub fn grid_size(&self, points: usize) -> u64 {
        self.dimensions
            .iter()
            .map(|d| d.grid(points).len() as u64)
            .fold(1u64, u64::saturating_mul)
    }
}

#[cfg(test)]
mod tests;
