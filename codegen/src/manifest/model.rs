//! The validated manifest: what the Rust and Python adapter emitters read.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use heck::ToUpperCamelCase;
use mlbridge_proto::mlbridge::v1::{Dtype, VariableType};

/// One framework's validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// Framework id: Rust module, Python package and wire id.
    pub id: String,
    /// Dotted Python module with the operation and tool functions.
    pub implementation: String,
    /// Dotted Python module whose `__version__` is reported, if any.
    pub package: Option<String>,
    /// Human-readable description.
    pub description: String,
    /// Operations, in file order.
    pub operations: Vec<Operation>,
    /// Python tools, in file order.
    pub tools: Vec<Tool>,
}

/// What kind of framework object an operation wraps (`OperationKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// A module or class instantiated and then called.
    Module,
    /// A plain function.
    Function,
    /// An estimator with fit/predict style methods.
    Estimator,
}

impl OperationKind {
    /// The manifest spelling, also used by the Python runtime.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Module => "module",
            OperationKind::Function => "function",
            OperationKind::Estimator => "estimator",
        }
    }
}

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// snake_case name, unique in the manifest.
    pub name: String,
    /// What it wraps.
    pub kind: OperationKind,
    /// Attribute of the implementation module to call.
    pub function: String,
    /// Dotted Python name of the wrapped object, if given.
    pub target: Option<String>,
    /// Name of the generated `VariableAware` class, if any.
    pub variable_aware: Option<String>,
    /// Human-readable description.
    pub description: String,
    /// Parameters, in order.
    pub parameters: Vec<Parameter>,
    /// Named results, in order.
    pub results: Vec<ResultField>,
}

impl Operation {
    /// The Rust type name of the operation's builder, e.g. `ChainOfThought`.
    pub fn type_name(&self) -> String {
        self.name.to_upper_camel_case()
    }
}

/// One parameter of an operation or tool.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// snake_case name.
    pub name: String,
    /// Declared type.
    pub ty: ValueType,
    /// The caller must give it.
    pub required: bool,
    /// Value used when omitted.
    pub default: Option<Literal>,
    /// May be bound to a session variable.
    pub bindable: bool,
    /// Names one of the calling session's registered callbacks (a string).
    pub callback: bool,
    /// The framework's own keyword, when it differs from `name`.
    pub python_name: Option<String>,
    /// Human-readable description.
    pub description: String,
    /// Validation rules.
    pub constraints: Constraints,
}

impl Parameter {
    /// The framework's keyword for the parameter.
    pub fn keyword(&self) -> &str {
        self.python_name.as_deref().unwrap_or(&self.name)
    }
}

/// One named result of an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultField {
    /// snake_case name.
    pub name: String,
    /// Declared type.
    pub ty: ValueType,
    /// Human-readable description.
    pub description: String,
}

/// One Python tool offered by the framework side.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// Tool name as the engine lists it.
    pub name: String,
    /// Attribute of the implementation module to call.
    pub function: String,
    /// Result type.
    pub returns: ValueType,
    /// The function yields chunks.
    pub streaming: bool,
    /// Human-readable description.
    pub description: String,
    /// Parameters, in order.
    pub parameters: Vec<Parameter>,
}

/// A parameter or result type (`VariableType` without UNSPECIFIED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValueType {
    /// 64-bit float.
    Float,
    /// 64-bit signed integer.
    Integer,
    /// UTF-8 text.
    String,
    /// true/false.
    Boolean,
    /// One of `choices`.
    Choice,
    /// A reference to a framework module.
    Module,
    /// A float32 vector.
    Embedding,
    /// An n-dimensional array.
    Tensor,
    /// An ordered list of values.
    List,
    /// A string-keyed map of values.
    Map,
    /// Opaque bytes.
    Bytes,
    /// Any value.
    Any,
}

impl ValueType {
    /// Every type, in the proto's declaration order.
    pub const ALL: [ValueType; 12] = [
        ValueType::Float,
        ValueType::Integer,
        ValueType::String,
        ValueType::Boolean,
        ValueType::Choice,
        ValueType::Module,
        ValueType::Embedding,
        ValueType::Tensor,
        ValueType::List,
        ValueType::Map,
        ValueType::Bytes,
        ValueType::Any,
    ];

    /// The proto's `VariableType` for this type.
    pub fn variable_type(self) -> VariableType {
        match self {
            ValueType::Float => VariableType::Float,
            ValueType::Integer => VariableType::Integer,
            ValueType::String => VariableType::String,
            ValueType::Boolean => VariableType::Boolean,
            ValueType::Choice => VariableType::Choice,
            ValueType::Module => VariableType::Module,
            ValueType::Embedding => VariableType::Embedding,
            ValueType::Tensor => VariableType::Tensor,
            ValueType::List => VariableType::List,
            ValueType::Map => VariableType::Map,
            ValueType::Bytes => VariableType::Bytes,
            ValueType::Any => VariableType::Any,
        }
    }

    /// The type for a proto `VariableType`; `None` for the unset value. Exhaustive, so a
    /// type added to the proto does not build until the manifest model knows it.
    fn from_variable_type(ty: VariableType) -> Option<ValueType> {
        Some(match ty {
            VariableType::Unspecified => return None,
            VariableType::Float => ValueType::Float,
            VariableType::Integer => ValueType::Integer,
            VariableType::String => ValueType::String,
            VariableType::Boolean => ValueType::Boolean,
            VariableType::Choice => ValueType::Choice,
            VariableType::Module => ValueType::Module,
            VariableType::Embedding => ValueType::Embedding,
            VariableType::Tensor => ValueType::Tensor,
            VariableType::List => ValueType::List,
            VariableType::Map => ValueType::Map,
            VariableType::Bytes => ValueType::Bytes,
            VariableType::Any => ValueType::Any,
        })
    }

    /// The manifest spelling (also `mlbridge.VariableType`'s value in Python): the proto's
    /// `(mlbridge.options.short_name)`.
    pub fn as_str(self) -> &'static str {
        self.variable_type().name()
    }

    /// The `VARIABLE_TYPE_*` suffix, e.g. `FLOAT`.
    pub fn proto_name(self) -> String {
        self.as_str().to_ascii_uppercase()
    }

    pub(super) fn parse(name: &str) -> Option<ValueType> {
        VariableType::from_name(name).and_then(ValueType::from_variable_type)
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validation rules, as in `Constraints` in `ml_bridge.proto`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Constraints {
    /// Lower bound.
    pub min: Option<f64>,
    /// Upper bound.
    pub max: Option<f64>,
    /// `min` is exclusive.
    pub min_exclusive: bool,
    /// `max` is exclusive.
    pub max_exclusive: bool,
    /// Allowed values.
    pub choices: Vec<String>,
    /// Minimum length.
    pub min_length: Option<u64>,
    /// Maximum length.
    pub max_length: Option<u64>,
    /// Regular expression the whole string must match.
    pub pattern: Option<String>,
    /// Embedding dimensions.
    pub dimensions: Option<u32>,
    /// Tensor shape.
    pub shape: Vec<u64>,
    /// Tensor element type, e.g. `float32`.
    pub dtype: Option<String>,
    /// Allowed module names.
    pub allowed_modules: Vec<String>,
    /// Type of list elements or map values.
    pub element_type: Option<ValueType>,
    /// Maximum number of list elements or map entries.
    pub max_items: Option<u64>,
    /// null is accepted.
    pub nullable: bool,
}

impl Constraints {
    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        *self == Constraints::default()
    }
}

/// The dtype names a manifest accepts: every named `Dtype` of `ml_bridge.proto`, in
/// declaration order (`(mlbridge.options.short_name)`).
pub fn dtype_names() -> impl Iterator<Item = &'static str> {
    Dtype::NAMED.iter().map(|dtype| dtype.name())
}

/// A default value, already converted to the parameter's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A float.
    Float(f64),
    /// An integer.
    Integer(i64),
    /// A string (also a choice).
    String(String),
    /// A boolean.
    Boolean(bool),
    /// A list.
    List(Vec<Literal>),
    /// A map.
    Map(BTreeMap<String, Literal>),
}
