//! Property tests of the engine's judge (`value::validate`, `value::check_definition`):
//! arbitrary values x types x constraints never panic, every refusal is a typed error that
//! names its subject, every acceptance is a value of the declared type that validates again
//! unchanged, and for the scalar rules (range, length, choices, dimensions, tensor sizes)
//! the verdict is the one the proto's rules give.

use mlbridge_engine::ErrorKind;
use mlbridge_engine::value::{self, Subject};
use mlbridge_proto::mlbridge::v1::{Constraints, Dtype, Value, VariableType, value::Kind};
use proptest::prelude::*;

mod support;
use support::{check, strategies};

/// Whether two values are the same, NaN equal to NaN and maps compared by content.
fn same(a: &Value, b: &Value) -> bool {
    match (&a.kind, &b.kind) {
        (Some(Kind::FloatValue(x)), Some(Kind::FloatValue(y))) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Some(Kind::EmbeddingValue(x)), Some(Kind::EmbeddingValue(y))) => {
            x.model == y.model
                && x.values.len() == y.values.len()
                && x.values
                    .iter()
                    .zip(&y.values)
                    .all(|(p, q)| p.to_bits() == q.to_bits())
        }
        (Some(Kind::ListValue(x)), Some(Kind::ListValue(y))) => {
            x.values.len() == y.values.len()
                && x.values.iter().zip(&y.values).all(|(p, q)| same(p, q))
        }
        (Some(Kind::MapValue(x)), Some(Kind::MapValue(y))) => {
            x.entries.len() == y.entries.len()
                && x.entries
                    .iter()
                    .all(|(k, v)| y.entries.get(k).is_some_and(|w| same(v, w)))
        }
        (x, y) => x == y,
    }
}

/// Whether `value` is something a variable of type `ty` may hold after validation.
fn holds(ty: VariableType, nullable: bool, value: &Value) -> bool {
    use VariableType as T;
    match &value.kind {
        None => false,
        Some(Kind::NullValue(_)) if nullable => true,
        Some(_) if ty == T::Any => true,
        Some(kind) => matches!(
            (ty, kind),
            (T::Float, Kind::FloatValue(_))
                | (T::Integer, Kind::IntValue(_))
                | (T::String, Kind::StringValue(_))
                | (T::Boolean, Kind::BoolValue(_))
                | (T::Choice, Kind::ChoiceValue(_))
                | (T::Module, Kind::ModuleValue(_))
                | (T::Embedding, Kind::EmbeddingValue(_))
                | (T::Tensor, Kind::TensorValue(_))
                | (T::List, Kind::ListValue(_))
                | (T::Map, Kind::MapValue(_))
                | (T::Bytes, Kind::BytesValue(_))
        ),
    }
}

/// Whether a context value names `name`: it is `name` (possibly followed by an element
/// path such as `[0]`), or a clipped quote of it (`prefix…[N more characters]`).
fn names(value: &str, name: &str) -> bool {
    if value.starts_with(name) {
        return true;
    }
    match value.find('…') {
        Some(end) if value[end..].ends_with("more characters]") => {
            let kept = &value[..end];
            !kept.is_empty() && (name.starts_with(kept) || kept.starts_with(name))
        }
        _ => false,
    }
}

/// The three kinds of subject, all named `name`.
fn subjects(name: &str) -> [Subject<'_>; 3] {
    [
        Subject::Variable(name),
        Subject::Argument {
            tool: "tool",
            argument: name,
        },
        Subject::Parameter {
            operation: "op.run",
            parameter: "p",
            bound: Some(name),
        },
    ]
}

/// The checks every outcome must pass, whatever went in.
fn judge(
    subject: Subject<'_>,
    ty: VariableType,
    c: &Constraints,
    input: &Value,
) -> Result<Option<Value>, TestCaseError> {
    match value::validate(subject, ty, c, input.clone()) {
        Ok(accepted) => {
            prop_assert!(
                holds(ty, c.nullable, &accepted),
                "{ty:?} accepted {accepted:?}"
            );
            let again = value::validate(subject, ty, c, accepted.clone());
            prop_assert!(
                again.as_ref().is_ok_and(|v| same(v, &accepted)),
                "not idempotent: {accepted:?} became {again:?}"
            );
            Ok(Some(accepted))
        }
        Err(error) => {
            prop_assert!(
                matches!(
                    error.kind,
                    ErrorKind::TypeMismatch
                        | ErrorKind::ConstraintViolation
                        | ErrorKind::InvalidArgument
                ),
                "unexpected kind {:?}: {error}",
                error.kind
            );
            prop_assert!(!error.message.is_empty());
            let says = |key: &str, name: &str| {
                error
                    .context
                    .get(key)
                    .is_some_and(|value| names(value, name))
            };
            let named = match subject {
                Subject::Variable(name) => says("variable", name),
                Subject::Argument { tool, argument } => {
                    says("tool", tool) && says("parameter", argument)
                }
                Subject::Parameter { parameter, .. } => says("parameter", parameter),
            };
            prop_assert!(named, "the error does not name its subject: {error:?}");
            Ok(None)
        }
    }
}

#[test]
fn arbitrary_values_types_and_constraints_get_an_answer_never_a_panic() {
    check(
        "engine-validate-arbitrary",
        512,
        (
            strategies::any_variable_type(),
            strategies::constraints(),
            strategies::value(),
            strategies::name(),
        ),
        |(ty, c, input, name)| {
            if let Err(error) = value::check_definition(&name, ty, &c) {
                prop_assert_eq!(error.kind, ErrorKind::InvalidArgument, "{}", error);
                prop_assert!(error.context.contains_key("field"), "{:?}", error);
            }
            if ty == VariableType::Unspecified {
                return Ok(());
            }
            for subject in subjects(&name) {
                judge(subject, ty, &c, &input)?;
            }
            Ok(())
        },
    );
}

/// What the proto's rules say about a value of the declared type's own kind: `Some(true)`
/// accepted, `Some(false)` refused, `None` when this oracle has no opinion.
fn verdict(ty: VariableType, c: &Constraints, input: &Value) -> Option<bool> {
    let in_range = |v: f64| {
        let above = c
            .min
            .is_none_or(|min| v > min || (!c.min_exclusive && v == min));
        let below = c
            .max
            .is_none_or(|max| v < max || (!c.max_exclusive && v == max));
        above && below
    };
    let length_ok =
        |n: u64| c.min_length.is_none_or(|m| n >= m) && c.max_length.is_none_or(|m| n <= m);
    match (ty, input.kind.as_ref()?) {
        (VariableType::Integer, Kind::IntValue(v)) => Some(in_range(*v as f64)),
        (VariableType::Float, Kind::FloatValue(v)) => Some(in_range(*v)),
        (VariableType::Float, Kind::IntValue(v)) => Some(in_range(*v as f64)),
        (VariableType::Bytes, Kind::BytesValue(b)) => Some(length_ok(b.len() as u64)),
        (VariableType::String, Kind::StringValue(s)) if c.pattern.is_none() => Some(
            (c.choices.is_empty() || c.choices.contains(s)) && length_ok(s.chars().count() as u64),
        ),
        (VariableType::Choice, Kind::StringValue(s)) => Some(c.choices.contains(s)),
        (VariableType::Embedding, Kind::EmbeddingValue(e)) => {
            Some(c.dimensions.is_none_or(|d| e.values.len() == d as usize))
        }
        (VariableType::Tensor, Kind::TensorValue(t)) => {
            let dtype = Dtype::try_from(t.dtype).ok()?;
            let Some(size) = dtype.item_size() else {
                return Some(false);
            };
            let bytes = t
                .shape
                .iter()
                .try_fold(size as u128, |acc, &d| acc.checked_mul(d as u128));
            let sized = bytes == Some(t.data.len() as u128);
            let typed = c.dtype.is_none_or(|d| d == t.dtype);
            let shaped = c.shape.is_empty()
                || (c.shape.len() == t.shape.len()
                    && c.shape.iter().zip(&t.shape).all(|(w, h)| *w == 0 || w == h));
            Some(sized && typed && shaped)
        }
        (VariableType::List | VariableType::Map, _) => None,
        _ => None,
    }
}

#[test]
fn well_formed_definitions_judge_values_as_the_rules_say() {
    let case = strategies::variable_type().prop_flat_map(|ty| {
        (
            Just(ty),
            strategies::constraints_for(ty),
            strategies::value_for(ty),
        )
    });
    let defined = std::sync::atomic::AtomicU64::new(0);
    check("engine-validate-typed", 512, case, |(ty, c, input)| {
        if value::check_definition("v", ty, &c).is_err() {
            return Ok(());
        }
        defined.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let accepted = judge(Subject::Variable("v"), ty, &c, &input)?;
        if let Some(expected) = verdict(ty, &c, &input) {
            prop_assert_eq!(accepted.is_some(), expected, "{:?} {:?} {:?}", ty, c, input);
        }
        Ok(())
    });
    // The generator is useful only if most definitions are accepted.
    let defined = defined.into_inner();
    assert!(
        defined > 100,
        "only {defined} generated definitions were valid"
    );
}
