//! Which worker slot serves which session: a bounded map of pins, and the task that drops
//! a session's pin when the state backend reports the session ended.

use std::collections::HashMap;

use tokio::sync::broadcast;

use crate::state::{SessionEvent, SessionEvents};

/// Sessions pinned to slots, bounded: when full, the least recently used pin goes, so
/// that no client input grows it without limit.
pub(super) struct Pins {
    /// Session id to (slot, last use).
    by_session: HashMap<String, (usize, u64)>,
    per_slot: Vec<usize>,
    capacity: usize,
    clock: u64,
    next: usize,
}

impl Pins {
    pub(super) fn new(slots: usize, capacity: usize) -> Self {
        Pins {
            by_session: HashMap::new(),
            per_slot: vec![0; slots],
            capacity: capacity.max(1),
            clock: 0,
            next: 0,
        }
    }

    /// The slot of `session`: its pin, or a new pin on the slot that `rank` (given the
    /// slot and its number of pinned sessions) puts first; ties go round-robin.
    pub(super) fn slot<R: Ord>(
        &mut self,
        session: &str,
        rank: impl Fn(usize, usize) -> R,
    ) -> usize {
        self.clock += 1;
        let now = self.clock;
        if let Some(pin) = self.by_session.get_mut(session) {
            pin.1 = now;
            return pin.0;
        }
        if self.by_session.len() >= self.capacity {
            let oldest = self
                .by_session
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(session, _)| session.clone());
            if let Some(oldest) = oldest {
                self.forget(&oldest);
            }
        }
        let count = self.per_slot.len();
        let start = self.next % count;
        self.next = self.next.wrapping_add(1);
        let chosen = (0..count)
            .map(|offset| (start + offset) % count)
            .min_by_key(|&slot| rank(slot, self.per_slot[slot]))
            .unwrap_or(0);
        self.per_slot[chosen] += 1;
        self.by_session.insert(session.to_owned(), (chosen, now));
        chosen
    }

    /// Makes room for one more slot (an attached worker's).
    pub(super) fn add_slot(&mut self) {
        self.per_slot.push(0);
    }

    pub(super) fn forget(&mut self, session: &str) {
        if let Some((slot, _)) = self.by_session.remove(session) {
            self.per_slot[slot] -= 1;
        }
    }
}

/// Calls `forget` with each ended session's id until it returns false or the events end.
/// Events missed by lagging are lost; the pins are bounded, so a missed one only holds a
/// pin until it is the least recently used.
pub(super) async fn unpin_ended(mut events: SessionEvents, mut forget: impl FnMut(&str) -> bool) {
    loop {
        match events.recv().await {
            Ok(SessionEvent::Ended { session_id, .. }) => {
                if !forget(&session_id) {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[test]
    fn sessions_keep_their_slot_and_spread_over_slots() {
        let mut pins = Pins::new(3, 100);
        let first = pins.slot("a", |_, pinned| pinned);
        assert_eq!(pins.slot("a", |_, pinned| pinned), first);
        let others: std::collections::HashSet<usize> = ["b", "c"]
            .iter()
            .map(|s| pins.slot(s, |_, pinned| pinned))
            .collect();
        assert_eq!(others.len(), 2);
        assert!(!others.contains(&first));
        // A slot ranked down is avoided while another is up.
        let mut pins = Pins::new(2, 100);
        for session in ["x", "y", "z"] {
            assert_eq!(pins.slot(session, |slot, pinned| (slot == 0, pinned)), 1);
        }
    }

    #[test]
    fn pins_are_bounded_and_forgotten() {
        let mut pins = Pins::new(2, 3);
        for i in 0..10 {
            pins.slot(&format!("s{i}"), |_, pinned| pinned);
        }
        assert_eq!(pins.by_session.len(), 3);
        assert_eq!(pins.per_slot.iter().sum::<usize>(), 3);
        // The most recently used pins survive.
        assert!(pins.by_session.contains_key("s9"));
        pins.forget("s9");
        pins.forget("never-pinned");
        assert_eq!(pins.by_session.len(), 2);
        assert_eq!(pins.per_slot.iter().sum::<usize>(), 2);
    }

    /// Ending a session, by cleanup or by expiry, unpins it: the pool hears it from the
    /// backend's session events, with no call from the engine.
    #[tokio::test]
    async fn ended_sessions_are_unpinned_from_backend_events() {
        use crate::state::{Limits, MemoryBackend, NewSession, StateBackend};

        let backend = MemoryBackend::new(Limits::default());
        let pins = Arc::new(Mutex::new(Pins::new(2, 100)));
        let follower = {
            let pins = Arc::clone(&pins);
            tokio::spawn(unpin_ended(backend.session_events(), move |id| {
                pins.lock().unwrap().forget(id);
                true
            }))
        };
        let session = |id: &str, ttl: Option<Duration>| NewSession {
            id: Some(id.to_owned()),
            ttl,
            ..Default::default()
        };
        backend
            .create_session(session("closed", None))
            .await
            .unwrap();
        backend
            .create_session(session("expiring", Some(Duration::from_nanos(1))))
            .await
            .unwrap();
        backend.create_session(session("kept", None)).await.unwrap();
        for id in ["closed", "expiring", "kept"] {
            pins.lock().unwrap().slot(id, |_, pinned| pinned);
        }
        assert!(backend.remove_session("closed").await.unwrap().is_some());
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(backend.expire_sessions().await.unwrap(), ["expiring"]);
        // Dropping the backend ends the event stream, so the follower has seen every event
        // once it returns.
        drop(backend);
        follower.await.unwrap();
        let pins = pins.lock().unwrap();
        assert_eq!(pins.by_session.keys().collect::<Vec<_>>(), ["kept"]);
        assert_eq!(pins.per_slot.iter().sum::<usize>(), 1);
    }
}
