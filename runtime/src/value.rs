//! Types and constraints: checking a [`Value`] against a declared [`VariableType`] and
//! [`Constraints`], normalising accepted conversions, and rejecting constraint definitions
//! that cannot apply. The Python SDK mirrors these rules and messages.

use mlbridge_proto::mlbridge::v1::{
    self as pb, Constraints, Dtype, Value, VariableType, value::Kind,
};

use crate::error::{BridgeError, ErrorKind, Result};

/// The name of a type as messages spell it (`float`, `integer`, ...).
pub fn type_name(ty: VariableType) -> &'static str {
    match ty {
        VariableType::Unspecified => "unspecified",
        VariableType::Float => "float",
        VariableType::Integer => "integer",
        VariableType::String => "string",
        VariableType::Boolean => "boolean",
        VariableType::Choice => "choice",
        VariableType::Module => "module",
        VariableType::Embedding => "embedding",
        VariableType::Tensor => "tensor",
        VariableType::List => "list",
        VariableType::Map => "map",
        VariableType::Bytes => "bytes",
        VariableType::Any => "any",
    }
}

/// The name of the case a value holds (`null`, `integer`, ..., `nothing` when unset).
pub fn kind_name(value: &Value) -> &'static str {
    match &value.kind {
        None => "nothing",
        Some(Kind::NullValue(_)) => "null",
        Some(Kind::BoolValue(_)) => "boolean",
        Some(Kind::IntValue(_)) => "integer",
        Some(Kind::FloatValue(_)) => "float",
        Some(Kind::StringValue(_)) => "string",
        Some(Kind::BytesValue(_)) => "bytes",
        Some(Kind::ChoiceValue(_)) => "choice",
        Some(Kind::ModuleValue(_)) => "module",
        Some(Kind::EmbeddingValue(_)) => "embedding",
        Some(Kind::TensorValue(_)) => "tensor",
        Some(Kind::ListValue(_)) => "list",
        Some(Kind::MapValue(_)) => "map",
    }
}

/// Bytes per element of a tensor dtype; `None` for `UNSPECIFIED`.
pub fn dtype_size(dtype: Dtype) -> Option<usize> {
    Some(match dtype {
        Dtype::Unspecified => return None,
        Dtype::Int8 | Dtype::Uint8 | Dtype::Bool => 1,
        Dtype::Float16 | Dtype::Bfloat16 | Dtype::Int16 | Dtype::Uint16 => 2,
        Dtype::Float32 | Dtype::Int32 | Dtype::Uint32 => 4,
        Dtype::Float64 | Dtype::Int64 | Dtype::Uint64 | Dtype::Complex64 => 8,
        Dtype::Complex128 => 16,
    })
}

/// The dtype's name as numpy spells it.
pub fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::Unspecified => "unspecified",
        Dtype::Float16 => "float16",
        Dtype::Float32 => "float32",
        Dtype::Float64 => "float64",
        Dtype::Int8 => "int8",
        Dtype::Int16 => "int16",
        Dtype::Int32 => "int32",
        Dtype::Int64 => "int64",
        Dtype::Uint8 => "uint8",
        Dtype::Bool => "bool",
        Dtype::Bfloat16 => "bfloat16",
        Dtype::Uint16 => "uint16",
        Dtype::Uint32 => "uint32",
        Dtype::Uint64 => "uint64",
        Dtype::Complex64 => "complex64",
        Dtype::Complex128 => "complex128",
    }
}

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

fn violation(name: &str, constraint: &str, limit: impl ToString, detail: String) -> BridgeError {
    BridgeError::new(
        ErrorKind::ConstraintViolation,
        format!("variable `{name}`: {detail}"),
    )
    .with("variable", name)
    .with("constraint", constraint)
    .with("limit", limit.to_string())
}

fn mismatch(name: &str, ty: VariableType, value: &Value) -> BridgeError {
    BridgeError::new(
        ErrorKind::TypeMismatch,
        format!(
            "variable `{name}` expects {}, got {}",
            type_name(ty),
            kind_name(value)
        ),
    )
    .with("variable", name)
    .with("expected", type_name(ty))
    .with("actual", kind_name(value))
}

fn invalid_value(name: &str, detail: String) -> BridgeError {
    BridgeError::new(
        ErrorKind::InvalidArgument,
        format!("variable `{name}`: {detail}"),
    )
    .with("variable", name)
    .with("field", "value")
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn shape_text(shape: &[u64]) -> String {
    format!("[{}]", join(shape))
}

/// Checks `value` against `ty` and `constraints` and returns it normalised (int widened to
/// float for FLOAT, string to choice for CHOICE). `name` names the variable in errors.
pub fn validate(
    name: &str,
    ty: VariableType,
    constraints: &Constraints,
    value: Value,
) -> Result<Value> {
    let value = check_type(name, ty, constraints.nullable, value)?;
    check_constraints(name, constraints, &value)?;
    convert_elements(name, constraints, value)
}

/// Applies the element type's conversions (int -> float, string -> choice) to every element
/// of a list or value of a map, as the proto specifies. Runs after the checks, so the
/// elements are known to be acceptable.
fn convert_elements(name: &str, c: &Constraints, value: Value) -> Result<Value> {
    let Some(element) = element_type(c) else {
        return Ok(value);
    };
    let kind = match value.kind {
        Some(Kind::ListValue(list)) => {
            let values = list
                .values
                .into_iter()
                .enumerate()
                .map(|(i, item)| check_type(&format!("{name}[{i}]"), element, false, item))
                .collect::<Result<Vec<_>>>()?;
            Kind::ListValue(pb::ValueList { values })
        }
        Some(Kind::MapValue(map)) => {
            let entries = map
                .entries
                .into_iter()
                .map(|(key, item)| {
                    let item = check_type(&format!("{name}[{key:?}]"), element, false, item)?;
                    Ok((key, item))
                })
                .collect::<Result<_>>()?;
            Kind::MapValue(pb::ValueMap { entries })
        }
        other => return Ok(Value { kind: other }),
    };
    Ok(Value { kind: Some(kind) })
}

fn check_type(name: &str, ty: VariableType, nullable: bool, value: Value) -> Result<Value> {
    let Some(kind) = value.kind.clone() else {
        return Err(BridgeError::new(
            ErrorKind::InvalidArgument,
            format!("variable `{name}`: no value given (Value has no case set)"),
        )
        .with("variable", name)
        .with("field", "value"));
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
        (VariableType::Tensor, Kind::TensorValue(v)) => Kind::TensorValue(v),
        (VariableType::List, Kind::ListValue(v)) => Kind::ListValue(v),
        (VariableType::Map, Kind::MapValue(v)) => Kind::MapValue(v),
        (VariableType::Bytes, Kind::BytesValue(v)) => Kind::BytesValue(v),
        _ => return Err(mismatch(name, ty, &value)),
    };
    Ok(Value {
        kind: Some(accepted),
    })
}

fn check_constraints(name: &str, c: &Constraints, value: &Value) -> Result<()> {
    let Some(kind) = &value.kind else {
        return Ok(());
    };
    match kind {
        Kind::NullValue(_) => Ok(()),
        Kind::FloatValue(v) => check_range(name, c, *v),
        Kind::IntValue(v) => check_range(name, c, *v as f64),
        Kind::StringValue(s) => {
            if !c.choices.is_empty() && !c.choices.iter().any(|choice| choice == s) {
                return Err(violation(
                    name,
                    "choices",
                    join(&c.choices),
                    format!("`{s}` is not one of: {}", join(&c.choices)),
                ));
            }
            check_length(name, c, s.chars().count() as u64)?;
            if let Some(pattern) = &c.pattern {
                let regex = compile_pattern(name, pattern)?;
                if !regex.is_match(s) {
                    return Err(violation(
                        name,
                        "pattern",
                        pattern,
                        format!("`{s}` does not match the pattern `{pattern}`"),
                    ));
                }
            }
            Ok(())
        }
        Kind::BytesValue(b) => check_length(name, c, b.len() as u64),
        Kind::ChoiceValue(choice) => {
            // A CHOICE variable always has choices; an ANY value may be any choice.
            if !c.choices.is_empty() && !c.choices.iter().any(|option| option == &choice.value) {
                return Err(violation(
                    name,
                    "choices",
                    join(&c.choices),
                    format!("`{}` is not one of: {}", choice.value, join(&c.choices)),
                ));
            }
            Ok(())
        }
        Kind::ModuleValue(module) => {
            if !c.allowed_modules.is_empty() && !c.allowed_modules.contains(&module.name) {
                return Err(violation(
                    name,
                    "allowed_modules",
                    join(&c.allowed_modules),
                    format!(
                        "module `{}` is not one of the allowed modules: {}",
                        module.name,
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
                    name,
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
        Kind::TensorValue(tensor) => check_tensor(name, c, tensor),
        Kind::ListValue(list) => {
            check_length(name, c, list.values.len() as u64)?;
            check_items(name, c, list.values.len())?;
            if let Some(element) = element_type(c) {
                for (i, item) in list.values.iter().enumerate() {
                    check_type(&format!("{name}[{i}]"), element, false, item.clone())?;
                }
            }
            Ok(())
        }
        Kind::MapValue(map) => {
            check_items(name, c, map.entries.len())?;
            if let Some(element) = element_type(c) {
                let mut keys: Vec<&String> = map.entries.keys().collect();
                keys.sort();
                for key in keys {
                    check_type(
                        &format!("{name}[{key:?}]"),
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

fn check_range(name: &str, c: &Constraints, v: f64) -> Result<()> {
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
        return Err(violation(name, "min", number(min), detail));
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
        return Err(violation(name, "max", number(max), detail));
    }
    Ok(())
}

fn check_length(name: &str, c: &Constraints, length: u64) -> Result<()> {
    if let Some(min) = c.min_length
        && length < min
    {
        return Err(violation(
            name,
            "min_length",
            min,
            format!("length {length} is below the minimum length {min}"),
        ));
    }
    if let Some(max) = c.max_length
        && length > max
    {
        return Err(violation(
            name,
            "max_length",
            max,
            format!("length {length} is above the maximum length {max}"),
        ));
    }
    Ok(())
}

fn check_items(name: &str, c: &Constraints, count: usize) -> Result<()> {
    if let Some(max) = c.max_items
        && count as u64 > max
    {
        return Err(violation(
            name,
            "max_items",
            max,
            format!("{count} items exceed the maximum of {max}"),
        ));
    }
    Ok(())
}

fn check_tensor(name: &str, c: &Constraints, tensor: &pb::Tensor) -> Result<()> {
    let dtype = Dtype::try_from(tensor.dtype).unwrap_or(Dtype::Unspecified);
    let Some(size) = dtype_size(dtype) else {
        return Err(invalid_value(
            name,
            "tensor dtype is unspecified".to_owned(),
        ));
    };
    let elements = tensor
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(size as u64));
    if elements != Some(tensor.data.len() as u64) {
        return Err(invalid_value(
            name,
            format!(
                "tensor data has {} bytes, expected {} for shape {} of {}",
                tensor.data.len(),
                elements.map_or("too many".to_owned(), |n| n.to_string()),
                shape_text(&tensor.shape),
                dtype_name(dtype)
            ),
        ));
    }
    if let Some(required) = c.dtype.and_then(|d| Dtype::try_from(d).ok())
        && required != Dtype::Unspecified
        && required != dtype
    {
        return Err(violation(
            name,
            "dtype",
            dtype_name(required),
            format!(
                "tensor dtype {} is not the required {}",
                dtype_name(dtype),
                dtype_name(required)
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
                name,
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

fn compile_pattern(name: &str, pattern: &str) -> Result<regex::Regex> {
    // Compiling the pattern alone first rejects one that would close the group we wrap it
    // in (`a)|(b` would otherwise become `^(?:a)|(b)$` and match almost anything).
    regex::Regex::new(pattern)
        .and_then(|_| regex::Regex::new(&format!(r"\A(?:{pattern})\z")))
        .map_err(|err| {
            BridgeError::invalid_argument(
                "constraints.pattern",
                format!("constraints of `{name}`: invalid pattern `{pattern}`: {err}"),
            )
            .with("variable", name)
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
    let ty_name = type_name(ty);
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
        compile_pattern(name, pattern)?;
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
mod tests {
    use super::*;

    fn float(v: f64) -> Value {
        Value {
            kind: Some(Kind::FloatValue(v)),
        }
    }

    #[test]
    fn widens_ints_for_floats_and_strings_for_choices() {
        let c = Constraints::default();
        let v = validate(
            "t",
            VariableType::Float,
            &c,
            Value {
                kind: Some(Kind::IntValue(2)),
            },
        )
        .unwrap();
        assert_eq!(v, float(2.0));
        let c = Constraints {
            choices: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let v = validate(
            "m",
            VariableType::Choice,
            &c,
            Value {
                kind: Some(Kind::StringValue("b".into())),
            },
        )
        .unwrap();
        assert_eq!(
            v.kind,
            Some(Kind::ChoiceValue(pb::Choice { value: "b".into() }))
        );
    }

    #[test]
    fn range_violations_name_the_rule() {
        let c = Constraints {
            min: Some(0.0),
            max: Some(2.0),
            ..Default::default()
        };
        let err = validate("temperature", VariableType::Float, &c, float(2.5)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::ConstraintViolation);
        assert_eq!(
            err.message,
            "variable `temperature`: 2.5 is above the maximum 2"
        );
        assert_eq!(err.context["constraint"], "max");
        assert!(validate("t", VariableType::Float, &c, float(f64::NAN)).is_err());
    }

    #[test]
    fn type_mismatch_names_both_types() {
        let err = validate(
            "n",
            VariableType::Integer,
            &Constraints::default(),
            float(1.5),
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::TypeMismatch);
        assert_eq!(err.message, "variable `n` expects integer, got float");
    }

    #[test]
    fn tensor_data_must_fit_its_shape() {
        let tensor = pb::Tensor {
            dtype: Dtype::Float32 as i32,
            shape: vec![2, 2],
            data: vec![0; 12],
        };
        let err = validate(
            "x",
            VariableType::Tensor,
            &Constraints::default(),
            Value {
                kind: Some(Kind::TensorValue(tensor)),
            },
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "variable `x`: tensor data has 12 bytes, expected 16 for shape [2, 2] of float32"
        );
    }

    #[test]
    fn contradictory_definitions_are_rejected() {
        let c = Constraints {
            min: Some(3.0),
            max: Some(1.0),
            ..Default::default()
        };
        let err = check_definition("t", VariableType::Float, &c).unwrap_err();
        assert_eq!(
            err.message,
            "constraints of `t`: min 3 is greater than max 1"
        );
        let c = Constraints {
            pattern: Some("(".into()),
            ..Default::default()
        };
        assert!(
            check_definition("s", VariableType::String, &c)
                .unwrap_err()
                .message
                .contains("invalid pattern")
        );
        let c = Constraints {
            pattern: Some("a+".into()),
            ..Default::default()
        };
        assert!(check_definition("n", VariableType::Integer, &c).is_err());
        assert!(check_definition("c", VariableType::Choice, &Constraints::default()).is_err());
    }
}

#[cfg(test)]
mod conversion_tests {
    use super::*;

    #[test]
    fn list_elements_are_converted() {
        let c = Constraints {
            element_type: Some(VariableType::Float as i32),
            ..Default::default()
        };
        let list = Value {
            kind: Some(Kind::ListValue(pb::ValueList {
                values: vec![Value {
                    kind: Some(Kind::IntValue(2)),
                }],
            })),
        };
        let converted = validate("xs", VariableType::List, &c, list).unwrap();
        let Some(Kind::ListValue(list)) = converted.kind else {
            panic!("not a list")
        };
        assert_eq!(list.values[0].kind, Some(Kind::FloatValue(2.0)));
    }

    #[test]
    fn a_pattern_cannot_escape_its_anchors() {
        let c = Constraints {
            pattern: Some("a)|(b".into()),
            ..Default::default()
        };
        assert!(check_definition("s", VariableType::String, &c).is_err());
        let c = Constraints {
            pattern: Some("a|b".into()),
            ..Default::default()
        };
        let text = |s: &str| Value {
            kind: Some(Kind::StringValue(s.into())),
        };
        assert!(validate("s", VariableType::String, &c, text("b")).is_ok());
        assert!(validate("s", VariableType::String, &c, text("ab")).is_err());
    }
}
