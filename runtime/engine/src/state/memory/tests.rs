//! The memory backend: lagging watchers, resume, removal and the session limit.

use super::*;
use mlbridge_proto::mlbridge::v1::{Constraints, Value, VariableType, value::Kind};
use tokio_stream::StreamExt;

fn int(v: i64) -> Value {
    Value {
        kind: Some(Kind::IntValue(v)),
    }
}

async fn session_with_counter(backend: &MemoryBackend) -> String {
    let (session, _) = backend.create_session(NewSession::default()).await.unwrap();
    let register = WriteOp::Register {
        name: "n".into(),
        ty: VariableType::Integer,
        value: int(0),
        constraints: Constraints::default(),
        description: String::new(),
        metadata: HashMap::new(),
        depends_on: Vec::new(),
        derived_by: String::new(),
        guards: Vec::new(),
    };
    backend
        .write(
            &session.session_id,
            vec![register],
            true,
            WriteContext::default(),
        )
        .await
        .unwrap();
    session.session_id
}

#[tokio::test]
async fn a_watcher_that_cannot_keep_up_is_cut_off_not_buffered_forever() {
    let backend = MemoryBackend::new(Limits {
        watch_buffer: 4,
        ..Limits::default()
    });
    let id = session_with_counter(&backend).await;
    let mut watch = backend.watch(&id, vec![], WatchStart::Now).await.unwrap();
    for i in 1..=500 {
        let set = WriteOp::Set {
            name: "n".into(),
            value: int(i),
            expected_version: None,
        };
        backend
            .write(&id, vec![set], true, WriteContext::default())
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    let mut delivered = 0;
    let error = loop {
        match watch.next().await.expect("the stream ends with an error") {
            Ok(_) => delivered += 1,
            Err(error) => break error,
        }
    };
    assert_eq!(error.kind, ErrorKind::WatchLagged, "{error}");
    assert!(delivered < 500, "delivered {delivered}");
    assert!(watch.next().await.is_none());
}

#[tokio::test]
async fn a_watcher_cut_off_for_lagging_can_resume_without_loss() {
    let backend = MemoryBackend::new(Limits {
        watch_buffer: 4,
        retained_changes: 4096,
        ..Limits::default()
    });
    let id = session_with_counter(&backend).await;
    let mut watch = backend
        .watch(&id, vec!["n".into()], WatchStart::Now)
        .await
        .unwrap();
    assert_eq!(
        watch.next().await.unwrap().unwrap().kind,
        VariableUpdateKind::Synced as i32
    );
    for i in 1..=300 {
        let set = WriteOp::Set {
            name: "n".into(),
            value: int(i),
            expected_version: None,
        };
        backend
            .write(&id, vec![set], true, WriteContext::default())
            .await
            .unwrap();
    }
    let mut values = Vec::new();
    let error = loop {
        match watch.next().await.unwrap() {
            Ok(update) => values.push(update.sequence),
            Err(error) => break error,
        }
    };
    assert_eq!(error.kind, ErrorKind::WatchLagged);
    let last: u64 = error.context["last_sequence"].parse().unwrap();
    assert!(error.context.contains_key("oldest_retained_sequence"));
    let mut resumed = backend
        .watch(&id, vec!["n".into()], WatchStart::Resume(last))
        .await
        .unwrap();
    loop {
        let update = resumed.next().await.unwrap().unwrap();
        if update.kind == VariableUpdateKind::Synced as i32 {
            break;
        }
        values.push(update.sequence);
    }
    // Register was change 1; the 300 sets are 2..=301, each seen exactly once.
    assert_eq!(values, (2..=301).collect::<Vec<u64>>());
}

#[tokio::test]
async fn removing_a_session_ends_its_watchers_with_an_error() {
    let backend = MemoryBackend::new(Limits::default());
    let id = session_with_counter(&backend).await;
    let mut watch = backend
        .watch(&id, vec![], WatchStart::Initial)
        .await
        .unwrap();
    assert_eq!(
        watch.next().await.unwrap().unwrap().kind,
        VariableUpdateKind::Initial as i32
    );
    assert_eq!(
        watch.next().await.unwrap().unwrap().kind,
        VariableUpdateKind::Synced as i32
    );
    backend.remove_session(&id).await.unwrap();
    let error = watch.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind, ErrorKind::SessionNotFound);
}

#[tokio::test]
async fn the_session_limit_is_enforced() {
    let backend = MemoryBackend::new(Limits {
        max_sessions: 2,
        ..Limits::default()
    });
    backend.create_session(NewSession::default()).await.unwrap();
    backend.create_session(NewSession::default()).await.unwrap();
    let error = backend
        .create_session(NewSession::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::SessionLimitExceeded);
    assert_eq!(
        error.message,
        "the engine already holds the maximum of 2 sessions"
    );
}

#[tokio::test]
async fn resuming_from_a_forgotten_sequence_is_lagged() {
    let backend = MemoryBackend::new(Limits {
        retained_changes: 10,
        ..Limits::default()
    });
    let id = session_with_counter(&backend).await;
    for i in 1..=50 {
        let set = WriteOp::Set {
            name: "n".into(),
            value: int(i),
            expected_version: None,
        };
        backend
            .write(&id, vec![set], true, WriteContext::default())
            .await
            .unwrap();
    }
    let error = backend
        .watch(&id, vec![], WatchStart::Resume(5))
        .await
        .err()
        .unwrap();
    assert_eq!(error.kind, ErrorKind::WatchLagged);
    let mut watch = backend
        .watch(&id, vec![], WatchStart::Resume(45))
        .await
        .unwrap();
    // Register was change 1 and the sets 2 to 51: everything after 45 comes back.
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(watch.next().await.unwrap().unwrap().sequence);
    }
    assert_eq!(got, vec![46, 47, 48, 49, 50, 51]);
    let synced = watch.next().await.unwrap().unwrap();
    assert_eq!(
        (synced.kind, synced.sequence),
        (VariableUpdateKind::Synced as i32, 51)
    );
}

fn blob(marker: u8) -> Value {
    Value {
        kind: Some(Kind::BytesValue(vec![marker; 10_000].into())),
    }
}

async fn session_with_blob(backend: &MemoryBackend) -> String {
    let (session, _) = backend.create_session(NewSession::default()).await.unwrap();
    let register = WriteOp::Register {
        name: "b".into(),
        ty: VariableType::Bytes,
        value: blob(1),
        constraints: Constraints::default(),
        description: String::new(),
        metadata: HashMap::new(),
        depends_on: Vec::new(),
        derived_by: String::new(),
        guards: Vec::new(),
    };
    backend
        .write(
            &session.session_id,
            vec![register],
            true,
            WriteContext::default(),
        )
        .await
        .unwrap();
    session.session_id
}

async fn set_blob(backend: &MemoryBackend, id: &str, marker: u8) {
    let set = WriteOp::Set {
        name: "b".into(),
        value: blob(marker),
        expected_version: None,
    };
    let outcome = backend
        .write(id, vec![set], true, WriteContext::default())
        .await
        .unwrap();
    outcome[0].as_ref().unwrap();
}

/// Room for about three versions of `blob`.
fn small_budget() -> Limits {
    Limits {
        session_memory_bytes: 35_000,
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_watcher_whose_next_change_was_dropped_for_the_budget_is_told_so() {
    let backend = MemoryBackend::new(small_budget());
    let id = session_with_blob(&backend).await;
    let mut watch = backend.watch(&id, vec![], WatchStart::Now).await.unwrap();
    assert_eq!(
        watch.next().await.unwrap().unwrap().kind,
        VariableUpdateKind::Synced as i32
    );
    // The watcher reads nothing while ten versions are written: the budget drops the
    // changes it has not seen yet.
    for marker in 2..=11 {
        set_blob(&backend, &id, marker).await;
    }
    let mut seen = Vec::new();
    let error = loop {
        match watch.next().await.expect("the stream ends with an error") {
            Ok(update) => {
                let variable = update.variable.unwrap();
                // Whatever it sees is right: the value of the version it names.
                assert_eq!(variable.value, Some(blob(variable.version as u8)));
                seen.push(variable.version);
            }
            Err(error) => break error,
        }
    };
    assert_eq!(error.kind, ErrorKind::WatchLagged, "{error}");
    assert!(
        error.message.contains("oldest retained change is"),
        "{error}"
    );
    let oldest: u64 = error.context["oldest_retained_sequence"].parse().unwrap();
    let last: u64 = error.context["last_sequence"].parse().unwrap();
    assert!(last + 1 < oldest, "{error}");
    assert!(seen.len() < 10, "{seen:?}");
    // Resuming from where it stopped is refused the same way; from the oldest retained
    // change on, everything comes back.
    let error = backend
        .watch(&id, vec![], WatchStart::Resume(last))
        .await
        .err()
        .unwrap();
    assert_eq!(error.kind, ErrorKind::WatchLagged);
    assert_eq!(
        error.context["oldest_retained_sequence"],
        oldest.to_string()
    );
    let mut resumed = backend
        .watch(&id, vec![], WatchStart::Resume(oldest - 1))
        .await
        .unwrap();
    let mut replayed = Vec::new();
    loop {
        let update = resumed.next().await.unwrap().unwrap();
        if update.kind == VariableUpdateKind::Synced as i32 {
            break;
        }
        replayed.push(update.sequence);
    }
    assert_eq!(replayed, (oldest..=11).collect::<Vec<u64>>());
    assert!(backend.memory_used() <= small_budget().session_memory_bytes);
}

#[tokio::test]
async fn large_values_are_validated_off_the_lock_and_still_judged() {
    let backend = MemoryBackend::new(Limits {
        blocking_validation_bytes: 1_000,
        ..Limits::default()
    });
    let (session, _) = backend.create_session(NewSession::default()).await.unwrap();
    let id = session.session_id;
    let register = |name: &str, value: Value| WriteOp::Register {
        name: name.into(),
        ty: VariableType::String,
        value,
        constraints: Constraints {
            max_length: Some(5_000),
            ..Default::default()
        },
        description: String::new(),
        metadata: HashMap::new(),
        depends_on: Vec::new(),
        derived_by: String::new(),
        guards: Vec::new(),
    };
    let text = |n: usize| Value {
        kind: Some(Kind::StringValue("x".repeat(n))),
    };
    let outcome = backend
        .write(
            &id,
            vec![register("s", text(4_000))],
            true,
            WriteContext::default(),
        )
        .await
        .unwrap();
    assert!(outcome[0].is_ok());
    // Checked on a blocking thread, refused as inline.
    let set = |n: usize| WriteOp::Set {
        name: "s".into(),
        value: text(n),
        expected_version: None,
    };
    let outcome = backend
        .write(&id, vec![set(6_000)], true, WriteContext::default())
        .await
        .unwrap();
    let error = outcome[0].as_ref().unwrap_err();
    assert_eq!(error.kind, ErrorKind::ConstraintViolation, "{error}");
    // A batch whose earlier write fails first reports that one, not the large value's.
    let conflict = WriteOp::Set {
        name: "s".into(),
        value: text(3),
        expected_version: Some(9),
    };
    let outcome = backend
        .write(
            &id,
            vec![conflict, set(6_000)],
            true,
            WriteContext::default(),
        )
        .await
        .unwrap();
    let error = outcome[1].as_ref().unwrap_err();
    assert_eq!(error.kind, ErrorKind::VersionConflict, "{error}");
    let outcome = backend
        .write(&id, vec![set(4_500)], true, WriteContext::default())
        .await
        .unwrap();
    assert_eq!(outcome[0].as_ref().unwrap().0.version, 2);
}
