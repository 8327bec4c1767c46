//! The engine-orchestrated flow as a test: a real engine with a Python worker, the typed
//! DSPy client generated from `dspy.toml`, and `temperature` set from Rust between calls.
//! The offline echo LM answers with the settings it received, so the assertions are on what
//! the LM was actually given.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use mlbridge::WireValue;
use mlbridge::adapters::bind;
use mlbridge::adapters::pb::{Constraints, VariableType};
use mlbridge::{Client, ErrorKind, SessionOptions};
use mlbridge_adapters::dspy;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Engine {
    child: Child,
    address: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mlbridge serve --workers 1`, run by `$MLBRIDGE_PYTHON` or the workspace's `.venv`.
fn engine() -> Engine {
    let root = workspace();
    let python = std::env::var_os("MLBRIDGE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let mut child = Command::new(root.join("target/debug/mlbridge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
        .args(["--adapter", "mlbridge_adapters.dspy"])
        .env("MLBRIDGE_PYTHON", python)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start target/debug/mlbridge (run `cargo build --workspace --bins`)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("engine line");
    let address = line
        .trim()
        .strip_prefix(mlbridge::ENGINE_READY_PREFIX)
        .unwrap_or_else(|| panic!("engine printed {line:?}"))
        .to_owned();
    Engine { child, address }
}

fn answer(output: &dspy::PredictOutput) -> String {
    String::from_value(output.outputs["answer"].clone()).expect("a text answer")
}

#[tokio::test]
async fn temperature_set_from_rust_reaches_the_next_dspy_call() {
    let engine = engine();
    let client = Client::connect(&engine.address).await.unwrap();
    let session = client.open(SessionOptions::default()).await.unwrap();
    let range = Constraints {
        min: Some(0.0),
        max: Some(2.0),
        ..Constraints::default()
    };
    session
        .register("temperature", VariableType::Float, 0.25, range)
        .await
        .unwrap();
    let inputs: BTreeMap<String, String> = [("question".to_owned(), "2 + 2?".to_owned())].into();
    let predict = dspy::Predict::new("question -> answer", inputs)
        .temperature(bind("temperature"))
        .max_tokens(48);

    let first = predict.clone().call(&session).await.unwrap();
    assert!(
        answer(&first).contains("temperature=0.25, max_tokens=48"),
        "{}",
        answer(&first)
    );
    assert_eq!(first.response.bindings["temperature"].version, 1);

    session.set("temperature", 1.5).await.unwrap();
    let second = predict.clone().call(&session).await.unwrap();
    assert!(
        answer(&second).contains("temperature=1.5"),
        "{}",
        answer(&second)
    );
    assert_eq!(second.response.bindings["temperature"].version, 2);
    assert_eq!(second.response.worker_id, first.response.worker_id);

    // A literal works too, and the engine checks it against the manifest's constraints.
    let literal = dspy::Predict::new("question -> answer", BTreeMap::<String, String>::new())
        .temperature(3.0)
        .call(&session)
        .await
        .unwrap_err();
    assert_eq!(literal.kind, ErrorKind::ConstraintViolation);
    assert!(literal.message.contains("temperature"), "{literal}");
}
