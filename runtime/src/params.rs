//! Checking the inputs of a tool or framework operation against their `ParameterSpec`s:
//! unknown and missing inputs, defaults, and each value's type and constraints, with
//! messages that name the tool or operation and the input. Shared by host tools and the
//! worker pool.

use std::collections::HashMap;

use mlbridge_proto::mlbridge::v1::{self as pb, VariableType};

use crate::error::{BridgeError, Result};
use crate::value::{self, type_name};

pub(crate) fn spec_type(spec: &pb::ParameterSpec) -> VariableType {
    match VariableType::try_from(spec.r#type) {
        Ok(VariableType::Unspecified) | Err(_) => VariableType::Any,
        Ok(ty) => ty,
    }
}

/// What is being called, for messages: the noun for its inputs and its full name.
pub(crate) struct Callee<'a> {
    /// `parameter` (operations) or `argument` (tools).
    pub(crate) noun: &'static str,
    /// `operation` or `tool`.
    pub(crate) kind: &'static str,
    /// `builtin.echo` or the tool name.
    pub(crate) name: &'a str,
}

impl Callee<'_> {
    pub(crate) fn context(&self, error: BridgeError) -> BridgeError {
        error.with(self.kind, self.name)
    }

    /// Checks one value against its spec, naming the parameter (and the variable it was
    /// read from) in any error.
    pub(crate) fn check(
        &self,
        spec: &pb::ParameterSpec,
        value: pb::Value,
        bound: Option<&str>,
    ) -> Result<pb::Value> {
        let label = format!("{}.{}", self.name, spec.name);
        let constraints = spec.constraints.clone().unwrap_or_default();
        value::validate(&label, spec_type(spec), &constraints, value).map_err(|e| {
            let subject = match bound {
                Some(variable) => {
                    format!("{} `{label}` (bound to variable `{variable}`)", self.noun)
                }
                None => format!("{} `{label}`", self.noun),
            };
            let message = e
                .message
                .replacen(&format!("variable `{label}`"), &subject, 1);
            let mut error = BridgeError { message, ..e };
            error.context.remove("variable");
            if let Some(variable) = bound {
                error = error.with("variable", variable);
            }
            self.context(error.with(self.noun, &spec.name))
        })
    }

    /// Fills in defaults and checks that every required input is present and no unknown
    /// one is given.
    pub(crate) fn complete(
        &self,
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
                    return Err(self.context(
                        BridgeError::invalid_argument(
                            field,
                            format!(
                                "{} `{}` needs {} `{}` ({})",
                                self.kind,
                                self.name,
                                self.noun,
                                spec.name,
                                type_name(spec_type(spec))
                            ),
                        )
                        .with(self.noun, &spec.name),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub(crate) fn unknown(
        &self,
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
        self.context(
            BridgeError::invalid_argument(
                field,
                format!(
                    "{} `{}` has no {} `{name}` (it takes: {takes})",
                    self.kind, self.name, self.noun
                ),
            )
            .with(self.noun, name),
        )
    }
}
