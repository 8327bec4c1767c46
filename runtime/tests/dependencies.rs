//! Variable dependencies against an in-process engine with a derivation tool: cycles and
//! missing inputs refused at registration, a derived variable recomputed in the same atomic
//! step as each change of its inputs (single writes, batches, rollbacks, chains, many
//! concurrent writers: a reader never sees a derived value that disagrees with its inputs),
//! watchers seeing the derived change, and inputs that cannot be deleted while used.

use std::collections::HashMap;

use mlbridge::{Engine, ErrorKind, Session, Write};
use mlbridge_proto::mlbridge::v1::{Constraints, VariableType as T, VariableUpdateKind};
use tokio_stream::StreamExt;

/// The sum of the two inputs.
#[mlbridge::tool(params(a = "first input", b = "second input"))]
fn total(a: f64, b: f64) -> f64 {
    a + b
}

/// Twice the total.
#[mlbridge::tool(params(total = "the total"))]
fn double(total: f64) -> f64 {
    total * 2.0
}

/// Fails on a negative input.
#[mlbridge::tool(params(a = "the input"))]
fn picky(a: f64) -> Result<f64, String> {
    if a < 0.0 {
        return Err(format!("cannot derive from {a}"));
    }
    Ok(a.sqrt())
}

async fn session() -> Session {
    let engine = Engine::builder()
        .tool(total_tool())
        .tool(double_tool())
        .tool(picky_tool())
        .build();
    let session = engine.in_process_client().session().await.unwrap();
    for name in ["a", "b"] {
        session
            .register(name, T::Float, 1.0, Constraints::default())
            .await
            .unwrap();
    }
    session
}

async fn values(session: &Session, names: &[&str]) -> HashMap<String, (f64, u64)> {
    session
        .get_many(names)
        .await
        .unwrap()
        .into_iter()
        .map(|(name, v)| {
            let value = mlbridge::WireValue::from_value(v.value.clone().unwrap()).unwrap();
            (name, (value, v.version))
        })
        .collect()
}

#[tokio::test]
async fn a_derived_variable_follows_its_inputs_in_the_same_step() {
    let session = session().await;
    let derived = session
        .register_derived(
            "total",
            T::Float,
            "total",
            &["a", "b"],
            Constraints::default(),
        )
        .await
        .unwrap();
    assert_eq!(derived.depends_on, ["a", "b"]);
    assert_eq!(derived.derived_by, "total");
    assert_eq!(session.value::<f64>("total").await.unwrap(), 2.0);
    session
        .register_derived(
            "double",
            T::Float,
            "double",
            &["total"],
            Constraints::default(),
        )
        .await
        .unwrap();
    assert_eq!(session.value::<f64>("double").await.unwrap(), 4.0);

    let mut watch = Box::pin(
        session
            .watch(&["total", "double"], false, None)
            .await
            .unwrap(),
    );
    session.set("a", 2.5).await.unwrap();
    // Through the chain, in dependency order, as one step.
    let now = values(&session, &["a", "b", "total", "double"]).await;
    assert_eq!(now["total"].0, 3.5);
    assert_eq!(now["double"].0, 7.0);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let update = watch.next().await.unwrap().unwrap();
        if update.kind == VariableUpdateKind::Synced as i32 {
            continue;
        }
        assert_eq!(update.source, format!("derived:{}", update.variable_name)); // each is computed by the tool of its name
        seen.push(update.variable_name);
    }
    assert_eq!(seen, ["total", "double"]);
    let history = session.history("total", 0).await.unwrap();
    assert_eq!(history[0].source, "derived:total");

    // A batch that changes both inputs recomputes once, from both.
    let before = values(&session, &["total"]).await["total"].1;
    session
        .set_many(vec![Write::new("a", 10.0), Write::new("b", 20.0)], true)
        .await
        .unwrap();
    let now = values(&session, &["total", "double"]).await;
    assert_eq!(now["total"], (30.0, before + 1));
    assert_eq!(now["double"].0, 60.0);

    // A rollback of an input recomputes too; a write to a derived variable is refused.
    session.rollback("a", 1).await.unwrap();
    assert_eq!(session.value::<f64>("total").await.unwrap(), 21.0);
    let refused = session.set("total", 1.0).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::InvalidArgument);
    assert!(refused.message.contains("derived"), "{refused}");

    // A failed atomic batch changes neither the inputs nor what derives from them.
    let failed = session
        .set_many(vec![Write::new("a", 5.0), Write::new("nope", 1.0)], true)
        .await
        .unwrap_err();
    assert_eq!(failed.kind, ErrorKind::VariableNotFound);
    assert_eq!(session.value::<f64>("total").await.unwrap(), 21.0);
}

#[tokio::test]
async fn cycles_missing_inputs_and_deleting_used_inputs_are_refused() {
    let session = session().await;
    let cycle = session
        .register_dependent("c", T::Float, 0.0, Constraints::default(), &["c"])
        .await
        .unwrap_err();
    assert_eq!(cycle.kind, ErrorKind::InvalidArgument);
    assert!(cycle.message.contains("cycle: `c` → `c`"), "{cycle}");
    let missing = session
        .register_derived(
            "t",
            T::Float,
            "total",
            &["a", "later"],
            Constraints::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(missing.kind, ErrorKind::VariableNotFound);
    assert!(missing.message.contains("later"), "{missing}");
    let no_tool = session
        .register_derived("t", T::Float, "nope", &["a"], Constraints::default())
        .await
        .unwrap_err();
    assert_eq!(no_tool.kind, ErrorKind::ToolNotFound);

    session
        .register_dependent(
            "note",
            T::String,
            "x".to_owned(),
            Constraints::default(),
            &["a"],
        )
        .await
        .unwrap();
    session
        .register_derived(
            "total",
            T::Float,
            "total",
            &["a", "b"],
            Constraints::default(),
        )
        .await
        .unwrap();
    let in_use = session.delete("a").await.unwrap_err();
    assert_eq!(in_use.kind, ErrorKind::VariableInUse);
    assert!(in_use.message.contains("`note`, `total`"), "{in_use}");
    assert_eq!(in_use.context["dependents"], "note,total");
    session.delete("total").await.unwrap();
    session.delete("note").await.unwrap();
    session.delete("a").await.unwrap();
}

#[tokio::test]
async fn a_failing_derivation_fails_the_write_and_changes_nothing() {
    let session = session().await;
    session
        .register_derived("root", T::Float, "picky", &["a"], Constraints::default())
        .await
        .unwrap();
    let failed = session.set("a", -4.0).await.unwrap_err();
    assert_eq!(failed.kind, ErrorKind::ToolError);
    assert_eq!(failed.context["derived_variable"], "root");
    assert_eq!(session.value::<f64>("a").await.unwrap(), 1.0);
    session.set("a", 9.0).await.unwrap();
    assert_eq!(session.value::<f64>("root").await.unwrap(), 3.0);
}

#[tokio::test]
async fn concurrent_writers_never_show_a_derived_value_that_disagrees() {
    let session = session().await;
    session
        .register_derived(
            "total",
            T::Float,
            "total",
            &["a", "b"],
            Constraints::default(),
        )
        .await
        .unwrap();
    let mut writers = Vec::new();
    for w in 0..8 {
        let session = session.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..50 {
                let name = if (w + i) % 2 == 0 { "a" } else { "b" };
                session.set(name, f64::from(w * 100 + i)).await.unwrap();
            }
        }));
    }
    let reader = {
        let session = session.clone();
        tokio::spawn(async move {
            let mut checked = 0;
            for _ in 0..400 {
                let now = values(&session, &["a", "b", "total"]).await;
                assert_eq!(now["total"].0, now["a"].0 + now["b"].0, "{now:?}");
                checked += 1;
                tokio::task::yield_now().await;
            }
            checked
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(reader.await.unwrap(), 400);
    let now = values(&session, &["a", "b", "total"]).await;
    assert_eq!(now["total"].0, now["a"].0 + now["b"].0);
    // Every input write produced exactly one recomputation.
    let (a, b, total) = (now["a"].1, now["b"].1, now["total"].1);
    assert_eq!(total, (a - 1) + (b - 1) + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_derived_variable_registered_during_writes_agrees_with_its_inputs() {
    // Writers keep changing `a` while derived variables are registered one after another:
    // a write that looked up the derived variables just before a registration must still
    // leave the new variable agreeing with the inputs it wrote.
    let session = session().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let session = session.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut i = 0.0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1.0;
                    session.set("a", w as f64 * 1e6 + i).await.unwrap();
                }
            })
        })
        .collect();
    let names: Vec<String> = (0..200).map(|i| format!("total_{i}")).collect();
    for name in &names {
        session
            .register_derived(name, T::Float, "total", &["a", "b"], Constraints::default())
            .await
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let mut all: Vec<&str> = vec!["a", "b"];
    all.extend(names.iter().map(String::as_str));
    let read = values(&session, &all).await;
    let expected = read["a"].0 + read["b"].0;
    let stale: Vec<&String> = names.iter().filter(|n| read[*n].0 != expected).collect();
    assert!(
        stale.is_empty(),
        "{} of {} derived variables disagree with a + b = {expected}: {stale:?}",
        stale.len(),
        names.len()
    );
}
