//! The engine conformance suite from Rust: every case of `tests/conformance/values.json`
//! (types, constraints, names, conversions, exact messages and context) sent to a real
//! engine with the generated tonic client, asserting on what the engine answers. The same
//! file is run from Python by `tests/python/test_engine_conformance.py`.

use std::collections::BTreeMap;
use std::path::Path;

use mlbridge::BridgeError;
use mlbridge_proto::mlbridge::v1::{
    self as pb, ErrorKind, VariableType, ml_bridge_client::MlBridgeClient, value::Kind,
};
use serde_json::Value as Json;
use tonic::transport::Channel;

mod support;
use support::Engine;

/// One case of the file, as described in `tests/conformance/README.md`.
struct Case {
    name: String,
    variable: String,
    ty: VariableType,
    constraints: pb::Constraints,
    initial: Option<pb::Value>,
    value: pb::Value,
    expect: Expect,
}

enum Expect {
    Ok(pb::Value),
    Error {
        kind: ErrorKind,
        message: String,
        context: BTreeMap<String, String>,
    },
}

fn load_cases() -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance/values.json");
    let text = std::fs::read_to_string(&path).expect("read values.json");
    let file: Json = serde_json::from_str(&text).expect("values.json is JSON");
    let cases = file["cases"].as_array().expect("`cases` is a list");
    cases.iter().map(case_from_json).collect()
}

fn str_of<'a>(json: &'a Json, what: &str) -> &'a str {
    json.as_str()
        .unwrap_or_else(|| panic!("{what} is a string: {json}"))
}

fn case_from_json(json: &Json) -> Case {
    let name = str_of(&json["name"], "name").to_owned();
    let ty = VariableType::from_name(str_of(&json["type"], "type"))
        .unwrap_or_else(|| panic!("{name}: unknown type {}", json["type"]));
    let expect = &json["expect"];
    let expect = if let Some(ok) = expect.get("ok") {
        Expect::Ok(value_from_json(ok))
    } else {
        let kind = str_of(&expect["error"], "expect.error");
        Expect::Error {
            kind: ErrorKind::from_str_name(&format!("ERROR_KIND_{kind}"))
                .unwrap_or_else(|| panic!("{name}: unknown error kind {kind}")),
            message: str_of(&expect["message"], "expect.message").to_owned(),
            context: expect["context"]
                .as_object()
                .expect("expect.context is an object")
                .iter()
                .map(|(k, v)| (k.clone(), str_of(v, "a context value").to_owned()))
                .collect(),
        }
    };
    Case {
        variable: json
            .get("variable")
            .map_or("v", |v| str_of(v, "variable"))
            .to_owned(),
        ty,
        constraints: constraints_from_json(json.get("constraints")),
        initial: json.get("initial").map(value_from_json),
        value: value_from_json(&json["value"]),
        expect,
        name,
    }
}

fn hex(text: &str) -> Vec<u8> {
    assert!(
        text.len().is_multiple_of(2),
        "hex has an even length: {text}"
    );
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digits"))
        .collect()
}

fn float_of(json: &Json) -> f64 {
    match json {
        Json::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            other => panic!("unknown float spelling {other}"),
        },
        other => other.as_f64().expect("a number"),
    }
}

/// A `Value` from the file's tagged form (one key naming the case).
fn value_from_json(json: &Json) -> pb::Value {
    let object = json.as_object().expect("a value is an object");
    assert_eq!(object.len(), 1, "a value has exactly one key: {json}");
    let (case, item) = object.iter().next().unwrap();
    let kind = match case.as_str() {
        "null" => Kind::NullValue(0),
        "bool" => Kind::BoolValue(item.as_bool().expect("a bool")),
        "int" => Kind::IntValue(item.as_i64().expect("an integer")),
        "float" => Kind::FloatValue(float_of(item)),
        "string" => Kind::StringValue(str_of(item, "string").to_owned()),
        "bytes" => Kind::BytesValue(hex(str_of(item, "bytes")).into()),
        "choice" => Kind::ChoiceValue(pb::Choice {
            value: str_of(item, "choice").to_owned(),
        }),
        "module" => Kind::ModuleValue(pb::ModuleRef {
            name: str_of(item, "module").to_owned(),
            ..Default::default()
        }),
        "embedding" => Kind::EmbeddingValue(pb::Embedding {
            values: item
                .as_array()
                .expect("a list")
                .iter()
                .map(|v| float_of(v) as f32)
                .collect(),
            ..Default::default()
        }),
        "tensor" => Kind::TensorValue(pb::Tensor {
            dtype: pb::Dtype::from_name(str_of(&item["dtype"], "dtype")).expect("a known dtype")
                as i32,
            shape: item["shape"]
                .as_array()
                .expect("a shape")
                .iter()
                .map(|d| d.as_u64().expect("a dimension"))
                .collect(),
            data: hex(str_of(&item["data"], "data")).into(),
        }),
        "list" => Kind::ListValue(pb::ValueList {
            values: item
                .as_array()
                .expect("a list")
                .iter()
                .map(value_from_json)
                .collect(),
        }),
        "map" => Kind::MapValue(pb::ValueMap {
            entries: item
                .as_object()
                .expect("a map")
                .iter()
                .map(|(k, v)| (k.clone(), value_from_json(v)))
                .collect(),
        }),
        other => panic!("unknown value case {other}"),
    };
    pb::Value { kind: Some(kind) }
}

/// `Constraints` by proto field name, with `dtype` and `element_type` by short name.
fn constraints_from_json(json: Option<&Json>) -> pb::Constraints {
    let mut c = pb::Constraints::default();
    let Some(json) = json else { return c };
    let strings = |v: &Json| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|s| str_of(s, "an item").to_owned())
            .collect()
    };
    for (field, v) in json.as_object().expect("constraints are an object") {
        match field.as_str() {
            "min" => c.min = Some(float_of(v)),
            "max" => c.max = Some(float_of(v)),
            "min_exclusive" => c.min_exclusive = v.as_bool().expect("a bool"),
            "max_exclusive" => c.max_exclusive = v.as_bool().expect("a bool"),
            "choices" => c.choices = strings(v),
            "min_length" => c.min_length = Some(v.as_u64().expect("a count")),
            "max_length" => c.max_length = Some(v.as_u64().expect("a count")),
            "pattern" => c.pattern = Some(str_of(v, "pattern").to_owned()),
            "dimensions" => {
                c.dimensions = Some(u32::try_from(v.as_u64().expect("a count")).unwrap())
            }
            "shape" => {
                c.shape = v
                    .as_array()
                    .expect("a shape")
                    .iter()
                    .map(|d| d.as_u64().expect("a dimension"))
                    .collect()
            }
            "dtype" => {
                c.dtype =
                    Some(pb::Dtype::from_name(str_of(v, "dtype")).expect("a known dtype") as i32)
            }
            "allowed_modules" => c.allowed_modules = strings(v),
            "element_type" => {
                c.element_type = Some(
                    VariableType::from_name(str_of(v, "element_type")).expect("a known type")
                        as i32,
                )
            }
            "max_items" => c.max_items = Some(v.as_u64().expect("a count")),
            "nullable" => c.nullable = v.as_bool().expect("a bool"),
            other => panic!("unknown constraint field {other}"),
        }
    }
    c
}

fn same_value(got: &pb::Value, want: &pb::Value) -> bool {
    match (&got.kind, &want.kind) {
        (Some(Kind::FloatValue(g)), Some(Kind::FloatValue(w))) if w.is_nan() => g.is_nan(),
        _ => got == want,
    }
}

/// Runs one case in a new session; returns a description of the first mismatch.
async fn run_case(client: &mut MlBridgeClient<Channel>, case: &Case) -> Result<(), String> {
    let session_id = client
        .initialize_session(pb::InitializeSessionRequest::default())
        .await
        .map_err(|s| format!("InitializeSession: {s}"))?
        .into_inner()
        .session
        .expect("a session")
        .session_id;
    let mut register = pb::RegisterVariableRequest {
        session_id: session_id.clone(),
        name: case.variable.clone(),
        r#type: case.ty as i32,
        constraints: Some(case.constraints.clone()),
        ..Default::default()
    };
    let answer = match &case.initial {
        Some(initial) => {
            register.initial_value = Some(initial.clone());
            client
                .register_variable(register)
                .await
                .map_err(|s| format!("registering the initial value: {s}"))?;
            client
                .set_variable(pb::SetVariableRequest {
                    session_id: session_id.clone(),
                    name: case.variable.clone(),
                    value: Some(case.value.clone()),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().variable)
        }
        None => {
            register.initial_value = Some(case.value.clone());
            client
                .register_variable(register)
                .await
                .map(|r| r.into_inner().variable)
        }
    };
    let outcome = match (&case.expect, answer) {
        (Expect::Ok(want), Ok(variable)) => {
            let got = variable.and_then(|v| v.value).unwrap_or_default();
            if same_value(&got, want) {
                Ok(())
            } else {
                Err(format!("stored {got:?}, expected {want:?}"))
            }
        }
        (Expect::Ok(_), Err(status)) => Err(format!("refused: {status}")),
        (Expect::Error { .. }, Ok(variable)) => Err(format!("accepted: {variable:?}")),
        (
            Expect::Error {
                kind,
                message,
                context,
            },
            Err(status),
        ) => {
            let error = BridgeError::from_status(&status);
            let got = (error.kind, error.message.as_str(), &error.context);
            if got != (*kind, message.as_str(), context) {
                Err(format!(
                    "answered {got:?}, expected {:?}",
                    (kind, message, context)
                ))
            } else if case.initial.is_some() {
                let current = client
                    .get_variable(pb::GetVariableRequest {
                        session_id: session_id.clone(),
                        name: case.variable.clone(),
                    })
                    .await
                    .map_err(|s| format!("GetVariable: {s}"))?
                    .into_inner()
                    .variable
                    .expect("a variable");
                if current.version == 1 {
                    Ok(())
                } else {
                    Err(format!(
                        "a refused write moved the version to {}",
                        current.version
                    ))
                }
            } else {
                Ok(())
            }
        }
    };
    client
        .cleanup_session(pb::CleanupSessionRequest { session_id })
        .await
        .map_err(|s| format!("CleanupSession: {s}"))?;
    outcome
}

#[tokio::test]
async fn the_engine_answers_every_conformance_case() {
    run_suite(&[]).await;
}

/// The same suite with the state in Redis: the backend changes nothing callers see.
#[tokio::test]
async fn the_engine_on_redis_answers_every_conformance_case() {
    let redis = support::redis::RedisServer::start();
    run_suite(&["--state", &redis.url()]).await;
}

async fn run_suite(flags: &[&str]) {
    let cases = load_cases();
    assert!(cases.len() > 100, "the file holds the whole suite");
    let engine = Engine::start(flags);
    let mut client = MlBridgeClient::connect(format!("http://{}", engine.address))
        .await
        .expect("connect");
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(why) = run_case(&mut client, case).await {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
