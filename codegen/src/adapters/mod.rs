//! Code from adapter manifests: Rust typed clients ([`rust`]) and, per framework, the Python
//! worker dispatch module, client proxies and `VariableAware` classes (askama templates in
//! `templates/python/adapters/`).

pub(crate) mod rust;

use std::collections::BTreeMap;

use askama::Template;
use heck::ToUpperCamelCase;

use crate::error::Result;
use crate::manifest::{Constraints, Literal, Manifest, OperationKind, Parameter, ValueType};
use crate::python::{HEADER, render_template};

/// The default Python package of the generated adapter modules.
pub const DEFAULT_PYTHON_PACKAGE: &str = "mlbridge_adapters";

/// Generates the Python adapter package: `<package>/<id>/{__init__,dispatch,proxy,variable_aware}.py`
/// per framework, keyed by path.
pub(crate) fn python(manifests: &[Manifest], package: &str) -> Result<BTreeMap<String, String>> {
    let root = package.replace('.', "/");
    let mut files = BTreeMap::new();
    let frameworks: Vec<PyFramework> = manifests.iter().map(PyFramework::new).collect();
    files.insert(
        format!("{root}/__init__.py"),
        render_template(
            "python/adapters/package_init.py",
            &PackageInit {
                header: HEADER,
                package,
                frameworks: &frameworks,
            },
        )?,
    );
    files.insert(
        format!("{root}/py.typed"),
        "# PEP 561 marker: this package ships type information.\n".to_owned(),
    );
    for fw in &frameworks {
        let dir = format!("{root}/{}", fw.id);
        let page = Page {
            header: HEADER,
            package,
            fw,
        };
        files.insert(
            format!("{dir}/__init__.py"),
            render_template("python/adapters/framework_init.py", &FrameworkInit(&page))?,
        );
        files.insert(
            format!("{dir}/dispatch.py"),
            render_template("python/adapters/dispatch.py", &Dispatch(&page))?,
        );
        files.insert(
            format!("{dir}/proxy.py"),
            render_template("python/adapters/proxy.py", &Proxy(&page))?,
        );
        if fw.operations.iter().any(|op| op.variable_aware.is_some()) {
            files.insert(
                format!("{dir}/variable_aware.py"),
                render_template("python/adapters/variable_aware.py", &VariableAware(&page))?,
            );
        }
    }
    Ok(files)
}

/// A default value as written in docs, e.g. `0.0` or `"iris"`.
pub(crate) fn literal_text(literal: &Literal) -> String {
    match literal {
        Literal::Float(v) => float_text(*v),
        Literal::Integer(v) => v.to_string(),
        Literal::String(s) => format!("{s:?}"),
        Literal::Boolean(v) => v.to_string(),
        Literal::List(items) => format!(
            "[{}]",
            items
                .iter()
                .map(literal_text)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Literal::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("{k:?}: {}", literal_text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn float_text(v: f64) -> String {
    if v.is_nan() {
        "nan".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{v:?}")
    }
}

/// A Python expression for `literal`.
fn python_literal(literal: &Literal) -> String {
    match literal {
        Literal::Float(v) if v.is_finite() => format!("{v:?}"),
        Literal::Float(v) => format!("float({:?})", float_text(*v)),
        Literal::Integer(v) => v.to_string(),
        Literal::String(s) => python_string(s),
        Literal::Boolean(true) => "True".to_owned(),
        Literal::Boolean(false) => "False".to_owned(),
        Literal::List(items) => format!(
            "[{}]",
            items
                .iter()
                .map(python_literal)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Literal::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("{}: {}", python_string(k), python_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A double-quoted Python string literal (ASCII only; everything else escaped).
fn python_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn constraints_expr(c: &Constraints) -> String {
    if c.is_empty() {
        return "None".to_owned();
    }
    let mut args = Vec::new();
    let strings = |items: &[String]| {
        format!(
            "({}{})",
            items
                .iter()
                .map(|s| python_string(s))
                .collect::<Vec<_>>()
                .join(", "),
            if items.len() == 1 { "," } else { "" }
        )
    };
    if let Some(v) = c.min {
        args.push(format!("min={}", python_literal(&Literal::Float(v))));
    }
    if let Some(v) = c.max {
        args.push(format!("max={}", python_literal(&Literal::Float(v))));
    }
    if c.min_exclusive {
        args.push("min_exclusive=True".to_owned());
    }
    if c.max_exclusive {
        args.push("max_exclusive=True".to_owned());
    }
    if !c.choices.is_empty() {
        args.push(format!("choices={}", strings(&c.choices)));
    }
    if let Some(v) = c.min_length {
        args.push(format!("min_length={v}"));
    }
    if let Some(v) = c.max_length {
        args.push(format!("max_length={v}"));
    }
    if let Some(v) = &c.pattern {
        args.push(format!("pattern={}", python_string(v)));
    }
    if let Some(v) = c.dimensions {
        args.push(format!("dimensions={v}"));
    }
    if !c.shape.is_empty() {
        let dims: Vec<String> = c.shape.iter().map(u64::to_string).collect();
        args.push(format!(
            "shape=({}{})",
            dims.join(", "),
            if dims.len() == 1 { "," } else { "" }
        ));
    }
    if let Some(v) = &c.dtype {
        args.push(format!("dtype={}", python_string(v)));
    }
    if !c.allowed_modules.is_empty() {
        args.push(format!("allowed_modules={}", strings(&c.allowed_modules)));
    }
    if let Some(v) = c.element_type {
        args.push(format!("element_type=VariableType.{}", v.proto_name()));
    }
    if let Some(v) = c.max_items {
        args.push(format!("max_items={v}"));
    }
    if c.nullable {
        args.push("nullable=True".to_owned());
    }
    format!("Constraints({})", args.join(", "))
}

/// The Python type of a decoded value of `ty` (what `mlbridge.from_value` returns).
fn python_type(ty: ValueType) -> &'static str {
    match ty {
        ValueType::Float => "float",
        ValueType::Integer => "int",
        ValueType::String | ValueType::Choice => "str",
        ValueType::Boolean => "bool",
        ValueType::Bytes => "bytes",
        ValueType::Embedding => "Embedding",
        ValueType::Module => "ModuleRef",
        ValueType::List => "list[Any]",
        ValueType::Map => "dict[str, Any]",
        ValueType::Tensor | ValueType::Any => "Any",
    }
}

/// The Python type a caller may pass for `ty`.
fn python_argument_type(ty: ValueType) -> &'static str {
    match ty {
        ValueType::List => "Sequence[Any]",
        ValueType::Map => "Mapping[str, Any]",
        ValueType::Embedding => "Embedding | Sequence[float]",
        other => python_type(other),
    }
}

fn docstring_text(text: &str) -> String {
    crate::comments::python_docstring(text.trim())
}

struct PyFramework {
    id: String,
    class_name: String,
    description: String,
    description_lit: String,
    /// The proxy class prefixes: blocking and asyncio.
    modes: [&'static str; 2],
    implementation: String,
    package: String,
    operations: Vec<PyOperation>,
    tools: Vec<PyTool>,
    /// `import` lines the VariableAware classes need.
    target_imports: Vec<String>,
    /// Some parameter names a session callback (the dispatch module then imports
    /// `RemoteCallback`).
    uses_callbacks: bool,
}

struct PyOperation {
    name: String,
    kind: &'static str,
    function: String,
    class_name: String,
    description: String,
    description_lit: String,
    target: String,
    variable_aware: Option<String>,
    estimator: bool,
    params: Vec<PyParam>,
    required: Vec<PyParam>,
    optional: Vec<PyParam>,
    results: Vec<PyResult>,
    /// (name, framework keyword) literals of the bindable parameters.
    bindable: Vec<(String, String)>,
    /// The first bindable parameter's name (for examples in docstrings).
    first_bindable: String,
    /// The bindable parameters' names, comma-separated.
    bindable_names: String,
}

#[derive(Clone)]
struct PyParam {
    name: String,
    /// `ParameterSpec(...)` expression.
    spec: String,
    /// The implementation's keyword argument type.
    decoded_type: String,
    /// What a proxy caller may pass.
    argument_type: String,
    doc: String,
}

struct PyResult {
    name: String,
    spec: String,
    python_type: &'static str,
    doc: String,
}

struct PyTool {
    name: String,
    function: String,
    class_name: String,
    spec_args: String,
    params: Vec<PyParam>,
    returns: String,
}

impl PyFramework {
    fn new(manifest: &Manifest) -> Self {
        let operations: Vec<PyOperation> =
            manifest.operations.iter().map(PyOperation::new).collect();
        let mut target_imports: Vec<String> = operations
            .iter()
            .filter(|op| op.variable_aware.is_some())
            .filter_map(|op| {
                op.target
                    .rsplit_once('.')
                    .map(|(module, _)| module.to_owned())
            })
            .collect();
        target_imports.sort();
        target_imports.dedup();
        PyFramework {
            id: manifest.id.clone(),
            class_name: manifest.id.to_upper_camel_case(),
            description: docstring_text(&manifest.description),
            description_lit: python_string(&manifest.description),
            modes: ["", "Async"],
            implementation: manifest.implementation.clone(),
            package: manifest.package.clone().unwrap_or_default(),
            operations,
            tools: manifest.tools.iter().map(PyTool::new).collect(),
            target_imports,
            uses_callbacks: manifest
                .operations
                .iter()
                .flat_map(|op| &op.parameters)
                .chain(manifest.tools.iter().flat_map(|tool| &tool.parameters))
                .any(|p| p.callback),
        }
    }
}

impl PyOperation {
    fn new(op: &crate::manifest::Operation) -> Self {
        let params: Vec<PyParam> = op.parameters.iter().map(PyParam::new).collect();
        let required = params
            .iter()
            .zip(&op.parameters)
            .filter(|(_, p)| p.required)
            .map(|(p, _)| p.clone())
            .collect();
        let optional = params
            .iter()
            .zip(&op.parameters)
            .filter(|(_, p)| !p.required)
            .map(|(p, _)| p.clone())
            .collect();
        PyOperation {
            name: op.name.clone(),
            kind: op.kind.as_str(),
            function: op.function.clone(),
            class_name: op.type_name(),
            description: docstring_text(&op.description),
            description_lit: python_string(&op.description),
            target: op.target.clone().unwrap_or_default(),
            variable_aware: op.variable_aware.clone(),
            estimator: op.kind == OperationKind::Estimator,
            required,
            optional,
            params,
            results: op
                .results
                .iter()
                .map(|r| PyResult {
                    name: r.name.clone(),
                    spec: format!(
                        "ResultSpec(name={}, type=VariableType.{}, description={})",
                        python_string(&r.name),
                        r.ty.proto_name(),
                        python_string(&r.description)
                    ),
                    python_type: python_type(r.ty),
                    doc: docstring_text(&r.description),
                })
                .collect(),
            bindable: op
                .parameters
                .iter()
                .filter(|p| p.bindable)
                .map(|p| (python_string(&p.name), python_string(p.keyword())))
                .collect(),
            first_bindable: op
                .parameters
                .iter()
                .find(|p| p.bindable)
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            bindable_names: op
                .parameters
                .iter()
                .filter(|p| p.bindable)
                .map(|p| format!("``{}``", p.name))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

impl PyParam {
    fn new(p: &Parameter) -> Self {
        let mut args = vec![
            format!("name={}", python_string(&p.name)),
            format!("type=VariableType.{}", p.ty.proto_name()),
        ];
        if p.required {
            args.push("required=True".to_owned());
        }
        if let Some(default) = &p.default {
            args.push(format!("default={}", python_literal(default)));
            args.push("has_default=True".to_owned());
        }
        if p.bindable {
            args.push("bindable=True".to_owned());
        }
        if p.callback {
            args.push("callback=True".to_owned());
        }
        if let Some(name) = &p.python_name {
            args.push(format!("python_name={}", python_string(name)));
        }
        if !p.description.is_empty() {
            args.push(format!("description={}", python_string(&p.description)));
        }
        if !p.constraints.is_empty() {
            args.push(format!("constraints={}", constraints_expr(&p.constraints)));
        }
        let base = python_type(p.ty);
        let decoded_type = if p.callback {
            // The worker hands the implementation a callable, not the name.
            if p.required {
                "RemoteCallback".to_owned()
            } else {
                "RemoteCallback | None".to_owned()
            }
        } else if p.required || p.default.is_some() {
            if p.constraints.nullable && base != "Any" {
                format!("{base} | None")
            } else {
                base.to_owned()
            }
        } else if base == "Any" {
            base.to_owned()
        } else {
            format!("{base} | None")
        };
        let mut argument_type = python_argument_type(p.ty).to_owned();
        if p.bindable {
            argument_type.push_str(" | Binding");
        }
        let mut doc = p.description.trim().to_owned();
        let mut facts = vec![p.ty.to_string()];
        if let Some(default) = &p.default {
            facts.push(format!("default {}", literal_text(default)));
        }
        if p.bindable {
            facts.push("bindable".to_owned());
        }
        if p.callback {
            facts.push("the name of a callback registered in the session".to_owned());
        }
        if !doc.is_empty() {
            doc.push(' ');
        }
        doc.push_str(&format!("({})", facts.join(", ")));
        PyParam {
            name: p.name.clone(),
            spec: format!("ParameterSpec({})", args.join(", ")),
            decoded_type,
            argument_type,
            doc: docstring_text(&doc),
        }
    }
}

impl PyTool {
    fn new(tool: &crate::manifest::Tool) -> Self {
        let params: Vec<PyParam> = tool.parameters.iter().map(PyParam::new).collect();
        let mut args = vec![format!("name={}", python_string(&tool.name))];
        args.push(format!("call=_tool_{}", tool.name));
        if !params.is_empty() {
            args.push(format!(
                "parameters=({},)",
                params
                    .iter()
                    .map(|p| p.spec.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        args.push(format!(
            "returns=VariableType.{}",
            tool.returns.proto_name()
        ));
        if tool.streaming {
            args.push("streaming=True".to_owned());
        }
        if !tool.description.is_empty() {
            args.push(format!("description={}", python_string(&tool.description)));
        }
        let single = python_type(tool.returns)
            .replace("dict[", "Mapping[")
            .replace("list[", "Sequence[");
        let returns = if tool.streaming {
            format!("Iterable[{single}]")
        } else {
            single
        };
        PyTool {
            name: tool.name.clone(),
            function: tool.function.clone(),
            class_name: tool.name.to_upper_camel_case(),
            spec_args: args.join(", "),
            params,
            returns,
        }
    }
}

#[derive(Template)]
#[template(path = "python/adapters/package_init.py", escape = "none")]
struct PackageInit<'a> {
    header: &'a str,
    package: &'a str,
    frameworks: &'a [PyFramework],
}

struct Page<'a> {
    header: &'a str,
    package: &'a str,
    fw: &'a PyFramework,
}

#[derive(Template)]
#[template(path = "python/adapters/framework_init.py", escape = "none")]
struct FrameworkInit<'a>(&'a Page<'a>);

#[derive(Template)]
#[template(path = "python/adapters/dispatch.py", escape = "none")]
struct Dispatch<'a>(&'a Page<'a>);

#[derive(Template)]
#[template(path = "python/adapters/proxy.py", escape = "none")]
struct Proxy<'a>(&'a Page<'a>);

#[derive(Template)]
#[template(path = "python/adapters/variable_aware.py", escape = "none")]
struct VariableAware<'a>(&'a Page<'a>);
