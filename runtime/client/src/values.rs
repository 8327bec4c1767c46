//! Rust values on the wire: [`WireValue`] converts a Rust type to and from a [`Value`] and
//! names its declared type, for tool arguments and results, operation parameters and
//! session variables alike.

use std::collections::{BTreeMap, HashMap};

use mlbridge_proto::mlbridge::v1::{self as pb, Value, VariableType, value::Kind};

use crate::error::{BridgeError, ErrorKind, Result};

/// The name of the case a value holds (`null`, `integer`, ..., `nothing` when unset).
pub fn kind_name(value: &Value) -> &'static str {
    let ty = match &value.kind {
        None => return "nothing",
        Some(Kind::NullValue(_)) => return "null",
        Some(Kind::BoolValue(_)) => VariableType::Boolean,
        Some(Kind::IntValue(_)) => VariableType::Integer,
        Some(Kind::FloatValue(_)) => VariableType::Float,
        Some(Kind::StringValue(_)) => VariableType::String,
        Some(Kind::BytesValue(_)) => VariableType::Bytes,
        Some(Kind::ChoiceValue(_)) => VariableType::Choice,
        Some(Kind::ModuleValue(_)) => VariableType::Module,
        Some(Kind::EmbeddingValue(_)) => VariableType::Embedding,
        Some(Kind::TensorValue(_)) => VariableType::Tensor,
        Some(Kind::ListValue(_)) => VariableType::List,
        Some(Kind::MapValue(_)) => VariableType::Map,
    };
    ty.name()
}

/// A Rust type that crosses the wire as a [`Value`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross the wire as a `Value` (a variable, parameter, tool argument or result)",
    label = "not a `WireValue`",
    note = "wire values are owned: f64, i64, i32, bool, String, Bytes, Value, Tensor, Embedding, ModuleRef, Option<T>, Vec<T>, HashMap/BTreeMap<String, T>"
)]
pub trait WireValue: Sized + Send + 'static {
    /// The declared type in specs.
    fn variable_type() -> VariableType;
    /// Constraints implied by the type (e.g. a list's element type).
    fn constraints() -> pb::Constraints {
        pb::Constraints::default()
    }
    /// Whether a missing argument is allowed (`Option<T>`).
    fn optional() -> bool {
        false
    }
    /// The value for a missing optional argument.
    fn missing() -> Option<Self> {
        None
    }
    /// Whether the value is the name of one of the session's callbacks
    /// (`ParameterSpec.callback`).
    fn names_callback() -> bool {
        false
    }
    /// Decodes a value already checked against [`WireValue::variable_type`].
    fn from_value(value: Value) -> std::result::Result<Self, String>;
    /// Encodes the value.
    fn into_value(self) -> Value;
}

fn wrong(expected: &str, value: &Value) -> String {
    format!("expected {expected}, got {}", kind_name(value))
}

fn value_of(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

macro_rules! scalar {
    ($ty:ty, $vt:ident, $variant:ident, |$v:ident| $from:expr, |$s:ident| $into:expr) => {
        impl WireValue for $ty {
            fn variable_type() -> VariableType {
                VariableType::$vt
            }
            fn from_value(value: Value) -> std::result::Result<Self, String> {
                match value.kind {
                    Some(Kind::$variant($v)) => $from,
                    _ => Err(wrong(VariableType::$vt.name(), &value)),
                }
            }
            fn into_value(self) -> Value {
                let $s = self;
                value_of(Kind::$variant($into))
            }
        }
    };
}

scalar!(f64, Float, FloatValue, |v| Ok(v), |s| s);
scalar!(i64, Integer, IntValue, |v| Ok(v), |s| s);
scalar!(bool, Boolean, BoolValue, |v| Ok(v), |s| s);
scalar!(String, String, StringValue, |v| Ok(v), |s| s);
scalar!(pb::Tensor, Tensor, TensorValue, |v| Ok(v), |s| s);
scalar!(pb::Embedding, Embedding, EmbeddingValue, |v| Ok(v), |s| s);
scalar!(pb::ModuleRef, Module, ModuleValue, |v| Ok(v), |s| s);
scalar!(
    i32,
    Integer,
    IntValue,
    |v| i32::try_from(v).map_err(|_| format!("{v} does not fit in a 32-bit integer")),
    |s| i64::from(s)
);

/// Opaque bytes (`Vec<u8>` would be a list of integers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);
scalar!(Bytes, Bytes, BytesValue, |v| Ok(Bytes(v.into())), |s| s
    .0
    .into());

impl WireValue for Value {
    fn variable_type() -> VariableType {
        VariableType::Any
    }
    fn from_value(value: Value) -> std::result::Result<Self, String> {
        Ok(value)
    }
    fn into_value(self) -> Value {
        self
    }
}

impl WireValue for () {
    fn variable_type() -> VariableType {
        VariableType::Any
    }
    fn from_value(_: Value) -> std::result::Result<Self, String> {
        Ok(())
    }
    fn into_value(self) -> Value {
        value_of(Kind::NullValue(pb::NullValue::NullValue as i32))
    }
}

impl<T: WireValue> WireValue for Option<T> {
    fn variable_type() -> VariableType {
        T::variable_type()
    }
    fn constraints() -> pb::Constraints {
        pb::Constraints {
            nullable: true,
            ..T::constraints()
        }
    }
    fn optional() -> bool {
        true
    }
    fn missing() -> Option<Self> {
        Some(None)
    }
    fn names_callback() -> bool {
        T::names_callback()
    }
    fn from_value(value: Value) -> std::result::Result<Self, String> {
        match value.kind {
            Some(Kind::NullValue(_)) | None => Ok(None),
            _ => T::from_value(value).map(Some),
        }
    }
    fn into_value(self) -> Value {
        match self {
            Some(v) => v.into_value(),
            None => value_of(Kind::NullValue(pb::NullValue::NullValue as i32)),
        }
    }
}

impl<T: WireValue> WireValue for Vec<T> {
    fn variable_type() -> VariableType {
        VariableType::List
    }
    fn constraints() -> pb::Constraints {
        pb::Constraints {
            element_type: Some(T::variable_type() as i32),
            ..Default::default()
        }
    }
    fn from_value(value: Value) -> std::result::Result<Self, String> {
        match value.kind {
            Some(Kind::ListValue(list)) => list
                .values
                .into_iter()
                .enumerate()
                .map(|(i, v)| T::from_value(v).map_err(|e| format!("element {i}: {e}")))
                .collect(),
            _ => Err(wrong(VariableType::List.name(), &value)),
        }
    }
    fn into_value(self) -> Value {
        value_of(Kind::ListValue(pb::ValueList {
            values: self.into_iter().map(T::into_value).collect(),
        }))
    }
}

macro_rules! map_impl {
    ($map:ident) => {
        impl<T: WireValue> WireValue for $map<String, T> {
            fn variable_type() -> VariableType {
                VariableType::Map
            }
            fn constraints() -> pb::Constraints {
                pb::Constraints {
                    element_type: Some(T::variable_type() as i32),
                    ..Default::default()
                }
            }
            fn from_value(value: Value) -> std::result::Result<Self, String> {
                match value.kind {
                    Some(Kind::MapValue(map)) => map
                        .entries
                        .into_iter()
                        .map(|(k, v)| {
                            T::from_value(v)
                                .map(|v| (k.clone(), v))
                                .map_err(|e| format!("key {k:?}: {e}"))
                        })
                        .collect(),
                    _ => Err(wrong(VariableType::Map.name(), &value)),
                }
            }
            fn into_value(self) -> Value {
                value_of(Kind::MapValue(pb::ValueMap {
                    entries: self.into_iter().map(|(k, v)| (k, v.into_value())).collect(),
                }))
            }
        }
    };
}
map_impl!(HashMap);
map_impl!(BTreeMap);

/// What a tool function may return: a [`WireValue`] `T`, or `Result<T, E>` whose `Err`
/// becomes a `TOOL_ERROR` carrying `E`'s message. Streaming tools use it for each item.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by a tool",
    label = "not a tool result",
    note = "a tool returns `T` or `Result<T, E>` where `T: WireValue` and `E: Display`; a streaming tool returns a `Stream` of those"
)]
pub trait ToolOutput {
    /// The value type, whose [`WireValue::variable_type`] is the spec's `return_type`.
    type Output: WireValue;
    /// The wire result; an error names `tool`.
    fn into_tool_result(self, tool: &str) -> Result<Value>;
}

impl<T: WireValue> ToolOutput for T {
    type Output = T;
    fn into_tool_result(self, _tool: &str) -> Result<Value> {
        Ok(self.into_value())
    }
}

impl<T: WireValue, E: std::fmt::Display + 'static> ToolOutput for std::result::Result<T, E> {
    type Output = T;
    fn into_tool_result(self, tool: &str) -> Result<Value> {
        self.map(T::into_value).map_err(|e| {
            // A `BridgeError` (say, from a callback the tool called) keeps its kind, remote
            // type and traceback; anything else becomes a `TOOL_ERROR`.
            match (&e as &dyn std::any::Any).downcast_ref::<BridgeError>() {
                Some(error) => error.clone().with("tool", tool),
                None => tool_error(tool, e),
            }
        })
    }
}

/// Converts a tool function's error into a `TOOL_ERROR` naming the tool.
pub fn tool_error(tool: &str, error: impl std::fmt::Display) -> BridgeError {
    let error = BridgeError::new(
        ErrorKind::ToolError,
        format!("tool `{tool}` failed: {error}"),
    );
    BridgeError {
        origin: "engine".to_owned(),
        ..error.with("tool", tool)
    }
}
