//! Optimization locks from Rust: [`Session::optimization`] acquires an exclusive, leased lock
//! on a set of variables (all or nothing) and returns an [`OptimizationLock`], whose writes
//! carry the lock token; `renew` extends the lease (or [`OptimizationLock::keep_alive`] does
//! it in the background) and `stop` writes final values atomically and releases it.
//! Contention is the typed `VARIABLE_LOCKED` error naming the holder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlbridge_proto::mlbridge::v1 as pb;

use crate::client::{Session, Write};
use crate::error::{BridgeError, ErrorKind, Result};
use crate::values::WireValue;

/// A held optimization lock. Dropping it does not release the lock (the lease then runs
/// out); call [`OptimizationLock::stop`].
#[derive(Debug, Clone)]
pub struct OptimizationLock {
    session: Session,
    token: String,
    optimizer_id: String,
    lease: Option<Duration>,
    expires_at: Option<prost_types::Timestamp>,
}

/// The `VARIABLE_LOCKED` error for a refused acquisition: the first contended variable's
/// holder and lease end in message and context, every conflict in `context["conflicts"]`.
pub fn conflict_error(optimizer_id: &str, conflicts: &[pb::LockConflict]) -> BridgeError {
    let Some(first) = conflicts.first() else {
        return BridgeError::internal("StartOptimization refused the lock without a conflict");
    };
    let expires_at = first.expires_at.map(|t| t.to_string()).unwrap_or_default();
    let all: Vec<String> = conflicts
        .iter()
        .map(|c| format!("{}={}", c.variable_name, c.optimizer_id))
        .collect();
    BridgeError::new(
        ErrorKind::VariableLocked,
        format!(
            "optimizer `{optimizer_id}` cannot lock variable `{}`: it is locked by optimizer `{}` until {expires_at} unless renewed",
            first.variable_name, first.optimizer_id
        ),
    )
    .with("variable", &first.variable_name)
    .with("optimizer_id", &first.optimizer_id)
    .with("expires_at", expires_at)
    .with("conflicts", all.join(","))
}

impl Session {
    /// Locks `variables` (all or none) for `optimizer_id` with `lease` (`None`: the engine
    /// default, 60 s). A variable held by another lock fails the call with
    /// `VARIABLE_LOCKED` naming its holder and when its lease ends.
    pub async fn optimization(
        &self,
        variables: &[&str],
        optimizer_id: &str,
        lease: Option<Duration>,
    ) -> Result<OptimizationLock> {
        let request = pb::StartOptimizationRequest {
            session_id: self.id().to_owned(),
            variable_names: variables.iter().map(|v| (*v).to_owned()).collect(),
            optimizer_id: optimizer_id.to_owned(),
            lease: lease.and_then(|l| prost_types::Duration::try_from(l).ok()),
            renew_token: String::new(),
        };
        let response = self.transport().start_optimization(request).await?;
        if !response.granted {
            return Err(conflict_error(optimizer_id, &response.conflicts));
        }
        Ok(OptimizationLock {
            session: self.clone(),
            token: response.lock_token,
            optimizer_id: optimizer_id.to_owned(),
            lease,
            expires_at: response.expires_at,
        })
    }
}

impl OptimizationLock {
    /// The opaque token writes to the locked variables carry.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The optimizer holding the lock.
    pub fn optimizer_id(&self) -> &str {
        &self.optimizer_id
    }

    /// When the lease ends unless renewed, as of the last acquisition or renewal.
    pub fn expires_at(&self) -> Option<prost_types::Timestamp> {
        self.expires_at
    }

    fn source(&self) -> String {
        format!("optimizer:{}", self.optimizer_id)
    }

    /// Extends the lease by the lock's lease length; returns the new end. An expired or
    /// stopped lock is `LOCK_NOT_HELD`.
    pub async fn renew(&mut self) -> Result<Option<prost_types::Timestamp>> {
        let request = pb::StartOptimizationRequest {
            session_id: self.session.id().to_owned(),
            variable_names: Vec::new(),
            optimizer_id: self.optimizer_id.clone(),
            lease: self
                .lease
                .and_then(|l| prost_types::Duration::try_from(l).ok()),
            renew_token: self.token.clone(),
        };
        let response = self.session.transport().start_optimization(request).await?;
        self.expires_at = response.expires_at;
        Ok(self.expires_at)
    }

    /// Renews the lease every `every` in a background task until the returned
    /// [`LeaseRenewer`] is dropped or a renewal fails (say, after the lock was stopped). Pick
    /// `every` well below the lease.
    pub fn keep_alive(&self, every: Duration) -> LeaseRenewer {
        let mut lock = self.clone();
        let failure = Arc::new(Mutex::new(None));
        let seen = Arc::clone(&failure);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await; // The first tick is immediate; the lease is fresh.
            loop {
                ticks.tick().await;
                if let Err(error) = lock.renew().await {
                    *seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error);
                    return;
                }
            }
        });
        LeaseRenewer { task, failure }
    }

    /// Writes a locked variable with the token (source `optimizer:<id>`).
    pub async fn set(&self, name: &str, value: impl WireValue) -> Result<pb::Variable> {
        self.set_with(name, value, HashMap::new()).await
    }

    /// Writes a locked variable with the token and per-write labels (e.g. the trial).
    pub async fn set_with(
        &self,
        name: &str,
        value: impl WireValue,
        metadata: HashMap<String, String>,
    ) -> Result<pb::Variable> {
        let request = pb::SetVariableRequest {
            session_id: self.session.id().to_owned(),
            name: name.to_owned(),
            value: Some(value.into_value()),
            expected_version: None,
            metadata,
            source: self.source(),
            lock_token: self.token.clone(),
        };
        let response = self.session.transport().set_variable(request).await?;
        response
            .variable
            .ok_or_else(|| BridgeError::internal("the engine returned no variable"))
    }

    /// Several writes with the token; with `atomic`, all or none apply.
    pub async fn set_many(&self, writes: Vec<Write>, atomic: bool) -> Result<Vec<Result<u64>>> {
        self.session
            .set_many_with_token(writes, atomic, &self.source(), &self.token)
            .await
    }

    /// Restores `version`'s value of a locked variable, with the token.
    pub async fn rollback(&self, name: &str, version: u64) -> Result<pb::Variable> {
        let request = pb::RollbackVariableRequest {
            session_id: self.session.id().to_owned(),
            name: name.to_owned(),
            target_version: version,
            source: self.source(),
            lock_token: self.token.clone(),
            ..Default::default()
        };
        let response = self.session.transport().rollback_variable(request).await?;
        response
            .variable
            .ok_or_else(|| BridgeError::internal("the engine returned no variable"))
    }

    /// Writes `final_values` atomically (none when empty), then releases the lock; returns
    /// the written variables. On failure nothing is written and the lock is still held.
    pub async fn stop(self, final_values: HashMap<String, pb::Value>) -> Result<Vec<pb::Variable>> {
        let request = pb::StopOptimizationRequest {
            session_id: self.session.id().to_owned(),
            lock_token: self.token.clone(),
            final_values,
            source: self.source(),
            metadata: HashMap::new(),
        };
        Ok(self
            .session
            .transport()
            .stop_optimization(request)
            .await?
            .variables)
    }
}

/// Background renewal of a lock's lease ([`OptimizationLock::keep_alive`]); dropping it stops
/// renewing, and the lease then runs out unless the lock is stopped.
#[derive(Debug)]
pub struct LeaseRenewer {
    task: tokio::task::JoinHandle<()>,
    failure: Arc<Mutex<Option<BridgeError>>>,
}

impl LeaseRenewer {
    /// The error that ended renewal, if one did (`LOCK_NOT_HELD` once the lock is gone).
    pub fn failure(&self) -> Option<BridgeError> {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether the background task still renews the lease.
    pub fn is_renewing(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for LeaseRenewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
