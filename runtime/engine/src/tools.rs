//! Host tools: Rust functions the engine exposes to Python. A tool's parameter specs come
//! from its Rust signature through [`WireValue`] (each Rust type knows its wire type), and
//! arguments are checked against the specs before the function runs.
//!
//! Tools are usually declared with the `#[mlbridge::tool]` attribute; [`ToolDef`] is what it
//! produces and can also be built by hand with [`ToolDef::unary`] / [`ToolDef::streaming`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use mlbridge_proto::mlbridge::v1::{self as pb, Value};
use tokio_stream::Stream;

use crate::error::{BridgeError, ErrorKind, Result, clip};
use crate::params::Callee;
pub use mlbridge_client::values::{Bytes, ToolOutput, WireValue, tool_error};

/// A boxed future of a tool's result.
pub type ToolFuture = Pin<Box<dyn Future<Output = Result<Value>> + Send>>;
/// A boxed stream of a streaming tool's chunks.
pub type ToolStream = Pin<Box<dyn Stream<Item = Result<Value>> + Send>>;

/// The spec of one parameter of type `T`.
pub fn param<T: WireValue>(name: &str, description: &str) -> pb::ParameterSpec {
    pb::ParameterSpec {
        name: name.to_owned(),
        r#type: T::variable_type() as i32,
        required: !T::optional(),
        default_value: None,
        description: description.to_owned(),
        constraints: Some(T::constraints()),
        bindable: false,
        callback: T::names_callback(),
    }
}

/// A tool spec with no return type yet: [`ToolDef::typed_unary`] and
/// [`ToolDef::typed_streaming`] fill it in from the handler's result type.
pub fn tool_spec(
    name: &str,
    description: &str,
    parameters: Vec<pb::ParameterSpec>,
) -> pb::ToolSpec {
    pb::ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters,
        ..Default::default()
    }
}

tokio::task_local! {
    /// The engine and session of the tool call running on this task, for [`Callback::call`].
    static CALL: Arc<ToolCall>;
}

/// Who runs a tool: the engine and the calling session.
pub(crate) struct ToolCall {
    pub(crate) engine: crate::Engine,
    pub(crate) session_id: String,
    pub(crate) tool: String,
}

impl ToolCall {
    /// Runs `future` (a tool's handler) with this call's context, so that the tool can reach
    /// the session's callbacks.
    pub(crate) fn scope<F: Future>(self: Arc<Self>, future: F) -> impl Future<Output = F::Output> {
        CALL.scope(self, future)
    }

    /// `stream` (a streaming tool's chunks), polled with this call's context.
    pub(crate) fn scope_stream(self: Arc<Self>, stream: ToolStream) -> ToolStream {
        Box::pin(Scoped { call: self, stream })
    }
}

struct Scoped {
    call: Arc<ToolCall>,
    stream: ToolStream,
}

impl Stream for Scoped {
    type Item = Result<Value>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        CALL.sync_scope(Arc::clone(&this.call), || {
            this.stream.as_mut().poll_next(cx)
        })
    }
}

/// A tool parameter naming one of the calling session's client callbacks (e.g. a Python
/// scoring function registered with `ctx.register_callback`). On the wire it is the
/// callback's name, a string; inside the tool, [`Callback::call`] runs it through the engine
/// under the callback's deadline, exactly as `InvokeCallback` does.
///
/// ```ignore
/// #[mlbridge::tool(params(score = "a callback taking `x`", xs = "the points"))]
/// async fn best_point(score: Callback, xs: Vec<f64>) -> mlbridge::Result<f64> { ... }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    name: String,
}

impl Callback {
    /// The callback's registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Calls the callback with named arguments; answers its result (`None` if it returned
    /// nothing).
    ///
    /// # Errors
    ///
    /// `CALLBACK_NOT_FOUND`, argument errors, `CALLBACK_ERROR` (with the callback's exception
    /// type and traceback), `TIMEOUT`, `CALLBACK_UNAVAILABLE`; `INTERNAL` if called outside
    /// the tool call (e.g. from a task the tool spawned).
    pub async fn call(&self, arguments: HashMap<String, Value>) -> Result<Option<Value>> {
        let call = CALL.try_with(Arc::clone).map_err(|_| {
            BridgeError::internal(format!(
                "callback `{}` was called outside its tool call (a task spawned by the tool \
                 does not carry the call's session)",
                self.name
            ))
        })?;
        let caller = format!("tool:{}", call.tool);
        let answer = call
            .engine
            .call_callback(
                &call.session_id,
                &self.name,
                arguments,
                HashMap::new(),
                &caller,
            )
            .await?;
        Ok(answer.result)
    }
}

impl WireValue for Callback {
    fn variable_type() -> pb::VariableType {
        pb::VariableType::String
    }

    fn names_callback() -> bool {
        true
    }

    fn from_value(value: Value) -> std::result::Result<Self, String> {
        match String::from_value(value)? {
            name if name.is_empty() => Err("a callback name must not be empty".to_owned()),
            name => Ok(Callback { name }),
        }
    }

    fn into_value(self) -> Value {
        self.name.into_value()
    }
}

/// The arguments of one call, checked against the tool's parameter specs.
#[derive(Debug)]
pub struct ToolArgs {
    tool: String,
    values: HashMap<String, Value>,
    /// The calling session.
    pub session_id: String,
}

impl ToolArgs {
    /// Removes and decodes argument `name`; a missing optional argument becomes its default.
    pub fn take<T: WireValue>(&mut self, name: &str) -> Result<T> {
        match self.values.remove(name) {
            Some(value) => T::from_value(value).map_err(|detail| {
                BridgeError::invalid_argument(
                    "arguments",
                    format!("tool `{}`, argument `{name}`: {detail}", self.tool),
                )
                .with("tool", &self.tool)
                .with("parameter", name)
            }),
            None => T::missing().ok_or_else(|| {
                BridgeError::invalid_argument(
                    "arguments",
                    format!("tool `{}` needs argument `{name}`", self.tool),
                )
                .with("tool", &self.tool)
                .with("parameter", name)
            }),
        }
    }
}

/// How a tool runs.
#[derive(Clone)]
pub enum Handler {
    /// One result.
    Unary(Arc<dyn Fn(ToolArgs) -> ToolFuture + Send + Sync>),
    /// A stream of chunks.
    Streaming(Arc<dyn Fn(ToolArgs) -> ToolStream + Send + Sync>),
}

/// A tool: its spec and its handler.
#[derive(Clone)]
pub struct ToolDef {
    /// What `ListTools` reports.
    pub spec: pb::ToolSpec,
    /// What `ExecuteTool` runs.
    pub handler: Handler,
}

impl std::fmt::Debug for ToolDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolDef")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl ToolDef {
    /// A tool with one result.
    pub fn unary<F, Fut>(spec: pb::ToolSpec, run: F) -> Self
    where
        F: Fn(ToolArgs) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value>> + Send + 'static,
    {
        ToolDef {
            spec,
            handler: Handler::Unary(Arc::new(move |args| Box::pin(run(args)))),
        }
    }

    /// A tool that streams chunks.
    pub fn streaming<F, S>(mut spec: pb::ToolSpec, run: F) -> Self
    where
        F: Fn(ToolArgs) -> S + Send + Sync + 'static,
        S: Stream<Item = Result<Value>> + Send + 'static,
    {
        spec.supports_streaming = true;
        ToolDef {
            spec,
            handler: Handler::Streaming(Arc::new(move |args| Box::pin(run(args)))),
        }
    }

    /// A tool with one typed result (what `#[mlbridge::tool]` generates): the spec's
    /// `return_type` comes from `R`, and an `Err` result becomes a `TOOL_ERROR`.
    pub fn typed_unary<F, Fut, R>(mut spec: pb::ToolSpec, run: F) -> Self
    where
        F: Fn(ToolArgs) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R>> + Send + 'static,
        R: ToolOutput,
    {
        spec.return_type = R::Output::variable_type() as i32;
        let tool: Arc<str> = spec.name.as_str().into();
        ToolDef::unary(spec, move |args| {
            let call = run(args);
            let tool = Arc::clone(&tool);
            async move { call.await?.into_tool_result(&tool) }
        })
    }

    /// A tool that streams typed items (what `#[mlbridge::tool(streaming)]` generates):
    /// `run` decodes the arguments and returns the stream; the spec's `return_type` is the
    /// item's value type, and an `Err` item becomes a `TOOL_ERROR` that ends the call.
    pub fn typed_streaming<F, S>(mut spec: pb::ToolSpec, run: F) -> Self
    where
        F: Fn(ToolArgs) -> Result<S> + Send + Sync + 'static,
        S: Stream + Send + 'static,
        S::Item: ToolOutput,
    {
        spec.return_type = <S::Item as ToolOutput>::Output::variable_type() as i32;
        spec.supports_streaming = true;
        let tool: Arc<str> = spec.name.as_str().into();
        let handler = move |args| -> ToolStream {
            match run(args) {
                Ok(items) => {
                    let tool = Arc::clone(&tool);
                    Box::pin(tokio_stream::StreamExt::map(items, move |item| {
                        item.into_tool_result(&tool)
                    }))
                }
                Err(error) => Box::pin(tokio_stream::once(Err(error))),
            }
        };
        ToolDef {
            spec,
            handler: Handler::Streaming(Arc::new(handler)),
        }
    }
}

/// The engine's tools, by name.
#[derive(Debug, Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, ToolDef>,
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        ToolRegistry::default()
    }

    /// Adds a tool; a second tool with the same name is refused.
    pub fn register(&mut self, tool: ToolDef) -> Result<()> {
        let name = tool.spec.name.clone();
        if self.tools.contains_key(&name) {
            return Err(BridgeError::new(
                ErrorKind::AlreadyExists,
                format!("tool `{name}` is already registered"),
            )
            .with("tool", &name));
        }
        self.tools.insert(name, tool);
        Ok(())
    }

    /// Specs of every tool, sorted by name.
    pub fn specs(&self) -> Vec<pb::ToolSpec> {
        self.tools.values().map(|t| t.spec.clone()).collect()
    }

    /// Number of tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether there are no tools.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Checks `arguments` against the tool's specs and prepares the call.
    pub fn prepare(
        &self,
        session_id: &str,
        name: &str,
        arguments: HashMap<String, Value>,
    ) -> Result<(Handler, ToolArgs)> {
        let tool = self.tools.get(name).ok_or_else(|| {
            BridgeError::new(
                ErrorKind::ToolNotFound,
                format!("no tool named `{}`", clip(name)),
            )
            .with("tool", name)
        })?;
        let callee = Callee::Tool(name);
        let mut arguments = arguments;
        callee.complete(&tool.spec.parameters, &mut arguments, "arguments")?;
        let mut checked = HashMap::with_capacity(arguments.len());
        for spec in &tool.spec.parameters {
            let Some(value) = arguments.remove(&spec.name) else {
                continue;
            };
            let value = callee.check(spec, value, None)?;
            checked.insert(spec.name.clone(), value);
        }
        Ok((
            tool.handler.clone(),
            ToolArgs {
                tool: name.to_owned(),
                values: checked,
                session_id: session_id.to_owned(),
            },
        ))
    }
}
