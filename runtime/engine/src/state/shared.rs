//! The stored form of variables: a value is held once, behind an `Arc`, and shared by the
//! current state, the history, the change ring and every watcher that delivers it. Wire
//! messages (`pb::Variable`, `pb::VariableVersion`, `pb::VariableUpdate`) are built from it
//! only when a reader or watcher needs one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mlbridge_proto::mlbridge::v1::{
    self as pb, Constraints, Value, VariableType, VariableUpdateKind,
};
use prost::Message;

/// Bookkeeping bytes charged for each version besides its value and labels.
pub const VERSION_OVERHEAD_BYTES: usize = 64;
/// Bookkeeping bytes charged for each retained change besides what it shares.
pub const CHANGE_OVERHEAD_BYTES: usize = 64;
/// Bookkeeping bytes charged for each variable besides its definition.
pub const DEFINITION_OVERHEAD_BYTES: usize = 128;

/// Encoded size of a map of labels, as the budgets count it.
pub fn labels_bytes(labels: &HashMap<String, String>) -> usize {
    labels.iter().map(|(k, v)| k.len() + v.len() + 4).sum()
}

/// What a variable is, fixed at registration; shared by every version and change of it.
#[derive(Debug)]
pub struct Definition {
    /// The variable's name.
    pub name: String,
    /// Declared type.
    pub ty: VariableType,
    /// Validation rules.
    pub constraints: Constraints,
    /// Free text.
    pub description: String,
    /// Free-form labels.
    pub metadata: HashMap<String, String>,
    /// When it was registered.
    pub created_at: Option<prost_types::Timestamp>,
    /// Bytes charged to the budgets while the variable exists.
    pub bytes: usize,
    /// The variables it depends on.
    pub depends_on: Vec<String>,
    /// For a derived variable, the host tool that computes it; empty otherwise.
    pub derived_by: String,
}

impl Definition {
    /// A definition, with its charge computed.
    pub fn new(
        name: String,
        ty: VariableType,
        constraints: Constraints,
        description: String,
        metadata: HashMap<String, String>,
        created_at: Option<prost_types::Timestamp>,
    ) -> Self {
        let bytes = DEFINITION_OVERHEAD_BYTES
            + name.len()
            + description.len()
            + labels_bytes(&metadata)
            + constraints.encoded_len();
        Definition {
            name,
            ty,
            constraints,
            description,
            metadata,
            created_at,
            bytes,
            depends_on: Vec::new(),
            derived_by: String::new(),
        }
    }
}

/// Who made a change and when; shared by the version and the change it made.
#[derive(Debug, Default)]
pub struct Written {
    /// Free-form writer identity.
    pub source: String,
    /// Labels of the write.
    pub metadata: HashMap<String, String>,
    /// When.
    pub timestamp: Option<prost_types::Timestamp>,
}

impl Written {
    /// Bytes the budgets count for it.
    pub fn bytes(&self) -> usize {
        self.source.len() + labels_bytes(&self.metadata)
    }
}

/// One version of a variable. The history, the current state and the change ring hold it
/// by `Arc`; the budgets count it once while any of them does.
#[derive(Debug)]
pub struct Version {
    /// The version number (1 at registration).
    pub number: u64,
    /// The value, shared with other versions that hold the same one (a rollback shares its
    /// target's).
    pub value: Arc<Value>,
    /// How it came about.
    pub kind: VariableUpdateKind,
    /// For a rollback, the version restored.
    pub restored_from: u64,
    /// Who wrote it.
    pub written: Arc<Written>,
    /// The change that made it.
    pub sequence: u64,
    /// Bytes charged while it is held: its value, its labels and bookkeeping.
    pub bytes: usize,
    /// How many history and ring entries hold it (the ledger; changed under the session's
    /// lock only).
    holders: AtomicUsize,
}

impl Version {
    /// A version, not yet held by anything.
    pub fn new(
        number: u64,
        value: Arc<Value>,
        kind: VariableUpdateKind,
        restored_from: u64,
        written: Arc<Written>,
        sequence: u64,
    ) -> Self {
        let bytes = VERSION_OVERHEAD_BYTES + value.encoded_len() + written.bytes();
        Version {
            number,
            value,
            kind,
            restored_from,
            written,
            sequence,
            bytes,
            holders: AtomicUsize::new(0),
        }
    }

    /// Entries of the history and ring that hold it.
    pub fn holders(&self) -> usize {
        self.holders.load(Ordering::Relaxed)
    }

    /// One more holder; true when it was held by none (so its bytes start to count).
    pub(crate) fn hold(&self) -> bool {
        self.holders.fetch_add(1, Ordering::Relaxed) == 0
    }

    /// One holder less; true when none is left (so its bytes stop counting).
    pub(crate) fn release(&self) -> bool {
        self.holders.fetch_sub(1, Ordering::Relaxed) == 1
    }

    /// The history entry of this version.
    pub fn entry(&self) -> pb::VariableVersion {
        pb::VariableVersion {
            version: self.number,
            value: Some((*self.value).clone()),
            timestamp: self.written.timestamp,
            source: self.written.source.clone(),
            metadata: self.written.metadata.clone(),
            kind: self.kind as i32,
            restored_from_version: self.restored_from,
        }
    }
}

/// The variable as reads show it at `version`, without lock decoration.
pub fn variable(definition: &Definition, version: &Version) -> pb::Variable {
    pb::Variable {
        name: definition.name.clone(),
        r#type: definition.ty as i32,
        value: Some((*version.value).clone()),
        constraints: Some(definition.constraints.clone()),
        version: version.number,
        description: definition.description.clone(),
        metadata: definition.metadata.clone(),
        created_at: definition.created_at,
        updated_at: version.written.timestamp,
        optimizing: false,
        optimizer_id: String::new(),
        source: version.written.source.clone(),
        depends_on: definition.depends_on.clone(),
        derived_by: definition.derived_by.clone(),
    }
}

/// One committed change (or, for a watch that starts with current values, an `INITIAL`
/// one), kept in the session's change ring and delivered to watchers. It shares its
/// versions; the update message is built when it is sent.
#[derive(Debug)]
pub struct Change {
    /// What happened.
    pub kind: VariableUpdateKind,
    /// Its sequence number.
    pub sequence: u64,
    /// The variable.
    pub definition: Arc<Definition>,
    /// The variable after the change (before it, for a delete).
    pub version: Arc<Version>,
    /// The version it replaced, for a set or rollback.
    pub old: Option<Arc<Version>>,
    /// Who made it.
    pub written: Arc<Written>,
    /// The optimizer whose lock covered the variable right after the change.
    pub optimizer: Option<String>,
}

impl Change {
    /// Bytes the change ring counts for it besides the versions it holds.
    pub fn bytes(&self) -> usize {
        let own = if self.kind == VariableUpdateKind::Deleted {
            self.written.bytes()
        } else {
            0
        };
        CHANGE_OVERHEAD_BYTES + own
    }

    /// The versions it holds.
    pub fn versions(&self) -> impl Iterator<Item = &Arc<Version>> {
        std::iter::once(&self.version).chain(self.old.as_ref())
    }

    /// The update message.
    pub fn update(&self) -> pb::VariableUpdate {
        let mut shown = variable(&self.definition, &self.version);
        if let Some(optimizer) = &self.optimizer {
            shown.optimizing = true;
            shown.optimizer_id.clone_from(optimizer);
        }
        let old_value = match self.kind {
            VariableUpdateKind::Deleted => Some((*self.version.value).clone()),
            _ => self.old.as_ref().map(|old| (*old.value).clone()),
        };
        let initial = self.kind == VariableUpdateKind::Initial;
        pb::VariableUpdate {
            kind: self.kind as i32,
            variable_name: self.definition.name.clone(),
            variable: Some(shown),
            old_value,
            sequence: self.sequence,
            source: if initial {
                String::new()
            } else {
                self.written.source.clone()
            },
            timestamp: self.written.timestamp,
            metadata: if initial {
                HashMap::new()
            } else {
                self.written.metadata.clone()
            },
        }
    }
}
