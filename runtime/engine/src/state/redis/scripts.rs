//! The Lua scripts of the Redis backend: one per kind of step, each a single atomic step on
//! the keys of one session (all hash-tagged `{session}`, so that they share a cluster
//! slot). Scripts validate before they write: a commit checks the session is live and
//! unchanged since it was read, and only then writes. The rules themselves (types,
//! constraints, versions, locks) are judged in Rust before the commit.
//!
//! Every session script gets `KEYS = meta, vars, feed, gone[, request]` and
//! `ARGV[1..3] = grace_ms, linger_ms, remember_ms`; its own arguments follow.

use redis::Script;

/// Shared Lua functions, prepended to every session script.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Ends the session: its state goes, its feed gets an end marker `<seq>-1` (after every
-- change, without taking a sequence number) and lingers so that watchers everywhere read
-- it; an expiry is remembered so that later calls answer SESSION_EXPIRED.
local function finish(why)
  local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('XADD', KEYS[3], seq .. '-1', 'end', why)
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
  if why == 'expired' then
    redis.call('SET', KEYS[4], why, 'PX', ARGV[3])
  else
    redis.call('DEL', KEYS[4])
  end
end
-- nil when the session is live (and, with `touch`, marks activity and pushes back the
-- keys' expiry); else why it is not: 'ended' (it ran out its TTL just now), 'expired'
-- (earlier) or 'missing'. Activity is marked at most once per hundredth of the TTL (and at
-- least once a second): a read that marks it is a write, appended (and with
-- `appendfsync always`, synced) to Redis's log, so a busy session's reads would each cost
-- a disk sync. A session may so expire up to that much before its last call + TTL.
local function live(touch)
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.call('GET', KEYS[4]) or 'missing'
  end
  local now = now_ms()
  local m = redis.call('HMGET', KEYS[1], 'active', 'ttl')
  local ttl = tonumber(m[2])
  if tonumber(m[1]) + ttl <= now then
    finish('expired')
    return 'ended'
  end
  if touch and now - tonumber(m[1]) >= math.min(1000, math.floor(ttl / 100)) then
    redis.call('HSET', KEYS[1], 'active', now)
    local keep = ttl + tonumber(ARGV[1])
    redis.call('PEXPIRE', KEYS[1], keep)
    redis.call('PEXPIRE', KEYS[2], keep)
    redis.call('PEXPIRE', KEYS[3], keep)
  end
  return nil
end
"#;

/// Reads a session (marking activity): `ARGV[4]` is `meta`, `get` (names follow) or
/// `all`. Answers `{status}` or `{'ok', seq, rev, inc, created, active, ttl, info, locks,
/// variable count, values...}` (`''` for a missing name).
const READ: &str = r#"
local gone = live(true)
if gone then return {gone} end
local m = redis.call('HMGET', KEYS[1], 'seq', 'rev', 'inc', 'created', 'active', 'ttl', 'info', 'locks')
local out = {'ok', m[1], m[2], m[3], m[4], m[5], m[6], m[7] or '', m[8] or '', redis.call('HLEN', KEYS[2])}
if ARGV[4] == 'get' then
  for i = 5, #ARGV do
    out[#out + 1] = redis.call('HGET', KEYS[2], ARGV[i]) or ''
  end
elseif ARGV[4] == 'all' then
  local values = redis.call('HVALS', KEYS[2])
  for i = 1, #values do out[#out + 1] = values[i] end
end
return out
"#;

/// Commits a step judged in Rust, once per request id (`KEYS[5]`). ARGV: 4 incarnation,
/// 5 revision read, 6 request-id ttl, 7 reply, 8 `commit` or `fence`, 9 new sequence,
/// 10 `1` when the locks change, 11 locks, 12 feed retention, 13..15 counts of variables
/// set, deleted and feed entries, then `name, bytes` pairs, names, `id, update` pairs.
/// Answers `{'done', reply}` when the request was already answered, `{status}` when the
/// session is gone, `{'conflict'}` when it changed since it was read, `{'fenced'}` or
/// `{'ok'}`.
const COMMIT: &str = r#"
local done = redis.call('GET', KEYS[5])
if done then return {'done', done} end
if ARGV[8] == 'fence' then
  -- A request whose earlier attempt may still arrive: make sure it never applies.
  redis.call('SET', KEYS[5], '', 'PX', ARGV[6])
  return {'fenced'}
end
local gone = live(true)
if gone then return {gone} end
local m = redis.call('HMGET', KEYS[1], 'inc', 'rev', 'seq')
local n_set, n_del, n_feed = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
if m[1] ~= ARGV[4] or m[2] ~= ARGV[5] or tonumber(m[3]) + n_feed ~= tonumber(ARGV[9]) then
  return {'conflict'}
end
local i = 16
for _ = 1, n_set do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, n_del do
  redis.call('HDEL', KEYS[2], ARGV[i])
  i = i + 1
end
for _ = 1, n_feed do
  redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[12], ARGV[i], 'u', ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', KEYS[1], 'seq', ARGV[9], 'rev', tonumber(m[2]) + 1)
if ARGV[10] == '1' then redis.call('HSET', KEYS[1], 'locks', ARGV[11]) end
redis.call('SET', KEYS[5], ARGV[7], 'PX', ARGV[6])
local keep = tonumber(redis.call('HGET', KEYS[1], 'ttl')) + tonumber(ARGV[1])
redis.call('PEXPIRE', KEYS[2], keep)
redis.call('PEXPIRE', KEYS[3], keep)
return {'ok'}
"#;

/// Creates a session unless a live one has the id. ARGV: 4 incarnation, 5 ttl ms, 6 info.
/// Answers `{'exists'}` or `{'created'}`.
const CREATE: &str = r#"
if not live(true) then return {'exists'} end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
local now = now_ms()
redis.call('HSET', KEYS[1], 'inc', ARGV[4], 'created', now, 'active', now, 'ttl', ARGV[5],
  'info', ARGV[6], 'seq', 0, 'rev', 0, 'locks', '')
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]) + tonumber(ARGV[1]))
return {'created'}
"#;

/// Removes a session. Answers `{'missing'}` or `{'removed', variable count}`.
const REMOVE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local n = redis.call('HLEN', KEYS[2])
finish('removed')
return {'removed', n}
"#;

/// The sweeper's check. Answers `{'missing'}`, `{'expired'}`, `{'ended'}` (expired by
/// this call) or `{'alive', expires_at_ms}`.
const SWEEP: &str = r#"
local gone = live(false)
if gone then return {gone} end
local m = redis.call('HMGET', KEYS[1], 'active', 'ttl')
return {'alive', tonumber(m[1]) + tonumber(m[2])}
"#;

/// Adds a token record to a live session (in its meta hash, field `t:<id>`, so that it goes
/// with the session), unless the session holds `limit` already or the record's parent is
/// gone (revoked meanwhile, perhaps through another engine). ARGV: 4 id, 5 record, 6
/// limit, 7 parent id (empty for an owner token). Answers `{status}`, `{'full'}`,
/// `{'orphan'}` or `{'ok'}`.
const TOKEN_ADD: &str = r#"
local gone = live(true)
if gone then return {gone} end
if ARGV[7] ~= '' and redis.call('HEXISTS', KEYS[1], 't:' .. ARGV[7]) == 0 then
  return {'orphan'}
end
if tonumber(redis.call('HGET', KEYS[1], 'tcount') or '0') >= tonumber(ARGV[6]) then
  return {'full'}
end
if redis.call('HSETNX', KEYS[1], 't:' .. ARGV[4], ARGV[5]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'tcount', 1)
end
return {'ok'}
"#;

/// Reads token records of a live session. ARGV: 4 `one` (5: the id) or `all`. Answers
/// `{status}` or `{'ok', revision, records...}` (`''` for a missing id); the revision
/// counts the removals so far.
const TOKEN_READ: &str = r#"
local gone = live(false)
if gone then return {gone} end
local out = {'ok', redis.call('HGET', KEYS[1], 'trev') or '0'}
if ARGV[4] == 'one' then
  out[3] = redis.call('HGET', KEYS[1], 't:' .. ARGV[5]) or ''
else
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 't:' then out[#out + 1] = all[i + 1] end
  end
end
return out
"#;

/// Removes token records (ids from ARGV[4]) and counts the removal. Answers `{status}` or
/// `{'ok', revision}`.
const TOKEN_REMOVE: &str = r#"
local gone = live(false)
if gone then return {gone} end
local removed = 0
for i = 4, #ARGV do
  removed = removed + redis.call('HDEL', KEYS[1], 't:' .. ARGV[i])
end
redis.call('HINCRBY', KEYS[1], 'tcount', -removed)
return {'ok', redis.call('HINCRBY', KEYS[1], 'trev', 1)}
"#;

/// The backend's scripts, loaded on first use and again after NOSCRIPT (a Redis restart or
/// `SCRIPT FLUSH`): `redis::Script` sends EVALSHA and falls back to loading the script.
#[derive(Debug)]
pub(super) struct Scripts {
    /// [`READ`].
    pub read: Script,
    /// [`COMMIT`].
    pub commit: Script,
    /// [`CREATE`].
    pub create: Script,
    /// [`REMOVE`].
    pub remove: Script,
    /// [`SWEEP`].
    pub sweep: Script,
    /// [`TOKEN_ADD`].
    pub token_add: Script,
    /// [`TOKEN_READ`].
    pub token_read: Script,
    /// [`TOKEN_REMOVE`].
    pub token_remove: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        let script = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            read: script(READ),
            commit: script(COMMIT),
            create: script(CREATE),
            remove: script(REMOVE),
            sweep: script(SWEEP),
            token_add: script(TOKEN_ADD),
            token_read: script(TOKEN_READ),
            token_remove: script(TOKEN_REMOVE),
        }
    }
}
