//! How the Redis backend stores a session's pieces as bytes: prost messages private to the
//! backend (not part of the wire contract), built from the shared types of
//! `state::shared` and `state::locks` and back.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mlbridge_proto::mlbridge::v1::{self as pb, VariableType, VariableUpdateKind};
use prost::Message;

use crate::error::{BridgeError, ErrorKind, Result};
use crate::state::locks::{Lock, Locks};
use crate::state::shared::{Definition, Version, Written};
use crate::state::variables::VariableState;

/// A variable: its definition (a `pb::Variable` without value) and its retained history.
#[derive(Clone, PartialEq, Message)]
pub struct StoredVariable {
    /// The definition fields of the variable; `value` and version fields are unused.
    #[prost(message, optional, tag = "1")]
    pub definition: Option<pb::Variable>,
    /// Retained versions, oldest first; the last is the current one.
    #[prost(message, repeated, tag = "2")]
    pub history: Vec<StoredVersion>,
}

/// One retained version with the change sequence that made it.
#[derive(Clone, PartialEq, Message)]
pub struct StoredVersion {
    /// The version as history shows it.
    #[prost(message, optional, tag = "1")]
    pub entry: Option<pb::VariableVersion>,
    /// The session change that made it (orders budget eviction).
    #[prost(uint64, tag = "2")]
    pub sequence: u64,
}

/// The locks of a session.
#[derive(Clone, PartialEq, Message)]
pub struct StoredLocks {
    /// Every lock held.
    #[prost(message, repeated, tag = "1")]
    pub locks: Vec<StoredLock>,
}

/// One optimization lock.
#[derive(Clone, PartialEq, Message)]
pub struct StoredLock {
    /// Its token.
    #[prost(string, tag = "1")]
    pub token: String,
    /// Its holder.
    #[prost(string, tag = "2")]
    pub optimizer_id: String,
    /// The variables it covers.
    #[prost(string, repeated, tag = "3")]
    pub variables: Vec<String>,
    /// When its lease ends.
    #[prost(message, optional, tag = "4")]
    pub expires_at: Option<prost_types::Timestamp>,
}

/// What a write answered, kept under its request id so that a retry gets the same answer.
#[derive(Clone, PartialEq, Message)]
pub struct StoredOutcomes {
    /// One per op.
    #[prost(message, repeated, tag = "1")]
    pub outcomes: Vec<StoredOutcome>,
}

/// One op's outcome.
#[derive(Clone, PartialEq, Message)]
pub struct StoredOutcome {
    /// The variable after the op, on success.
    #[prost(message, optional, tag = "1")]
    pub variable: Option<pb::Variable>,
    /// The change's sequence, on success.
    #[prost(uint64, tag = "2")]
    pub sequence: u64,
    /// The failure, otherwise.
    #[prost(message, optional, tag = "3")]
    pub error: Option<pb::BridgeError>,
}

/// The parts of a session fixed at creation besides its times.
#[derive(Clone, PartialEq, Message)]
pub struct StoredSessionInfo {
    /// Free-form labels.
    #[prost(map = "string, string", tag = "1")]
    pub metadata: HashMap<String, String>,
    /// Client cache settings.
    #[prost(message, optional, tag = "2")]
    pub cache: Option<pb::CacheSettings>,
}

/// A stored piece that does not decode: the store holds something this engine did not
/// write (another version, or a foreign key).
pub fn corrupt(what: &str, err: impl std::fmt::Display) -> BridgeError {
    BridgeError::new(
        ErrorKind::Internal,
        format!("the state store holds an unreadable {what}: {err}"),
    )
    .with("state", "redis")
}

/// Encodes a variable's state.
pub fn encode_variable(state: &VariableState) -> Vec<u8> {
    let d = &state.definition;
    StoredVariable {
        definition: Some(pb::Variable {
            name: d.name.clone(),
            r#type: d.ty as i32,
            constraints: Some(d.constraints.clone()),
            description: d.description.clone(),
            metadata: d.metadata.clone(),
            created_at: d.created_at,
            depends_on: d.depends_on.clone(),
            derived_by: d.derived_by.clone(),
            ..Default::default()
        }),
        history: state
            .history
            .iter()
            .map(|version| StoredVersion {
                entry: Some(version.entry()),
                sequence: version.sequence,
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Decodes a variable's state.
pub fn decode_variable(bytes: &[u8]) -> Result<VariableState> {
    let stored = StoredVariable::decode(bytes).map_err(|e| corrupt("variable", e))?;
    let d = stored
        .definition
        .ok_or_else(|| corrupt("variable", "no definition"))?;
    let ty = VariableType::try_from(d.r#type).map_err(|e| corrupt("variable", e))?;
    let mut definition = Definition::new(
        d.name,
        ty,
        d.constraints.unwrap_or_default(),
        d.description,
        d.metadata,
        d.created_at,
    );
    definition.depends_on = d.depends_on;
    definition.derived_by = d.derived_by;
    let history: VecDeque<Arc<Version>> = stored
        .history
        .into_iter()
        .map(|stored| {
            let entry = stored.entry.unwrap_or_default();
            Arc::new(Version::new(
                entry.version,
                Arc::new(entry.value.unwrap_or_default()),
                VariableUpdateKind::try_from(entry.kind).unwrap_or(VariableUpdateKind::Set),
                entry.restored_from_version,
                Arc::new(Written {
                    source: entry.source,
                    metadata: entry.metadata,
                    timestamp: entry.timestamp,
                }),
                stored.sequence,
            ))
        })
        .collect();
    if history.is_empty() {
        return Err(corrupt("variable", "no current version"));
    }
    Ok(VariableState {
        definition: Arc::new(definition),
        history,
    })
}

/// Encodes a session's locks.
pub fn encode_locks(locks: &Locks) -> Vec<u8> {
    let mut stored: Vec<StoredLock> = locks
        .iter()
        .map(|lock| StoredLock {
            token: lock.token.clone(),
            optimizer_id: lock.optimizer_id.clone(),
            variables: lock.variables.iter().cloned().collect(),
            expires_at: Some(lock.expires_at.into()),
        })
        .collect();
    // Deterministic bytes, so that an unchanged set of locks compares equal.
    stored.sort_by(|a, b| a.token.cmp(&b.token));
    StoredLocks { locks: stored }.encode_to_vec()
}

/// Decodes a session's locks.
pub fn decode_locks(bytes: &[u8]) -> Result<Locks> {
    let stored = StoredLocks::decode(bytes).map_err(|e| corrupt("lock table", e))?;
    Ok(Locks::restore(stored.locks.into_iter().map(|lock| {
        let expires_at = lock
            .expires_at
            .and_then(|t| SystemTime::try_from(t).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Lock {
            token: lock.token,
            optimizer_id: lock.optimizer_id,
            variables: lock.variables.into_iter().collect::<BTreeSet<_>>(),
            expires_at,
        }
    })))
}

/// Encodes the outcomes of a write.
pub fn encode_outcomes(outcomes: &[Result<(pb::Variable, u64)>]) -> Vec<u8> {
    StoredOutcomes {
        outcomes: outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok((variable, sequence)) => StoredOutcome {
                    variable: Some(variable.clone()),
                    sequence: *sequence,
                    error: None,
                },
                Err(err) => StoredOutcome {
                    variable: None,
                    sequence: 0,
                    error: Some(err.clone().into()),
                },
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Decodes the outcomes of a write.
pub fn decode_outcomes(bytes: &[u8]) -> Result<Vec<Result<(pb::Variable, u64)>>> {
    let stored = StoredOutcomes::decode(bytes).map_err(|e| corrupt("write outcome", e))?;
    Ok(stored
        .outcomes
        .into_iter()
        .map(|outcome| match outcome.error {
            Some(error) => Err(error.into()),
            None => Ok((outcome.variable.unwrap_or_default(), outcome.sequence)),
        })
        .collect())
}

/// Milliseconds of a duration, as the store keeps times.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A time from milliseconds since the epoch.
pub fn from_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}
