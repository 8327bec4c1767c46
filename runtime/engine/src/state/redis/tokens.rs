//! Access tokens in Redis, so that a token minted through one engine opens its session on
//! every engine sharing the state, and a revocation through one ends the token's streams on
//! all of them.
//!
//! A session's token records live in its meta hash (field `t:<id>`), so they expire and end
//! with the session; a counter (`tcount`) enforces the per-session limit inside the
//! adding script, and a revision (`trev`) counts removals. Each removal is also announced
//! on `mlb:events`; every engine's event follower drops the records from its cache and
//! ends their streams. Checks read through a cache: a cached record is re-read after
//! [`FRESH_FOR`], which bounds how long a revocation whose announcement was lost (Redis
//! down between the two steps) can go unnoticed by checks; for open streams, a rechecker
//! re-reads every [`FRESH_FOR`] the sessions whose cached tokens streams watch, and ends
//! the streams of tokens gone from Redis. `mlb:token:<id>` maps a token to its session for
//! the calls that name none (`Ping`, `DescribeAdapters`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prost::Message;
use redis::Value as RedisValue;

use super::{Inner, Keys, RedisBackend, bytes_of, events_pipe};
use crate::auth::{
    MAX_TOKENS_PER_SESSION, StoredToken, TokenEnd, TokenRecord, TokenStore, not_valid,
    token_limit_reached,
};
use crate::error::{BridgeError, ErrorKind, Result};

/// How long a cached record is trusted before it is read again.
pub(super) const FRESH_FOR: Duration = Duration::from_secs(2);
/// How long the token-to-session index of a token is kept.
const INDEX_TTL: Duration = Duration::from_secs(30 * 86_400);

/// What this engine has read of the tokens in Redis.
#[derive(Debug, Default)]
pub(super) struct TokenCache {
    sessions: Mutex<HashMap<String, CachedSession>>,
}

#[derive(Debug, Default)]
struct CachedSession {
    /// The highest removal revision applied here.
    revision: u64,
    records: HashMap<String, (Arc<TokenRecord>, Instant)>,
}

impl TokenCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedSession>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(&self, session: &str, id: &str) -> Option<Arc<TokenRecord>> {
        let sessions = self.lock();
        let (record, read) = sessions.get(session)?.records.get(id)?;
        (read.elapsed() < FRESH_FOR).then(|| Arc::clone(record))
    }

    /// Keeps `record`, read at removal revision `revision`, unless a later removal was
    /// applied since (it may be among the removed): `Err(record)`, uncached, then. The
    /// record already cached under the id stays (its streams watch it), refreshed.
    fn keep(
        &self,
        record: TokenRecord,
        revision: u64,
    ) -> std::result::Result<Arc<TokenRecord>, Arc<TokenRecord>> {
        let mut sessions = self.lock();
        let stale = sessions
            .get(&record.session_id)
            .is_some_and(|s| s.revision > revision);
        if stale {
            return Err(Arc::new(record));
        }
        let session = sessions.entry(record.session_id.clone()).or_default();
        let entry = session
            .records
            .entry(record.id.clone())
            .or_insert_with(|| (Arc::new(record), Instant::now()));
        entry.1 = Instant::now();
        Ok(Arc::clone(&entry.0))
    }

    /// Applies a removal (this engine's or announced by another): the records go and their
    /// streams end.
    pub(super) fn removed(&self, session: &str, revision: u64, ids: &[String]) {
        let mut sessions = self.lock();
        // Remembered even for a session with nothing cached, so that a read made before
        // this removal is not cached after it (the entry goes with the session's end).
        let cached = sessions.entry(session.to_owned()).or_default();
        cached.revision = cached.revision.max(revision);
        for id in ids {
            if let Some((record, _)) = cached.records.remove(id) {
                record.end(TokenEnd::Revoked);
            }
        }
    }

    fn forget(&self, session: &str) {
        if let Some(cached) = self.lock().remove(session) {
            for (record, _) in cached.records.values() {
                record.end(TokenEnd::SessionEnded);
            }
        }
    }

    /// The sessions with cached records that open streams watch, with those records' ids.
    fn watched(&self) -> Vec<(String, Vec<String>)> {
        self.lock()
            .iter()
            .filter_map(|(session, cached)| {
                let ids: Vec<String> = cached
                    .records
                    .iter()
                    .filter(|(_, (record, _))| record.watched())
                    .map(|(id, _)| id.clone())
                    .collect();
                (!ids.is_empty()).then(|| (session.clone(), ids))
            })
            .collect()
    }

    fn has_session(&self, session: &str) -> bool {
        self.lock().contains_key(session)
    }

    fn session_of(&self, id: &str) -> Option<String> {
        self.lock()
            .iter()
            .find(|(_, cached)| cached.records.contains_key(id))
            .map(|(session, _)| session.clone())
    }
}

/// The token store of a [`RedisBackend`] (`StateBackend::token_store`).
#[derive(Debug, Clone)]
pub struct RedisTokens {
    backend: RedisBackend,
}

impl RedisTokens {
    pub(super) fn new(backend: RedisBackend) -> Self {
        RedisTokens { backend }
    }

    fn inner(&self) -> &Inner {
        &self.backend.inner
    }

    /// Runs a token script on `session`'s keys; `None` when the session is not live.
    async fn script(
        &self,
        script: &redis::Script,
        session: &str,
        args: &[&[u8]],
    ) -> Result<Option<Vec<Vec<u8>>>> {
        let inner = self.inner();
        let keys = Keys::of(session);
        let mut invocation = inner.script_args(script, &keys);
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = inner.conn.clone();
        let reply: Vec<RedisValue> = inner.run(invocation.invoke_async(&mut conn)).await?;
        let mut fields: Vec<Vec<u8>> = reply.into_iter().map(bytes_of).collect();
        let status =
            String::from_utf8_lossy(fields.first().map_or(&[][..], Vec::as_slice)).into_owned();
        match status.as_str() {
            "ok" => {
                fields.remove(0);
                Ok(Some(fields))
            }
            "full" => Err(token_limit_reached()),
            // Its parent was revoked since the caller's check: as if the check had failed.
            "orphan" => Err(not_valid()),
            status => {
                if status == "ended" {
                    inner.announce_end(session, true).await;
                }
                // The session is gone, and its tokens with it.
                inner.tokens.forget(session);
                Ok(None)
            }
        }
    }

    fn decode(session: &str, bytes: &[u8]) -> Result<TokenRecord> {
        let stored = StoredToken::decode(bytes).map_err(|e| super::stored::corrupt("token", e))?;
        TokenRecord::from_stored(session, stored)
            .ok_or_else(|| BridgeError::internal("a stored token record does not decode"))
    }

    /// Removes expired records of `session`, to make room; whether any went.
    async fn prune(&self, session: &str) -> Result<bool> {
        let now = SystemTime::now();
        let expired: Vec<String> = self
            .session(session)
            .await?
            .into_iter()
            .filter(|record| record.expired(now))
            .map(|record| record.id.clone())
            .collect();
        if expired.is_empty() {
            return Ok(false);
        }
        self.remove(session, &expired).await?;
        Ok(true)
    }
}

/// Reads of one token, each overtaken by a removal, before the check gives up.
const READ_ATTEMPTS: usize = 5;

fn contended() -> BridgeError {
    BridgeError::new(
        ErrorKind::Unavailable,
        "the session's tokens changed during every check of this one; retry",
    )
}

/// The removal revision a token script answers first.
fn revision_of(fields: &[Vec<u8>]) -> u64 {
    let bytes = fields.first().map_or(&[][..], Vec::as_slice);
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0)
}

fn index_key(id: &str) -> String {
    format!("mlb:token:{id}")
}

#[tonic::async_trait]
impl TokenStore for RedisTokens {
    async fn insert(&self, record: Arc<TokenRecord>) -> Result<()> {
        let session = record.session_id.clone();
        let bytes = record.to_stored().encode_to_vec();
        let limit = MAX_TOKENS_PER_SESSION.to_string();
        let parent = record.parent.as_deref().unwrap_or_default();
        let args: [&[u8]; 4] = [
            record.id.as_bytes(),
            &bytes,
            limit.as_bytes(),
            parent.as_bytes(),
        ];
        let added = match self
            .script(&self.inner().scripts.token_add, &session, &args)
            .await
        {
            Err(error)
                if error.kind == ErrorKind::PermissionDenied && self.prune(&session).await? =>
            {
                self.script(&self.inner().scripts.token_add, &session, &args)
                    .await
            }
            other => other,
        }?;
        if added.is_none() {
            return Err(BridgeError::session_not_found(&session));
        }
        let inner = self.inner();
        let mut conn = inner.conn.clone();
        let mut index = redis::cmd("SET");
        index
            .arg(index_key(&record.id))
            .arg(&session)
            .arg("PX")
            .arg(super::stored::millis(INDEX_TTL));
        inner.run(index.query_async::<()>(&mut conn)).await?;
        let mut sessions = inner.tokens.lock();
        sessions
            .entry(session)
            .or_default()
            .records
            .insert(record.id.clone(), (record, Instant::now()));
        Ok(())
    }

    async fn get(&self, session_id: &str, id: &str) -> Result<Option<Arc<TokenRecord>>> {
        let cache = &self.inner().tokens;
        if let Some(record) = cache.fresh(session_id, id) {
            return Ok(Some(record));
        }
        // A read older than a removal applied meanwhile is read again: a record handed
        // out uncached could not be ended by a later revocation.
        for _ in 0..READ_ATTEMPTS {
            let Some(fields) = self
                .script(
                    &self.inner().scripts.token_read,
                    session_id,
                    &[b"one", id.as_bytes()],
                )
                .await?
            else {
                return Ok(None);
            };
            let revision = revision_of(&fields);
            let Some(bytes) = fields.get(1).filter(|bytes| !bytes.is_empty()) else {
                // Gone from Redis while cached here: its removal's announcement was lost.
                cache.removed(session_id, revision, &[id.to_owned()]);
                return Ok(None);
            };
            if let Ok(record) = cache.keep(Self::decode(session_id, bytes)?, revision) {
                return Ok(Some(record));
            }
        }
        Err(contended())
    }

    async fn session_of(&self, id: &str) -> Result<Option<String>> {
        if let Some(session) = self.inner().tokens.session_of(id) {
            return Ok(Some(session));
        }
        let inner = self.inner();
        let mut conn = inner.conn.clone();
        let mut get = redis::cmd("GET");
        get.arg(index_key(id));
        inner
            .run(get.query_async::<Option<String>>(&mut conn))
            .await
    }

    async fn session(&self, session_id: &str) -> Result<Vec<Arc<TokenRecord>>> {
        let Some(fields) = self
            .script(&self.inner().scripts.token_read, session_id, &[b"all"])
            .await?
        else {
            return Ok(Vec::new());
        };
        let revision = revision_of(&fields);
        let cache = &self.inner().tokens;
        // For listings and revocations: a record that a newer removal may concern is still
        // listed (uncached; revoking it again is harmless).
        fields[1..]
            .iter()
            .map(|bytes| {
                let record = Self::decode(session_id, bytes)?;
                Ok(cache
                    .keep(record, revision)
                    .unwrap_or_else(|uncached| uncached))
            })
            .collect()
    }

    async fn remove(&self, session_id: &str, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let args: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
        let Some(fields) = self
            .script(&self.inner().scripts.token_remove, session_id, &args)
            .await?
        else {
            // The session is gone, and its tokens with it.
            return Ok(());
        };
        let revision = revision_of(&fields);
        let inner = self.inner();
        inner.tokens.removed(session_id, revision, ids);
        // Every engine (this one hears it too, harmlessly) ends the tokens' streams.
        let mut conn = inner.conn.clone();
        let mut pipe = events_pipe(&[
            ("tokens", session_id),
            ("revision", &revision.to_string()),
            ("ids", &ids.join(",")),
        ]);
        for id in ids {
            pipe.del(index_key(id)).ignore();
        }
        // Best effort: a lost announcement is caught when the other engines' cached
        // records are next read again (`FRESH_FOR`).
        let _ = inner.run(pipe.query_async::<()>(&mut conn)).await;
        Ok(())
    }

    fn forget_session(&self, session_id: &str) {
        self.inner().tokens.forget(session_id);
    }
}

/// Every [`FRESH_FOR`], re-reads the sessions whose cached tokens have open streams and
/// ends the streams of the tokens gone from Redis: revoked through an engine whose
/// announcement was lost. Stops with the backend.
pub(super) async fn recheck_watched(inner: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(FRESH_FOR).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let store = RedisTokens::new(RedisBackend {
            inner: Arc::clone(&inner),
        });
        for (session, ids) in inner.tokens.watched() {
            // Redis down: the next round tries again.
            let Ok(stored) = store.session(&session).await else {
                continue;
            };
            if !inner.tokens.has_session(&session) {
                continue; // the session ended, and its streams with it
            }
            let gone: Vec<String> = ids
                .into_iter()
                .filter(|id| !stored.iter().any(|record| &record.id == id))
                .collect();
            if !gone.is_empty() {
                inner.tokens.removed(&session, 0, &gone);
            }
        }
    }
}
