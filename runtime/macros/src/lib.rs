//! `#[tool]`: turns a Rust function into an mlbridge host tool whose parameter specs come
//! from its signature. Use it through the runtime as `mlbridge::tool`.

mod expand;
mod options;

use proc_macro::TokenStream;

/// Declares a host tool: keeps the function as written and adds a sibling function
/// `<name>_tool() -> mlbridge::tools::ToolDef` (same visibility, same `#[cfg]`) to pass to
/// `Engine::builder().tool(...)`.
///
/// ```rust
/// use mlbridge::tool;
///
/// /// Adds two numbers.
/// #[tool(params(a = "first addend", b = "second addend"))]
/// pub fn add(a: f64, b: f64) -> f64 {
///     a + b
/// }
///
/// let engine = mlbridge::Engine::builder().tool(add_tool()).build();
/// assert_eq!(add(1.0, 2.0), 3.0); // still an ordinary function
/// ```
///
/// What the spec says, and where it comes from:
/// - **name**: the function's name (without `r#`), or `#[tool(name = "other.name")]`;
/// - **description**: the doc comment;
/// - **parameters**: one per argument, in order, named after it; type, `required` and
///   constraints come from the Rust type through `mlbridge::tools::param::<T>`, so every
///   argument type must implement `WireValue` (`Option<T>` makes an argument optional;
///   `Vec<T>` / maps carry their element type); descriptions come from
///   `#[tool(params(arg = "description", ...))]`;
/// - **return type**: from the result type, which must implement `ToolOutput`: `T`, or
///   `Result<T, E>` with `E: Display`, where `T: WireValue`. An `Err` becomes a
///   `TOOL_ERROR` naming the tool and carrying `E`'s message.
///
/// `fn` and `async fn` are both accepted. A sync function runs on the engine's async
/// runtime, so anything that blocks belongs in an `async fn` or `spawn_blocking`.
///
/// **Streaming tools** (`#[tool(streaming)]`) are plain `fn`s (not `async`) that return any
/// `Stream + Send + 'static` whose `Item` is a `ToolOutput` (`T` or `Result<T, E>`); each
/// item becomes one chunk, the spec's return type is the item's, and the first `Err` item
/// ends the call with a `TOOL_ERROR`. Async work goes inside the stream.
///
/// ```rust
/// use mlbridge::tool;
/// use tokio_stream::Stream;
///
/// /// Counts from 0 up to `to`.
/// #[tool(streaming)]
/// pub fn count(to: i64) -> impl Stream<Item = i64> {
///     tokio_stream::iter(0..to)
/// }
/// ```
///
/// Compile errors (spanned at the culprit) for what a tool cannot be: methods taking
/// `self`, generic functions, `unsafe fn`, parameters that are patterns or references,
/// `async` streaming tools, unknown options, and descriptions for parameters that do not
/// exist. The generated code names the runtime as `::mlbridge`, so the crate using the
/// attribute depends on `mlbridge` (the `mlbridge` crate itself declares
/// `extern crate self as mlbridge`). The examples are compiled in `mlbridge::builtin_tools`.
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::tool(attr.into(), item.into()).into()
}
