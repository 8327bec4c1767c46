//! The engine-orchestrated flow: a Rust program opens a session, binds DSPy's `temperature`
//! to a session variable, calls `dspy.Predict` on a Python worker through the generated typed
//! client, changes the variable and calls again; then tunes a scikit-learn estimator the same
//! way. Nothing is restarted between calls: the worker reads the variable at dispatch time.
//!
//! Run against an engine started with workers:
//! `mlbridge serve --listen 127.0.0.1:50051 --workers 2` then
//! `cargo run -p example-engine-orchestrated -- 127.0.0.1:50051`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use mlbridge::WireValue;
use mlbridge::adapters::bind;
use mlbridge::adapters::pb::{Constraints, VariableType};
use mlbridge::{Client, SessionOptions};
use mlbridge_adapters::{dspy, sklearn};

#[tokio::main]
async fn main() -> Result<()> {
    let address = std::env::args()
        .nth(1)
        .context("usage: engine-orchestrated ENGINE_ADDRESS (e.g. 127.0.0.1:50051)")?;
    let client = Client::connect(&address).await?;
    let session = client.open(SessionOptions::default()).await?;
    println!("session {}", session.id());

    // A typed, constrained variable: the engine refuses values outside [0, 2].
    session
        .register("temperature", VariableType::Float, 0.2, range(0.0, 2.0))
        .await
        .context("registering `temperature`")?;

    let question: BTreeMap<String, String> = [(
        "question".to_owned(),
        "What is the capital of France?".to_owned(),
    )]
    .into();
    let predict = dspy::Predict::new("question -> answer", question)
        .temperature(bind("temperature"))
        .max_tokens(64);

    for temperature in [0.2, 0.9] {
        session.set("temperature", temperature).await?;
        let output = predict.clone().call(&session).await?;
        let bound = &output.response.bindings["temperature"];
        let answer = output.outputs.get("answer").context("no `answer` output")?;
        let answer = String::from_value(answer.clone()).map_err(anyhow::Error::msg)?;
        println!(
            "dspy.Predict with temperature bound to `{}` (v{}) on {}: answer = {}",
            bound.variable_name, bound.version, output.response.worker_id, answer,
        );
        // The offline echo LM answers with the settings it received.
        ensure!(
            answer.contains(&format!("temperature={temperature}")),
            "the LM did not receive temperature {temperature}"
        );
    }

    session
        .register(
            "regularization",
            VariableType::Float,
            1.0,
            range(0.0001, 100.0),
        )
        .await?;
    for c in [0.01, 10.0] {
        session.set("regularization", c).await?;
        let fit = sklearn::LogisticRegression::new()
            .dataset("iris")
            .c(bind("regularization"))
            .call(&session)
            .await?;
        println!(
            "sklearn LogisticRegression with C bound to `regularization` = {c}: accuracy {:.3} on {} test samples",
            fit.accuracy, fit.n_test
        );
    }

    session.close().await?;
    println!("engine-orchestrated flow finished");
    Ok(())
}

/// Constraints of a float variable in `[min, max]`.
fn range(min: f64, max: f64) -> Constraints {
    Constraints {
        min: Some(min),
        max: Some(max),
        ..Constraints::default()
    }
}
