//! Access control from the Rust client: owner tokens, joining with a token, narrower
//! tokens refused what they may not do, revocation, and the in-process connection.

use mlbridge::auth::AuthMode;
use mlbridge::{Client, Engine, ErrorKind, ListenAddr, SessionOptions};
use mlbridge_proto::mlbridge::v1 as pb;
use tokio::sync::oneshot;

/// Serves an engine with `--auth required` on a free loopback port.
async fn secured() -> (String, oneshot::Sender<()>) {
    serve(Engine::builder().auth(AuthMode::Required).build()).await
}

/// Serves `engine` on a free loopback port until the sender is dropped.
async fn serve(engine: Engine) -> (String, oneshot::Sender<()>) {
    let (ready, bound) = oneshot::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let addr: ListenAddr = "127.0.0.1:0".parse().unwrap();
    tokio::spawn(async move {
        let on_ready = |bound: &ListenAddr| {
            let _ = ready.send(bound.clone());
        };
        mlbridge::serve(engine, &addr, on_ready, async {
            let _ = stopped.await;
        })
        .await
        .expect("serve");
    });
    (bound.await.expect("engine ready").to_string(), stop)
}

#[tokio::test]
async fn a_created_session_holds_its_owner_token_and_joining_needs_one() {
    let (address, _stop) = secured().await;
    let client = Client::connect(&address).await.unwrap();
    let session = client.session().await.unwrap();
    let owner = session.token().expect("an owner token").to_owned();
    assert!(owner.starts_with("mlb_"));
    session
        .register(
            "x",
            pb::VariableType::Integer,
            1i64,
            pb::Constraints::default(),
        )
        .await
        .unwrap();

    let join = SessionOptions {
        id: Some(session.id().to_owned()),
        ..SessionOptions::default()
    };
    let refused = client.open(join.clone()).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Unauthenticated);
    assert!(!refused.message.contains(&owner));

    let joined = client.with_token(&owner).open(join).await.unwrap();
    assert_eq!(joined.value::<i64>("x").await.unwrap(), 1);
    assert_eq!(joined.token(), Some(owner.as_str()));
}

#[tokio::test]
async fn narrower_tokens_are_refused_and_revocation_cascades() {
    let (address, _stop) = secured().await;
    let client = Client::connect(&address).await.unwrap();
    let session = client.session().await.unwrap();
    session
        .register(
            "a.x",
            pb::VariableType::Integer,
            1i64,
            pb::Constraints::default(),
        )
        .await
        .unwrap();
    session
        .register(
            "b",
            pb::VariableType::Integer,
            1i64,
            pb::Constraints::default(),
        )
        .await
        .unwrap();
    let join = SessionOptions {
        id: Some(session.id().to_owned()),
        ..SessionOptions::default()
    };

    let (read_only, info) = session
        .mint_token(
            pb::TokenScope {
                read_only: true,
                ..Default::default()
            },
            "reader",
        )
        .await
        .unwrap();
    assert!(info.scope.unwrap().read_only);
    let reader = client
        .with_token(&read_only)
        .open(join.clone())
        .await
        .unwrap();
    assert_eq!(reader.value::<i64>("b").await.unwrap(), 1);
    let denied = reader.set("b", 2i64).await.unwrap_err();
    assert_eq!(denied.kind, ErrorKind::PermissionDenied);

    let (scoped, _) = session
        .mint_token(
            pb::TokenScope {
                variables: vec!["a.*".to_owned()],
                ..Default::default()
            },
            "",
        )
        .await
        .unwrap();
    let narrow = client.with_token(&scoped).open(join.clone()).await.unwrap();
    let listed = narrow.list("*").await.unwrap();
    assert_eq!(
        listed.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["a.x"]
    );
    assert_eq!(
        narrow.get("b").await.unwrap_err().kind,
        ErrorKind::PermissionDenied
    );
    // Never wider than the parent.
    let wider = narrow
        .mint_token(
            pb::TokenScope {
                variables: vec!["*".to_owned()],
                ..Default::default()
            },
            "",
        )
        .await
        .unwrap_err();
    assert_eq!(wider.kind, ErrorKind::PermissionDenied);
    let (grandchild, _) = narrow
        .mint_token(pb::TokenScope::default(), "")
        .await
        .unwrap();

    let scoped_id = narrow.tokens().await.unwrap()[0].token_id.clone();
    let revoked = session.revoke_token(&scoped_id).await.unwrap();
    assert_eq!(revoked.len(), 2);
    for token in [&scoped, &grandchild] {
        let gone = client
            .with_token(token)
            .open(join.clone())
            .await
            .unwrap_err();
        assert_eq!(gone.kind, ErrorKind::Unauthenticated);
    }
}

#[tokio::test]
async fn in_process_calls_keep_working_and_check_a_token_they_carry() {
    let engine = Engine::builder().auth(AuthMode::Required).build();
    let client = engine.in_process_client();
    let session = client.session().await.unwrap();
    session
        .register(
            "x",
            pb::VariableType::Integer,
            1i64,
            pb::Constraints::default(),
        )
        .await
        .unwrap();
    let (read_only, _) = session
        .mint_token(
            pb::TokenScope {
                read_only: true,
                ..Default::default()
            },
            "",
        )
        .await
        .unwrap();
    let reader = client
        .with_token(&read_only)
        .open(SessionOptions {
            id: Some(session.id().to_owned()),
            ..SessionOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(reader.value::<i64>("x").await.unwrap(), 1);
    assert_eq!(
        reader.set("x", 2i64).await.unwrap_err().kind,
        ErrorKind::PermissionDenied
    );
}

/// The next error of a watch, passing over updates and markers.
async fn watch_error(
    watch: &mut (impl tokio_stream::Stream<Item = mlbridge::Result<pb::VariableUpdate>> + Unpin),
) -> mlbridge::BridgeError {
    use tokio_stream::StreamExt;
    loop {
        match watch.next().await.expect("an error before the end") {
            Ok(_) => continue,
            Err(error) => break error,
        }
    }
}

#[tokio::test]
async fn a_watch_ends_with_session_not_found_when_its_session_ends_and_unauthenticated_when_revoked()
 {
    use tokio_stream::StreamExt;
    let engine = Engine::builder().auth(AuthMode::Required).build();
    let (address, _stop) = serve(engine.clone()).await;
    let client = Client::connect(&address).await.unwrap();
    let watched = || async {
        let session = client.session().await.unwrap();
        session
            .register("x", pb::VariableType::Integer, 0i64, Default::default())
            .await
            .unwrap();
        let mut watch = Box::pin(session.watch(&["x"], true, None).await.unwrap());
        watch.next().await.expect("the initial value").unwrap();
        (session, watch)
    };
    // A session's end reaches its watches twice, through the state's feed and through the
    // token store; whichever is first, the answer is the same. Here the token store hears
    // first (as when the state's feed is slower, e.g. on Redis or a loaded machine).
    let (session, mut watch) = watched().await;
    engine.auth().forget_session(session.id());
    let ended = watch_error(&mut watch).await;
    assert_eq!(ended.kind, ErrorKind::SessionNotFound, "{ended}");
    // And as it happens: the session is cleaned up.
    for _ in 0..5 {
        let (session, mut watch) = watched().await;
        session.close().await.unwrap();
        let ended = watch_error(&mut watch).await;
        assert_eq!(ended.kind, ErrorKind::SessionNotFound, "{ended}");
    }

    // A revoked token ends its watch as unauthenticated.
    let session = client.session().await.unwrap();
    let (reader, _) = session
        .mint_token(
            pb::TokenScope {
                read_only: true,
                ..Default::default()
            },
            "reader",
        )
        .await
        .unwrap();
    let join = SessionOptions {
        id: Some(session.id().to_owned()),
        ..SessionOptions::default()
    };
    let watcher = client.with_token(&reader).open(join).await.unwrap();
    let mut watch = Box::pin(watcher.watch(&[], false, None).await.unwrap());
    let reader_id = watcher.tokens().await.unwrap()[0].token_id.clone();
    session.revoke_token(&reader_id).await.unwrap();
    let ended = watch_error(&mut watch).await;
    assert_eq!(ended.kind, ErrorKind::Unauthenticated, "{ended}");
}

#[tokio::test]
async fn a_tool_stream_ends_with_its_last_chunk_or_with_the_revocation_of_its_token() {
    use mlbridge::WireValue;
    use std::collections::HashMap;
    use tokio_stream::StreamExt;
    let engine = mlbridge::builtin_tools::builtin_tools()
        .into_iter()
        .fold(Engine::builder(), |builder, tool| builder.tool(tool))
        .auth(AuthMode::Required)
        .build();
    let (address, _stop) = serve(engine.clone()).await;
    let client = Client::connect(&address).await.unwrap();
    let session = client.session().await.unwrap();
    let (token, info) = session
        .mint_token(pb::TokenScope::default(), "caller")
        .await
        .unwrap();
    let join = SessionOptions {
        id: Some(session.id().to_owned()),
        ..SessionOptions::default()
    };
    let caller = client.with_token(&token).open(join).await.unwrap();
    // While the token lives, a stream ends by itself after its final chunk.
    let counted: Vec<mlbridge::Result<pb::Value>> = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        caller
            .stream_tool(
                "count",
                HashMap::from([("to".to_owned(), 3i64.into_value())]),
            )
            .await
            .unwrap()
            .collect(),
    )
    .await
    .expect("a finished stream ends although its token's watch is still open");
    assert_eq!(counted.len(), 3);
    // 0, then a chunk a minute: the stream is still open when the token is revoked.
    let arguments = HashMap::from([
        ("to".to_owned(), 3i64.into_value()),
        ("delay_ms".to_owned(), 60_000i64.into_value()),
    ]);
    let mut chunks = Box::pin(caller.stream_tool("count", arguments).await.unwrap());
    assert!(chunks.next().await.unwrap().is_ok());
    session.revoke_token(&info.token_id).await.unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), chunks.next())
        .await
        .expect("the stream ends with the revocation, not the tool's next chunk")
        .expect("an error before the end")
        .unwrap_err();
    assert_eq!(ended.kind, ErrorKind::Unauthenticated, "{ended}");
    assert!(ended.message.contains("tool stream"), "{ended}");

    // In-process, the stream is read to its end: it ends right after the error, not with
    // the tool's next chunk a minute later.
    let (token, info) = session
        .mint_token(pb::TokenScope::default(), "in-process")
        .await
        .unwrap();
    let join = SessionOptions {
        id: Some(session.id().to_owned()),
        ..SessionOptions::default()
    };
    let local = engine
        .in_process_client()
        .with_token(&token)
        .open(join)
        .await
        .unwrap();
    let arguments = HashMap::from([
        ("to".to_owned(), 3i64.into_value()),
        ("delay_ms".to_owned(), 60_000i64.into_value()),
    ]);
    let mut chunks = Box::pin(local.stream_tool("count", arguments).await.unwrap());
    assert!(chunks.next().await.unwrap().is_ok());
    session.revoke_token(&info.token_id).await.unwrap();
    let rest = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut rest = Vec::new();
        while let Some(item) = chunks.next().await {
            rest.push(item);
        }
        rest
    })
    .await
    .expect("the stream ends with its error, without waiting for the tool");
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(
        rest[0].as_ref().unwrap_err().kind,
        ErrorKind::Unauthenticated
    );
}
