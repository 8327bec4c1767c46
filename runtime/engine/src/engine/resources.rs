//! Engine-native resources over the gRPC API: `CreateResource`, `InvokeResource`,
//! `ReleaseResource` and `ListResources` (the implementations live in [`crate::resources`]).

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::resources::{self, Entry, ResourceCall};

pub(super) async fn create_resource(
    engine: &Engine,
    mut r: pb::CreateResourceRequest,
) -> Result<pb::CreateResourceResponse> {
    let session = required("session_id", &r.session_id)?.to_owned();
    engine.state.session(&session).await?;
    let id = engine.resources.next_id(&r.kind);
    let native = resources::create(engine, &session, &id, &mut r).await?;
    let mut metadata = r.metadata;
    metadata.extend(native.labels());
    let resource = pb::Resource {
        resource_id: id,
        session_id: session.clone(),
        kind: r.kind,
        name: r.name,
        framework: r.framework,
        created_at: Some(SystemTime::now().into()),
        methods: native.methods().iter().map(|m| (*m).to_owned()).collect(),
        metadata,
    };
    engine.resources.insert(Entry {
        resource: resource.clone(),
        native,
    })?;
    // A session that ended meanwhile may have been forgotten before this insertion.
    if engine.state.session(&session).await.is_err() {
        engine.resources.forget_session(&session);
        return Err(BridgeError::session_not_found(&session));
    }
    Ok(pb::CreateResourceResponse {
        resource: Some(resource),
    })
}

pub(super) async fn invoke_resource(
    engine: &Engine,
    r: pb::InvokeResourceRequest,
) -> Result<pb::InvokeResourceResponse> {
    let started = Instant::now();
    let session = required("session_id", &r.session_id)?;
    engine.state.session(session).await?;
    let id = required("resource_id", &r.resource_id)?;
    let entry = engine.resources.get(session, id)?;
    let Some(method) = entry
        .native
        .methods()
        .iter()
        .find(|m| **m == r.method.as_str())
    else {
        let resource = &entry.resource;
        return Err(BridgeError::invalid_argument(
            "method",
            format!(
                "{} `{}` ({}) has no method `{}`; it has: {}",
                resource.kind,
                resource.resource_id,
                resource.name,
                r.method,
                resource.methods.join(", ")
            ),
        )
        .with("resource_id", id)
        .with("method", &r.method));
    };
    let invoked = entry
        .native
        .invoke(ResourceCall {
            engine,
            session_id: session,
            resource_id: id,
            method,
            arguments: r.arguments,
            metadata: r.metadata,
        })
        .await?;
    Ok(pb::InvokeResourceResponse {
        result: invoked.result,
        metadata: invoked.metadata,
        duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    })
}

pub(super) async fn release_resource(
    engine: &Engine,
    r: pb::ReleaseResourceRequest,
) -> Result<pb::ReleaseResourceResponse> {
    let session = required("session_id", &r.session_id)?;
    engine.state.session(session).await?;
    let id = required("resource_id", &r.resource_id)?;
    let Some(entry) = engine.resources.remove(session, id) else {
        return Ok(pb::ReleaseResourceResponse { existed: false });
    };
    entry.native.release(engine, session).await;
    Ok(pb::ReleaseResourceResponse { existed: true })
}

pub(super) async fn list_resources(
    engine: &Engine,
    r: pb::ListResourcesRequest,
) -> Result<pb::ListResourcesResponse> {
    let session = required("session_id", &r.session_id)?;
    engine.state.session(session).await?;
    Ok(pb::ListResourcesResponse {
        resources: engine.resources.list(session),
    })
}
