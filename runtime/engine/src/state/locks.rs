//! Optimization locks of one session: exclusive, leased, all-or-nothing locks on sets of
//! variables, each named by an opaque token that writes to its variables must carry. Pure
//! data: every check takes `now`, so the rules are tested without waiting for a clock.
//!
//! Leases end lazily: a lock whose lease has run out no longer holds anything from that
//! instant (reads, writes and acquisitions all compare with `now`) and is purged on the next
//! acquisition; its token is refused from then on (fencing).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use mlbridge_proto::mlbridge::v1 as pb;

use crate::error::{BridgeError, ErrorKind, Result};

/// Longest optimizer id accepted, in bytes.
pub const MAX_OPTIMIZER_ID_BYTES: usize = 128;

/// One lock.
#[derive(Debug, Clone)]
pub struct Lock {
    /// The opaque token writes carry.
    pub token: String,
    /// Who holds it, shown in `Variable.optimizer_id`.
    pub optimizer_id: String,
    /// The variables it covers.
    pub variables: BTreeSet<String>,
    /// When the lease ends unless renewed.
    pub expires_at: SystemTime,
}

impl Lock {
    fn live(&self, now: SystemTime) -> bool {
        self.expires_at > now
    }
}

/// What `StartOptimization` asks for, after the engine applied defaults and clamps.
#[derive(Debug, Clone)]
pub struct LockRequest {
    /// Variables to lock (new lock), or empty / the locked set (renewal).
    pub names: Vec<String>,
    /// Identity of the optimizer.
    pub optimizer_id: String,
    /// Lease length, already defaulted and clamped; never zero.
    pub lease: Duration,
    /// Token of the lock to renew; empty to acquire.
    pub renew_token: String,
}

/// The locks of one session, bounded by `max_locks`.
#[derive(Debug, Default)]
pub struct Locks {
    by_token: HashMap<String, Lock>,
    /// Variable name -> token of the lock that covers it (live or not yet purged).
    holders: HashMap<String, String>,
}

/// RFC 3339 form of a time, as error contexts carry it.
pub fn rfc3339(time: SystemTime) -> String {
    prost_types::Timestamp::from(time).to_string()
}

impl Locks {
    /// Number of locks held (live or not yet purged).
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// Whether there is no lock.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    /// Drops locks whose lease ended at or before `now`.
    pub fn purge(&mut self, now: SystemTime) {
        let ended: Vec<String> = self
            .by_token
            .values()
            .filter(|lock| !lock.live(now))
            .map(|lock| lock.token.clone())
            .collect();
        for token in ended {
            self.release(&token);
        }
    }

    /// The live lock covering `name`, if any.
    pub fn holder(&self, name: &str, now: SystemTime) -> Option<&Lock> {
        self.holders
            .get(name)
            .and_then(|token| self.by_token.get(token))
            .filter(|lock| lock.live(now))
    }

    /// The live lock named by `token`, else `LOCK_NOT_HELD` (unknown, expired or stopped).
    pub fn live(&self, token: &str, now: SystemTime) -> Result<&Lock> {
        match self.by_token.get(token) {
            Some(lock) if lock.live(now) => Ok(lock),
            Some(lock) => Err(BridgeError::new(
                ErrorKind::LockNotHeld,
                format!(
                    "the lock of optimizer `{}` expired at {}; its token is no longer valid",
                    lock.optimizer_id,
                    rfc3339(lock.expires_at)
                ),
            )
            .with("optimizer_id", &lock.optimizer_id)
            .with("expires_at", rfc3339(lock.expires_at))),
            None => Err(BridgeError::new(
                ErrorKind::LockNotHeld,
                "the lock token is unknown: the lock was stopped, expired, or never existed",
            )),
        }
    }

    /// Whether a write of `name` may go ahead: with a token, it must name a live lock that
    /// covers `name` (`LOCK_NOT_HELD`); without one, no live lock may cover `name`
    /// (`VARIABLE_LOCKED`, naming the holder and when its lease ends).
    pub fn check_write(&self, name: &str, token: &str, now: SystemTime) -> Result<()> {
        if !token.is_empty() {
            let lock = self.live(token, now)?;
            if lock.variables.contains(name) {
                return Ok(());
            }
            return Err(BridgeError::new(
                ErrorKind::LockNotHeld,
                format!(
                    "the lock of optimizer `{}` does not cover variable `{name}`",
                    lock.optimizer_id
                ),
            )
            .with("variable", name)
            .with("optimizer_id", &lock.optimizer_id));
        }
        match self.holder(name, now) {
            None => Ok(()),
            Some(lock) => Err(locked(name, lock)),
        }
    }

    /// Sets `optimizing` / `optimizer_id` of `variable` from the live lock covering it.
    pub fn decorate(&self, variable: &mut pb::Variable, now: SystemTime) {
        match self.holder(&variable.name, now) {
            Some(lock) => {
                variable.optimizing = true;
                variable.optimizer_id.clone_from(&lock.optimizer_id);
            }
            None => {
                variable.optimizing = false;
                variable.optimizer_id.clear();
            }
        }
    }

    /// Acquires a new lock on every name or none. `exists` says whether a variable exists.
    /// Contention is an answer (`granted` false, one conflict per contended variable), not
    /// an error.
    pub fn acquire(
        &mut self,
        request: &LockRequest,
        exists: impl Fn(&str) -> bool,
        session_id: &str,
        max_locks: usize,
        now: SystemTime,
    ) -> Result<pb::StartOptimizationResponse> {
        check_optimizer_id(&request.optimizer_id)?;
        if request.names.is_empty() {
            return Err(BridgeError::invalid_argument(
                "variable_names",
                "a new lock needs at least one variable",
            ));
        }
        let names: BTreeSet<String> = request.names.iter().cloned().collect();
        if let Some(missing) = names.iter().find(|name| !exists(name)) {
            return Err(BridgeError::variable_not_found(session_id, missing));
        }
        self.purge(now);
        let conflicts: Vec<pb::LockConflict> = names
            .iter()
            .filter_map(|name| {
                self.holder(name, now).map(|lock| pb::LockConflict {
                    variable_name: name.clone(),
                    optimizer_id: lock.optimizer_id.clone(),
                    expires_at: Some(lock.expires_at.into()),
                })
            })
            .collect();
        if !conflicts.is_empty() {
            return Ok(pb::StartOptimizationResponse {
                granted: false,
                conflicts,
                ..Default::default()
            });
        }
        if self.by_token.len() >= max_locks {
            return Err(BridgeError::invalid_argument(
                "variable_names",
                format!(
                    "session `{session_id}` already holds the maximum of {max_locks} optimization locks"
                ),
            )
            .with("limit", max_locks));
        }
        let token = format!("lock-{}", uuid::Uuid::new_v4().simple());
        let expires_at = now + request.lease;
        for name in &names {
            self.holders.insert(name.clone(), token.clone());
        }
        self.by_token.insert(
            token.clone(),
            Lock {
                token: token.clone(),
                optimizer_id: request.optimizer_id.clone(),
                variables: names,
                expires_at,
            },
        );
        Ok(pb::StartOptimizationResponse {
            granted: true,
            lock_token: token,
            expires_at: Some(expires_at.into()),
            conflicts: Vec::new(),
        })
    }

    /// Extends a live lock's lease to `now + lease`. The optimizer id must match and the
    /// names, when given, must be exactly the locked set.
    pub fn renew(
        &mut self,
        request: &LockRequest,
        now: SystemTime,
    ) -> Result<pb::StartOptimizationResponse> {
        let lock = self.live(&request.renew_token, now)?;
        if lock.optimizer_id != request.optimizer_id {
            return Err(BridgeError::new(
                ErrorKind::LockNotHeld,
                format!(
                    "the lock is held by optimizer `{}`, not `{}`",
                    lock.optimizer_id, request.optimizer_id
                ),
            )
            .with("optimizer_id", &lock.optimizer_id));
        }
        if !request.names.is_empty() {
            let names: BTreeSet<String> = request.names.iter().cloned().collect();
            if names != lock.variables {
                return Err(BridgeError::invalid_argument(
                    "variable_names",
                    "a renewal names no variables or exactly the locked ones",
                ));
            }
        }
        let expires_at = now + request.lease;
        let token = request.renew_token.clone();
        if let Some(lock) = self.by_token.get_mut(&token) {
            lock.expires_at = expires_at;
        }
        Ok(pb::StartOptimizationResponse {
            granted: true,
            lock_token: token,
            expires_at: Some(expires_at.into()),
            conflicts: Vec::new(),
        })
    }

    /// Removes the lock named by `token`, freeing its variables.
    pub fn release(&mut self, token: &str) -> Option<Lock> {
        let lock = self.by_token.remove(token)?;
        for name in &lock.variables {
            if self.holders.get(name).is_some_and(|t| t == token) {
                self.holders.remove(name);
            }
        }
        Some(lock)
    }

    /// Every lock held (live or not yet purged), unordered: what a backend that stores
    /// sessions outside this process saves.
    pub fn iter(&self) -> impl Iterator<Item = &Lock> {
        self.by_token.values()
    }

    /// Locks as a backend saved them (see [`Locks::iter`]).
    pub fn restore(locks: impl IntoIterator<Item = Lock>) -> Self {
        let mut restored = Locks::default();
        for lock in locks {
            for name in &lock.variables {
                restored.holders.insert(name.clone(), lock.token.clone());
            }
            restored.by_token.insert(lock.token.clone(), lock);
        }
        restored
    }

    /// Frees one variable from whichever lock covers it (the variable was deleted).
    pub fn forget_variable(&mut self, name: &str) {
        if let Some(token) = self.holders.remove(name)
            && let Some(lock) = self.by_token.get_mut(&token)
        {
            lock.variables.remove(name);
        }
    }
}

/// The `VARIABLE_LOCKED` error for a write to `name` without `lock`'s token.
fn locked(name: &str, lock: &Lock) -> BridgeError {
    let expires_at = rfc3339(lock.expires_at);
    BridgeError::new(
        ErrorKind::VariableLocked,
        format!(
            "variable `{name}` is locked by optimizer `{}` until {expires_at} unless renewed; \
             write with its lock token or wait for it to stop",
            lock.optimizer_id
        ),
    )
    .with("variable", name)
    .with("optimizer_id", &lock.optimizer_id)
    .with("expires_at", expires_at)
}

fn check_optimizer_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(BridgeError::invalid_argument(
            "optimizer_id",
            "`optimizer_id` is required",
        ));
    }
    if id.len() > MAX_OPTIMIZER_ID_BYTES {
        return Err(BridgeError::invalid_argument(
            "optimizer_id",
            format!("`optimizer_id` is longer than {MAX_OPTIMIZER_ID_BYTES} bytes"),
        )
        .with("limit", MAX_OPTIMIZER_ID_BYTES));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(names: &[&str], id: &str, lease_ms: u64) -> LockRequest {
        LockRequest {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            optimizer_id: id.to_owned(),
            lease: Duration::from_millis(lease_ms),
            renew_token: String::new(),
        }
    }

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_millis(ms)
    }

    #[test]
    fn acquisition_is_all_or_nothing_and_reports_the_holder() {
        let mut locks = Locks::default();
        let a = locks
            .acquire(&request(&["x"], "one", 1000), |_| true, "s", 8, at(0))
            .unwrap();
        assert!(a.granted);
        let b = locks
            .acquire(&request(&["y", "x"], "two", 1000), |_| true, "s", 8, at(10))
            .unwrap();
        assert!(!b.granted);
        assert!(b.lock_token.is_empty());
        assert_eq!(b.conflicts.len(), 1);
        assert_eq!(b.conflicts[0].variable_name, "x");
        assert_eq!(b.conflicts[0].optimizer_id, "one");
        // Nothing of the refused request was taken: `y` is free.
        assert!(locks.holder("y", at(10)).is_none());
        assert!(locks.check_write("y", "", at(10)).is_ok());
        let err = locks.check_write("x", "", at(10)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::VariableLocked);
        assert_eq!(err.context["optimizer_id"], "one");
        assert_eq!(err.context["expires_at"], rfc3339(at(1000)));
        assert!(err.message.contains("`one`"), "{}", err.message);
    }

    #[test]
    fn leases_end_renewals_extend_and_old_tokens_are_fenced() {
        let mut locks = Locks::default();
        let token = locks
            .acquire(&request(&["x"], "one", 100), |_| true, "s", 8, at(0))
            .unwrap()
            .lock_token;
        assert!(locks.check_write("x", &token, at(50)).is_ok());
        let renew = LockRequest {
            renew_token: token.clone(),
            ..request(&[], "one", 100)
        };
        let renewed = locks.renew(&renew, at(90)).unwrap();
        assert_eq!(renewed.lock_token, token);
        assert!(locks.check_write("x", &token, at(150)).is_ok());
        let stranger = LockRequest {
            renew_token: token.clone(),
            ..request(&[], "two", 100)
        };
        assert_eq!(
            locks.renew(&stranger, at(150)).unwrap_err().kind,
            ErrorKind::LockNotHeld
        );
        // Not renewed again: at 190 the lease is over, the variable is free and the
        // token is refused, for writes and for renewal.
        assert!(locks.check_write("x", "", at(190)).is_ok());
        assert_eq!(
            locks.check_write("x", &token, at(190)).unwrap_err().kind,
            ErrorKind::LockNotHeld
        );
        assert_eq!(
            locks.renew(&renew, at(190)).unwrap_err().kind,
            ErrorKind::LockNotHeld
        );
        let other = locks
            .acquire(&request(&["x"], "two", 100), |_| true, "s", 8, at(200))
            .unwrap();
        assert!(other.granted);
        assert_eq!(locks.len(), 1, "the expired lock was purged");
        assert_eq!(
            locks.check_write("x", &token, at(210)).unwrap_err().kind,
            ErrorKind::LockNotHeld
        );
    }

    #[test]
    fn tokens_cover_only_their_variables_and_locks_are_bounded() {
        let mut locks = Locks::default();
        let token = locks
            .acquire(&request(&["x"], "one", 100), |_| true, "s", 1, at(0))
            .unwrap()
            .lock_token;
        let err = locks.check_write("y", &token, at(1)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::LockNotHeld);
        let err = locks
            .acquire(&request(&["y"], "two", 100), |_| true, "s", 1, at(1))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        assert_eq!(err.context["limit"], "1");
        let err = locks
            .acquire(&request(&["z"], "two", 100), |n| n != "z", "s", 8, at(1))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::VariableNotFound);
        let err = locks
            .acquire(&request(&["y"], "", 100), |_| true, "s", 8, at(1))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        locks.forget_variable("x");
        assert!(locks.holder("x", at(1)).is_none());
        assert!(locks.release(&token).is_some());
        assert!(locks.is_empty());
    }
}
