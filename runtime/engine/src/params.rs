//! Checking the inputs of a tool or framework operation against their `ParameterSpec`s:
//! unknown and missing inputs, defaults, and each value's type and constraints, with
//! messages that name the tool or operation and the input. Shared by host tools and the
//! worker pool.

use std::collections::HashMap;

use mlbridge_proto::mlbridge::v1::{self as pb, VariableType};

use crate::error::{BridgeError, Result, clip};
use crate::value::{self, Subject};

pub(crate) fn spec_type(spec: &pb::ParameterSpec) -> VariableType {
    match VariableType::try_from(spec.r#type) {
        Ok(VariableType::Unspecified) | Err(_) => VariableType::Any,
        Ok(ty) => ty,
    }
}

/// What is being called: a host tool (whose inputs messages call arguments) or a
/// framework operation (parameters). Errors about an input carry the same context keys
/// either way: `parameter` names the input, `tool` or `operation` the callee.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Callee<'a> {
    /// A host or worker tool, by name.
    Tool(&'a str),
    /// A framework operation, by full name (`builtin.echo`).
    Operation(&'a str),
    /// A client callback, by name.
    Callback(&'a str),
}

impl<'a> Callee<'a> {
    /// The noun messages use for an input.
    fn noun(self) -> &'static str {
        match self {
            Callee::Tool(_) | Callee::Callback(_) => "argument",
            Callee::Operation(_) => "parameter",
        }
    }

    /// `tool` or `operation`: in messages and as the context key naming the callee.
    fn kind(self) -> &'static str {
        match self {
            Callee::Tool(_) => "tool",
            Callee::Operation(_) => "operation",
            Callee::Callback(_) => "callback",
        }
    }

    fn name(self) -> &'a str {
        match self {
            Callee::Tool(name) | Callee::Operation(name) | Callee::Callback(name) => name,
        }
    }

    /// Adds the context key naming the callee.
    pub(crate) fn context(self, error: BridgeError) -> BridgeError {
        error.with(self.kind(), self.name())
    }

    /// Adds the context keys naming the callee and the input `input`.
    pub(crate) fn input_context(self, error: BridgeError, input: &str) -> BridgeError {
        self.context(error).with("parameter", input)
    }

    /// The subject of validation messages about input `input`.
    fn subject(self, input: &'a str, bound: Option<&'a str>) -> Subject<'a> {
        match self {
            Callee::Tool(tool) | Callee::Callback(tool) => Subject::Argument {
                tool,
                argument: input,
            },
            Callee::Operation(operation) => Subject::Parameter {
                operation,
                parameter: input,
                bound,
            },
        }
    }

    /// Checks one value against its spec, naming the input (and the variable it was read
    /// from) in any error.
    pub(crate) fn check(
        self,
        spec: &'a pb::ParameterSpec,
        value: pb::Value,
        bound: Option<&'a str>,
    ) -> Result<pb::Value> {
        let constraints = spec.constraints.clone().unwrap_or_default();
        value::validate(
            self.subject(&spec.name, bound),
            spec_type(spec),
            &constraints,
            value,
        )
    }

    /// Fills in defaults and checks that every required input is present and no unknown
    /// one is given.
    pub(crate) fn complete(
        self,
        specs: &[pb::ParameterSpec],
        given: &mut HashMap<String, pb::Value>,
        field: &str,
    ) -> Result<()> {
        if let Some(unknown) = given
            .keys()
            .filter(|n| !specs.iter().any(|s| &s.name == *n))
            .min()
        {
            return Err(self.unknown(specs, unknown, field));
        }
        for spec in specs {
            if given.contains_key(&spec.name) {
                continue;
            }
            match &spec.default_value {
                Some(default) if default.kind.is_some() => {
                    given.insert(spec.name.clone(), default.clone());
                }
                _ if spec.required => {
                    return Err(self.input_context(
                        BridgeError::invalid_argument(
                            field,
                            format!(
                                "{} `{}` needs {} `{}` ({})",
                                self.kind(),
                                self.name(),
                                self.noun(),
                                spec.name,
                                spec_type(spec).name()
                            ),
                        ),
                        &spec.name,
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub(crate) fn unknown(
        self,
        specs: &[pb::ParameterSpec],
        name: &str,
        field: &str,
    ) -> BridgeError {
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let takes = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        self.input_context(
            BridgeError::invalid_argument(
                field,
                format!(
                    "{} `{}` has no {} `{}` (it takes: {takes})",
                    self.kind(),
                    self.name(),
                    self.noun(),
                    clip(name)
                ),
            ),
            name,
        )
    }
}
