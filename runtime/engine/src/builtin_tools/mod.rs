//! Built-in host tools the `mlbridge` binary registers: small, dependable functions for
//! tests, demos and smoke checks, declared with `#[mlbridge::tool]` like any user tool.

use std::collections::HashMap;
use std::time::Duration;

use mlbridge_proto::mlbridge::v1::{Embedding, Value};
use tokio_stream::{Stream, StreamExt};

use crate::tool;
use crate::tools::{Callback, ToolDef};
use crate::{BridgeError, Result};

/// Every built-in tool, ready for `Engine::builder().tool(...)`.
pub fn builtin_tools() -> Vec<ToolDef> {
    vec![
        add_tool(),
        count_tool(),
        echo_tool(),
        fail_tool(),
        map_callback_tool(),
        mean_tool(),
        scale_embedding_tool(),
        sleep_tool(),
        word_count_tool(),
    ]
}

/// Adds two numbers.
#[tool(params(a = "first addend", b = "second addend"))]
pub fn add(a: f64, b: f64) -> f64 {
    a + b
}

/// Returns its argument unchanged (any type).
#[tool(params(value = "the value to return"))]
pub fn echo(value: Value) -> Value {
    value
}

/// Counts the whitespace-separated words in a text.
#[tool(params(text = "the text to count words in"))]
pub fn word_count(text: String) -> i64 {
    i64::try_from(text.split_whitespace().count()).unwrap_or(i64::MAX)
}

/// The arithmetic mean of a list of numbers; fails on an empty list.
#[tool(params(values = "the numbers to average"))]
pub fn mean(values: Vec<f64>) -> Result<f64, String> {
    if values.is_empty() {
        return Err("no values to average".to_owned());
    }
    Ok(values.iter().sum::<f64>() / values.len() as f64)
}

/// Multiplies every component of an embedding by a factor, keeping its model name.
#[tool(params(embedding = "the vector to scale", factor = "the multiplier"))]
pub fn scale_embedding(embedding: Embedding, factor: f64) -> Embedding {
    let factor = factor as f32;
    Embedding {
        values: embedding.values.iter().map(|v| v * factor).collect(),
        model: embedding.model,
    }
}

/// Always fails with the given message (for checking error propagation).
#[tool(params(message = "the error message"))]
pub fn fail(message: String) -> Result<(), String> {
    Err(message)
}

/// Calls a client callback once per entry of `calls` (each a map of that call's arguments),
/// at most `concurrency` calls at a time (default 8, at most 64), and returns the results in
/// order: e.g. a Python scoring function applied to a batch from Rust. Fails with the first
/// failing call's own error (`CALLBACK_ERROR` with the Python type and traceback, `TIMEOUT`).
#[tool(params(
    callback = "the name of a callback registered in the session",
    calls = "the arguments of each call",
    concurrency = "calls in flight at most (default 8, at most 64)"
))]
pub async fn map_callback(
    callback: Callback,
    calls: Vec<HashMap<String, Value>>,
    concurrency: Option<i64>,
) -> Result<Vec<Value>> {
    let concurrency = match concurrency.unwrap_or(8) {
        n @ 1..=64 => n as usize,
        n => {
            return Err(BridgeError::invalid_argument(
                "concurrency",
                format!("`concurrency` must be between 1 and 64, got {n}"),
            ));
        }
    };
    use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
    let callback = &callback;
    stream::iter(calls.into_iter().map(|arguments| async move {
        Ok::<_, BridgeError>(callback.call(arguments).await?.unwrap_or_default())
    }))
    .buffered(concurrency)
    .try_collect()
    .await
}

/// Waits `ms` milliseconds, then returns `ms`.
#[tool(params(ms = "milliseconds to wait (not negative)"))]
pub async fn sleep(ms: i64) -> Result<i64, String> {
    let wait = u64::try_from(ms).map_err(|_| format!("`ms` must not be negative, got {ms}"))?;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    Ok(ms)
}

/// Streams the integers from 0 up to (not including) `to`, one chunk each.
#[tool(
    streaming,
    params(
        to = "where to stop (exclusive)",
        delay_ms = "pause before each chunk after the first (default 0)"
    )
)]
pub fn count(to: i64, delay_ms: Option<i64>) -> impl Stream<Item = Result<i64, String>> {
    let delay_ms = delay_ms.unwrap_or(0);
    tokio_stream::iter(0..to.max(0)).then(move |i| async move {
        let delay = u64::try_from(delay_ms)
            .map_err(|_| format!("`delay_ms` must not be negative, got {delay_ms}"))?;
        if i > 0 && delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        Ok(i)
    })
}

#[cfg(test)]
mod tests;
