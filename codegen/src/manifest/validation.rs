//! Turns the manifest as written into the model: names, types, constraints, and the rules
//! that keep generated code compilable.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use mlbridge_proto::mlbridge::v1::Dtype;
use toml::Spanned;

use super::SourceFile;
use super::model::{
    Constraints, Manifest, Operation, OperationKind, Parameter, ResultField, Tool, ValueType,
    dtype_names,
};
use super::raw::{RawConstraints, RawManifest, RawOperation, RawParameter, RawTool};
use crate::error::{Error, Result};
use crate::names::{is_python_keyword, is_rust_keyword};

/// Names the generated code itself uses next to parameters and results.
const RESERVED_PARAMETERS: [&str; 5] = ["new", "call", "label", "metadata", "self"];
const RESERVED_RESULTS: [&str; 1] = ["response"];

/// Checks a [`RawManifest`] and builds the [`Manifest`] from it; errors point into `file`.
pub(super) struct Validator<'a> {
    pub(super) file: SourceFile<'a>,
}

impl Validator<'_> {
    pub(super) fn err(&self, span: Range<usize>, field: &str, message: impl AsRef<str>) -> Error {
        self.file.error(span, field, message.as_ref())
    }

    pub(super) fn manifest(&self, raw: RawManifest) -> Result<Manifest> {
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
            let names: Vec<&str> = ValueType::ALL.iter().map(|t| t.as_str()).collect();
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
        let callback = match &raw.callback {
            Some(c) if *c.get_ref() => {
                let problem = if ty != ValueType::String {
                    Some("a callback parameter has type `string` (the callback's name)")
                } else if bindable {
                    Some("a callback parameter cannot also be `bindable`")
                } else if raw.default.is_some() {
                    Some("a callback parameter cannot have a default")
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(self.err(c.span(), &format!("{field}.callback"), problem));
                }
                true
            }
            _ => false,
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
            callback,
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
        // A NaN bound compares false with everything: the engine would refuse it (or, alone,
        // let every value through), so it is refused here where the file can be named.
        let not_nan = |key: &str, v: &Spanned<f64>| -> Result<()> {
            if v.get_ref().is_nan() {
                return Err(self.err(
                    v.span(),
                    &format!("{field}.{key}"),
                    format!("`{key}` is NaN, which no value can be compared with; give a number"),
                ));
            }
            Ok(())
        };
        if let Some(v) = &raw.min {
            applies("min", v.span(), &numeric)?;
            not_nan("min", v)?;
            c.min = Some(*v.get_ref());
        }
        if let Some(v) = &raw.max {
            applies("max", v.span(), &numeric)?;
            not_nan("max", v)?;
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
            // Compiled as the engine compiles it (alone, then anchored), so that a pattern
            // the engine would refuse at every call is refused when generating instead.
            let pattern = v.get_ref();
            if let Err(error) = regex::Regex::new(pattern)
                .and_then(|_| regex::Regex::new(&format!(r"\A(?:{pattern})\z")))
            {
                return Err(self.err(
                    v.span(),
                    &format!("{field}.pattern"),
                    format!("invalid pattern: {error}"),
                ));
            }
            c.pattern = Some(pattern.clone());
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
            if Dtype::from_name(v.get_ref()).is_none() {
                return Err(self.err(
                    v.span(),
                    &format!("{field}.dtype"),
                    format!(
                        "unknown dtype `{}`; expected one of {}",
                        v.get_ref(),
                        dtype_names().collect::<Vec<_>>().join(", ")
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
