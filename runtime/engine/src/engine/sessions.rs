//! Sessions: create or join, describe, keep alive, clean up.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) async fn initialize_session(
    engine: &Engine,
    r: pb::InitializeSessionRequest,
) -> Result<pb::InitializeSessionResponse> {
    let new = NewSession {
        id: Some(r.session_id).filter(|id| !id.is_empty()),
        ttl: duration("ttl", r.ttl)?,
        metadata: r.metadata,
        cache: r.cache,
    };
    let (mut session, created) = engine.state.create_session(new).await?;
    session.tool_count = engine.tools.len() as u32;
    session.callback_count = engine.callbacks.count(&session.session_id) as u32;
    session.resource_count = engine.resources.count(&session.session_id) as u32;
    let (owner_token, owner_token_id) = if created {
        engine.auth.issue_owner(&session.session_id).await?
    } else {
        Default::default()
    };
    Ok(pb::InitializeSessionResponse {
        session: Some(session),
        created,
        owner_token,
        owner_token_id,
    })
}

pub(super) async fn get_session(
    engine: &Engine,
    r: pb::GetSessionRequest,
) -> Result<pb::GetSessionResponse> {
    let mut session = engine
        .state
        .session(required("session_id", &r.session_id)?)
        .await?;
    session.tool_count = engine.tools.len() as u32;
    session.callback_count = engine.callbacks.count(&session.session_id) as u32;
    session.resource_count = engine.resources.count(&session.session_id) as u32;
    Ok(pb::GetSessionResponse {
        session: Some(session),
    })
}

pub(super) async fn heartbeat(
    engine: &Engine,
    r: pb::HeartbeatRequest,
) -> Result<pb::HeartbeatResponse> {
    let session = engine
        .state
        .session(required("session_id", &r.session_id)?)
        .await?;
    Ok(pb::HeartbeatResponse {
        expires_at: session.expires_at,
    })
}

pub(super) async fn cleanup_session(
    engine: &Engine,
    r: pb::CleanupSessionRequest,
) -> Result<pb::CleanupSessionResponse> {
    let session = required("session_id", &r.session_id)?;
    // Counted first: the backend's session event may release them before this task does.
    let held = engine.resources.count(session);
    let removed = engine.state.remove_session(session).await?;
    // Also done on the backend's session event; here so that it holds once this returns.
    engine.callbacks.forget_session(session);
    engine.auth.forget_session(session);
    let released = held.max(engine.resources.forget_session(session));
    Ok(removed
        .map(|r| pb::CleanupSessionResponse {
            resources_released: r.resources_released + released as u32,
            ..r
        })
        .unwrap_or_default())
}
