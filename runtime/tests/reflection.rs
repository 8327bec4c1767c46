//! Server reflection `v1` from tonic's own client (the Python tests use `v1alpha`, the only
//! version grpcio-reflection speaks): the services, and `ml_bridge.proto` with every file
//! it imports, resolved by file name and by symbol; and health from tonic-health's client.

mod support;

use std::collections::BTreeSet;

use prost::Message;
use support::Engine;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn ask(engine: &Engine, request: MessageRequest) -> MessageResponse {
    let channel = mlbridge::dial::channel(&engine.address).await.unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    replies
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

fn files(response: MessageResponse) -> Vec<prost_types::FileDescriptorProto> {
    let MessageResponse::FileDescriptorResponse(files) = response else {
        panic!("not a file response: {response:?}");
    };
    files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .collect()
}

#[tokio::test]
async fn reflection_v1_lists_services_and_resolves_the_schema() {
    let engine = Engine::start(&[]);
    let MessageResponse::ListServicesResponse(list) =
        ask(&engine, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list");
    };
    let names: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        BTreeSet::from(
            [
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
                "mlbridge.v1.MLBridge",
                "mlbridge.v1.WorkerHub",
            ]
            .map(String::from)
        )
    );

    let by_symbol = files(
        ask(
            &engine,
            MessageRequest::FileContainingSymbol("mlbridge.v1.MLBridge".into()),
        )
        .await,
    );
    assert_eq!(by_symbol[0].name(), "ml_bridge.proto");
    // Every import resolves by name (clients ask for those they lack).
    assert!(by_symbol[0].dependency.len() >= 3);
    for dependency in &by_symbol[0].dependency {
        let file = files(ask(&engine, MessageRequest::FileByFilename(dependency.clone())).await);
        assert_eq!(file[0].name(), dependency);
    }
    let service = by_symbol[0]
        .service
        .iter()
        .find(|s| s.name() == "MLBridge")
        .unwrap();
    assert!(service.method.iter().any(|m| m.name() == "Ping"));

    // An unknown file is NOT_FOUND.
    let missing =
        ServerReflectionClient::new(mlbridge::dial::channel(&engine.address).await.unwrap())
            .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileByFilename("no/such.proto".into())),
            }]))
            .await
            .unwrap()
            .into_inner()
            .message()
            .await;
    assert_eq!(missing.unwrap_err().code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn health_reports_each_service() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let engine = Engine::start(&[]);
    let channel = mlbridge::dial::channel(&engine.address).await.unwrap();
    let mut client = HealthClient::new(channel);
    for service in ["", mlbridge::listen::MLBRIDGE_SERVICE] {
        let reply = client
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = client
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}
