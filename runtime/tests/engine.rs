//! The engine as a real process (`mlbridge serve`) driven by the Rust client: lifecycle,
//! every type, constraints, versions, batches, history, TTL, isolation, watch and errors.

use std::collections::HashMap;
use std::time::Duration;

use mlbridge::{BridgeError, ErrorKind, SessionOptions, Write};
use mlbridge_proto::mlbridge::v1::{
    self as pb, Constraints, VariableType as T, VariableUpdateKind, value::Kind,
};
use tokio_stream::StreamExt;

mod support;
use support::Engine;

fn value(kind: Kind) -> pb::Value {
    pb::Value { kind: Some(kind) }
}

fn kind_of(error: &BridgeError) -> ErrorKind {
    error.kind
}

#[tokio::test]
async fn sessions_are_created_joined_isolated_and_cleaned_up() {
    let engine = Engine::start(&[]);
    let client = engine.client().await;
    let a = client.session().await.unwrap();
    let b = client.session().await.unwrap();
    assert_ne!(a.id(), b.id());
    a.register("x", T::Integer, 1i64, Constraints::default())
        .await
        .unwrap();
    let err = b.get("x").await.unwrap_err();
    assert_eq!(kind_of(&err), ErrorKind::VariableNotFound);

    let joined = client
        .open(SessionOptions {
            id: Some(a.id().to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(joined.value::<i64>("x").await.unwrap(), 1);
    assert_eq!(a.info().await.unwrap().variable_count, 1);

    let id = a.id().to_owned();
    let cleaned = a.close().await.unwrap();
    assert!(cleaned.existed);
    assert_eq!(cleaned.variables_removed, 1);
    let err = joined.get("x").await.unwrap_err();
    assert_eq!(kind_of(&err), ErrorKind::SessionNotFound);
    assert!(err.message.contains(&id), "{}", err.message);
}

#[tokio::test]
async fn every_type_round_trips() {
    let engine = Engine::start(&[]);
    let session = engine.client().await.session().await.unwrap();
    let tensor = pb::Tensor {
        dtype: pb::Dtype::Float32 as i32,
        shape: vec![2, 3],
        data: (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect(),
    };
    let nested = pb::ValueList {
        values: vec![
            value(Kind::IntValue(1)),
            value(Kind::StringValue("two".into())),
        ],
    };
    let map = pb::ValueMap {
        entries: [("k".to_owned(), value(Kind::BoolValue(true)))].into(),
    };
    let cases: Vec<(&str, T, pb::Value)> = vec![
        ("f", T::Float, value(Kind::FloatValue(0.25))),
        ("i", T::Integer, value(Kind::IntValue(-42))),
        ("s", T::String, value(Kind::StringValue("héllo".into()))),
        ("b", T::Boolean, value(Kind::BoolValue(true))),
        (
            "c",
            T::Choice,
            value(Kind::ChoiceValue(pb::Choice {
                value: "gpt".into(),
            })),
        ),
        (
            "m",
            T::Module,
            value(Kind::ModuleValue(pb::ModuleRef {
                name: "dspy.Predict".into(),
                ..Default::default()
            })),
        ),
        (
            "e",
            T::Embedding,
            value(Kind::EmbeddingValue(pb::Embedding {
                values: vec![0.5, -1.0],
                model: None,
            })),
        ),
        ("t", T::Tensor, value(Kind::TensorValue(tensor))),
        ("l", T::List, value(Kind::ListValue(nested))),
        ("d", T::Map, value(Kind::MapValue(map))),
        (
            "y",
            T::Bytes,
            value(Kind::BytesValue(vec![0, 255, 7].into())),
        ),
        ("n", T::Any, value(Kind::NullValue(0))),
    ];
    for (name, ty, v) in &cases {
        let constraints = if *ty == T::Choice {
            Constraints {
                choices: vec!["gpt".into(), "claude".into()],
                ..Default::default()
            }
        } else {
            Constraints::default()
        };
        session
            .register(name, *ty, v.clone(), constraints)
            .await
            .unwrap();
        let got = session.get(name).await.unwrap();
        assert_eq!(got.value.as_ref(), Some(v), "{name}");
        assert_eq!(got.r#type, *ty as i32);
    }
    // Accepted conversions are normalised.
    session.set("f", 3i64).await.unwrap();
    assert_eq!(session.value::<f64>("f").await.unwrap(), 3.0);
    session.set("c", "claude".to_owned()).await.unwrap();
    let choice = session.get("c").await.unwrap().value.unwrap();
    assert_eq!(
        choice.kind,
        Some(Kind::ChoiceValue(pb::Choice {
            value: "claude".into()
        }))
    );
}

#[tokio::test]
async fn constraints_and_types_are_enforced_with_named_errors() {
    let engine = Engine::start(&[]);
    let session = engine.client().await.session().await.unwrap();
    let range = Constraints {
        min: Some(0.0),
        max: Some(2.0),
        ..Default::default()
    };
    session
        .register("temperature", T::Float, 0.7, range)
        .await
        .unwrap();
    let err = session.set("temperature", 2.5).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ConstraintViolation);
    assert_eq!(
        err.message,
        "variable `temperature`: 2.5 is above the maximum 2"
    );
    assert_eq!(err.context["constraint"], "max");
    let err = session
        .set("temperature", "hot".to_owned())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::TypeMismatch);
    assert_eq!(
        err.message,
        "variable `temperature` expects float, got string"
    );
    // The failed writes changed nothing.
    assert_eq!(session.get("temperature").await.unwrap().version, 1);

    let pattern = Constraints {
        pattern: Some("[a-z]+".into()),
        max_length: Some(5),
        ..Default::default()
    };
    session
        .register("word", T::String, "abc".to_owned(), pattern)
        .await
        .unwrap();
    assert_eq!(
        session
            .set("word", "ab1".to_owned())
            .await
            .unwrap_err()
            .context["constraint"],
        "pattern"
    );
    assert_eq!(
        session
            .set("word", "abcdef".to_owned())
            .await
            .unwrap_err()
            .context["constraint"],
        "max_length"
    );

    let bad = Constraints {
        min: Some(5.0),
        max: Some(1.0),
        ..Default::default()
    };
    let err = session
        .register("broken", T::Float, 2.0, bad)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    assert_eq!(
        err.message,
        "constraints of `broken`: min 5 is greater than max 1"
    );
    let err = session
        .register("temperature", T::Float, 1.0, Constraints::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::VariableAlreadyExists);
}

#[tokio::test]
async fn expected_version_lets_exactly_one_racer_win() {
    let engine = Engine::start(&[]);
    let client = engine.client().await;
    let session = client.session().await.unwrap();
    session
        .register("counter", T::Integer, 0i64, Constraints::default())
        .await
        .unwrap();
    let other = client
        .open(SessionOptions {
            id: Some(session.id().to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    for round in 0..20u64 {
        let version = round + 1;
        let (a, b) = tokio::join!(
            session.set_if_version("counter", 1i64, version),
            other.set_if_version("counter", 2i64, version)
        );
        let wins = [a.is_ok(), b.is_ok()].iter().filter(|w| **w).count();
        assert_eq!(wins, 1, "round {round}: {a:?} / {b:?}");
        let loser = a.err().or(b.err()).unwrap();
        assert_eq!(loser.kind, ErrorKind::VersionConflict);
    }
    assert_eq!(session.get("counter").await.unwrap().version, 21);
}

#[tokio::test]
async fn atomic_batches_apply_all_or_nothing() {
    let engine = Engine::start(&[]);
    let session = engine.client().await.session().await.unwrap();
    let small = Constraints {
        max: Some(10.0),
        ..Default::default()
    };
    session
        .register("a", T::Integer, 1i64, small.clone())
        .await
        .unwrap();
    session
        .register("b", T::Integer, 1i64, small)
        .await
        .unwrap();
    let error = session
        .set_many(vec![Write::new("a", 5i64), Write::new("b", 50i64)], true)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::ConstraintViolation);
    assert_eq!(error.context["batch_failed_at"], "1 (b)");
    // On the wire only the failing write carries the error; `a` has no outcome.
    let mut stub = mlbridge_proto::mlbridge::v1::ml_bridge_client::MlBridgeClient::connect(
        format!("http://{}", engine.address),
    )
    .await
    .unwrap();
    let write = |name: &str, v: i64| mlbridge_proto::mlbridge::v1::VariableWrite {
        name: name.to_owned(),
        value: Some(mlbridge::WireValue::into_value(v)),
        expected_version: None,
    };
    let response = stub
        .set_variables(mlbridge_proto::mlbridge::v1::SetVariablesRequest {
            session_id: session.id().to_owned(),
            writes: vec![write("a", 5), write("b", 50), write("a2", 1)],
            atomic: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!response.all_applied);
    let outcomes: Vec<_> = response
        .results
        .iter()
        .map(|r| r.outcome.is_some())
        .collect();
    assert_eq!(outcomes, [false, true, false]);
    assert_eq!(session.value::<i64>("a").await.unwrap(), 1);
    let outcomes = session
        .set_many(vec![Write::new("a", 5i64), Write::new("b", 50i64)], false)
        .await
        .unwrap();
    assert_eq!(outcomes[0].as_ref().unwrap(), &2);
    assert!(outcomes[1].is_err());
    assert_eq!(session.value::<i64>("a").await.unwrap(), 5);
    let found = session.get_many(&["a", "b", "nope"]).await.unwrap();
    assert_eq!(found.len(), 2);
}

#[tokio::test]
async fn history_rollback_list_and_delete() {
    let engine = Engine::start(&[]);
    let session = engine.client().await.session().await.unwrap();
    session
        .register("model.temperature", T::Float, 0.1, Constraints::default())
        .await
        .unwrap();
    session
        .register(
            "model.name",
            T::String,
            "x".to_owned(),
            Constraints::default(),
        )
        .await
        .unwrap();
    session
        .register("other", T::Float, 0.0, Constraints::default())
        .await
        .unwrap();
    for v in [0.2, 0.3, 0.4] {
        session.set("model.temperature", v).await.unwrap();
    }
    let history = session.history("model.temperature", 0).await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![4, 3, 2, 1]
    );
    let rolled = session.rollback("model.temperature", 2).await.unwrap();
    assert_eq!(
        (rolled.version, rolled.value.unwrap().kind),
        (5, Some(Kind::FloatValue(0.2)))
    );
    let listed: Vec<String> = session
        .list("model.*")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(listed, vec!["model.name", "model.temperature"]);
    let err = session.list("model.[").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    session.delete("other").await.unwrap();
    assert_eq!(
        session.get("other").await.unwrap_err().kind,
        ErrorKind::VariableNotFound
    );
}

#[tokio::test]
async fn idle_sessions_expire() {
    let engine = Engine::start(&["--sweep-interval-ms", "50"]);
    let client = engine.client().await;
    let session = client
        .open(SessionOptions {
            ttl: Some(Duration::from_millis(800)),
            ..Default::default()
        })
        .await
        .unwrap();
    session
        .register("x", T::Integer, 1i64, Constraints::default())
        .await
        .unwrap();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        session.heartbeat().await.unwrap();
    }
    // Heartbeats kept it alive past its TTL; now let it lapse (TTL plus sweep interval,
    // with room for a loaded machine).
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let err = session.get("x").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::SessionExpired, "{err}");
}

#[tokio::test]
async fn watch_delivers_every_update_in_order_and_resumes() {
    let engine = Engine::start(&[]);
    let client = engine.client().await;
    let session = client.session().await.unwrap();
    session
        .register("n", T::Integer, 0i64, Constraints::default())
        .await
        .unwrap();
    let mut watch = Box::pin(session.watch(&["n"], true, None).await.unwrap());
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.kind, VariableUpdateKind::Initial as i32);
    let synced = watch.next().await.unwrap().unwrap();
    assert_eq!(synced.kind, VariableUpdateKind::Synced as i32);

    let writer = session.clone();
    let writes = tokio::spawn(async move {
        for i in 1..=1000i64 {
            writer.set("n", i).await.unwrap();
        }
    });
    let mut last_sequence = synced.sequence;
    for i in 1..=1000i64 {
        let mut update = watch.next().await.unwrap().unwrap();
        // A resumed stream marks where the replay ends and live updates begin.
        while update.kind == VariableUpdateKind::Synced as i32 {
            update = watch.next().await.unwrap().unwrap();
        }
        assert_eq!(
            update.variable.unwrap().value.unwrap().kind,
            Some(Kind::IntValue(i))
        );
        assert!(update.sequence > last_sequence);
        last_sequence = update.sequence;
        if i == 400 {
            // Drop the connection mid-stream, keep writing, then resume where we were.
            drop(watch);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let reconnected = engine.client().await;
            let again = reconnected
                .open(SessionOptions {
                    id: Some(session.id().to_owned()),
                    ..Default::default()
                })
                .await
                .unwrap();
            watch = Box::pin(
                again
                    .watch(&["n"], false, Some(last_sequence))
                    .await
                    .unwrap(),
            );
        }
    }
    writes.await.unwrap();
}

#[tokio::test]
async fn errors_cross_the_wire_with_kind_and_context() {
    let engine = Engine::start(&["--max-value-bytes", "1024"]);
    let client = engine.client().await;
    let session = client.session().await.unwrap();
    let ghost = client
        .open(SessionOptions {
            id: Some("ghost".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    ghost.close().await.unwrap();
    let raw = client.raw();
    let err = BridgeError::from(
        raw.clone()
            .get_variable(pb::GetVariableRequest {
                session_id: "ghost".into(),
                name: "x".into(),
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(err.kind, ErrorKind::SessionNotFound);
    assert_eq!(err.context["session_id"], "ghost");

    session
        .register(
            "blob",
            T::Bytes,
            mlbridge::tools::Bytes(vec![1]),
            Constraints::default(),
        )
        .await
        .unwrap();
    let err = session
        .set("blob", mlbridge::tools::Bytes(vec![0; 4096]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PayloadTooLarge);
    assert_eq!(err.context["limit_bytes"], "1024");

    let err = session.get("").await.unwrap_err();
    assert_eq!(
        (err.kind, err.context["field"].as_str()),
        (ErrorKind::InvalidArgument, "name")
    );
    let mut watch_request = pb::WatchVariablesRequest {
        session_id: session.id().to_owned(),
        include_initial_values: true,
        resume_from_sequence: Some(0),
        ..Default::default()
    };
    let err = BridgeError::from(
        raw.clone()
            .watch_variables(watch_request.clone())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    watch_request.include_initial_values = false;
    watch_request.resume_from_sequence = Some(99);
    let err = BridgeError::from(
        raw.clone()
            .watch_variables(watch_request)
            .await
            .unwrap_err(),
    );
    assert!(
        err.message.contains("cannot resume from sequence 99"),
        "{}",
        err.message
    );
    let arguments: HashMap<String, pb::Value> = HashMap::new();
    let err = session
        .call_tool("no_such_tool", arguments)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ToolNotFound);
}
