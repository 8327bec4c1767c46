//! Framework adapter manifests (`proto/adapters/*.toml`): parsing, validation and the typed
//! model the Rust and Python adapter emitters read. The format is documented in
//! `proto/adapters/README.md`; every error names the file, line, column and field.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use heck::ToUpperCamelCase;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result};
use crate::names::{is_python_keyword, is_rust_keyword};

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

const TYPES: [(&str, ValueType); 12] = [
    ("float", ValueType::Float),
    ("integer", ValueType::Integer),
    ("string", ValueType::String),
    ("boolean", ValueType::Boolean),
    ("choice", ValueType::Choice),
    ("module", ValueType::Module),
    ("embedding", ValueType::Embedding),
    ("tensor", ValueType::Tensor),
    ("list", ValueType::List),
    ("map", ValueType::Map),
    ("bytes", ValueType::Bytes),
    ("any", ValueType::Any),
];

impl ValueType {
    /// The manifest spelling (also `mlbridge.VariableType`'s value in Python).
    pub fn as_str(self) -> &'static str {
        TYPES
            .iter()
            .find(|(_, ty)| *ty == self)
            .map(|(name, _)| *name)
            .expect("every type is listed")
    }

    /// The `VARIABLE_TYPE_*` suffix, e.g. `FLOAT`.
    pub fn proto_name(self) -> String {
        self.as_str().to_ascii_uppercase()
    }

    fn parse(name: &str) -> Option<ValueType> {
        TYPES.iter().find(|(n, _)| *n == name).map(|(_, ty)| *ty)
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

/// The dtypes of `Dtype` in `ml_bridge.proto`, by manifest spelling.
pub const DTYPES: [&str; 14] = [
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
    "bfloat16",
    "uint16",
    "uint32",
    "uint64",
    "complex64",
];

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

/// Reads every `*.toml` in `dir` (sorted by file name) and validates them together
/// (framework ids and tool names must be unique across files).
pub fn load_dir(dir: &Path) -> Result<Vec<Manifest>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io("reading manifest folder", dir, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error::io("reading manifest folder", dir, e))?
            .path();
        if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    load_files(&paths)
}

/// Reads and validates the given manifest files.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<Manifest>> {
    let mut manifests: Vec<Manifest> = Vec::new();
    let mut tools: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
        let manifest = parse(path, &text)?;
        if let Some(other) = manifests.iter().find(|m| m.id == manifest.id) {
            return Err(Error::Manifest(format!(
                "{}: framework.id: `{}` is already defined by {}",
                path.display(),
                manifest.id,
                other.path.display()
            )));
        }
        for tool in &manifest.tools {
            if let Some(other) = tools.insert(tool.name.clone(), path.clone()) {
                return Err(Error::Manifest(format!(
                    "{}: tool `{}` is already defined by {}; tool names must be unique across frameworks",
                    path.display(),
                    tool.name,
                    other.display()
                )));
            }
        }
        manifests.push(manifest);
    }
    Ok(manifests)
}

/// Parses and validates one manifest. `path` is used in error messages only.
pub fn parse(path: &Path, text: &str) -> Result<Manifest> {
    let file = SourceFile { path, text };
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end().to_owned();
        match e.span() {
            Some(span) => file.error(span, "", &message),
            None => Error::Manifest(format!("{}: {message}", path.display())),
        }
    })?;
    Validator { file }.manifest(raw)
}

struct SourceFile<'a> {
    path: &'a Path,
    text: &'a str,
}

impl SourceFile<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn error(&self, span: Range<usize>, field: &str, message: &str) -> Error {
        let (line, column) = self.position(span.start);
        let field = if field.is_empty() {
            String::new()
        } else {
            format!("{field}: ")
        };
        Error::Manifest(format!(
            "{}:{line}:{column}: {field}{message}",
            self.path.display()
        ))
    }
}

// ---------------------------------------------------------------------------------------
// The file as written.
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    framework: Spanned<RawFramework>,
    #[serde(default)]
    operation: Vec<Spanned<RawOperation>>,
    #[serde(default)]
    tool: Vec<Spanned<RawTool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFramework {
    id: Spanned<String>,
    implementation: Spanned<String>,
    package: Option<Spanned<String>>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperation {
    name: Spanned<String>,
    kind: Spanned<String>,
    function: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    variable_aware: Option<Spanned<String>>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    parameter: Vec<Spanned<RawParameter>>,
    #[serde(default)]
    result: Vec<Spanned<RawResult>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParameter {
    name: Spanned<String>,
    #[serde(rename = "type")]
    ty: Spanned<String>,
    #[serde(default)]
    required: bool,
    default: Option<Spanned<toml::Value>>,
    bindable: Option<Spanned<bool>>,
    python_name: Option<Spanned<String>>,
    #[serde(default)]
    description: String,
    constraints: Option<Spanned<RawConstraints>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResult {
    name: Spanned<String>,
    #[serde(rename = "type")]
    ty: Spanned<String>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    name: Spanned<String>,
    function: Option<Spanned<String>>,
    returns: Option<Spanned<String>>,
    #[serde(default)]
    streaming: bool,
    #[serde(default)]
    description: String,
    #[serde(default)]
    parameter: Vec<Spanned<RawParameter>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConstraints {
    min: Option<Spanned<f64>>,
    max: Option<Spanned<f64>>,
    min_exclusive: Option<Spanned<bool>>,
    max_exclusive: Option<Spanned<bool>>,
    choices: Option<Spanned<Vec<String>>>,
    min_length: Option<Spanned<u64>>,
    max_length: Option<Spanned<u64>>,
    pattern: Option<Spanned<String>>,
    dimensions: Option<Spanned<u32>>,
    shape: Option<Spanned<Vec<u64>>>,
    dtype: Option<Spanned<String>>,
    allowed_modules: Option<Spanned<Vec<String>>>,
    element_type: Option<Spanned<String>>,
    max_items: Option<Spanned<u64>>,
    nullable: Option<Spanned<bool>>,
}

// ---------------------------------------------------------------------------------------
// Validation.
// ---------------------------------------------------------------------------------------

/// Names the generated code itself uses next to parameters and results.
const RESERVED_PARAMETERS: [&str; 5] = ["new", "call", "label", "metadata", "self"];
const RESERVED_RESULTS: [&str; 1] = ["response"];

struct Validator<'a> {
    file: SourceFile<'a>,
}

impl Validator<'_> {
    fn err(&self, span: Range<usize>, field: &str, message: impl AsRef<str>) -> Error {
        self.file.error(span, field, message.as_ref())
    }

    fn manifest(&self, raw: RawManifest) -> Result<Manifest> {
        let framework = raw.framework.into_inner();
        let id = self.framework_id(&framework.id)?;
        let implementation = self.dotted(&framework.implementation, "framework.implementation")?;
        let package = framework
            .package
            .as_ref()
            .map(|p| self.dotted(p, "framework.package"))
            .transpose()?;

        let mut operations: Vec<Operation> = Vec::new();
        let mut type_names: BTreeMap<String, String> = BTreeMap::new();
        let mut aware_names = BTreeSet::new();
        for (index, spanned) in raw.operation.into_iter().enumerate() {
            let field = format!("operation[{index}]");
            let span = spanned.span();
            let operation = self.operation(spanned.into_inner(), &field)?;
            if operations.iter().any(|o| o.name == operation.name) {
                return Err(self.err(
                    span,
                    &format!("{field}.name"),
                    format!("duplicate operation name `{}`", operation.name),
                ));
            }
            for type_name in [
                operation.type_name(),
                format!("{}Output", operation.type_name()),
            ] {
                if let Some(other) = type_names.insert(type_name.clone(), operation.name.clone()) {
                    return Err(self.err(
                        span,
                        &format!("{field}.name"),
                        format!(
                            "the generated Rust type `{type_name}` of operation `{}` clashes with operation `{other}`; rename one of them",
                            operation.name
                        ),
                    ));
                }
            }
            if let Some(name) = &operation.variable_aware
                && !aware_names.insert(name.clone())
            {
                return Err(self.err(
                    span,
                    &format!("{field}.variable_aware"),
                    format!("duplicate VariableAware class name `{name}`"),
                ));
            }
            operations.push(operation);
        }

        let mut tools: Vec<Tool> = Vec::new();
        for (index, spanned) in raw.tool.into_iter().enumerate() {
            let field = format!("tool[{index}]");
            let span = spanned.span();
            let tool = self.tool(spanned.into_inner(), &field)?;
            if tools.iter().any(|t| t.name == tool.name) {
                return Err(self.err(
                    span,
                    &format!("{field}.name"),
                    format!("duplicate tool name `{}`", tool.name),
                ));
            }
            tools.push(tool);
        }

        Ok(Manifest {
            path: self.file.path.to_owned(),
            id,
            implementation,
            package,
            description: framework.description,
            operations,
            tools,
        })
    }

    fn framework_id(&self, id: &Spanned<String>) -> Result<String> {
        let field = "framework.id";
        let value = id.get_ref();
        if value.contains(['/', '\\']) || value.contains("..") || value.starts_with('.') {
            let plain: String = value
                .rsplit(['/', '\\'])
                .next()
                .unwrap_or_default()
                .trim_matches('.')
                .to_owned();
            let hint = if plain.is_empty() {
                String::new()
            } else {
                format!(" such as `{plain}`")
            };
            return Err(self.err(
                id.span(),
                field,
                format!(
                    "`{value}` would place generated files outside the output folder; use a plain identifier{hint}"
                ),
            ));
        }
        if !is_snake_identifier(value) || value.len() > 64 {
            return Err(self.err(
                id.span(),
                field,
                format!(
                    "`{value}` is not a valid framework id: use lowercase letters, digits and `_`, starting with a letter, at most 64 characters"
                ),
            ));
        }
        self.not_keyword(id, field)?;
        Ok(value.clone())
    }

    fn not_keyword(&self, name: &Spanned<String>, field: &str) -> Result<()> {
        let value = name.get_ref();
        let language = match (is_rust_keyword(value), is_python_keyword(value)) {
            (true, true) => "keyword in both Rust and Python",
            (true, false) => "Rust keyword",
            (false, true) => "Python keyword",
            (false, false) => return Ok(()),
        };
        Err(self.err(
            name.span(),
            field,
            format!(
                "`{value}` is a {language} and cannot name generated code; rename it (e.g. `{value}_value`)"
            ),
        ))
    }

    /// A snake_case name used as a Rust and Python identifier.
    fn snake_name(&self, name: &Spanned<String>, field: &str, what: &str) -> Result<String> {
        let value = name.get_ref();
        if !is_snake_identifier(value) {
            return Err(self.err(
                name.span(),
                field,
                format!(
                    "`{value}` is not a valid {what} name: use snake_case (lowercase letters, digits and `_`, starting with a letter)"
                ),
            ));
        }
        self.not_keyword(name, field)?;
        Ok(value.clone())
    }

    fn python_name(&self, name: &Spanned<String>, field: &str) -> Result<String> {
        let value = name.get_ref();
        if !is_ascii_identifier(value) {
            return Err(self.err(
                name.span(),
                field,
                format!("`{value}` is not a valid Python identifier"),
            ));
        }
        if is_python_keyword(value) {
            return Err(self.err(name.span(), field, format!("`{value}` is a Python keyword")));
        }
        Ok(value.clone())
    }

    fn dotted(&self, name: &Spanned<String>, field: &str) -> Result<String> {
        let value = name.get_ref();
        for part in value.split('.') {
            if !is_ascii_identifier(part) || is_python_keyword(part) {
                return Err(self.err(
                    name.span(),
                    field,
                    format!(
                        "`{value}` is not a dotted Python name (e.g. `mlbridge.frameworks.dspy`): `{part}` is not an identifier"
                    ),
                ));
            }
        }
        Ok(value.clone())
    }

    fn value_type(&self, ty: &Spanned<String>, field: &str) -> Result<ValueType> {
        ValueType::parse(ty.get_ref()).ok_or_else(|| {
            let names: Vec<&str> = TYPES.iter().map(|(n, _)| *n).collect();
            self.err(
                ty.span(),
                field,
                format!(
                    "unknown type `{}`; expected one of {}",
                    ty.get_ref(),
                    names.join(", ")
                ),
            )
        })
    }

    fn operation(&self, raw: RawOperation, field: &str) -> Result<Operation> {
        let name = self.snake_name(&raw.name, &format!("{field}.name"), "operation")?;
        let kind = match raw.kind.get_ref().as_str() {
            "module" => OperationKind::Module,
            "function" => OperationKind::Function,
            "estimator" => OperationKind::Estimator,
            other => {
                return Err(self.err(
                    raw.kind.span(),
                    &format!("{field}.kind"),
                    format!("unknown kind `{other}`; expected one of module, function, estimator"),
                ));
            }
        };
        let function = match &raw.function {
            Some(f) => self.python_name(f, &format!("{field}.function"))?,
            None => name.clone(),
        };
        let target = raw
            .target
            .as_ref()
            .map(|t| self.dotted(t, &format!("{field}.target")))
            .transpose()?;

        let mut parameters: Vec<Parameter> = Vec::new();
        for (index, spanned) in raw.parameter.into_iter().enumerate() {
            let pfield = format!("{field}.parameter[{index}]");
            let span = spanned.span();
            let parameter = self.parameter(spanned.into_inner(), &pfield, true)?;
            if parameters.iter().any(|p| p.name == parameter.name) {
                return Err(self.err(
                    span,
                    &format!("{pfield}.name"),
                    format!("duplicate parameter name `{}`", parameter.name),
                ));
            }
            parameters.push(parameter);
        }

        let mut results: Vec<ResultField> = Vec::new();
        for (index, spanned) in raw.result.into_iter().enumerate() {
            let rfield = format!("{field}.result[{index}]");
            let span = spanned.span();
            let raw = spanned.into_inner();
            let rname = self.snake_name(&raw.name, &format!("{rfield}.name"), "result")?;
            if RESERVED_RESULTS.contains(&rname.as_str()) {
                return Err(self.err(
                    raw.name.span(),
                    &format!("{rfield}.name"),
                    format!("`{rname}` is reserved by the generated code; rename the result"),
                ));
            }
            if results.iter().any(|r| r.name == rname) {
                return Err(self.err(
                    span,
                    &format!("{rfield}.name"),
                    format!("duplicate result name `{rname}`"),
                ));
            }
            let ty = self.value_type(&raw.ty, &format!("{rfield}.type"))?;
            results.push(ResultField {
                name: rname,
                ty,
                description: raw.description,
            });
        }

        let variable_aware = match &raw.variable_aware {
            None => None,
            Some(class) => {
                let vfield = format!("{field}.variable_aware");
                let value = class.get_ref();
                if !value.starts_with(|c: char| c.is_ascii_uppercase())
                    || !is_ascii_identifier(value)
                {
                    return Err(self.err(
                        class.span(),
                        &vfield,
                        format!("`{value}` is not an UpperCamel class name"),
                    ));
                }
                if kind == OperationKind::Function {
                    return Err(self.err(
                        class.span(),
                        &vfield,
                        "VariableAware classes wrap framework objects: only `module` and `estimator` operations can have one",
                    ));
                }
                if target.is_none() {
                    return Err(self.err(
                        class.span(),
                        &vfield,
                        "a VariableAware class needs `target`, the Python class it wraps",
                    ));
                }
                if !parameters.iter().any(|p| p.bindable) {
                    return Err(self.err(
                        class.span(),
                        &vfield,
                        "a VariableAware class needs at least one `bindable` parameter",
                    ));
                }
                Some(value.clone())
            }
        };

        Ok(Operation {
            name,
            kind,
            function,
            target,
            variable_aware,
            description: raw.description,
            parameters,
            results,
        })
    }

    fn tool(&self, raw: RawTool, field: &str) -> Result<Tool> {
        let value = raw.name.get_ref();
        if !is_ascii_identifier(value) || value.len() > 128 {
            return Err(self.err(
                raw.name.span(),
                &format!("{field}.name"),
                format!(
                    "`{value}` is not a valid tool name: use letters, digits and `_`, starting with a letter or `_`, at most 128 characters"
                ),
            ));
        }
        self.not_keyword(&raw.name, &format!("{field}.name"))?;
        let function = match &raw.function {
            Some(f) => self.python_name(f, &format!("{field}.function"))?,
            None => value.clone(),
        };
        let returns = match &raw.returns {
            Some(ty) => self.value_type(ty, &format!("{field}.returns"))?,
            None => ValueType::Any,
        };
        let mut parameters: Vec<Parameter> = Vec::new();
        for (index, spanned) in raw.parameter.into_iter().enumerate() {
            let pfield = format!("{field}.parameter[{index}]");
            let span = spanned.span();
            let parameter = self.parameter(spanned.into_inner(), &pfield, false)?;
            if parameters.iter().any(|p| p.name == parameter.name) {
                return Err(self.err(
                    span,
                    &format!("{pfield}.name"),
                    format!("duplicate parameter name `{}`", parameter.name),
                ));
            }
            parameters.push(parameter);
        }
        Ok(Tool {
            name: value.clone(),
            function,
            returns,
            streaming: raw.streaming,
            description: raw.description,
            parameters,
        })
    }

    fn parameter(&self, raw: RawParameter, field: &str, operation: bool) -> Result<Parameter> {
        let name = self.snake_name(&raw.name, &format!("{field}.name"), "parameter")?;
        if RESERVED_PARAMETERS.contains(&name.as_str()) {
            return Err(self.err(
                raw.name.span(),
                &format!("{field}.name"),
                format!("`{name}` is reserved by the generated code; rename the parameter"),
            ));
        }
        let ty = self.value_type(&raw.ty, &format!("{field}.type"))?;
        let bindable = match &raw.bindable {
            Some(b) if !operation && *b.get_ref() => {
                return Err(self.err(
                    b.span(),
                    &format!("{field}.bindable"),
                    "only operation parameters can be bound to variables, not tool parameters",
                ));
            }
            Some(b) => *b.get_ref(),
            None => false,
        };
        let python_name = raw
            .python_name
            .as_ref()
            .map(|p| self.python_name(p, &format!("{field}.python_name")))
            .transpose()?;
        let constraints = match raw.constraints {
            Some(c) => self.constraints(c, ty, &format!("{field}.constraints"))?,
            None => Constraints::default(),
        };
        if ty == ValueType::Choice && constraints.choices.is_empty() {
            return Err(self.err(
                raw.ty.span(),
                &format!("{field}.constraints.choices"),
                "a `choice` parameter needs `choices`",
            ));
        }
        let default = match &raw.default {
            None => None,
            Some(default) => {
                let dfield = format!("{field}.default");
                if raw.required {
                    return Err(self.err(
                        default.span(),
                        &dfield,
                        "a required parameter cannot have a default",
                    ));
                }
                let literal = self.literal(default, ty, constraints.element_type, &dfield)?;
                self.check_default(&literal, &constraints, default.span(), &dfield)?;
                Some(literal)
            }
        };
        Ok(Parameter {
            name,
            ty,
            required: raw.required,
            default,
            bindable,
            python_name,
            description: raw.description,
            constraints,
        })
    }

    fn constraints(
        &self,
        raw: Spanned<RawConstraints>,
        ty: ValueType,
        field: &str,
    ) -> Result<Constraints> {
        use ValueType::*;
        let raw = raw.into_inner();
        let applies = |key: &str, span: Range<usize>, types: &[ValueType]| -> Result<()> {
            if types.contains(&ty) {
                Ok(())
            } else {
                let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
                Err(self.err(
                    span,
                    &format!("{field}.{key}"),
                    format!(
                        "`{key}` does not apply to type `{ty}`; it applies to {}",
                        names.join(", ")
                    ),
                ))
            }
        };
        let numeric = [Float, Integer];
        let mut c = Constraints::default();
        if let Some(v) = &raw.min {
            applies("min", v.span(), &numeric)?;
            c.min = Some(*v.get_ref());
        }
        if let Some(v) = &raw.max {
            applies("max", v.span(), &numeric)?;
            c.max = Some(*v.get_ref());
        }
        if let Some(v) = &raw.min_exclusive {
            applies("min_exclusive", v.span(), &numeric)?;
            c.min_exclusive = *v.get_ref();
        }
        if let Some(v) = &raw.max_exclusive {
            applies("max_exclusive", v.span(), &numeric)?;
            c.max_exclusive = *v.get_ref();
        }
        if let (Some(min), Some(max)) = (&raw.min, &raw.max)
            && (min.get_ref() > max.get_ref()
                || (min.get_ref() == max.get_ref() && (c.min_exclusive || c.max_exclusive)))
        {
            return Err(self.err(
                min.span(),
                &format!("{field}.min"),
                format!(
                    "min {} and max {} admit no value",
                    min.get_ref(),
                    max.get_ref()
                ),
            ));
        }
        if let Some(v) = &raw.choices {
            applies("choices", v.span(), &[Choice, String])?;
            if v.get_ref().is_empty() {
                return Err(self.err(
                    v.span(),
                    &format!("{field}.choices"),
                    "`choices` is empty, so no value would be accepted",
                ));
            }
            let mut seen = BTreeSet::new();
            for choice in v.get_ref() {
                if !seen.insert(choice) {
                    return Err(self.err(
                        v.span(),
                        &format!("{field}.choices"),
                        format!("`{choice}` is listed twice"),
                    ));
                }
            }
            c.choices = v.get_ref().clone();
        }
        let sized = [String, Bytes, List];
        if let Some(v) = &raw.min_length {
            applies("min_length", v.span(), &sized)?;
            c.min_length = Some(*v.get_ref());
        }
        if let Some(v) = &raw.max_length {
            applies("max_length", v.span(), &sized)?;
            c.max_length = Some(*v.get_ref());
        }
        if let (Some(min), Some(max)) = (&raw.min_length, &raw.max_length)
            && min.get_ref() > max.get_ref()
        {
            return Err(self.err(
                min.span(),
                &format!("{field}.min_length"),
                format!(
                    "min_length {} is above max_length {}",
                    min.get_ref(),
                    max.get_ref()
                ),
            ));
        }
        if let Some(v) = &raw.pattern {
            applies("pattern", v.span(), &[String])?;
            c.pattern = Some(v.get_ref().clone());
        }
        if let Some(v) = &raw.dimensions {
            applies("dimensions", v.span(), &[Embedding])?;
            if *v.get_ref() == 0 {
                return Err(self.err(
                    v.span(),
                    &format!("{field}.dimensions"),
                    "dimensions must be at least 1",
                ));
            }
            c.dimensions = Some(*v.get_ref());
        }
        if let Some(v) = &raw.shape {
            applies("shape", v.span(), &[Tensor])?;
            c.shape = v.get_ref().clone();
        }
        if let Some(v) = &raw.dtype {
            applies("dtype", v.span(), &[Tensor])?;
            if !DTYPES.contains(&v.get_ref().as_str()) {
                return Err(self.err(
                    v.span(),
                    &format!("{field}.dtype"),
                    format!(
                        "unknown dtype `{}`; expected one of {}",
                        v.get_ref(),
                        DTYPES.join(", ")
                    ),
                ));
            }
            c.dtype = Some(v.get_ref().clone());
        }
        if let Some(v) = &raw.allowed_modules {
            applies("allowed_modules", v.span(), &[Module])?;
            c.allowed_modules = v.get_ref().clone();
        }
        if let Some(v) = &raw.element_type {
            applies("element_type", v.span(), &[List, Map])?;
            c.element_type = Some(self.value_type(v, &format!("{field}.element_type"))?);
        }
        if let Some(v) = &raw.max_items {
            applies("max_items", v.span(), &[List, Map])?;
            c.max_items = Some(*v.get_ref());
        }
        if let Some(v) = &raw.nullable {
            c.nullable = *v.get_ref();
        }
        Ok(c)
    }

    fn literal(
        &self,
        value: &Spanned<toml::Value>,
        ty: ValueType,
        element: Option<ValueType>,
        field: &str,
    ) -> Result<Literal> {
        convert(value.get_ref(), ty, element)
            .map_err(|message| self.err(value.span(), field, message))
    }

    fn check_default(
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

fn is_ascii_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_snake_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
