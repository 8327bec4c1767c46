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
    let variables = engine
        .release_lock(
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

impl Engine {
    /// Writes `final_values` through the lock `token` and releases it, as
    /// `StopOptimization` does; the derived variables that depend on a final value are
    /// recomputed in the same step as it. Returns the written variables.
    pub(crate) async fn release_lock(
        &self,
        session: &str,
        token: &str,
        final_values: HashMap<String, pb::Value>,
        write: WriteContext,
    ) -> Result<Vec<pb::Variable>> {
        let derived = if final_values.is_empty() {
            Vec::new()
        } else {
            self.derived(session).await?
        };
        let reaches_derived = derived
            .iter()
            .any(|d| d.depends_on.iter().any(|i| final_values.contains_key(i)));
        if !reaches_derived {
            return self
                .state
                .stop_optimization(session, token, final_values, write)
                .await;
        }
        // Written first, with their derived variables, through the lock; then released.
        let ops = final_values
            .into_iter()
            .map(|(name, value)| WriteOp::Set {
                name,
                value,
                expected_version: None,
            })
            .collect();
        let locked = WriteContext {
            lock_token: token.to_owned(),
            ..write.clone()
        };
        let mut variables = Vec::new();
        for outcome in self.write(session, ops, true, locked).await? {
            variables.push(outcome?.0);
        }
        self.state
            .stop_optimization(session, token, HashMap::new(), write)
            .await?;
        Ok(variables)
    }
}
