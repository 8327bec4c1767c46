//! Default values: converting a TOML default to the parameter's type and checking it
//! against the parameter's constraints.

use std::ops::Range;

use toml::Spanned;

use super::model::{Constraints, Literal, ValueType};
use super::validation::Validator;
use crate::error::Result;

impl Validator<'_> {
    pub(super) fn literal(
        &self,
        value: &Spanned<toml::Value>,
        ty: ValueType,
        element: Option<ValueType>,
        field: &str,
    ) -> Result<Literal> {
        convert(value.get_ref(), ty, element)
            .map_err(|message| self.err(value.span(), field, message))
    }

    pub(super) fn check_default(
        &self,
        literal: &Literal,
        c: &Constraints,
        span: Range<usize>,
        field: &str,
    ) -> Result<()> {
        let bad = |message: String| Err(self.err(span.clone(), field, message));
        let number = match literal {
            Literal::Float(v) => Some(*v),
            Literal::Integer(v) => Some(*v as f64),
            _ => None,
        };
        if let Some(v) = number {
            // The engine refuses NaN wherever a bound is set; so does the default check.
            if v.is_nan() && (c.min.is_some() || c.max.is_some()) {
                return bad("default nan is outside the bounds min/max".to_owned());
            }
            if let Some(min) = c.min
                && (v < min || (c.min_exclusive && v == min))
            {
                return bad(format!("default {v} is below the minimum {min}"));
            }
            if let Some(max) = c.max
                && (v > max || (c.max_exclusive && v == max))
            {
                return bad(format!("default {v} is above the maximum {max}"));
            }
        }
        if let Literal::String(s) = literal {
            if !c.choices.is_empty() && !c.choices.contains(s) {
                return bad(format!(
                    "default `{s}` is not one of the choices {}",
                    c.choices.join(", ")
                ));
            }
            let length = s.chars().count() as u64;
            if c.min_length.is_some_and(|min| length < min)
                || c.max_length.is_some_and(|max| length > max)
            {
                return bad(format!(
                    "default `{s}` has {length} characters, outside the length constraints"
                ));
            }
            // The pattern was compiled when the constraints were read; anchored as the
            // engine anchors it.
            if let Some(pattern) = &c.pattern
                && regex::Regex::new(&format!(r"\A(?:{pattern})\z"))
                    .is_ok_and(|regex| !regex.is_match(s))
            {
                return bad(format!(
                    "default `{s}` does not match the pattern `{pattern}`"
                ));
            }
        }
        if let Literal::List(items) = literal {
            let length = items.len() as u64;
            if c.min_length.is_some_and(|min| length < min)
                || c.max_length.is_some_and(|max| length > max)
                || c.max_items.is_some_and(|max| length > max)
            {
                return bad(format!(
                    "default has {length} items, outside the length constraints"
                ));
            }
        }
        Ok(())
    }
}

/// Converts a TOML default to `ty` (element types apply to list items and map values).
fn convert(
    value: &toml::Value,
    ty: ValueType,
    element: Option<ValueType>,
) -> Result<Literal, String> {
    use toml::Value as T;
    let expected = |what: &str| -> Result<Literal, String> {
        Err(format!(
            "default {} does not have the parameter's type: expected {what}",
            describe(value)
        ))
    };
    match (ty, value) {
        (ValueType::Float, T::Float(v)) => Ok(Literal::Float(*v)),
        (ValueType::Float, T::Integer(v)) => Ok(Literal::Float(*v as f64)),
        (ValueType::Float, _) => expected("a float"),
        (ValueType::Integer, T::Integer(v)) => Ok(Literal::Integer(*v)),
        (ValueType::Integer, _) => expected("an integer"),
        (ValueType::String | ValueType::Choice, T::String(v)) => Ok(Literal::String(v.clone())),
        (ValueType::String | ValueType::Choice, _) => expected("a string"),
        (ValueType::Boolean, T::Boolean(v)) => Ok(Literal::Boolean(*v)),
        (ValueType::Boolean, _) => expected("a boolean"),
        (ValueType::List, T::Array(items)) => items
            .iter()
            .map(|item| convert(item, element.unwrap_or(ValueType::Any), None))
            .collect::<Result<_, _>>()
            .map(Literal::List),
        (ValueType::List, _) => expected("an array"),
        (ValueType::Map, T::Table(entries)) => entries
            .iter()
            .map(|(k, v)| {
                convert(v, element.unwrap_or(ValueType::Any), None).map(|v| (k.clone(), v))
            })
            .collect::<Result<_, _>>()
            .map(Literal::Map),
        (ValueType::Map, _) => expected("a table"),
        (ValueType::Any, T::Float(v)) => Ok(Literal::Float(*v)),
        (ValueType::Any, T::Integer(v)) => Ok(Literal::Integer(*v)),
        (ValueType::Any, T::String(v)) => Ok(Literal::String(v.clone())),
        (ValueType::Any, T::Boolean(v)) => Ok(Literal::Boolean(*v)),
        (ValueType::Any, T::Array(_)) => convert(value, ValueType::List, None),
        (ValueType::Any, T::Table(_)) => convert(value, ValueType::Map, None),
        (ValueType::Any, T::Datetime(_)) => {
            Err("date-time defaults are not supported; use a string".to_owned())
        }
        (ValueType::Module | ValueType::Embedding | ValueType::Tensor | ValueType::Bytes, _) => {
            Err(format!(
                "defaults are not supported for type `{ty}`; make the parameter optional without a default"
            ))
        }
    }
}

fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("\"{s}\" (a string)"),
        toml::Value::Integer(v) => format!("{v} (an integer)"),
        toml::Value::Float(v) => format!("{v} (a float)"),
        toml::Value::Boolean(v) => format!("{v} (a boolean)"),
        toml::Value::Datetime(v) => format!("{v} (a date-time)"),
        toml::Value::Array(_) => "(an array)".to_owned(),
        toml::Value::Table(_) => "(a table)".to_owned(),
    }
}
