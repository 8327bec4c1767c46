//! Types and constraints: checking a [`Value`] against a declared [`VariableType`] and
//! [`Constraints`], normalising accepted conversions, and rejecting constraint definitions
//! that cannot apply. The Python SDK mirrors these rules and messages.

use mlbridge_proto::mlbridge::v1::{
    self as pb, Constraints, Dtype, Value, VariableType, value::Kind,
};

use crate::error::{BridgeError, ErrorKind, Result, clip};
pub use mlbridge_client::values::kind_name;

/// Formats a number as both languages print it: integral values without a fraction.
pub fn number(value: f64) -> String {
    if value.is_nan() {
        "nan".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// What a value being checked is: the subject of every message [`validate`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A session variable, by name.
    Variable(&'a str),
    /// A parameter of a framework operation, possibly read from a bound variable.
    Parameter {
        /// The operation's full name (`builtin.echo`).
        operation: &'a str,
        /// The parameter's name.
        parameter: &'a str,
        /// The variable the value was read from, for a bound parameter.
        bound: Option<&'a str>,
    },
    /// An argument of a host tool.
    Argument {
        /// The tool's name.
        tool: &'a str,
        /// The argument's (parameter spec's) name.
        argument: &'a str,
    },
}

/// A subject and the path to the element being checked (`[2]`, `["key"]`).
struct Target<'a> {
    subject: Subject<'a>,
    path: String,
}

impl Target<'_> {
    fn element(&self, step: String) -> Self {
        Target {
            subject: self.subject,
            path: format!("{}{step}", self.path),
        }
    }

    /// The subject as messages name it: ``variable `v[0]` ``, ``argument `tool.a` ``,
    /// ``parameter `op.p` (bound to variable `v`) ``.
    fn describe(&self) -> String {
        let path = &self.path;
        match self.subject {
            Subject::Variable(name) => format!("variable `{name}{path}`"),
            Subject::Argument { tool, argument } => format!("argument `{tool}.{argument}{path}`"),
            Subject::Parameter {
                operation,
                parameter,
                bound: None,
            } => format!("parameter `{operation}.{parameter}{path}`"),
            Subject::Parameter {
                operation,
                parameter,
                bound: Some(variable),
            } => format!(
                "parameter `{operation}.{parameter}{path}` (bound to variable `{variable}`)"
            ),
        }
    }

    /// Whose constraints a bad pattern belongs to (variables keep their bare name).
    fn owner(&self) -> String {
        match self.subject {
            Subject::Variable(name) => format!("`{name}{}`", self.path),
            _ => self.describe(),
        }
    }

    /// The context keys that name the subject: `variable` for a variable; `parameter` and
    /// `tool` or `operation` for a tool argument or an operation parameter (plus `variable`
    /// for a bound parameter).
    fn tag(&self, error: BridgeError) -> BridgeError {
        match self.subject {
            Subject::Variable(name) => error.with("variable", format!("{name}{}", self.path)),
            Subject::Argument { tool, argument } => {
                error.with("tool", tool).with("parameter", argument)
            }
            Subject::Parameter {
                operation,
                parameter,
                bound,
            } => {
                let error = error
                    .with("operation", operation)
                    .with("parameter", parameter);
                match bound {
                    Some(variable) => error.with("variable", variable),
                    None => error,
                }
            }
        }
    }
}

fn violation(
    at: &Target<'_>,
    constraint: &str,
    limit: impl ToString,
    detail: String,
) -> BridgeError {
    at.tag(BridgeError::new(
        ErrorKind::ConstraintViolation,
        format!("{}: {detail}", at.describe()),
    ))
    .with("constraint", constraint)
    .with("limit", limit.to_string())
}

fn mismatch(at: &Target<'_>, ty: VariableType, value: &Value) -> BridgeError {
    at.tag(BridgeError::new(
        ErrorKind::TypeMismatch,
        format!(
            "{} expects {}, got {}",
            at.describe(),
            ty.name(),
            kind_name(value)
        ),
    ))
    .with("expected", ty.name())
    .with("actual", kind_name(value))
}

fn invalid_value(at: &Target<'_>, detail: String) -> BridgeError {
    at.tag(BridgeError::new(
        ErrorKind::InvalidArgument,
        format!("{}: {detail}", at.describe()),
    ))
    .with("field", "value")
}

/// The items, comma-separated, clipped like any client text.
fn join<T: ToString>(items: &[T]) -> String {
    let joined = items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    clip(&joined).into_owned()
}

fn shape_text(shape: &[u64]) -> String {
    format!("[{}]", join(shape))
}

/// Checks `value` against `ty` and `constraints` and returns it normalised (int widened to
/// float for FLOAT, string to choice for CHOICE). Every error names `subject`, once, in
/// its message and in its context.
pub fn validate(
    subject: Subject<'_>,
    ty: VariableType,
    constraints: &Constraints,
    value: Value,
) -> Result<Value> {
    let at = Target {
        subject,
        path: String::new(),
    };
    let value = check_type(&at, ty, constraints.nullable, value)?;
    check_constraints(&at, constraints, &value)?;
    convert_elements(&at, constraints, value)
}

/// Applies the element type's conversions (int -> float, string -> choice) to every element
/// of a list or value of a map, as the proto specifies. Runs after the checks, so the
/// elements are known to be acceptable.
fn convert_elements(at: &Target<'_>, c: &Constraints, value: Value) -> Result<Value> {
    let Some(element) = element_type(c) else {
        return Ok(value);
    };
    let kind = match value.kind {
        Some(Kind::ListValue(list)) => {
            let values = list
                .values
                .into_iter()
                .enumerate()
                .map(|(i, item)| check_type(&at.element(format!("[{i}]")), element, false, item))
                .collect::<Result<Vec<_>>>()?;
            Kind::ListValue(pb::ValueList { values })
        }
        Some(Kind::MapValue(map)) => {
            let entries = map
                .entries
                .into_iter()
                .map(|(key, item)| {
                    let item = check_type(
                        &at.element(format!("[{:?}]", clip(&key))),
                        element,
                        false,
                        item,
                    )?;
                    Ok((key, item))
                })
                .collect::<Result<_>>()?;
            Kind::MapValue(pb::ValueMap { entries })
        }
        other => return Ok(Value { kind: other }),
    };
    Ok(Value { kind: Some(kind) })
}

fn check_type(at: &Target<'_>, ty: VariableType, nullable: bool, value: Value) -> Result<Value> {
    let Some(kind) = value.kind.clone() else {
        return Err(invalid_value(
            at,
            "no value given (Value has no case set)".to_owned(),
        ));
    };
    let accepted = match (ty, kind) {
        (VariableType::Any, kind) => kind,
        (_, Kind::NullValue(n)) if nullable => Kind::NullValue(n),
        (VariableType::Float, Kind::FloatValue(v)) => Kind::FloatValue(v),
        (VariableType::Float, Kind::IntValue(v)) => Kind::FloatValue(v as f64),
        (VariableType::Integer, Kind::IntValue(v)) => Kind::IntValue(v),
        (VariableType::String, Kind::StringValue(v)) => Kind::StringValue(v),
        (VariableType::Boolean, Kind::BoolValue(v)) => Kind::BoolValue(v),
        (VariableType::Choice, Kind::ChoiceValue(v)) => Kind::ChoiceValue(v),
        (VariableType::Choice, Kind::StringValue(v)) => Kind::ChoiceValue(pb::Choice { value: v }),
        (VariableType::Module, Kind::ModuleValue(v)) => Kind::ModuleValue(v),
        (VariableType::Embedding, Kind::EmbeddingValue(v)) => Kind::EmbeddingValue(v),
        (VariableType::Embedding, Kind::ListValue(list)) => match embedding_of(&list) {
            Some(embedding) => Kind::EmbeddingValue(embedding),
            None => return Err(mismatch(at, ty, &value)),
        },
        (VariableType::Tensor, Kind::TensorValue(v)) => Kind::TensorValue(v),
        (VariableType::List, Kind::ListValue(v)) => Kind::ListValue(v),
        (VariableType::Map, Kind::MapValue(v)) => Kind::MapValue(v),
        (VariableType::Bytes, Kind::BytesValue(v)) => Kind::BytesValue(v),
        _ => return Err(mismatch(at, ty, &value)),
    };
    Ok(Value {
        kind: Some(accepted),
    })
}

/// A list of numbers as an embedding (what a client sends for a plain list it could not
/// type); `None` when an item is not a number.
fn embedding_of(list: &pb::ValueList) -> Option<pb::Embedding> {
    let values = list
        .values
        .iter()
        .map(|item| match item.kind {
            Some(Kind::FloatValue(v)) => Some(v as f32),
            Some(Kind::IntValue(v)) => Some(v as f32),
            _ => None,
        })
        .collect::<Option<Vec<f32>>>()?;
    Some(pb::Embedding {
        values,
        model: None,
    })
}

fn check_constraints(at: &Target<'_>, c: &Constraints, value: &Value) -> Result<()> {
    let Some(kind) = &value.kind else {
        return Ok(());
    };
    match kind {
        Kind::NullValue(_) => Ok(()),
        Kind::FloatValue(v) => check_range(at, c, *v),
        Kind::IntValue(v) => check_range(at, c, *v as f64),
        Kind::StringValue(s) => {
            if !c.choices.is_empty() && !c.choices.iter().any(|choice| choice == s) {
                return Err(violation(
                    at,
                    "choices",
                    join(&c.choices),
                    format!("`{}` is not one of: {}", clip(s), join(&c.choices)),
                ));
            }
            check_length(at, c, s.chars().count() as u64)?;
            if let Some(pattern) = &c.pattern {
                let regex = compile_pattern(at, pattern)?;
                if !regex.is_match(s) {
                    return Err(violation(
                        at,
                        "pattern",
                        pattern,
                        format!(
                            "`{}` does not match the pattern `{}`",
                            clip(s),
                            clip(pattern)
                        ),
                    ));
                }
            }
            Ok(())
        }
        Kind::BytesValue(b) => check_length(at, c, b.len() as u64),
        Kind::ChoiceValue(choice) => {
            // A CHOICE variable always has choices; an ANY value may be any choice.
            if !c.choices.is_empty() && !c.choices.iter().any(|option| option == &choice.value) {
                return Err(violation(
                    at,
                    "choices",
                    join(&c.choices),
                    format!(
                        "`{}` is not one of: {}",
                        clip(&choice.value),
                        join(&c.choices)
                    ),
                ));
            }
            Ok(())
        }
        Kind::ModuleValue(module) => {
            if !c.allowed_modules.is_empty() && !c.allowed_modules.contains(&module.name) {
                return Err(violation(
                    at,
                    "allowed_modules",
                    join(&c.allowed_modules),
                    format!(
                        "module `{}` is not one of the allowed modules: {}",
                        clip(&module.name),
                        join(&c.allowed_modules)
                    ),
                ));
            }
            Ok(())
        }
        Kind::EmbeddingValue(embedding) => {
            if let Some(dimensions) = c.dimensions
                && embedding.values.len() != dimensions as usize
            {
                return Err(violation(
                    at,
                    "dimensions",
                    dimensions,
                    format!(
                        "embedding has {} dimensions, expected {dimensions}",
                        embedding.values.len()
                    ),
                ));
            }
            Ok(())
        }
        Kind::TensorValue(tensor) => check_tensor(at, c, tensor),
        Kind::ListValue(list) => {
            check_length(at, c, list.values.len() as u64)?;
            check_items(at, c, list.values.len())?;
            if let Some(element) = element_type(c) {
                for (i, item) in list.values.iter().enumerate() {
                    check_type(&at.element(format!("[{i}]")), element, false, item.clone())?;
                }
            }
            Ok(())
        }
        Kind::MapValue(map) => {
            check_items(at, c, map.entries.len())?;
            if let Some(element) = element_type(c) {
                let mut keys: Vec<&String> = map.entries.keys().collect();
                keys.sort();
                for key in keys {
                    check_type(
                        &at.element(format!("[{:?}]", clip(key))),
                        element,
                        false,
                        map.entries[key].clone(),
                    )?;
                }
            }
            Ok(())
        }
        Kind::BoolValue(_) => Ok(()),
    }
}

fn element_type(c: &Constraints) -> Option<VariableType> {
    c.element_type
        .and_then(|t| VariableType::try_from(t).ok())
        .filter(|t| !matches!(t, VariableType::Unspecified | VariableType::Any))
}

fn check_range(at: &Target<'_>, c: &Constraints, v: f64) -> Result<()> {
    if let Some(min) = c.min
        && (v.is_nan() || v < min || (c.min_exclusive && v == min))
    {
        let detail = if c.min_exclusive {
            format!(
                "{} is not above the exclusive minimum {}",
                number(v),
                number(min)
            )
        } else {
            format!("{} is below the minimum {}", number(v), number(min))
        };
        return Err(violation(at, "min", number(min), detail));
    }
    if let Some(max) = c.max
        && (v.is_nan() || v > max || (c.max_exclusive && v == max))
    {
        let detail = if c.max_exclusive {
            format!(
                "{} is not below the exclusive maximum {}",
                number(v),
                number(max)
            )
        } else {
            format!("{} is above the maximum {}", number(v), number(max))
        };
        return Err(violation(at, "max", number(max), detail));
    }
    Ok(())
}

fn check_length(at: &Target<'_>, c: &Constraints, length: u64) -> Result<()> {
    if let Some(min) = c.min_length
        && length < min
    {
        return Err(violation(
            at,
            "min_length",
            min,
            format!("length {length} is below the minimum length {min}"),
        ));
    }
    if let Some(max) = c.max_length
        && length > max
    {
        return Err(violation(
            at,
            "max_length",
            max,
            format!("length {length} is above the maximum length {max}"),
        ));
    }
    Ok(())
}

fn check_items(at: &Target<'_>, c: &Constraints, count: usize) -> Result<()> {
    if let Some(max) = c.max_items
        && count as u64 > max
    {
        return Err(violation(
            at,
            "max_items",
            max,
            format!("{count} items exceed the maximum of {max}"),
        ));
    }
    Ok(())
}

fn check_tensor(at: &Target<'_>, c: &Constraints, tensor: &pb::Tensor) -> Result<()> {
    let dtype = Dtype::try_from(tensor.dtype).unwrap_or(Dtype::Unspecified);
    let Some(size) = dtype.item_size() else {
        return Err(invalid_value(at, "tensor dtype is unspecified".to_owned()));
    };
    let elements = tensor
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(size as u64));
    if elements != Some(tensor.data.len() as u64) {
        return Err(invalid_value(
            at,
            format!(
                "tensor data has {} bytes, expected {} for shape {} of {}",
                tensor.data.len(),
                elements.map_or("too many".to_owned(), |n| n.to_string()),
                shape_text(&tensor.shape),
                dtype.name()
            ),
        ));
    }
    if let Some(required) = c.dtype.and_then(|d| Dtype::try_from(d).ok())
        && required != Dtype::Unspecified
        && required != dtype
    {
        return Err(violation(
            at,
            "dtype",
            required.name(),
            format!(
                "tensor dtype {} is not the required {}",
                dtype.name(),
                required.name()
            ),
        ));
    }
    if !c.shape.is_empty() {
        let fits = c.shape.len() == tensor.shape.len()
            && c.shape
                .iter()
                .zip(&tensor.shape)
                .all(|(want, have)| *want == 0 || want == have);
        if !fits {
            return Err(violation(
                at,
                "shape",
                shape_text(&c.shape),
                format!(
                    "tensor shape {} does not match the required shape {}",
                    shape_text(&tensor.shape),
                    shape_text(&c.shape)
                ),
            ));
        }
    }
    Ok(())
}

fn compile_pattern(at: &Target<'_>, pattern: &str) -> Result<regex::Regex> {
    // Compiling the pattern alone first rejects one that would close the group we wrap it
    // in (`a)|(b` would otherwise become `^(?:a)|(b)$` and match almost anything).
    regex::Regex::new(pattern)
        .and_then(|_| regex::Regex::new(&format!(r"\A(?:{pattern})\z")))
        .map_err(|err| {
            at.tag(BridgeError::invalid_argument(
                "constraints.pattern",
                format!(
                    "constraints of {}: invalid pattern `{}`: {}",
                    at.owner(),
                    clip(pattern),
                    clip(&err.to_string())
                ),
            ))
        })
}

/// Rejects constraints that contradict themselves or cannot apply to `ty`.
pub fn check_definition(name: &str, ty: VariableType, c: &Constraints) -> Result<()> {
    let bad = |field: &str, detail: String| {
        Err(BridgeError::invalid_argument(
            &format!("constraints.{field}"),
            format!("constraints of `{name}`: {detail}"),
        )
        .with("variable", name))
    };
    let ty_name = ty.name();
    if ty == VariableType::Unspecified {
        return Err(BridgeError::invalid_argument(
            "type",
            format!("variable `{name}` has no type"),
        )
        .with("variable", name));
    }
    let numeric = matches!(
        ty,
        VariableType::Float | VariableType::Integer | VariableType::Any
    );
    if (c.min.is_some() || c.max.is_some()) && !numeric {
        return bad("min", format!("min/max do not apply to {ty_name}"));
    }
    if c.min_exclusive && c.min.is_none() {
        return bad("min_exclusive", "min_exclusive needs min".to_owned());
    }
    if c.max_exclusive && c.max.is_none() {
        return bad("max_exclusive", "max_exclusive needs max".to_owned());
    }
    if let (Some(min), Some(max)) = (c.min, c.max)
        && (min > max || min.is_nan() || max.is_nan())
    {
        return bad(
            "min",
            format!("min {} is greater than max {}", number(min), number(max)),
        );
    }
    if ty == VariableType::Choice && c.choices.is_empty() {
        return bad(
            "choices",
            "a choice variable needs a non-empty list of choices".to_owned(),
        );
    }
    if !c.choices.is_empty() && !matches!(ty, VariableType::Choice | VariableType::String) {
        return bad("choices", format!("choices do not apply to {ty_name}"));
    }
    let sized = matches!(
        ty,
        VariableType::String | VariableType::Bytes | VariableType::List
    );
    if (c.min_length.is_some() || c.max_length.is_some()) && !sized {
        return bad(
            "min_length",
            format!("min_length/max_length do not apply to {ty_name}"),
        );
    }
    if let (Some(min), Some(max)) = (c.min_length, c.max_length)
        && min > max
    {
        return bad(
            "min_length",
            format!("min_length {min} is greater than max_length {max}"),
        );
    }
    if let Some(pattern) = &c.pattern {
        if ty != VariableType::String {
            return bad("pattern", format!("pattern does not apply to {ty_name}"));
        }
        compile_pattern(
            &Target {
                subject: Subject::Variable(name),
                path: String::new(),
            },
            pattern,
        )?;
    }
    if c.dimensions.is_some() && ty != VariableType::Embedding {
        return bad(
            "dimensions",
            format!("dimensions do not apply to {ty_name}"),
        );
    }
    if c.dimensions == Some(0) {
        return bad("dimensions", "dimensions must be at least 1".to_owned());
    }
    if (!c.shape.is_empty() || c.dtype.is_some()) && ty != VariableType::Tensor {
        return bad("shape", format!("shape/dtype do not apply to {ty_name}"));
    }
    if let Some(dtype) = c.dtype
        && Dtype::try_from(dtype).is_err()
    {
        return bad("dtype", format!("unknown dtype {dtype}"));
    }
    if !c.allowed_modules.is_empty() && ty != VariableType::Module {
        return bad(
            "allowed_modules",
            format!("allowed_modules do not apply to {ty_name}"),
        );
    }
    let container = matches!(ty, VariableType::List | VariableType::Map);
    if (c.element_type.is_some() || c.max_items.is_some()) && !container {
        return bad(
            "element_type",
            format!("element_type/max_items do not apply to {ty_name}"),
        );
    }
    if let Some(element) = c.element_type
        && VariableType::try_from(element).is_err()
    {
        return bad("element_type", format!("unknown element type {element}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
