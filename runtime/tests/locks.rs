//! Optimization locks, each scenario run against `mlbridge serve` over gRPC and against an
//! engine in this process: contention, token-carrying writes, leases that lapse and fence
//! their tokens, renewal, atomic final values on stop, `optimizing` in reads and watch
//! events, release with the session, and the per-session bound.

use std::collections::HashMap;
use std::time::Duration;

use mlbridge::state::Limits;
use mlbridge::{Client, Engine as LocalEngine, ErrorKind, Session, SessionOptions, Write};
use mlbridge_proto::mlbridge::v1::{
    self as pb, Constraints, VariableType as T, VariableUpdateKind,
};
use tokio_stream::StreamExt;

mod support;
use support::Engine;

/// A served engine (kept alive by the guard) and a client of it, plus an in-process client.
async fn clients() -> (Engine, Vec<(&'static str, Client)>) {
    let served = Engine::start(&[]);
    let remote = served.client().await;
    let local = LocalEngine::new().in_process_client();
    (served, vec![("grpc", remote), ("in-process", local)])
}

async fn session_with(client: &Client, names: &[&str]) -> Session {
    let session = client.session().await.unwrap();
    let bounded = Constraints {
        min: Some(0.0),
        max: Some(2.0),
        ..Default::default()
    };
    for name in names {
        session
            .register(name, T::Float, 0.5, bounded.clone())
            .await
            .unwrap();
    }
    session
}

fn float(v: f64) -> pb::Value {
    mlbridge::WireValue::into_value(v)
}

#[tokio::test]
async fn two_optimizers_contend_and_exactly_one_holds_the_variable() {
    let (_served, clients) = clients().await;
    for (how, client) in clients {
        let session = session_with(&client, &["temperature", "top_p"]).await;
        let lease = Some(Duration::from_secs(30));
        let (a, b) = tokio::join!(
            session.optimization(&["temperature"], "tune-a", lease),
            session.optimization(&["top_p", "temperature"], "tune-b", lease),
        );
        let (winner, loser) = match (a, b) {
            (Ok(lock), Err(err)) | (Err(err), Ok(lock)) => (lock, err),
            (a, b) => panic!("{how}: exactly one should hold the lock: {a:?} / {b:?}"),
        };
        assert_eq!(loser.kind, ErrorKind::VariableLocked, "{how}");
        assert_eq!(loser.context["variable"], "temperature", "{how}");
        assert_eq!(
            loser.context["optimizer_id"],
            winner.optimizer_id(),
            "{how}"
        );
        assert_eq!(
            loser.context["expires_at"],
            winner.expires_at().unwrap().to_string(),
            "{how}"
        );
        assert!(
            loser
                .message
                .contains(&format!("`{}`", winner.optimizer_id())),
            "{how}: {}",
            loser.message
        );
        // All or nothing: when tune-b lost, it took nothing, so top_p is still free.
        if winner.optimizer_id() == "tune-a" {
            assert!(!session.get("top_p").await.unwrap().optimizing, "{how}");
            session.set("top_p", 0.9).await.unwrap();
        }
        winner.stop(HashMap::new()).await.unwrap();
        // Released: the other optimizer gets it now.
        let lock = session
            .optimization(&["top_p", "temperature"], "tune-b", lease)
            .await
            .unwrap();
        lock.stop(HashMap::new()).await.unwrap();
    }
}

#[tokio::test]
async fn writes_without_the_token_are_refused_and_with_it_accepted() {
    let (_served, clients) = clients().await;
    for (how, client) in clients {
        let session = session_with(&client, &["temperature", "free"]).await;
        let lock = session
            .optimization(&["temperature"], "tune-1", Some(Duration::from_secs(30)))
            .await
            .unwrap();
        let expires_at = lock.expires_at().unwrap().to_string();

        let err = session.set("temperature", 1.0).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::VariableLocked, "{how}");
        assert_eq!(err.context["optimizer_id"], "tune-1", "{how}");
        assert_eq!(err.context["expires_at"], expires_at, "{how}");
        assert!(err.message.contains("tune-1"), "{how}: {}", err.message);
        assert!(err.message.contains(&expires_at), "{how}: {}", err.message);
        let err = session.rollback("temperature", 1).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::VariableLocked, "{how}");
        let err = session.delete("temperature").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::VariableLocked, "{how}");
        // In a batch the refusal is per write; the free variable is written.
        let outcomes = session
            .set_many(
                vec![Write::new("temperature", 1.0), Write::new("free", 1.0)],
                false,
            )
            .await
            .unwrap();
        assert_eq!(
            outcomes[0].as_ref().unwrap_err().kind,
            ErrorKind::VariableLocked
        );
        assert_eq!(*outcomes[1].as_ref().unwrap(), 2);
        assert_eq!(session.value::<f64>("temperature").await.unwrap(), 0.5);

        let written = lock.set("temperature", 1.25).await.unwrap();
        assert_eq!(written.version, 2, "{how}");
        assert_eq!(written.source, "optimizer:tune-1", "{how}");
        let outcomes = lock
            .set_many(vec![Write::new("temperature", 1.5)], true)
            .await
            .unwrap();
        assert_eq!(*outcomes[0].as_ref().unwrap(), 3, "{how}");
        lock.rollback("temperature", 2).await.unwrap();
        assert_eq!(session.value::<f64>("temperature").await.unwrap(), 1.25);
        // A token covers only its variables: a batch with `free` fails as a whole.
        let err = lock
            .set_many(
                vec![Write::new("temperature", 1.0), Write::new("free", 1.0)],
                true,
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::LockNotHeld, "{how}");
        assert_eq!(session.value::<f64>("free").await.unwrap(), 1.0);
        lock.stop(HashMap::new()).await.unwrap();
        session.set("temperature", 0.1).await.unwrap();
    }
}

#[tokio::test]
async fn a_lease_not_renewed_frees_the_variables_and_its_token_is_refused() {
    let (_served, clients) = clients().await;
    for (how, client) in clients {
        let session = session_with(&client, &["temperature"]).await;
        let lease = Duration::from_millis(300);
        let mut lock = session
            .optimization(&["temperature"], "tune-1", Some(lease))
            .await
            .unwrap();
        assert!(session.get("temperature").await.unwrap().optimizing);
        // Well past the lease, with no renewal.
        tokio::time::sleep(lease * 2).await;

        let variable = session.get("temperature").await.unwrap();
        assert!(!variable.optimizing, "{how}");
        assert_eq!(variable.optimizer_id, "", "{how}");
        session.set("temperature", 1.0).await.unwrap();
        let err = lock.set("temperature", 1.5).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::LockNotHeld, "{how}");
        let err = lock.renew().await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::LockNotHeld, "{how}");
        // Another optimizer takes the variable; the old token stays fenced off.
        let other = session
            .optimization(&["temperature"], "tune-2", Some(Duration::from_secs(30)))
            .await
            .unwrap();
        let err = lock.set("temperature", 1.5).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::LockNotHeld, "{how}");
        let err = lock.clone().stop(HashMap::new()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::LockNotHeld, "{how}");
        assert_eq!(session.value::<f64>("temperature").await.unwrap(), 1.0);
        other.stop(HashMap::new()).await.unwrap();
    }
}

#[tokio::test]
async fn renewal_extends_the_lease_and_keeps_the_token() {
    let (_served, clients) = clients().await;
    for (how, client) in clients {
        let session = session_with(&client, &["temperature"]).await;
        let mut lock = session
            .optimization(&["temperature"], "tune-1", Some(Duration::from_secs(30)))
            .await
            .unwrap();
        let first = lock.expires_at().unwrap();
        let token = lock.token().to_owned();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let renewed = lock.renew().await.unwrap().unwrap();
        assert!(
            (renewed.seconds, renewed.nanos) > (first.seconds, first.nanos),
            "{how}: {first} then {renewed}"
        );
        assert_eq!(lock.token(), token, "{how}");
        let err = session.set("temperature", 1.0).await.unwrap_err();
        assert_eq!(err.context["expires_at"], renewed.to_string(), "{how}");
        lock.set("temperature", 1.0).await.unwrap();
        lock.stop(HashMap::new()).await.unwrap();
    }
}

#[tokio::test]
async fn keep_alive_renews_in_the_background_until_dropped() {
    let (_served, clients) = clients().await;
    for (how, client) in clients {
        let session = session_with(&client, &["temperature"]).await;
        let lease = Duration::from_millis(400);
        let lock = session
            .optimization(&["temperature"], "tune-1", Some(lease))
            .await
            .unwrap();
        let renewer = lock.keep_alive(Duration::from_millis(50));
        // Three leases long: only the background renewal keeps the lock.
        tokio::time::sleep(lease * 3).await;
        assert!(renewer.is_renewing(), "{how}: {:?}", renewer.failure());
        lock.set("temperature", 1.0).await.unwrap();
        let err = session.set("temperature", 1.5).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::VariableLocked, "{how}");

        drop(renewer);
        tokio::time::sleep(lease * 2).await;
        let err = lock.set("temperature", 1.5).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::LockNotHeld, "{how}: the lease ran out");

        // Renewal of a stopped lock ends with the engine's answer.
        let lock = session
            .optimization(&["temperature"], "tune-2", Some(lease))
            .await
            .unwrap();
        let renewer = lock.keep_alive(Duration::from_millis(50));
        lock.clone().stop(HashMap::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!renewer.is_renewing(), "{how}");
        assert_eq!(
            renewer.failure().map(|e| e.kind),
            Some(ErrorKind::LockNotHeld),
            "{how}"
        );
    }
}

#[tokio::test]
async fn stop_writes_final_values_atomically_then_releases() {
    let (_served, clients) = clients().await;
    for (how, client) in clients {
        let session = session_with(&client, &["temperature", "top_p", "other"]).await;
        let lock = session
            .optimization(
                &["temperature", "top_p"],
                "tune-1",
                Some(Duration::from_secs(30)),
            )
            .await
            .unwrap();
        let mut watch = session
            .watch(&["temperature", "top_p"], false, None)
            .await
            .unwrap();
        let synced = watch.next().await.unwrap().unwrap();
        assert_eq!(synced.kind, VariableUpdateKind::Synced as i32);

        // One bad value: nothing is written and the lock is still held.
        let bad = HashMap::from([
            ("temperature".to_owned(), float(1.5)),
            ("top_p".to_owned(), float(7.0)),
        ]);
        let err = lock.clone().stop(bad).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::ConstraintViolation, "{how}");
        assert_eq!(session.value::<f64>("temperature").await.unwrap(), 0.5);
        assert_eq!(
            session.set("temperature", 1.0).await.unwrap_err().kind,
            ErrorKind::VariableLocked
        );
        // A variable the lock does not cover is refused too.
        let stray = HashMap::from([("other".to_owned(), float(1.0))]);
        let err = lock.clone().stop(stray).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument, "{how}");

        let good = HashMap::from([
            ("temperature".to_owned(), float(1.5)),
            ("top_p".to_owned(), float(0.25)),
        ]);
        let token = lock.token().to_owned();
        let written = lock.stop(good).await.unwrap();
        let names: Vec<&str> = written.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["temperature", "top_p"], "{how}");
        assert!(
            written.iter().all(|v| !v.optimizing && v.version == 2),
            "{how}"
        );
        assert!(
            written.iter().all(|v| v.source == "optimizer:tune-1"),
            "{how}"
        );
        // Both writes reached watchers as consecutive changes, after the lock was released.
        let first = watch.next().await.unwrap().unwrap();
        let second = watch.next().await.unwrap().unwrap();
        assert_eq!(
            (first.variable_name.as_str(), second.variable_name.as_str()),
            ("temperature", "top_p")
        );
        assert_eq!(second.sequence, first.sequence + 1, "{how}");
        assert!(!first.variable.unwrap().optimizing, "{how}");
        // Released: plain writes go through, and the stopped lock's token is refused.
        session.set("temperature", 0.1).await.unwrap();
        let err = session
            .set_with_token("top_p", 0.3, &token)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::LockNotHeld, "{how}");
    }
}

#[tokio::test]
async fn reads_and_watch_events_show_the_optimizer() {
    let (_served, clients) = clients().await;
    for (how, client) in clients {
        let session = session_with(&client, &["temperature", "free"]).await;
        let lock = session
            .optimization(&["temperature"], "tune-1", Some(Duration::from_secs(30)))
            .await
            .unwrap();
        let variable = session.get("temperature").await.unwrap();
        assert!(variable.optimizing, "{how}");
        assert_eq!(variable.optimizer_id, "tune-1", "{how}");
        let listed = session.list("*").await.unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|v| (v.name.as_str(), v.optimizing, v.optimizer_id.as_str()))
                .collect::<Vec<_>>(),
            [("free", false, ""), ("temperature", true, "tune-1")],
            "{how}"
        );
        assert!(session.get_many(&["temperature"]).await.unwrap()["temperature"].optimizing);

        let mut watch = session.watch(&["temperature"], true, None).await.unwrap();
        let initial = watch.next().await.unwrap().unwrap();
        assert_eq!(initial.kind, VariableUpdateKind::Initial as i32);
        assert_eq!(
            initial.variable.as_ref().unwrap().optimizer_id,
            "tune-1",
            "{how}"
        );
        watch.next().await.unwrap().unwrap(); // SYNCED
        lock.set_with(
            "temperature",
            1.0,
            HashMap::from([("trial".to_owned(), "3".to_owned())]),
        )
        .await
        .unwrap();
        let set = watch.next().await.unwrap().unwrap();
        assert_eq!(set.kind, VariableUpdateKind::Set as i32);
        assert_eq!(set.source, "optimizer:tune-1", "{how}");
        assert_eq!(set.metadata["trial"], "3", "{how}");
        let variable = set.variable.unwrap();
        assert!(variable.optimizing, "{how}");
        assert_eq!(variable.optimizer_id, "tune-1", "{how}");
        lock.stop(HashMap::new()).await.unwrap();
        assert!(
            !session.get("temperature").await.unwrap().optimizing,
            "{how}"
        );
    }
}

#[tokio::test]
async fn session_cleanup_releases_its_locks() {
    let (_served, clients) = clients().await;
    for (how, client) in clients {
        let session = session_with(&client, &["temperature"]).await;
        let id = session.id().to_owned();
        let lock = session
            .optimization(&["temperature"], "tune-1", Some(Duration::from_secs(600)))
            .await
            .unwrap();
        session.clone().close().await.unwrap();
        let err = lock.set("temperature", 1.0).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::SessionNotFound, "{how}");
        // The same id again: a fresh session, where nothing holds the variable and the
        // old token is unknown.
        let again = client
            .open(SessionOptions {
                id: Some(id),
                ..Default::default()
            })
            .await
            .unwrap();
        again
            .register("temperature", T::Float, 0.5, Constraints::default())
            .await
            .unwrap();
        assert!(!again.get("temperature").await.unwrap().optimizing, "{how}");
        let err = again
            .set_with_token("temperature", 1.0, lock.token())
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::LockNotHeld, "{how}");
        again.set("temperature", 1.0).await.unwrap();
        let relocked = again
            .optimization(&["temperature"], "tune-2", None)
            .await
            .unwrap();
        relocked.stop(HashMap::new()).await.unwrap();
    }
}

#[tokio::test]
async fn locks_per_session_are_bounded_and_requests_checked() {
    let engine = LocalEngine::builder()
        .limits(Limits {
            max_locks_per_session: 2,
            ..Limits::default()
        })
        .build();
    let client = engine.in_process_client();
    let session = session_with(&client, &["a", "b", "c"]).await;
    let _a = session.optimization(&["a"], "one", None).await.unwrap();
    let b = session.optimization(&["b"], "two", None).await.unwrap();
    let err = session
        .optimization(&["c"], "three", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    assert_eq!(err.context["limit"], "2");
    b.stop(HashMap::new()).await.unwrap();
    session.optimization(&["c"], "three", None).await.unwrap();

    let err = session.optimization(&[], "four", None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    let err = session
        .optimization(&["missing"], "four", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::VariableNotFound);
    let err = session.optimization(&["b"], "", None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    let err = session
        .optimization(&["b"], "four", Some(Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
}
