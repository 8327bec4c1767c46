//! The `module` resource: a framework operation from the adapter manifests (e.g. DSPy
//! `predict`) held with its literal parameters and its variable bindings, run with
//! `forward`. An optimizer runs it with candidate values in place of the bound variables.

use std::collections::{BTreeMap, HashMap};

use mlbridge_proto::mlbridge::v1::{self as pb, parameter_value::Kind, value::Kind as ValueKind};

use super::{Invoked, NativeResource, ResourceCall};
use crate::engine::Engine;
use crate::error::{BridgeError, Result};
use crate::operations;

/// A framework operation with its parameters, run by `forward`.
#[derive(Debug)]
pub struct Module {
    framework: String,
    operation: String,
    /// Literal parameters given at creation.
    literals: BTreeMap<String, pb::Value>,
    /// Parameter → variable it is bound to.
    bindings: BTreeMap<String, String>,
}

impl Module {
    /// Checks the operation and the configuration: literal parameters by name, plus `bind`, a
    /// map of bindable parameter → variable name. `name` may be `framework.operation` with an
    /// empty `framework`; both are normalized in place.
    pub fn create(
        engine: &Engine,
        framework: &mut String,
        name: &mut String,
        mut config: HashMap<String, pb::Value>,
    ) -> Result<Self> {
        if framework.is_empty()
            && let Some((f, op)) = name.split_once('.')
        {
            (*framework, *name) = (f.to_owned(), op.to_owned());
        }
        if framework.is_empty() || name.is_empty() {
            return Err(BridgeError::invalid_argument(
                "name",
                "a module names its framework operation: framework `dspy` and name `predict`, \
                 or name `dspy.predict`",
            ));
        }
        let what = format!("module `{framework}.{name}`");
        let pool = engine.worker_pool(&what)?;
        let spec = operations::find_operation(pool, framework, name)?;
        let mut bindings = BTreeMap::new();
        if let Some(bind) = config.remove("bind") {
            let Some(ValueKind::MapValue(map)) = bind.kind else {
                return Err(BridgeError::invalid_argument(
                    "config",
                    format!("{what}: `bind` must be a map of parameter name to variable name"),
                ));
            };
            for (parameter, variable) in map.entries {
                let Some(ValueKind::StringValue(variable)) = variable.kind else {
                    return Err(BridgeError::invalid_argument(
                        "config",
                        format!("{what}: `bind.{parameter}` must name a variable (a string)"),
                    )
                    .with("parameter", &parameter));
                };
                bindings.insert(parameter, variable);
            }
        }
        let known = |parameter: &str| spec.parameters.iter().find(|p| p.name == parameter);
        let unknown = |parameter: &str| {
            let names: Vec<&str> = spec.parameters.iter().map(|p| p.name.as_str()).collect();
            BridgeError::invalid_argument(
                "config",
                format!(
                    "{what} has no parameter `{parameter}` (it has: {})",
                    names.join(", ")
                ),
            )
            .with("parameter", parameter)
        };
        for parameter in config.keys() {
            if known(parameter).is_none() {
                return Err(unknown(parameter));
            }
        }
        for (parameter, variable) in &bindings {
            let Some(spec) = known(parameter) else {
                return Err(unknown(parameter));
            };
            if !spec.bindable {
                return Err(BridgeError::invalid_argument(
                    "config",
                    format!(
                        "{what}: parameter `{parameter}` cannot be bound to a variable (it is \
                         not bindable); pass a literal value"
                    ),
                )
                .with("parameter", parameter)
                .with("variable", variable));
            }
            if config.contains_key(parameter) {
                return Err(BridgeError::invalid_argument(
                    "config",
                    format!("{what}: parameter `{parameter}` is given both a value and a binding"),
                )
                .with("parameter", parameter));
            }
        }
        Ok(Module {
            framework: framework.clone(),
            operation: name.clone(),
            literals: config.into_iter().collect(),
            bindings,
        })
    }

    /// The variable each bound parameter reads, by parameter.
    pub fn bindings(&self) -> &BTreeMap<String, String> {
        &self.bindings
    }

    /// Runs the operation: the creation literals overridden by `arguments`, and the bindings,
    /// except that a parameter bound to a variable named in `candidate` gets the candidate's
    /// value instead of the variable's. Answers the operation's results as a map value.
    pub async fn forward_with(
        &self,
        engine: &Engine,
        session_id: &str,
        candidate: &HashMap<String, pb::Value>,
        arguments: HashMap<String, pb::Value>,
    ) -> Result<pb::Value> {
        let mut parameters: HashMap<String, pb::ParameterValue> = HashMap::new();
        let literal = |value: pb::Value| pb::ParameterValue {
            kind: Some(Kind::Value(value)),
        };
        for (name, value) in &self.literals {
            parameters.insert(name.clone(), literal(value.clone()));
        }
        for (name, variable) in &self.bindings {
            let value = match candidate.get(variable) {
                Some(value) => literal(value.clone()),
                None => pb::ParameterValue {
                    kind: Some(Kind::Binding(pb::VariableBinding {
                        variable_name: variable.clone(),
                    })),
                },
            };
            parameters.insert(name.clone(), value);
        }
        for (name, value) in arguments {
            parameters.insert(name, literal(value));
        }
        let request = pb::ExecuteFrameworkOperationRequest {
            session_id: session_id.to_owned(),
            framework: self.framework.clone(),
            operation: self.operation.clone(),
            parameters,
            metadata: HashMap::new(),
        };
        let response = engine.execute_operation(request).await?;
        Ok(map_value(response.results.into_iter()))
    }

    fn describe(&self) -> pb::Value {
        let text = |s: &str| pb::Value {
            kind: Some(ValueKind::StringValue(s.to_owned())),
        };
        map_value(
            [
                ("framework".to_owned(), text(&self.framework)),
                ("operation".to_owned(), text(&self.operation)),
                (
                    "parameters".to_owned(),
                    map_value(self.literals.clone().into_iter()),
                ),
                (
                    "bind".to_owned(),
                    map_value(self.bindings.iter().map(|(p, v)| (p.clone(), text(v)))),
                ),
            ]
            .into_iter(),
        )
    }
}

/// A map value of `entries`.
pub fn map_value(entries: impl Iterator<Item = (String, pb::Value)>) -> pb::Value {
    pb::Value {
        kind: Some(ValueKind::MapValue(pb::ValueMap {
            entries: entries.collect(),
        })),
    }
}

#[tonic::async_trait]
impl NativeResource for Module {
    fn methods(&self) -> &'static [&'static str] {
        &["describe", "forward"]
    }

    async fn invoke(&self, call: ResourceCall<'_>) -> Result<Invoked> {
        let result = match call.method {
            "forward" => {
                self.forward_with(
                    call.engine,
                    call.session_id,
                    &HashMap::new(),
                    call.arguments,
                )
                .await?
            }
            _ => self.describe(),
        };
        Ok(Invoked {
            result: Some(result),
            metadata: HashMap::new(),
        })
    }

    fn as_module(&self) -> Option<&Module> {
        Some(self)
    }
}
