//! Optimization locks: `StartOptimization` (acquire or renew a leased lock on a set of
//! variables) and `StopOptimization` (write final values atomically, then release). The
//! rules live with the variables (`state::locks`), so every write is judged against them.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::state::LockRequest;

pub(super) async fn start_optimization(
    engine: &Engine,
    r: pb::StartOptimizationRequest,
) -> Result<pb::StartOptimizationResponse> {
    let session = required("session_id", &r.session_id)?;
    let lease = match duration("lease", r.lease)? {
        None => engine.limits.default_lease,
        Some(lease) if lease.is_zero() => {
            return Err(BridgeError::invalid_argument(
                "lease",
                "`lease` must be greater than zero",
            ));
        }
        Some(lease) => lease,
    }
    .min(engine.limits.max_lease);
    let request = LockRequest {
        names: r.variable_names,
        optimizer_id: r.optimizer_id,
        lease,
        renew_token: r.renew_token,
    };
    engine.state.start_optimization(session, request).await
}

pub(super) async fn stop_optimization(
    engine: &Engine,
    r: pb::StopOptimizationRequest,
) -> Result<pb::StopOptimizationResponse> {
    let session = required("session_id", &r.session_id)?;
    let token = required("lock_token", &r.lock_token)?;
    let derived = if r.final_values.is_empty() {
        Vec::new()
    } else {
        engine.state.derived(session).await?
    };
    if derived
        .iter()
        .any(|d| d.depends_on.iter().any(|i| r.final_values.contains_key(i)))
    {
        // Final values that derived variables depend on are written first, with their
        // derived variables, through the lock; then the lock is released.
        let ops = r
            .final_values
            .into_iter()
            .map(|(name, value)| WriteOp::Set {
                name,
                value,
                expected_version: None,
            })
            .collect();
        let write = locked_context(r.source.clone(), r.metadata.clone(), token.to_owned());
        let mut variables = Vec::new();
        for outcome in engine.write(session, ops, true, write).await? {
            variables.push(outcome?.0);
        }
        engine
            .state
            .stop_optimization(
                session,
                token,
                HashMap::new(),
                context(r.source, r.metadata),
            )
            .await?;
        return Ok(pb::StopOptimizationResponse {
            released: true,
            variables,
        });
    }
    let variables = engine
        .state
        .stop_optimization(
            session,
            token,
            r.final_values,
            context(r.source, r.metadata),
        )
        .await?;
    Ok(pb::StopOptimizationResponse {
        released: true,
        variables,
    })
}
