//! Byte budgets: what a session's state and the whole engine's state may hold, counted by
//! encoded size. A session counts each retained version once (its value, labels and
//! bookkeeping), however many of the current state, the history and the change ring hold
//! it, plus its variables' definitions and the ring's own entries. The engine counts the
//! sum over its sessions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::shared::Version;
use crate::error::{BridgeError, ErrorKind, clip};

/// The bytes held by every session of one engine (one backend), shared by them.
#[derive(Debug, Default)]
pub struct EngineMemory {
    used: AtomicUsize,
}

impl EngineMemory {
    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// Adds `bytes` unless that would go over `limit`; true when added.
    pub fn reserve(&self, bytes: usize, limit: usize) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    /// Adds `bytes` whatever the limit.
    pub fn add(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::SeqCst);
    }

    /// Gives `bytes` back.
    pub fn release(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// Which budget a write did not fit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// The session's (`--session-memory`).
    Session,
    /// The engine's, over all sessions (`--engine-memory`).
    Engine,
}

impl Budget {
    /// `session` or `engine`, as the error context names it.
    pub fn name(self) -> &'static str {
        match self {
            Budget::Session => "session",
            Budget::Engine => "engine",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Budget::Session => "--session-memory",
            Budget::Engine => "--engine-memory",
        }
    }
}

/// `n` bytes in the largest binary unit that keeps it readable.
pub fn human(n: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The error for a write that does not fit in `budget` even after dropping every history
/// and ring entry that could go: `held` is what would then be held, over `limit`.
pub fn exceeded(
    budget: Budget,
    session_id: &str,
    what: &str,
    requested: usize,
    limit: usize,
    held: usize,
) -> BridgeError {
    let (whose, holder) = match budget {
        Budget::Session => (
            format!("the memory budget of session `{}`", clip(session_id)),
            "the session",
        ),
        Budget::Engine => ("the engine's memory budget".to_owned(), "the engine"),
    };
    BridgeError::new(
        ErrorKind::MemoryBudgetExceeded,
        format!(
            "{what} needs {}, which does not fit in {whose} of {} ({}): even after dropping \
             the oldest history and change-ring entries {holder} would hold {}",
            human(requested),
            human(limit),
            budget.flag(),
            human(held),
        ),
    )
    .with("budget", budget.name())
    .with("limit_bytes", limit)
    .with("requested_bytes", requested)
    .with("retained_bytes", held)
}

/// Holder counts of versions as they would be after a planned change, without touching
/// the versions: the ledger's dry run.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    delta: HashMap<*const Version, (Arc<Version>, isize)>,
}

impl Scratch {
    fn held(version: &Version, delta: isize) -> bool {
        version.holders() as isize + delta > 0
    }

    /// Changes the planned holders of `version` by `by`; returns the change in counted
    /// bytes.
    pub(crate) fn adjust(&mut self, version: &Arc<Version>, by: isize) -> isize {
        let entry = self
            .delta
            .entry(Arc::as_ptr(version))
            .or_insert_with(|| (Arc::clone(version), 0));
        let before = Scratch::held(version, entry.1);
        entry.1 += by;
        let after = Scratch::held(version, entry.1);
        let bytes = version.bytes as isize;
        match (before, after) {
            (false, true) => bytes,
            (true, false) => -bytes,
            _ => 0,
        }
    }
}
