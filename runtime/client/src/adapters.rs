//! Support for the typed framework clients generated from adapter manifests: parameters
//! that are literals or bindings to session variables, and typed results.
//!
//! Generated code (see `generated/rust-adapters`) builds an [`OperationCall`] per
//! operation; users mostly meet [`bind`]:
//!
//! ```no_run
//! # async fn demo(session: &mlbridge_client::Session) -> mlbridge_client::Result<()> {
//! use mlbridge_client::adapters::bind;
//! # mod dspy { pub struct Predict; impl Predict {
//! #   pub fn new(_: &str, _: std::collections::BTreeMap<String, String>) -> Self { Predict }
//! #   pub fn temperature(self, _: impl mlbridge_client::adapters::IntoParam<f64>) -> Self { self }
//! #   pub async fn call(self, _: &mlbridge_client::Session) -> mlbridge_client::Result<()> { Ok(()) } } }
//! let inputs = [("question".to_owned(), "What is 2 + 2?".to_owned())].into();
//! dspy::Predict::new("question -> answer", inputs)
//!     .temperature(bind("temperature")) // read from the session at dispatch time
//!     .call(session)
//!     .await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;

pub use mlbridge_proto::mlbridge::v1 as pb;
use pb::parameter_value::Kind;

use crate::client::Session;
use crate::error::{BridgeError, ErrorKind, Result};
use crate::values::{WireValue, kind_name};

/// A binding of a parameter to a session variable, made by [`bind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding(String);

/// Binds a parameter to the session variable `variable`: the engine reads its current value
/// when it dispatches the call, so changing the variable changes the next call.
pub fn bind(variable: impl Into<String>) -> Binding {
    Binding(variable.into())
}

impl Binding {
    /// The bound variable's name.
    pub fn variable(&self) -> &str {
        &self.0
    }
}

/// Parameters of no single Rust type (`list`, `map` and `any` in manifests): any
/// [`WireValue`] is accepted and the engine checks it against the manifest.
#[derive(Debug, Clone, Copy)]
pub enum Dynamic {}

/// A value accepted by a bindable parameter of type `T`: a literal `T` or a [`Binding`].
pub trait IntoParam<T> {
    /// The wire form.
    fn into_param(self) -> pb::ParameterValue;
}

impl<T: WireValue> IntoParam<T> for T {
    fn into_param(self) -> pb::ParameterValue {
        literal(self.into_value())
    }
}

impl<T> IntoParam<T> for Binding {
    fn into_param(self) -> pb::ParameterValue {
        pb::ParameterValue {
            kind: Some(Kind::Binding(pb::VariableBinding {
                variable_name: self.0,
            })),
        }
    }
}

impl IntoParam<String> for &str {
    fn into_param(self) -> pb::ParameterValue {
        literal(self.to_owned().into_value())
    }
}

/// Wraps a value as a literal parameter.
pub fn literal(value: pb::Value) -> pb::ParameterValue {
    pb::ParameterValue {
        kind: Some(Kind::Value(value)),
    }
}

/// Any [`WireValue`] for a [`Dynamic`] parameter.
pub fn dynamic(value: impl WireValue) -> pb::ParameterValue {
    literal(value.into_value())
}

/// One framework-operation call being built: what generated builders wrap.
#[derive(Debug, Clone)]
pub struct OperationCall {
    framework: &'static str,
    operation: &'static str,
    parameters: HashMap<String, pb::ParameterValue>,
    metadata: HashMap<String, String>,
}

impl OperationCall {
    /// A call of `framework.operation` with no parameters yet.
    pub fn new(framework: &'static str, operation: &'static str) -> Self {
        OperationCall {
            framework,
            operation,
            parameters: HashMap::new(),
            metadata: HashMap::new(),
        }
    }

    /// Sets parameter `name` (a later setting replaces an earlier one).
    pub fn set(&mut self, name: &str, value: pb::ParameterValue) {
        self.parameters.insert(name.to_owned(), value);
    }

    /// Adds a call label, passed through to the worker.
    pub fn label(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    /// The parameters set so far.
    pub fn parameters(&self) -> &HashMap<String, pb::ParameterValue> {
        &self.parameters
    }

    /// Sends the call through the engine to a worker.
    pub async fn execute(self, session: &Session) -> Result<pb::ExecuteFrameworkOperationResponse> {
        session
            .execute_framework_operation(
                self.framework,
                self.operation,
                self.parameters,
                self.metadata,
            )
            .await
    }
}

/// Removes result `name` of `framework.operation` from `response` and decodes it as `T`.
pub fn take_result<T: WireValue>(
    framework: &str,
    operation: &str,
    response: &mut pb::ExecuteFrameworkOperationResponse,
    name: &str,
) -> Result<T> {
    let value = response.results.remove(name).ok_or_else(|| {
        BridgeError::new(
            ErrorKind::FrameworkError,
            format!("{framework}.{operation} returned no result `{name}`"),
        )
        .with("result", name)
    })?;
    let kind = kind_name(&value);
    T::from_value(value).map_err(|detail| {
        BridgeError::new(
            ErrorKind::TypeMismatch,
            format!("{framework}.{operation} result `{name}` ({kind}): {detail}"),
        )
        .with("result", name)
    })
}

impl<V: WireValue> IntoParam<Dynamic> for V {
    fn into_param(self) -> pb::ParameterValue {
        literal(self.into_value())
    }
}
