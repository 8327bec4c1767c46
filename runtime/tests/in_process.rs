//! In-process sessions: the same example program (`examples/session_tour.rs`) against an
//! engine in this process and against `mlbridge serve` over gRPC prints the same lines.

use mlbridge::{Client, ErrorKind};

#[path = "../examples/session_tour.rs"]
mod session_tour;

mod support;
use support::Engine;

#[tokio::test]
async fn the_example_prints_the_same_in_process_and_over_grpc() {
    let local = session_tour::local_engine().in_process_client();
    let in_process = session_tour::tour(&local).await.expect("in-process tour");

    let served = Engine::start(&[]);
    let remote = Client::connect(&served.address).await.expect("connect");
    let over_grpc = session_tour::tour(&remote).await.expect("remote tour");

    assert_eq!(in_process, over_grpc);
    // The tour did something worth comparing: a refusal with the engine's message, a
    // tool call and a stream.
    assert!(
        in_process.contains(
            &"refused: ERROR_KIND_CONSTRAINT_VIOLATION: variable `temperature`: 3 is above the maximum 2"
                .to_owned()
        ),
        "{in_process:#?}"
    );
    assert!(in_process.contains(&"add(2, 3.5) = 5.5".to_owned()));
    assert!(
        in_process.contains(&"count(3) = [0, 1, 2]".to_owned()),
        "{in_process:#?}"
    );
}

#[tokio::test]
async fn in_process_errors_are_the_engines_errors() {
    let client = session_tour::local_engine().in_process_client();
    let session = client.session().await.unwrap();
    let error = session.get("missing").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::VariableNotFound);
    assert_eq!(error.context["variable"], "missing");
    let id = session.id().to_owned();
    session.close().await.unwrap();
    let gone = client
        .open(mlbridge::SessionOptions {
            id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    // Re-opening by id creates a fresh session: nothing survived the close.
    assert_eq!(gone.list("*").await.unwrap().len(), 0);
}
