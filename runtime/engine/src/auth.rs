//! Access control: bearer tokens per session, their scopes, and the check every RPC makes.
//!
//! `InitializeSession` gives the creator an owner token; any token can mint narrower ones
//! (`MintToken`) and revoke itself and what descends from it (`RevokeToken`, cascading).
//! A token is `mlb_<id>_<secret>`: the id finds its record, the secret (256 random bits)
//! is checked against a stored SHA-256 hash in constant time. Token text is never logged,
//! traced or quoted in an error. Records live behind [`TokenStore`] (in memory here, per
//! session, removed with the session) so that another state backend can hold them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mlbridge_proto::mlbridge::v1 as pb;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{BridgeError, ErrorKind, Result};
use crate::glob::Glob;

tokio::task_local! {
    /// The token a worker gets for calls back into the engine while it runs an operation
    /// or tool on a caller's behalf (set by the engine around the call).
    pub static OPERATION_TOKEN: String;
}

/// The token of the operation running in this task, if any (empty otherwise).
pub fn operation_token() -> String {
    OPERATION_TOKEN.try_with(Clone::clone).unwrap_or_default()
}

/// Whether the engine checks tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// Every call needs a valid token of its session (sessions are created without one).
    Required,
    /// Nothing is checked (tokens are still issued, so programs work unchanged when it is
    /// turned on). Only for engines reachable from this host alone.
    #[default]
    Off,
}

/// The most tokens a session holds at once (owner included): memory stays bounded
/// whatever a client mints.
pub const MAX_TOKENS_PER_SESSION: usize = 256;

/// Prefix of every token, so that a leaked one is recognisable (secret scanners).
const PREFIX: &str = "mlb_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// Marks a call made in this process through `Engine::in_process_client`: without a
/// token it acts with the engine's own authority (the program holds the engine anyway);
/// with one, the token is checked as over gRPC.
pub use mlbridge_client::InProcessCall;

/// What a token may do, as granted.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only reads.
    pub read_only: bool,
    /// Variable globs (text and compiled); empty means every variable.
    pub variables: Vec<(String, Glob)>,
    /// No tools or callbacks.
    pub deny_tools: bool,
    /// No framework operations or resources.
    pub deny_operations: bool,
}

impl Scope {
    /// Whether the scope lets the token read (or write) variable `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.variables.is_empty() || self.variables.iter().any(|(_, g)| g.matches(name))
    }

    /// Whether this is the whole of the session's authority.
    pub fn is_full(&self) -> bool {
        !self.read_only && self.variables.is_empty() && !self.deny_tools && !self.deny_operations
    }

    fn to_proto(&self) -> pb::TokenScope {
        pb::TokenScope {
            read_only: self.read_only,
            variables: self
                .variables
                .iter()
                .map(|(text, _)| text.clone())
                .collect(),
            deny_tools: self.deny_tools,
            deny_operations: self.deny_operations,
            ttl: None,
        }
    }

    /// A scope as stored (its globs were checked when it was granted).
    fn from_proto(stored: pb::TokenScope) -> Result<Scope> {
        let variables = stored
            .variables
            .into_iter()
            .map(|text| Glob::new(&text).map(|glob| (text, glob)))
            .collect::<Result<_>>()?;
        Ok(Scope {
            read_only: stored.read_only,
            variables,
            deny_tools: stored.deny_tools,
            deny_operations: stored.deny_operations,
        })
    }

    /// The scope `asked` narrowed to this (the parent's): flags only add restrictions,
    /// and every glob must provably lie within one of the parent's, else
    /// `PERMISSION_DENIED` (minting never widens).
    fn derive(&self, asked: &pb::TokenScope) -> Result<Scope> {
        let mut variables = Vec::new();
        for text in &asked.variables {
            let glob = Glob::new(text)?;
            if !self.variables.is_empty() && !self.variables.iter().any(|(p, _)| within(text, p)) {
                return Err(BridgeError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "variable glob `{}` is not within the parent token's globs",
                        clip(text)
                    ),
                )
                .with("field", "scope.variables"));
            }
            variables.push((text.clone(), glob));
        }
        if variables.is_empty() {
            variables = self.variables.clone();
        }
        Ok(Scope {
            read_only: self.read_only || asked.read_only,
            variables,
            deny_tools: self.deny_tools || asked.deny_tools,
            deny_operations: self.deny_operations || asked.deny_operations,
        })
    }
}

fn clip(text: &str) -> String {
    text.chars().take(100).collect()
}

/// Whether every name glob `child` matches is matched by `parent`. Conservative: `false`
/// when that cannot be shown simply (a token then cannot be minted, never a wider one).
pub fn within(child: &str, parent: &str) -> bool {
    let meta = |c: char| matches!(c, '*' | '?' | '[');
    if parent == "*" || child == parent {
        return true;
    }
    if !child.contains(meta) {
        return Glob::new(parent).is_ok_and(|g| g.matches(child));
    }
    // `prefix*` covers any glob that starts with the same literal prefix.
    if let Some(prefix) = parent.strip_suffix('*')
        && !prefix.contains(meta)
    {
        return child.starts_with(prefix);
    }
    false
}

/// One token's record: never its secret, only the secret's hash.
#[derive(Debug)]
pub struct TokenRecord {
    /// The public id (the middle of the token text).
    pub id: String,
    /// The session the token belongs to.
    pub session_id: String,
    /// The token it was minted from; `None` for the owner token.
    pub parent: Option<String>,
    hash: [u8; 32],
    /// What it may do.
    pub scope: Scope,
    /// When it stops working; `None`: with its session.
    pub expires_at: Option<SystemTime>,
    /// When it was minted.
    pub created_at: SystemTime,
    /// A label for listings.
    pub label: String,
    /// Set once the token is revoked or its session ends: open streams end.
    revoked: tokio::sync::watch::Sender<Option<TokenEnd>>,
}

/// A token record as a shared store keeps it (never the secret, only its hash).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredToken {
    /// Id, parent, scope, expiry, creation and label.
    #[prost(message, optional, tag = "1")]
    pub info: Option<pb::TokenInfo>,
    /// SHA-256 of the secret.
    #[prost(bytes = "vec", tag = "2")]
    pub hash: Vec<u8>,
}

/// Why a token stopped working, so an open stream can end with the right error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEnd {
    /// Revoked (itself or a token it was minted from).
    Revoked,
    /// Its expiry passed.
    Expired,
    /// Its session ended (or was cleaned up): the stream reports the session as gone.
    SessionEnded,
}

impl TokenRecord {
    fn info(&self) -> pb::TokenInfo {
        pb::TokenInfo {
            token_id: self.id.clone(),
            parent_id: self.parent.clone().unwrap_or_default(),
            scope: Some(self.scope.to_proto()),
            expires_at: self.expires_at.map(Into::into),
            created_at: Some(self.created_at.into()),
            label: self.label.clone(),
        }
    }

    pub(crate) fn expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether open streams watch the token's end.
    pub(crate) fn watched(&self) -> bool {
        self.revoked.receiver_count() > 0
    }

    /// Ends the token's open streams, saying why.
    pub(crate) fn end(&self, why: TokenEnd) {
        self.revoked.send_replace(Some(why));
    }

    /// A record as a store keeps it: everything but the live stream notifier.
    pub(crate) fn to_stored(&self) -> StoredToken {
        StoredToken {
            info: Some(self.info()),
            hash: self.hash.to_vec(),
        }
    }

    /// The record of a stored one (`None` when it does not decode to one).
    pub(crate) fn from_stored(session_id: &str, stored: StoredToken) -> Option<Self> {
        let info = stored.info?;
        Some(TokenRecord {
            id: info.token_id,
            session_id: session_id.to_owned(),
            parent: Some(info.parent_id).filter(|p| !p.is_empty()),
            hash: stored.hash.try_into().ok()?,
            scope: Scope::from_proto(info.scope.unwrap_or_default()).ok()?,
            expires_at: info.expires_at.and_then(|t| SystemTime::try_from(t).ok()),
            created_at: info
                .created_at
                .and_then(|t| SystemTime::try_from(t).ok())
                .unwrap_or(SystemTime::UNIX_EPOCH),
            label: info.label,
            revoked: tokio::sync::watch::channel(None).0,
        })
    }

    /// Resolves once the token is revoked, expires or its session ends, saying which:
    /// what ends its open streams.
    pub fn ended(&self) -> impl std::future::Future<Output = TokenEnd> + Send + 'static {
        let mut revoked = self.revoked.subscribe();
        let left = self
            .expires_at
            .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
        async move {
            let expiry = async {
                match left {
                    Some(left) => tokio::time::sleep(left).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                end = revoked.wait_for(Option::is_some) => match end {
                    Ok(end) => end.unwrap_or(TokenEnd::Revoked),
                    // The record is gone without a word: treat it as revoked.
                    Err(_) => TokenEnd::Revoked,
                },
                () = expiry => TokenEnd::Expired,
            }
        }
    }
}

/// Where token records are kept. The in-memory [`MemoryTokens`] keeps them per session
/// and drops them with it; the Redis state backend keeps them in Redis, so that a token
/// works on every engine sharing the state (`StateBackend::token_store`). Errors are the
/// store's own (e.g. `UNAVAILABLE` when Redis is down).
#[tonic::async_trait]
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// Adds a record; `PERMISSION_DENIED` when its session already holds
    /// [`MAX_TOKENS_PER_SESSION`] live tokens.
    async fn insert(&self, record: Arc<TokenRecord>) -> Result<()>;
    /// The record `id` of session `session_id`, if there is one.
    async fn get(&self, session_id: &str, id: &str) -> Result<Option<Arc<TokenRecord>>>;
    /// The session holding token `id`, if any (for calls that name no session).
    async fn session_of(&self, id: &str) -> Result<Option<String>>;
    /// Every record of a session.
    async fn session(&self, session_id: &str) -> Result<Vec<Arc<TokenRecord>>>;
    /// Removes records (already chosen by the caller, e.g. a revoked subtree); their open
    /// streams end, on every engine that shares the store.
    async fn remove(&self, session_id: &str, ids: &[String]) -> Result<()>;
    /// Forgets every record of a session that ended (ending their streams); the session's
    /// end takes the stored records with it.
    fn forget_session(&self, session_id: &str);
}

/// Token records in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryTokens {
    sessions: Mutex<HashMap<String, HashMap<String, Arc<TokenRecord>>>>,
}

impl MemoryTokens {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Arc<TokenRecord>>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[tonic::async_trait]
impl TokenStore for MemoryTokens {
    async fn insert(&self, record: Arc<TokenRecord>) -> Result<()> {
        let mut sessions = self.lock();
        let tokens = sessions.entry(record.session_id.clone()).or_default();
        // A parent revoked since the caller's check takes its children-to-be with it.
        if record
            .parent
            .as_ref()
            .is_some_and(|p| !tokens.contains_key(p))
        {
            return Err(not_valid());
        }
        if tokens.len() >= MAX_TOKENS_PER_SESSION {
            // Expired tokens make room before the limit is reported.
            let now = SystemTime::now();
            tokens.retain(|_, t| !t.expired(now));
        }
        if tokens.len() >= MAX_TOKENS_PER_SESSION {
            return Err(token_limit_reached());
        }
        tokens.insert(record.id.clone(), record);
        Ok(())
    }

    async fn get(&self, session_id: &str, id: &str) -> Result<Option<Arc<TokenRecord>>> {
        Ok(self
            .lock()
            .get(session_id)
            .and_then(|tokens| tokens.get(id))
            .cloned())
    }

    async fn session_of(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .lock()
            .iter()
            .find(|(_, tokens)| tokens.contains_key(id))
            .map(|(session, _)| session.clone()))
    }

    async fn session(&self, session_id: &str) -> Result<Vec<Arc<TokenRecord>>> {
        Ok(self
            .lock()
            .get(session_id)
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn remove(&self, session_id: &str, ids: &[String]) -> Result<()> {
        let mut sessions = self.lock();
        if let Some(tokens) = sessions.get_mut(session_id) {
            for id in ids {
                if let Some(record) = tokens.remove(id) {
                    record.end(TokenEnd::Revoked);
                }
            }
        }
        Ok(())
    }

    fn forget_session(&self, session_id: &str) {
        if let Some(tokens) = self.lock().remove(session_id) {
            for record in tokens.values() {
                record.end(TokenEnd::SessionEnded);
            }
        }
    }
}

/// Who is calling, once the token (if any) checked out.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No check applies: auth is off, or an in-process call without a token.
    Trusted,
    /// A valid token of the request's session (or, for session-less calls, of some
    /// session).
    Token(Arc<TokenRecord>),
}

impl Caller {
    /// Whether the caller may read variable `name` (what lists and watches filter by).
    pub fn may_read(&self, name: &str) -> bool {
        match self {
            Caller::Trusted => true,
            Caller::Token(t) => t.scope.covers(name),
        }
    }

    /// The token's record, for a token caller.
    pub fn token(&self) -> Option<&Arc<TokenRecord>> {
        match self {
            Caller::Trusted => None,
            Caller::Token(t) => Some(t),
        }
    }
}

/// What a request needs, declared once per request type ([`Guarded`]).
#[derive(Debug, Default)]
pub struct Access<'a> {
    /// The session the request names; empty: a token of any session will do.
    pub session: &'a str,
    /// Variables it reads.
    pub reads: Vec<&'a str>,
    /// Variables it writes (needs a token that is not read-only).
    pub writes: Vec<&'a str>,
    /// Changes session state other than variables (registrations, locks, callbacks).
    pub mutates: bool,
    /// Runs or registers tools or callbacks.
    pub tools: bool,
    /// Runs framework operations or resources.
    pub operations: bool,
    /// Needs the session's whole authority (e.g. destroying it).
    pub full: bool,
}

/// A request type's access rule (see `engine::rules`).
pub trait Guarded {
    /// What this request needs.
    fn access(&self) -> Access<'_>;
}

/// A token minted for a worker's calls back into the engine while it serves one call;
/// revoked (with anything derived from it) when dropped.
pub struct OperationToken {
    /// The token text, for the worker.
    pub token: String,
    id: String,
    session_id: String,
    auth: Auth,
}

impl Drop for OperationToken {
    fn drop(&mut self) {
        let store = Arc::clone(&self.auth.store);
        let (session_id, id) = (self.session_id.clone(), self.id.clone());
        let revoke = async move {
            let tokens = store.session(&session_id).await?;
            store.remove(&session_id, &subtree(&tokens, &id)).await
        };
        // Outside a runtime nothing runs streams or calls back; the token then ends with
        // its expiry.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = revoke.await {
                    tracing::warn!("revoking an operation's token failed: {}", error.message);
                }
            });
        }
    }
}

impl std::fmt::Debug for OperationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token text.
        f.debug_struct("OperationToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The engine's tokens: issuing, checking, minting, revoking.
#[derive(Debug, Clone)]
pub struct Auth {
    mode: AuthMode,
    store: Arc<dyn TokenStore>,
}

fn unauthenticated(message: &str) -> BridgeError {
    BridgeError::new(ErrorKind::Unauthenticated, message)
}

/// The one answer for a token that does not open the session it names, whatever the
/// reason (unknown, expired, revoked, another session's, a session that does not exist),
/// so that the answer tells nothing about other sessions.
pub(crate) fn not_valid() -> BridgeError {
    unauthenticated("the bearer token is not valid for this session")
}

/// The answer of a store whose session holds [`MAX_TOKENS_PER_SESSION`] live tokens.
pub(crate) fn token_limit_reached() -> BridgeError {
    BridgeError::new(
        ErrorKind::PermissionDenied,
        format!("the session holds {MAX_TOKENS_PER_SESSION} tokens, its limit; revoke some first"),
    )
    .with("limit", MAX_TOKENS_PER_SESSION)
}

fn denied(message: String) -> BridgeError {
    BridgeError::new(ErrorKind::PermissionDenied, message)
}

/// `bytes` random bytes from the OS, as hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)
        .map_err(|e| BridgeError::internal(format!("no randomness for a token: {e}")))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// `(id, secret)` of a well-formed token text.
fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_HEX) && hex(secret, SECRET_HEX)).then_some((id, secret))
}

/// The bearer token of a request's `authorization` metadata: `Ok(None)` when there is
/// none, `UNAUTHENTICATED` when it is not `Bearer <token>`.
pub fn bearer(metadata: &tonic::metadata::MetadataMap) -> Result<Option<String>> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| unauthenticated("the `authorization` metadata is malformed"))?;
    let token = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .ok_or_else(|| unauthenticated("the `authorization` metadata must be `Bearer <token>`"))?;
    Ok(Some(token.trim().to_owned()))
}

impl Auth {
    /// Tokens kept in memory, checked or not per `mode`.
    pub fn new(mode: AuthMode) -> Self {
        Auth::with_store(mode, Arc::new(MemoryTokens::default()))
    }

    /// Tokens kept in `store`.
    pub fn with_store(mode: AuthMode, store: Arc<dyn TokenStore>) -> Self {
        Auth { mode, store }
    }

    /// Whether tokens are checked.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Drops each session's tokens as the state backend reports it ended.
    pub fn follow_sessions(&self, mut events: crate::state::SessionEvents) {
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(crate::state::SessionEvent::Ended { session_id, .. }) => {
                        store.forget_session(&session_id);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Drops a session's tokens (ending their streams): it ended, or its id is reused.
    pub fn forget_session(&self, session_id: &str) {
        self.store.forget_session(session_id);
    }

    /// Issues the owner token of a session just created. Tokens left under the same id
    /// by an earlier session are dropped first, so they cannot open the new one.
    pub async fn issue_owner(&self, session_id: &str) -> Result<(String, String)> {
        self.store.forget_session(session_id);
        let (token, record) = self.new_token(session_id, None, Scope::default(), None, "owner")?;
        let id = record.id.clone();
        self.store.insert(record).await?;
        Ok((token, id))
    }

    fn new_token(
        &self,
        session_id: &str,
        parent: Option<String>,
        scope: Scope,
        expires_at: Option<SystemTime>,
        label: &str,
    ) -> Result<(String, Arc<TokenRecord>)> {
        let id = random_hex(ID_HEX / 2)?;
        let secret = random_hex(SECRET_HEX / 2)?;
        let record = Arc::new(TokenRecord {
            id: id.clone(),
            session_id: session_id.to_owned(),
            parent,
            hash: digest(&secret),
            scope,
            expires_at,
            created_at: SystemTime::now(),
            label: label.to_owned(),
            revoked: tokio::sync::watch::channel(None).0,
        });
        Ok((format!("{PREFIX}{id}_{secret}"), record))
    }

    /// The record of `token` if it is a live token of `session_id`.
    async fn check(&self, session_id: &str, token: &str) -> Result<Arc<TokenRecord>> {
        let (id, secret) =
            parse(token).ok_or_else(|| unauthenticated("the bearer token is malformed"))?;
        let record = self
            .store
            .get(session_id, id)
            .await?
            .ok_or_else(not_valid)?;
        let matches: bool = digest(secret).ct_eq(&record.hash).into();
        if !matches || record.expired(SystemTime::now()) {
            return Err(not_valid());
        }
        Ok(record)
    }

    /// The caller of a request, or `UNAUTHENTICATED` / `PERMISSION_DENIED` per its
    /// [`Access`]. Session-less requests (`Ping`, `DescribeAdapters`) take a valid token
    /// of any session.
    pub async fn authorize<T: Guarded + Sync>(
        &self,
        request: &tonic::Request<T>,
    ) -> Result<Caller> {
        let in_process = request.extensions().get::<InProcessCall>().is_some();
        if self.mode == AuthMode::Off {
            return Ok(Caller::Trusted);
        }
        let token = bearer(request.metadata())?;
        let token = match token {
            Some(token) => token,
            None if in_process => return Ok(Caller::Trusted),
            None => {
                return Err(unauthenticated(
                    "this engine requires a bearer token in the `authorization` metadata",
                ));
            }
        };
        let access = request.get_ref().access();
        let record = if access.session.is_empty() {
            self.check_any(&token).await?
        } else {
            self.check(access.session, &token).await?
        };
        permit(&record.scope, &access)?;
        Ok(Caller::Token(record))
    }

    /// A token valid for some session, for calls that name none.
    async fn check_any(&self, token: &str) -> Result<Arc<TokenRecord>> {
        let (id, _) =
            parse(token).ok_or_else(|| unauthenticated("the bearer token is malformed"))?;
        let session = self.store.session_of(id).await?.ok_or_else(not_valid)?;
        self.check(&session, token).await
    }

    /// Mints a token under `parent` (the caller's token; `None`: the session's owner).
    pub async fn mint(
        &self,
        session_id: &str,
        parent: Option<&Arc<TokenRecord>>,
        request: &pb::MintTokenRequest,
    ) -> Result<pb::MintTokenResponse> {
        let parent = match parent {
            Some(parent) => Arc::clone(parent),
            None => self
                .store
                .session(session_id)
                .await?
                .into_iter()
                .find(|t| t.parent.is_none())
                .ok_or_else(|| BridgeError::session_not_found(session_id))?,
        };
        let asked = request.scope.clone().unwrap_or_default();
        let scope = parent.scope.derive(&asked)?;
        let ttl = asked
            .ttl
            .map(|d| {
                crate::engine::non_negative(d)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        BridgeError::invalid_argument("scope.ttl", "`scope.ttl` must be positive")
                    })
            })
            .transpose()?;
        let now = SystemTime::now();
        let asked_end = ttl.map(|ttl| now + ttl.min(Duration::from_secs(10 * 365 * 86_400)));
        let expires_at = match (asked_end, parent.expires_at) {
            (Some(a), Some(p)) => Some(a.min(p)),
            (a, p) => a.or(p),
        };
        let (token, record) = self.new_token(
            session_id,
            Some(parent.id.clone()),
            scope,
            expires_at,
            &request.label,
        )?;
        let info = record.info();
        self.store.insert(record).await?;
        Ok(pb::MintTokenResponse {
            token,
            info: Some(info),
        })
    }

    /// Mints a child of the caller's token with its scope, for a worker acting on the
    /// caller's behalf: it ends after `ttl` (unset: with its parent) and is revoked when
    /// the returned guard drops. `None` when no token is needed (a trusted caller).
    pub async fn mint_for_operation(
        &self,
        caller: &Caller,
        ttl: Option<Duration>,
    ) -> Result<Option<OperationToken>> {
        let Some(parent) = caller.token() else {
            return Ok(None);
        };
        let request = pb::MintTokenRequest {
            session_id: parent.session_id.clone(),
            scope: Some(pb::TokenScope {
                ttl: ttl.and_then(|ttl| prost_types::Duration::try_from(ttl).ok()),
                ..Default::default()
            }),
            label: "operation".to_owned(),
        };
        let minted = self
            .mint(&parent.session_id, Some(parent), &request)
            .await?;
        Ok(Some(OperationToken {
            token: minted.token,
            id: minted.info.map(|i| i.token_id).unwrap_or_default(),
            session_id: parent.session_id.clone(),
            auth: self.clone(),
        }))
    }

    /// Revokes `token_id` and its descendants. The caller must be that token or one of
    /// its ancestors (a trusted caller may revoke any).
    pub async fn revoke(
        &self,
        session_id: &str,
        caller: &Caller,
        token_id: &str,
    ) -> Result<Vec<String>> {
        let tokens = self.store.session(session_id).await?;
        if !tokens.iter().any(|t| t.id == token_id) {
            return Ok(Vec::new());
        }
        if let Some(me) = caller.token()
            && !subtree(&tokens, &me.id).iter().any(|id| id == token_id)
        {
            return Err(denied(
                "a token may revoke only itself and the tokens derived from it".to_owned(),
            )
            .with("token_id", token_id));
        }
        let ids = subtree(&tokens, token_id);
        self.store.remove(session_id, &ids).await?;
        Ok(ids)
    }

    /// The caller's token and its descendants (a trusted caller: all), oldest first.
    pub async fn list(&self, session_id: &str, caller: &Caller) -> Result<Vec<pb::TokenInfo>> {
        let tokens = self.store.session(session_id).await?;
        let now = SystemTime::now();
        let mut shown: Vec<&Arc<TokenRecord>> = match caller.token() {
            Some(me) => {
                let ids = subtree(&tokens, &me.id);
                tokens.iter().filter(|t| ids.contains(&t.id)).collect()
            }
            None => tokens.iter().collect(),
        };
        shown.retain(|t| !t.expired(now));
        shown.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(shown.into_iter().map(|t| t.info()).collect())
    }
}

/// `root` and every token derived from it, directly or not.
fn subtree(tokens: &[Arc<TokenRecord>], root: &str) -> Vec<String> {
    let mut ids = vec![root.to_owned()];
    let mut i = 0;
    while i < ids.len() {
        let current = ids[i].clone();
        ids.extend(
            tokens
                .iter()
                .filter(|t| t.parent.as_deref() == Some(current.as_str()))
                .map(|t| t.id.clone()),
        );
        i += 1;
    }
    ids
}

/// `PERMISSION_DENIED` unless `scope` allows everything `access` needs.
fn permit(scope: &Scope, access: &Access<'_>) -> Result<()> {
    if access.full && !scope.is_full() {
        return Err(denied(
            "this call needs the session's owner authority; the token is narrower".to_owned(),
        ));
    }
    if scope.read_only && (access.mutates || !access.writes.is_empty()) {
        return Err(denied("the token is read-only".to_owned()));
    }
    if access.tools && scope.deny_tools {
        return Err(denied(
            "the token may not use tools or callbacks".to_owned(),
        ));
    }
    if access.operations && scope.deny_operations {
        return Err(denied(
            "the token may not run framework operations or resources".to_owned(),
        ));
    }
    for name in access.reads.iter().chain(&access.writes) {
        if !scope.covers(name) {
            return Err(denied(format!(
                "the token's scope does not cover variable `{}`",
                clip(name)
            ))
            .with("variable", clip(name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_parse_only_in_their_format() {
        let auth = Auth::new(AuthMode::Required);
        let (token, _) = auth.issue_owner("s").await.unwrap();
        assert!(token.starts_with("mlb_"));
        assert!(parse(&token).is_some());
        for bad in ["", "mlb_", "mlb_x_y", "Bearer", &token[..token.len() - 1]] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn globs_within() {
        assert!(within("a.*", "*"));
        assert!(within("a.b*", "a.*"));
        assert!(within("a.x", "a.*"));
        assert!(!within("b.*", "a.*"));
        assert!(!within("*", "a.*"));
        assert!(!within("a?", "a.*"));
    }

    #[test]
    fn a_child_is_never_wider() {
        let parent = Scope {
            read_only: true,
            variables: vec![("a.*".to_owned(), Glob::new("a.*").unwrap())],
            deny_tools: true,
            deny_operations: false,
        };
        let child = parent.derive(&pb::TokenScope::default()).unwrap();
        assert!(child.read_only && child.deny_tools && !child.covers("b"));
        let wider = pb::TokenScope {
            variables: vec!["*".to_owned()],
            ..Default::default()
        };
        assert_eq!(
            parent.derive(&wider).unwrap_err().kind,
            ErrorKind::PermissionDenied
        );
    }

    #[tokio::test]
    async fn the_token_limit_holds() {
        let auth = Auth::new(AuthMode::Required);
        auth.issue_owner("s").await.unwrap();
        let request = pb::MintTokenRequest {
            session_id: "s".to_owned(),
            ..Default::default()
        };
        for _ in 1..MAX_TOKENS_PER_SESSION {
            auth.mint("s", None, &request).await.unwrap();
        }
        let error = auth.mint("s", None, &request).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::PermissionDenied);
    }

    #[tokio::test]
    async fn a_stored_record_comes_back_the_same() {
        let auth = Auth::new(AuthMode::Required);
        auth.issue_owner("s").await.unwrap();
        let request = pb::MintTokenRequest {
            session_id: "s".to_owned(),
            scope: Some(pb::TokenScope {
                read_only: true,
                variables: vec!["a.*".to_owned()],
                deny_tools: true,
                deny_operations: true,
                ttl: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
            }),
            label: "dashboard".to_owned(),
        };
        let minted = auth.mint("s", None, &request).await.unwrap();
        let id = minted.info.unwrap().token_id;
        let record = auth.store.get("s", &id).await.unwrap().unwrap();
        let back = TokenRecord::from_stored("s", record.to_stored()).unwrap();
        assert_eq!(back.info(), record.info());
        assert_eq!(back.hash, record.hash);
        assert_eq!(back.parent, record.parent);
        assert!(back.scope.read_only && !back.scope.covers("b") && back.scope.covers("a.x"));
    }

    #[tokio::test]
    async fn a_token_minted_from_a_parent_revoked_meanwhile_is_refused() {
        let auth = Auth::new(AuthMode::Required);
        auth.issue_owner("s").await.unwrap();
        let request = pb::MintTokenRequest {
            session_id: "s".to_owned(),
            ..Default::default()
        };
        let parent = auth.mint("s", None, &request).await.unwrap();
        let parent_id = parent.info.unwrap().token_id;
        // The caller's check passed with this record; the parent is revoked before the mint.
        let checked = auth.store.get("s", &parent_id).await.unwrap().unwrap();
        auth.revoke("s", &Caller::Trusted, &parent_id)
            .await
            .unwrap();
        let error = auth.mint("s", Some(&checked), &request).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Unauthenticated);
        let left = auth.list("s", &Caller::Trusted).await.unwrap();
        assert_eq!(left.len(), 1, "only the owner is left: {left:?}");
    }
}
