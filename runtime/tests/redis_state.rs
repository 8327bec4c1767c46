//! The Redis state backend with real Redis: two `mlbridge serve --state redis://...`
//! processes on one private `redis-server`. Writes through one engine are read and watched
//! through the other in one order; `expected_version` races have one winner; locks hold
//! across engines; a `kill -9` of Redis and a restart from its append-only file loses no
//! acknowledged write and watchers resume; `CLIENT KILL` mid-stream neither loses nor
//! duplicates a change; expiry is seen on both engines; resuming before the retained
//! window is the "compacted" error; a write whose reply was lost is applied once (its
//! request id); scripts come back after `SCRIPT FLUSH`.

use std::collections::HashMap;
use std::time::Duration;

use mlbridge::{Client, ErrorKind, Session, SessionOptions, Write};
use mlbridge_proto::mlbridge::v1::{
    self as pb, Constraints, VariableType as T, VariableUpdateKind,
};
use tokio_stream::{Stream, StreamExt};

mod support;
use support::Engine;
use support::redis::{RedisServer, ReplyDropper};

/// Two engines sharing `redis`, with `extra` flags, and a client of each.
async fn engines(redis: &RedisServer, extra: &[&str]) -> (Vec<Engine>, Client, Client) {
    let url = redis.url();
    let mut flags = vec!["--state", url.as_str(), "--sweep-interval-ms", "100"];
    flags.extend_from_slice(extra);
    let a = Engine::start(&flags);
    let b = Engine::start(&flags);
    let (ca, cb) = (a.client().await, b.client().await);
    (vec![a, b], ca, cb)
}

/// The same session opened through both clients.
async fn shared(a: &Client, b: &Client, ttl: Option<Duration>) -> (Session, Session) {
    let id = format!("s-{}", std::process::id());
    let id = format!("{id}-{}", rand_suffix());
    let options = |id: &str| SessionOptions {
        id: Some(id.to_owned()),
        ttl,
        ..Default::default()
    };
    let sa = a.open(options(&id)).await.unwrap();
    let sb = b.open(options(&id)).await.unwrap();
    (sa, sb)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn int(v: i64) -> pb::Value {
    mlbridge::WireValue::into_value(v)
}

fn int_of(update: &pb::VariableUpdate) -> i64 {
    match update
        .variable
        .as_ref()
        .and_then(|v| v.value.as_ref())
        .and_then(|v| v.kind.as_ref())
    {
        Some(pb::value::Kind::IntValue(n)) => *n,
        other => panic!("not an int: {other:?}"),
    }
}

/// Reads `count` changes (after `SYNCED`) from a watch: (sequence, name, value).
async fn collect(
    mut watch: impl Stream<Item = mlbridge::Result<pb::VariableUpdate>> + Unpin,
    count: usize,
) -> Vec<(u64, String, i64)> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let update = tokio::time::timeout(Duration::from_secs(60), watch.next())
            .await
            .expect("the watcher hangs")
            .expect("the watch ended")
            .expect("the watch failed");
        if update.kind == VariableUpdateKind::Synced as i32 {
            continue;
        }
        seen.push((
            update.sequence,
            update.variable_name.clone(),
            int_of(&update),
        ));
    }
    seen
}

fn assert_consecutive(seen: &[(u64, String, i64)]) {
    for pair in seen.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "a gap or reordering: {pair:?}");
    }
}

#[tokio::test]
async fn eight_writers_on_two_engines_and_both_watchers_see_the_same_sequence() {
    let redis = RedisServer::start();
    let (_engines, a, b) = engines(&redis, &[]).await;
    let (sa, sb) = shared(&a, &b, None).await;
    const WRITERS: usize = 8;
    const WRITES: i64 = 250;
    for w in 0..WRITERS {
        sa.register(&format!("w{w}"), T::Integer, -1i64, Constraints::default())
            .await
            .unwrap();
    }
    sa.register("x", T::Integer, 0i64, Constraints::default())
        .await
        .unwrap();
    sa.register("y", T::Integer, 0i64, Constraints::default())
        .await
        .unwrap();
    // Written through A, read through B.
    assert_eq!(sb.value::<i64>("w3").await.unwrap(), -1);
    let watch_a = Box::pin(sa.watch(&[], false, None).await.unwrap());
    let watch_b = Box::pin(sb.watch(&[], false, None).await.unwrap());
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let session = if w % 2 == 0 { sa.clone() } else { sb.clone() };
        tasks.push(tokio::spawn(async move {
            for i in 0..WRITES {
                session.set(&format!("w{w}"), i).await.unwrap();
            }
        }));
    }
    // Atomic batches through both engines, interleaved with the writers.
    const BATCHES: i64 = 50;
    for (k, session) in [sa.clone(), sb.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..BATCHES {
                let v = i * 2 + k as i64;
                let writes = vec![Write::new("x", v), Write::new("y", v)];
                for outcome in session.set_many(writes, true).await.unwrap() {
                    outcome.unwrap();
                }
            }
        }));
    }
    let total = WRITERS * WRITES as usize + 2 * 2 * BATCHES as usize;
    let (seen_a, seen_b) = tokio::join!(collect(watch_a, total), collect(watch_b, total));
    for task in tasks {
        task.await.unwrap();
    }
    assert_consecutive(&seen_a);
    assert_eq!(seen_a, seen_b, "both engines' watchers see one sequence");
    // Every writer's values arrive once each, in its order.
    let mut per_writer: HashMap<String, Vec<i64>> = HashMap::new();
    for (_, name, value) in &seen_a {
        per_writer.entry(name.clone()).or_default().push(*value);
    }
    for w in 0..WRITERS {
        assert_eq!(
            per_writer[&format!("w{w}")],
            (0..WRITES).collect::<Vec<_>>()
        );
    }
    // Each batch is one step: its two changes are adjacent, never split by another write.
    let mut batches = 0;
    for (i, (_, name, value)) in seen_a.iter().enumerate() {
        if name == "x" {
            let next = &seen_a[i + 1];
            assert_eq!(
                (next.1.as_str(), next.2),
                ("y", *value),
                "batch split at {i}"
            );
            batches += 1;
        }
    }
    assert_eq!(batches, 2 * BATCHES);
    eprintln!(
        "{} changes, 0 lost, 0 duplicated, 0 reordered, identical on both engines",
        seen_a.len()
    );
}

#[tokio::test]
async fn expected_version_races_across_engines_have_one_winner_per_round() {
    let redis = RedisServer::start();
    let (_engines, a, b) = engines(&redis, &[]).await;
    let (sa, sb) = shared(&a, &b, None).await;
    sa.register("n", T::Integer, 0i64, Constraints::default())
        .await
        .unwrap();
    for round in 0..20i64 {
        let version = sb.get("n").await.unwrap().version;
        let racers: Vec<_> = (0..4)
            .map(|k| {
                let session = if k % 2 == 0 { sa.clone() } else { sb.clone() };
                tokio::spawn(
                    async move { session.set_if_version("n", round * 10 + k, version).await },
                )
            })
            .collect();
        let mut winners = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(_) => winners += 1,
                Err(err) => assert_eq!(err.kind, ErrorKind::VersionConflict, "{err:?}"),
            }
        }
        assert_eq!(winners, 1, "round {round}");
        assert_eq!(sa.get("n").await.unwrap().version, version + 1);
    }
}

#[tokio::test]
async fn a_lock_taken_through_one_engine_holds_on_the_other() {
    let redis = RedisServer::start();
    let (_engines, a, b) = engines(&redis, &[]).await;
    let (sa, sb) = shared(&a, &b, None).await;
    sa.register("lr", T::Integer, 1i64, Constraints::default())
        .await
        .unwrap();
    let lock = sa
        .optimization(&["lr"], "tuner", Some(Duration::from_secs(30)))
        .await
        .unwrap();
    let refused = sb.set("lr", 2i64).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::VariableLocked, "{refused:?}");
    assert!(sb.get("lr").await.unwrap().optimizing);
    sb.set_with_token("lr", 3i64, lock.token()).await.unwrap();
    let contended = sb.optimization(&["lr"], "other", None).await.unwrap_err();
    assert_eq!(contended.kind, ErrorKind::VariableLocked, "{contended:?}");
    lock.stop(HashMap::from([("lr".to_owned(), int(4))]))
        .await
        .unwrap();
    sb.set("lr", 5i64).await.unwrap();
    assert_eq!(sa.value::<i64>("lr").await.unwrap(), 5);
}

#[tokio::test]
async fn redis_killed_and_restarted_from_its_log_keeps_every_acknowledged_write() {
    let mut redis = RedisServer::start();
    let (_engines, a, b) = engines(&redis, &[]).await;
    let (sa, sb) = shared(&a, &b, None).await;
    sa.register("n", T::Integer, 0i64, Constraints::default())
        .await
        .unwrap();
    let watch = Box::pin(sb.watch(&["n"], false, None).await.unwrap());
    let mut acked: Vec<(u64, i64)> = Vec::new();
    let mut unavailable = 0;
    let mut value = 0i64;
    while acked.len() < 200 {
        value += 1;
        if value == 100 {
            redis.kill9();
            // While Redis is away, calls fail at once with UNAVAILABLE instead of hanging.
            let err = tokio::time::timeout(Duration::from_secs(20), sa.set("n", -1i64))
                .await
                .expect("a call while Redis is down hangs")
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
            unavailable += 1;
            redis.restart();
        }
        match sa.set("n", value).await {
            Ok(variable) => acked.push((variable.version, value)),
            Err(err) => {
                assert_eq!(err.kind, ErrorKind::Unavailable, "{err:?}");
                unavailable += 1;
            }
        }
    }
    // The watcher on the other engine resumed by itself: every acknowledged write, in
    // order, without a gap.
    let last_version = acked.last().unwrap().0;
    let mut seen = Vec::new();
    let mut watch = watch;
    while seen.last().is_none_or(|(v, _)| *v < last_version) {
        let update = tokio::time::timeout(Duration::from_secs(60), watch.next())
            .await
            .expect("the watcher hangs")
            .unwrap()
            .unwrap();
        if update.kind == VariableUpdateKind::Synced as i32 {
            continue;
        }
        let version = update.variable.as_ref().unwrap().version;
        seen.push((version, int_of(&update)));
    }
    for pair in seen.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "a gap: {pair:?}");
    }
    for ack in &acked {
        assert!(seen.contains(ack), "acknowledged write {ack:?} lost");
    }
    assert_eq!(sb.value::<i64>("n").await.unwrap(), value);
    eprintln!(
        "{} acknowledged writes across a kill -9 of Redis, all present; {unavailable} refused while down",
        acked.len()
    );
}

#[tokio::test]
async fn client_kill_mid_stream_neither_loses_nor_duplicates_changes() {
    let redis = RedisServer::start();
    let (_engines, a, b) = engines(&redis, &[]).await;
    let (sa, sb) = shared(&a, &b, None).await;
    sa.register("n", T::Integer, 0i64, Constraints::default())
        .await
        .unwrap();
    let watch_a = Box::pin(sa.watch(&["n"], false, None).await.unwrap());
    let watch_b = Box::pin(sb.watch(&["n"], false, None).await.unwrap());
    let writer = {
        let sa = sa.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for value in 1..=600i64 {
                if let Ok(variable) = sa.set("n", value).await {
                    acked.push((variable.version, value));
                }
            }
            acked
        })
    };
    let mut kills = 0;
    while !writer.is_finished() && kills < 10 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let killed = redis
            .command(&["CLIENT", "KILL", "TYPE", "normal"])
            .unwrap_or_default();
        kills += 1;
        eprintln!("CLIENT KILL closed {killed} connections");
    }
    let acked = writer.await.unwrap();
    let last = sb.get("n").await.unwrap().version;
    let count = (last - 1) as usize;
    let (seen_a, seen_b) = tokio::join!(collect(watch_a, count), collect(watch_b, count));
    assert_consecutive(&seen_a);
    assert_eq!(seen_a, seen_b);
    // A write retried after a dropped connection is applied once: every value once.
    let mut values: Vec<i64> = seen_a.iter().map(|(_, _, v)| *v).collect();
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), seen_a.len(), "a write was applied twice");
    for (version, value) in &acked {
        assert!(
            seen_a.iter().any(|(_, _, v)| v == value),
            "acknowledged write {value} (version {version}) lost"
        );
    }
    eprintln!(
        "{kills} CLIENT KILLs, {} changes seen on both engines, {} acknowledged",
        seen_a.len(),
        acked.len()
    );
}

#[tokio::test]
async fn an_expired_session_ends_on_both_engines() {
    let redis = RedisServer::start();
    let (_engines, a, b) = engines(&redis, &[]).await;
    let (sa, sb) = shared(&a, &b, Some(Duration::from_secs(1))).await;
    let mut watch_a = Box::pin(sa.watch(&[], false, None).await.unwrap());
    let mut watch_b = Box::pin(sb.watch(&[], false, None).await.unwrap());
    for watch in [&mut watch_a, &mut watch_b] {
        let ended = loop {
            let next = tokio::time::timeout(Duration::from_secs(30), watch.next())
                .await
                .expect("the watcher never heard of the expiry");
            match next {
                Some(Ok(update)) if update.kind == VariableUpdateKind::Synced as i32 => continue,
                other => break other,
            }
        };
        let err = ended.expect("an error ends the watch").unwrap_err();
        assert_eq!(err.kind, ErrorKind::SessionExpired, "{err:?}");
    }
    for session in [&sa, &sb] {
        let err = session.get("anything").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::SessionExpired, "{err:?}");
    }
}

#[tokio::test]
async fn resuming_before_the_retained_feed_is_the_compacted_error() {
    let redis = RedisServer::start();
    let (_engines, a, b) = engines(&redis, &["--retained-changes", "10"]).await;
    let (sa, sb) = shared(&a, &b, None).await;
    sa.register("n", T::Integer, 0i64, Constraints::default())
        .await
        .unwrap();
    for i in 1..30i64 {
        sa.set("n", i).await.unwrap();
    }
    // 30 changes, the last 10 retained: 21..=30.
    let err = match sb.watch(&["n"], false, Some(5)).await {
        Ok(mut watch) => watch.next().await.unwrap().unwrap_err(),
        Err(err) => err,
    };
    assert_eq!(err.kind, ErrorKind::WatchLagged, "{err:?}");
    assert!(
        err.message.contains("oldest retained change is 21"),
        "{}",
        err.message
    );
    let resumed = Box::pin(sb.watch(&["n"], false, Some(25)).await.unwrap());
    let seen = collect(resumed, 5).await;
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        [26, 27, 28, 29, 30]
    );
}

/// Milliseconds until a session's meta key expires, as Redis reports it.
fn key_ttl_ms(redis: &RedisServer, session: &str) -> i64 {
    let key = format!("mlb:{{{session}}}:meta");
    redis
        .command(&["PTTL", &key])
        .and_then(|reply| reply.parse().ok())
        .expect("PTTL answers a number")
}

#[tokio::test]
async fn reads_mark_activity_at_most_once_per_hundredth_of_the_ttl() {
    // A read that marks activity is a write to Redis's log (a disk sync with `appendfsync
    // always`); a busy session's reads must not each be one. With a 60 s TTL, activity is
    // marked at most every 600 ms: the keys' expiry is pushed back by the first read after
    // that, not by every read.
    let redis = RedisServer::start();
    let (_engines, a, b) = engines(&redis, &[]).await;
    let (sa, _sb) = shared(&a, &b, Some(Duration::from_secs(60))).await;
    sa.register("x", T::Integer, int(1), Constraints::default())
        .await
        .unwrap();
    let marked = key_ttl_ms(&redis, sa.id());
    let until = tokio::time::Instant::now() + Duration::from_millis(300);
    while tokio::time::Instant::now() < until {
        sa.get("x").await.unwrap();
    }
    let unmarked = key_ttl_ms(&redis, sa.id());
    assert!(
        unmarked <= marked - 250,
        "reads within 300 ms pushed the expiry back: {marked} ms then {unmarked} ms"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    sa.get("x").await.unwrap();
    let remarked = key_ttl_ms(&redis, sa.id());
    assert!(
        remarked >= unmarked + 300,
        "a read 700 ms after the last mark did not mark activity: {unmarked} ms then {remarked} ms"
    );
}

// Multi-threaded: the proxy must relay while `Engine::start` blocks for the ready line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_reply_was_lost_is_applied_once() {
    let redis = RedisServer::start();
    let proxy = ReplyDropper::start(&redis).await;
    let url = proxy.url();
    let engine = Engine::start(&["--state", url.as_str()]);
    let session = engine.client().await.session().await.unwrap();
    session
        .register("n", T::Integer, 0i64, Constraints::default())
        .await
        .unwrap();
    for value in 1..=3i64 {
        proxy.arm();
        // Redis applies the commit; its reply never arrives. The engine retries with the
        // same request id and answers what the first attempt stored.
        let set = session.set("n", value).await.unwrap();
        assert_eq!(proxy.dropped(), value as usize, "the reply was lost");
        assert_eq!(set.version, value as u64 + 1);
    }
    let history = session.history("n", 100).await.unwrap();
    let versions: Vec<u64> = history.iter().map(|v| v.version).collect();
    assert_eq!(
        versions,
        [4, 3, 2, 1],
        "one version per write, none applied twice"
    );
    // One change per write in the session's feed too.
    let feed = Box::pin(session.watch(&["n"], false, Some(0)).await.unwrap());
    let seen = collect(feed, 4).await;
    assert_eq!(seen.iter().map(|s| s.2).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_consecutive(&seen);
}

#[tokio::test]
async fn scripts_are_reloaded_after_a_script_flush() {
    let redis = RedisServer::start();
    let (_engines, a, b) = engines(&redis, &[]).await;
    let (sa, sb) = shared(&a, &b, None).await;
    sa.register("n", T::Integer, 1i64, Constraints::default())
        .await
        .unwrap();
    // As after a Redis restart without persistence of scripts: every EVALSHA answers
    // NOSCRIPT until the engine loads its script again.
    assert_eq!(redis.command(&["SCRIPT", "FLUSH"]).as_deref(), Some("OK"));
    sb.set("n", 2i64).await.unwrap();
    assert_eq!(redis.command(&["SCRIPT", "FLUSH"]).as_deref(), Some("OK"));
    assert_eq!(sa.get("n").await.unwrap().version, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_minted_through_one_engine_hold_and_end_on_the_other() {
    let redis = RedisServer::start();
    let (_engines, a, b) = engines(&redis, &["--auth", "required"]).await;
    let session = a.session().await.unwrap();
    let owner = session.token().expect("an owner token").to_owned();
    session
        .register("x", T::Integer, 1i64, Constraints::default())
        .await
        .unwrap();
    let join = SessionOptions {
        id: Some(session.id().to_owned()),
        ..Default::default()
    };

    // The owner token of a session created through A opens it through B; none does not.
    let refused = b.open(join.clone()).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Unauthenticated, "{refused}");
    let through_b = b.with_token(&owner).open(join.clone()).await.unwrap();
    assert_eq!(through_b.value::<i64>("x").await.unwrap(), 1);

    // A read-only token minted through B is read-only through A.
    let (reader, info) = through_b
        .mint_token(
            pb::TokenScope {
                read_only: true,
                ..Default::default()
            },
            "reader",
        )
        .await
        .unwrap();
    let reader_on_a = a.with_token(&reader).open(join.clone()).await.unwrap();
    assert_eq!(reader_on_a.value::<i64>("x").await.unwrap(), 1);
    let denied = reader_on_a.set("x", 2i64).await.unwrap_err();
    assert_eq!(denied.kind, ErrorKind::PermissionDenied, "{denied}");
    // Both engines list it.
    for engine_session in [&session, &through_b] {
        let listed = engine_session.tokens().await.unwrap();
        assert!(listed.iter().any(|t| t.label == "reader"), "{listed:?}");
    }

    // Revoked through A: its watch on B ends, and B refuses it from then on.
    let reader_on_b = b.with_token(&reader).open(join.clone()).await.unwrap();
    let mut watch = Box::pin(reader_on_b.watch(&[], false, None).await.unwrap());
    let token_id = info.token_id;
    session.revoke_token(&token_id).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match watch.next().await.expect("an error before the end") {
                Ok(_) => continue,
                Err(error) => break error,
            }
        }
    })
    .await
    .expect("the watch on B ends with the revocation through A");
    assert_eq!(ended.kind, ErrorKind::Unauthenticated, "{ended}");
    let gone = b.with_token(&reader).open(join.clone()).await.unwrap_err();
    assert_eq!(gone.kind, ErrorKind::Unauthenticated, "{gone}");

    // The per-session limit counts the tokens minted through both engines.
    let mut minted = 1; // the owner (the reader was revoked)
    while minted < mlbridge::auth::MAX_TOKENS_PER_SESSION {
        let through = if minted % 2 == 0 {
            &session
        } else {
            &through_b
        };
        through
            .mint_token(pb::TokenScope::default(), "")
            .await
            .unwrap();
        minted += 1;
    }
    for through in [&session, &through_b] {
        let full = through
            .mint_token(pb::TokenScope::default(), "")
            .await
            .unwrap_err();
        assert_eq!(full.kind, ErrorKind::PermissionDenied, "{full}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_minted_from_a_parent_revoked_through_another_engine_is_refused() {
    use mlbridge::auth::{Auth, AuthMode};
    use mlbridge::state::{RedisBackend, StateBackend};
    let redis = RedisServer::start();
    let (_engines, a, _b) = engines(&redis, &["--auth", "required"]).await;
    let session = a.session().await.unwrap();
    let (_parent, info) = session
        .mint_token(pb::TokenScope::default(), "parent")
        .await
        .unwrap();
    // An engine of our own on the same Redis, which has checked the parent (it is cached).
    let backend = RedisBackend::connect(&redis.url(), Default::default())
        .await
        .unwrap();
    let store = backend.token_store();
    let auth = Auth::with_store(AuthMode::Required, std::sync::Arc::clone(&store));
    let checked = store
        .get(session.id(), &info.token_id)
        .await
        .unwrap()
        .expect("the parent is there");
    // Revoked through engine A; our engine mints from the record it checked before.
    session.revoke_token(&info.token_id).await.unwrap();
    let request = pb::MintTokenRequest {
        session_id: session.id().to_owned(),
        ..Default::default()
    };
    let error = auth
        .mint(session.id(), Some(&checked), &request)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unauthenticated, "{error}");
    let left = session.tokens().await.unwrap();
    assert_eq!(left.len(), 1, "only the owner is left: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_ends_when_its_token_is_gone_from_redis_even_unannounced() {
    let redis = RedisServer::start();
    let (_engines, a, b) = engines(&redis, &["--auth", "required"]).await;
    let session = a.session().await.unwrap();
    let (reader, info) = session
        .mint_token(pb::TokenScope::default(), "reader")
        .await
        .unwrap();
    let join = SessionOptions {
        id: Some(session.id().to_owned()),
        ..Default::default()
    };
    let watcher = b.with_token(&reader).open(join).await.unwrap();
    let mut watch = Box::pin(watcher.watch(&[], false, None).await.unwrap());
    // Removed as a revocation does, but without its announcement on mlb:events (as when
    // Redis went away between the two steps).
    let meta = format!("mlb:{{{}}}:meta", session.id());
    let field = format!("t:{}", info.token_id);
    assert_eq!(
        redis.command(&["HDEL", &meta, &field]).as_deref(),
        Some("1")
    );
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match watch.next().await.expect("an error before the end") {
                Ok(_) => continue,
                Err(error) => break error,
            }
        }
    })
    .await
    .expect("the watch on B ends although nobody announced the removal");
    assert_eq!(ended.kind, ErrorKind::Unauthenticated, "{ended}");
}
