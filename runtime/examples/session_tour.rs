//! One program, two ways to reach an engine: `session_tour` opens an engine in this
//! process (memory backend, built-in tools) and talks to it with no socket and no protobuf
//! encoding; `session_tour ADDRESS` talks to a running engine over gRPC. The code between
//! the two is the same `Client`/`Session` API, and so is the output
//! (`runtime/tests/in_process.rs` runs both and compares).

use std::collections::HashMap;

use mlbridge::WireValue;
use mlbridge::{Client, Engine, SessionOptions, Write};
use mlbridge_proto::mlbridge::v1::{Constraints, VariableType};
use tokio_stream::StreamExt;

/// The tour: every line it prints, in order.
pub(crate) async fn tour(client: &Client) -> mlbridge::Result<Vec<String>> {
    let mut out = Vec::new();
    let session = client
        .open(SessionOptions {
            id: Some("session-tour".to_owned()),
            ..Default::default()
        })
        .await?;
    let constraints = Constraints {
        min: Some(0.0),
        max: Some(2.0),
        ..Default::default()
    };
    let registered = session
        .register("temperature", VariableType::Float, 0.7, constraints)
        .await?;
    out.push(format!("registered temperature v{}", registered.version));
    let set = session.set("temperature", 1.2).await?;
    out.push(format!("set temperature v{}", set.version));
    let value: f64 = session.value("temperature").await?;
    out.push(format!("temperature = {value}"));
    let refused = session.set("temperature", 3.0).await.unwrap_err();
    out.push(format!("refused: {refused}"));
    session
        .register(
            "tokens",
            VariableType::Integer,
            256i64,
            Constraints::default(),
        )
        .await?;
    let outcomes = session
        .set_many(
            vec![Write::new("tokens", 512i64), Write::new("temperature", 0.5)],
            true,
        )
        .await?;
    out.push(format!("batch: {} writes", outcomes.len()));
    let names: Vec<String> = session
        .list("*")
        .await?
        .into_iter()
        .map(|v| v.name)
        .collect();
    out.push(format!("variables: {}", names.join(", ")));
    let history = session.history("temperature", 0).await?;
    out.push(format!("temperature history: {} versions", history.len()));
    let sum = session
        .call_tool(
            "add",
            HashMap::from([
                ("a".to_owned(), 2.0.into_value()),
                ("b".to_owned(), 3.5.into_value()),
            ]),
        )
        .await?;
    out.push(format!(
        "add(2, 3.5) = {}",
        f64::from_value(sum).unwrap_or(f64::NAN)
    ));
    let counted: Vec<i64> = session
        .stream_tool(
            "count",
            HashMap::from([("to".to_owned(), 3i64.into_value())]),
        )
        .await?
        .map(|item| item.map(|v| i64::from_value(v).unwrap_or(-1)))
        .collect::<mlbridge::Result<_>>()
        .await?;
    out.push(format!("count(3) = {counted:?}"));
    let closed = session.close().await?;
    out.push(format!(
        "closed: {} variables removed",
        closed.variables_removed
    ));
    Ok(out)
}

/// An engine in this process with the built-in tools, as `mlbridge serve` has them.
pub(crate) fn local_engine() -> Engine {
    mlbridge::builtin_tools::builtin_tools()
        .into_iter()
        .fold(Engine::builder(), |builder, tool| builder.tool(tool))
        .build()
}

#[allow(dead_code)] // The test includes this file for `tour` and `local_engine`.
#[tokio::main]
async fn main() -> mlbridge::Result<()> {
    let client = match std::env::args().nth(1) {
        Some(address) => Client::connect(&address).await?,
        None => local_engine().in_process_client(),
    };
    for line in tour(&client).await? {
        println!("{line}");
    }
    Ok(())
}
