//! Channel history in Redis (SPEC section 16, "Cluster"): the Lua scripts, what is kept where,
//! and the checks on what Redis answers. The router's side is `src/router/history_cluster.rs`.
//!
//! Keys, under the cluster's namespace: the hash `NS:history:m:CHANNEL` (`e` the epoch, `s` the
//! newest offset, `g` the generation it was made in), kept 24 h after the channel's last
//! publication (it outlives the publications, as SPEC asks); the stream `NS:history:s:CHANNEL`
//! (entry id `OFFSET-0`, fields `t` the publication's time in ms by Redis's clock and `d` the
//! JSON of its Rakit frame), trimmed to `history_size` and expiring `history_ttl` after the last
//! publication; and `NS:history:gen`, a counter that makes every stream of an older generation
//! count as lost (used when a node published to too many channels unstored during an outage).
//!
//! One script per publication ([`PUBLISH`]) reads the epoch and offset, gives the publication
//! the next offset, stores it and publishes it on the bus, atomically: Redis runs scripts one at
//! a time, so every node hears a channel's publications in offset order. A stream is *lost*, and
//! gets a new epoch (the node's random candidate) with offsets from 1, when its hash is gone
//! (eviction, `FLUSHALL`, a restart without persistence), belongs to an older generation, or
//! when the stream cannot be extended (it is ahead of the hash, or not a stream: the
//! `allkeys-lfu` case of centrifugo#888). The read script ([`READ`]) makes the same check, so a
//! subscriber is never told an epoch that the next publication would replace; it creates the
//! hash of a channel nobody published to (it expires in 24 h).
//!
//! Everything Redis answers is checked before use ([`parse_read`]): sizes within what was
//! asked, offsets ascending and within the stream, epochs that can go into JSON unescaped, JSON
//! that parses; anything else is an error, which the router answers as Redis being unavailable
//! (`recovered: false`, never a wrong replay).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;

use super::resp::Value;
use crate::history::META_TTL;
use crate::history::{is_valid_epoch, Position, Query, Read, Retention, Since, Snapshot, Stored};
use crate::router::Frame;

/// Numbers, stores and publishes one publication (see the module docs).
///
/// `KEYS`: hash, stream, generation. `ARGV`: epoch candidate, size, ttl (s), hash ttl (s), bus
/// channel, envelope head (`envelope::history_head`), user id, the JSON without its closing
/// brace. Returns the offset.
pub const PUBLISH: &str = r#"
local gen = redis.call('get', KEYS[3]) or '0'
local m = redis.pcall('hmget', KEYS[1], 'e', 's', 'g')
local epoch, offset = nil, nil
if type(m) == 'table' and not m.err then epoch = m[1]; offset = tonumber(m[2]) end
if not epoch or not offset or m[3] ~= gen or offset >= 1e14 then
  redis.call('del', KEYS[1], KEYS[2])
  epoch = ARGV[1]
  offset = 0
end
offset = offset + 1
local t = redis.call('time')
local ms = t[1] * 1000 + math.floor(t[2] / 1000)
local json = ARGV[8] .. ',"offset":' .. offset .. ',"epoch":"' .. epoch .. '"}'
local added = redis.pcall('xadd', KEYS[2], 'MAXLEN', ARGV[2], offset .. '-0', 't', ms, 'd', json)
if type(added) == 'table' and added.err then
  redis.call('del', KEYS[2])
  epoch = ARGV[1]
  offset = 1
  json = ARGV[8] .. ',"offset":1,"epoch":"' .. epoch .. '"}'
  redis.call('xadd', KEYS[2], 'MAXLEN', ARGV[2], '1-0', 't', ms, 'd', json)
end
redis.call('hset', KEYS[1], 'e', epoch, 's', offset, 'g', gen)
redis.call('expire', KEYS[1], ARGV[4])
redis.call('expire', KEYS[2], ARGV[3])
redis.call('publish', ARGV[5], ARGV[6] .. offset .. '\n' .. epoch .. '\n' .. ARGV[7] .. json)
return offset
"#;

/// Reads a stream (see the module docs).
///
/// `KEYS`: hash, stream, generation. `ARGV`: epoch candidate, hash ttl (s), mode (`p` the
/// position, `r` a recovery, `n` the newest, `a` the first after), since, since + 1, since's
/// epoch, count (a recovery's most: `history_size`), the most bytes of JSON.
/// Returns `{epoch, offset, now_ms, complete, entries}`; `complete` 0 when a recovery cannot
/// be answered (another epoch, an offset never reached, too many or too large).
pub const READ: &str = r#"
local gen = redis.call('get', KEYS[3]) or '0'
local m = redis.pcall('hmget', KEYS[1], 'e', 's', 'g')
local epoch, offset = nil, nil
if type(m) == 'table' and not m.err then epoch = m[1]; offset = tonumber(m[2]) end
if not epoch or not offset or m[3] ~= gen or offset >= 1e14 then
  redis.call('del', KEYS[1], KEYS[2])
  epoch = ARGV[1]
  offset = 0
  redis.call('hset', KEYS[1], 'e', epoch, 's', 0, 'g', gen)
end
redis.call('expire', KEYS[1], ARGV[2])
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local mode = ARGV[3]
local count = tonumber(ARGV[7])
local entries = {}
if mode == 'r' then
  local since = tonumber(ARGV[4])
  if ARGV[6] ~= epoch or since > offset or offset - since > count then
    return {epoch, offset, now, 0, {}}
  end
  if since < offset then
    entries = redis.call('xrange', KEYS[2], ARGV[5], '+', 'COUNT', offset - since)
  end
  local bytes = 0
  for _, e in ipairs(entries) do
    for i = 2, #e[2], 2 do bytes = bytes + #e[2][i] end
  end
  if bytes > tonumber(ARGV[8]) then return {epoch, offset, now, 0, {}} end
elseif mode == 'n' then
  entries = redis.call('xrevrange', KEYS[2], '+', '-', 'COUNT', count)
elseif mode == 'a' then
  if tonumber(ARGV[4]) < offset then
    entries = redis.call('xrange', KEYS[2], ARGV[5], '+', 'COUNT', count)
  end
end
return {epoch, offset, now, 1, entries}
"#;

/// The hash, the stream and the generation key of `channel`.
pub fn keys(ns: &str, channel: &str) -> [String; 3] {
    [
        format!("{ns}:history:m:{channel}"),
        format!("{ns}:history:s:{channel}"),
        generation_key(ns),
    ]
}

/// The generation counter.
pub fn generation_key(ns: &str) -> String {
    format!("{ns}:history:gen")
}

/// `ARGV` of [`READ`] for `read`, after the epoch candidate and hash ttl.
pub fn read_args(read: &Read, keep: Retention, max_bytes: usize) -> [String; 6] {
    let next = |n: u64| n.saturating_add(1).to_string();
    let max = max_bytes.min(i64::MAX as usize).to_string();
    match read {
        Read::Position => [
            "p".into(),
            "0".into(),
            "1".into(),
            String::new(),
            "0".into(),
            max,
        ],
        Read::Recover(Since { offset, epoch }) => [
            "r".into(),
            offset.to_string(),
            next(*offset),
            epoch.clone(),
            keep.size.to_string(),
            max,
        ],
        Read::Query(Query::Newest(limit)) => [
            "n".into(),
            "0".into(),
            "1".into(),
            String::new(),
            limit.to_string(),
            max,
        ],
        Read::Query(Query::After { since, limit }) => [
            "a".into(),
            since.to_string(),
            next(*since),
            String::new(),
            limit.to_string(),
            max,
        ],
    }
}

/// Checks Redis's answer to [`READ`] for `read` and makes it a [`Snapshot`]; `None` for an
/// error or anything that is not what the script returns (see the module docs).
pub fn parse_read(
    value: &Value,
    read: &Read,
    keep: Retention,
    max_bytes: usize,
) -> Option<Snapshot> {
    let [epoch, offset, now, complete, entries] = value.as_array()? else {
        return None;
    };
    let epoch = epoch.as_bytes().filter(|e| is_valid_epoch(e))?;
    let epoch = std::str::from_utf8(epoch).ok()?;
    let offset = u64::try_from(integer(offset)?).ok()?;
    let now = u64::try_from(integer(now)?).ok()?;
    let complete = match integer(complete)? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let entries = entries.as_array()?;
    let most = match read {
        Read::Position => 0,
        Read::Recover(_) => keep.size,
        Read::Query(query) => query.limit(),
    };
    if entries.len() > most {
        return None;
    }
    let ttl_ms = u64::try_from(keep.ttl.as_millis()).unwrap_or(u64::MAX);
    let descending = matches!(read, Read::Query(Query::Newest(_)));
    let mut list: Vec<Stored> = Vec::with_capacity(entries.len());
    let mut expired = false;
    for entry in entries {
        let (at, stored) = parse_entry(entry)?;
        if stored.offset == 0 || stored.offset > offset {
            return None;
        }
        if let Some(last) = list.last() {
            let ordered = if descending {
                stored.offset < last.offset
            } else {
                stored.offset > last.offset
            };
            if !ordered {
                return None;
            }
        }
        if at.saturating_add(ttl_ms) <= now {
            expired = true;
            continue;
        }
        list.push(stored);
    }
    if descending {
        list.reverse();
    }
    let position = Position {
        offset,
        epoch: epoch.into(),
    };
    let publications = match read {
        Read::Recover(since) => {
            let wanted = offset.checked_sub(since.offset);
            let exact = complete
                && !expired
                && since.epoch == epoch
                && wanted == Some(list.len() as u64)
                && list
                    .iter()
                    .zip(since.offset + 1..)
                    .all(|(s, want)| s.offset == want)
                && list.iter().map(|s| s.json.len()).sum::<usize>() <= max_bytes;
            exact.then_some(list)
        }
        Read::Position | Read::Query(_) => Some(list),
    };
    Some(Snapshot {
        position,
        publications,
    })
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(n) => Some(*n),
        _ => None,
    }
}

/// One stream entry: `[ID, [t, MS, d, JSON]]` (fields in any order, others ignored).
fn parse_entry(entry: &Value) -> Option<(u64, Stored)> {
    let [id, fields] = entry.as_array()? else {
        return None;
    };
    let id = std::str::from_utf8(id.as_bytes()?).ok()?;
    let offset = id.strip_suffix("-0")?;
    if offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let offset: u64 = offset.parse().ok()?;
    let fields = fields.as_array()?;
    if fields.len() % 2 != 0 || fields.len() > 8 {
        return None;
    }
    let (mut at, mut json) = (None, None);
    for pair in fields.chunks(2) {
        match pair[0].as_bytes()? {
            b"t" => at = std::str::from_utf8(pair[1].as_bytes()?).ok()?.parse().ok(),
            b"d" => json = pair[1].as_bytes(),
            _ => {}
        }
    }
    let json = json?;
    // What goes to clients as a frame's text must be a JSON object.
    if json.first() != Some(&b'{') || serde_json::from_slice::<IgnoredAny>(json).is_err() {
        return None;
    }
    Some((
        at?,
        Stored {
            offset,
            json: json.to_vec(),
        },
    ))
}

/// A publication waiting for Redis to publish it back.
#[derive(Debug)]
pub(super) struct Publication {
    pub channel: String,
    /// Its frame without offset, for local delivery if it never comes back.
    pub frame: Frame,
    pub except: Option<String>,
    pub user: Option<String>,
    pub deadline: Instant,
}

/// A read waiting for Redis.
#[derive(Debug)]
pub(super) struct Reading {
    pub read: Read,
    pub keep: Retention,
    pub max_bytes: usize,
}

/// Publications sent to Redis at most waiting to come back; beyond it they are delivered here
/// unstored (Redis is that slow).
pub const MAX_PUBLISHING: usize = 16 * 1024;
/// Channels remembered as published to unstored; beyond it every stream gets a new epoch
/// (the generation counter) when Redis is back.
pub const MAX_UNSTORED: usize = 4096;

/// The cluster module's history state.
#[derive(Debug)]
pub(super) struct HistoryState {
    /// Our numbers for our publications (echoed back in their envelopes).
    pub next_seq: u64,
    pub publishing: HashMap<u64, Publication>,
    /// `(deadline, seq)` in the order sent (all share one timeout).
    pub publishing_order: VecDeque<(Instant, u64)>,
    /// Reads by the router's tag.
    pub reading: HashMap<u64, Reading>,
    pub reading_order: VecDeque<(Instant, u64)>,
    /// Channels published to while their publications could not be stored.
    pub unstored: HashSet<String>,
    /// More than [`MAX_UNSTORED`]: every stream gets a new epoch.
    pub overflow: bool,
    /// Random epoch candidates (xorshift64).
    pub rng: u64,
}

impl HistoryState {
    pub fn new(seed: u64) -> HistoryState {
        HistoryState {
            next_seq: 1,
            publishing: HashMap::new(),
            publishing_order: VecDeque::new(),
            reading: HashMap::new(),
            reading_order: VecDeque::new(),
            unstored: HashSet::new(),
            overflow: false,
            rng: seed | 1,
        }
    }

    /// A new epoch candidate.
    pub fn epoch(&mut self) -> String {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        crate::history::epoch_of(self.rng)
    }

    /// `channel` was published to without storing.
    pub fn unstored(&mut self, channel: &str) {
        if self.unstored.len() < MAX_UNSTORED {
            self.unstored.insert(channel.to_owned());
        } else if !self.unstored.contains(channel) {
            self.overflow = true;
        }
    }

    /// The earliest deadline of a publication or a read.
    pub fn deadline(&self) -> Option<Instant> {
        let publish = self.publishing_order.front().map(|&(at, _)| at);
        let read = self.reading_order.front().map(|&(at, _)| at);
        publish.into_iter().chain(read).min()
    }
}

/// How long a channel's hash lives after its last publication, in seconds.
pub fn meta_ttl() -> String {
    META_TTL.as_secs().to_string()
}

/// `ttl` in whole seconds, at least one.
pub fn seconds(ttl: Duration) -> String {
    ttl.as_secs().max(1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(s.as_bytes().to_vec()))
    }

    fn entry(offset: u64, at: i64) -> Value {
        Value::Array(Some(vec![
            bulk(&format!("{offset}-0")),
            Value::Array(Some(vec![
                bulk("t"),
                bulk(&at.to_string()),
                bulk("d"),
                bulk(&format!(r#"{{"type":"channel","data":{offset}}}"#)),
            ])),
        ]))
    }

    fn reply(epoch: &str, offset: i64, now: i64, complete: i64, entries: Vec<Value>) -> Value {
        Value::Array(Some(vec![
            bulk(epoch),
            Value::Integer(offset),
            Value::Integer(now),
            Value::Integer(complete),
            Value::Array(Some(entries)),
        ]))
    }

    const KEEP: Retention = Retention {
        size: 10,
        ttl: Duration::from_secs(60),
    };

    fn recover(offset: u64, epoch: &str) -> Read {
        Read::Recover(Since {
            offset,
            epoch: epoch.into(),
        })
    }

    fn offsets(s: &Snapshot) -> Option<Vec<u64>> {
        s.publications
            .as_ref()
            .map(|p| p.iter().map(|s| s.offset).collect())
    }

    #[test]
    fn answers_are_read_into_snapshots() {
        let now = 1_000_000;
        let r = reply("E", 5, now, 1, vec![entry(4, now), entry(5, now)]);
        let s = parse_read(&r, &recover(3, "E"), KEEP, 1 << 20).unwrap();
        assert_eq!(s.position.offset, 5);
        assert_eq!(&*s.position.epoch, "E");
        assert_eq!(offsets(&s), Some(vec![4, 5]));
        // Newest first from XREVRANGE: oldest first here.
        let r = reply("E", 5, now, 1, vec![entry(5, now), entry(4, now)]);
        let s = parse_read(&r, &Read::Query(Query::Newest(2)), KEEP, 1 << 20).unwrap();
        assert_eq!(offsets(&s), Some(vec![4, 5]));
        // Expired ones are left out of a query, and make a recovery incomplete.
        let old = now - 61_000;
        let r = reply("E", 5, now, 1, vec![entry(5, now), entry(4, old)]);
        let s = parse_read(&r, &Read::Query(Query::Newest(2)), KEEP, 1 << 20).unwrap();
        assert_eq!(offsets(&s), Some(vec![5]));
        let r = reply("E", 5, now, 1, vec![entry(4, old), entry(5, now)]);
        assert_eq!(
            offsets(&parse_read(&r, &recover(3, "E"), KEEP, 1 << 20).unwrap()),
            None
        );
        // A gap, a short answer, the script's "cannot", another epoch, too many bytes.
        let r = reply("E", 5, now, 1, vec![entry(3, now), entry(5, now)]);
        assert_eq!(
            offsets(&parse_read(&r, &recover(2, "E"), KEEP, 1 << 20).unwrap()),
            None
        );
        let r = reply("E", 5, now, 1, vec![entry(5, now)]);
        assert_eq!(
            offsets(&parse_read(&r, &recover(3, "E"), KEEP, 1 << 20).unwrap()),
            None
        );
        let r = reply("E", 5, now, 0, vec![]);
        assert_eq!(
            offsets(&parse_read(&r, &recover(3, "E"), KEEP, 1 << 20).unwrap()),
            None
        );
        let r = reply("E", 5, now, 1, vec![entry(5, now)]);
        assert_eq!(
            offsets(&parse_read(&r, &recover(4, "F"), KEEP, 1 << 20).unwrap()),
            None
        );
        assert_eq!(
            offsets(&parse_read(&r, &recover(4, "E"), KEEP, 10).unwrap()),
            None
        );
        // Nothing missed.
        let r = reply("E", 5, now, 1, vec![]);
        assert_eq!(
            offsets(&parse_read(&r, &recover(5, "E"), KEEP, 1).unwrap()),
            Some(vec![])
        );
        let s = parse_read(&r, &Read::Position, KEEP, 0).unwrap();
        assert_eq!((s.position.offset, offsets(&s)), (5, Some(vec![])));
    }

    #[test]
    fn garbage_is_an_error_never_a_wrong_offset() {
        let now = 1_000_000;
        let read = Read::Query(Query::After { since: 0, limit: 3 });
        let good = || vec![entry(1, now), entry(2, now)];
        let bad = [
            Value::Error("ERR script".into()),
            Value::Integer(5),
            Value::Array(None),
            reply("E\"", 2, now, 1, good()),
            reply("", 2, now, 1, good()),
            reply("E", -1, now, 1, good()),
            reply("E", 2, -5, 1, good()),
            reply("E", 2, now, 2, good()),
            reply("E", 1, now, 1, good()),
            reply("E", 2, now, 1, vec![entry(2, now), entry(1, now)]),
            reply("E", 2, now, 1, vec![entry(1, now), entry(1, now)]),
            reply("E", 9, now, 1, vec![entry(0, now)]),
            reply("E", 9, now, 1, (1..=4).map(|n| entry(n, now)).collect()),
            reply("E", 9, now, 1, vec![bulk("1-0")]),
            reply(
                "E",
                9,
                now,
                1,
                vec![Value::Array(Some(vec![
                    bulk("1-1"),
                    Value::Array(Some(vec![])),
                ]))],
            ),
            reply(
                "E",
                9,
                now,
                1,
                vec![Value::Array(Some(vec![
                    bulk("1-0"),
                    Value::Array(Some(vec![bulk("t"), bulk("5"), bulk("d"), bulk("{nope")])),
                ]))],
            ),
            reply(
                "E",
                9,
                now,
                1,
                vec![Value::Array(Some(vec![
                    bulk("1-0"),
                    Value::Array(Some(vec![bulk("t"), bulk("5"), bulk("d"), bulk("[1]")])),
                ]))],
            ),
            reply(
                "E",
                9,
                now,
                1,
                vec![Value::Array(Some(vec![
                    bulk("1-0"),
                    Value::Array(Some(vec![bulk("d"), bulk("{}")])),
                ]))],
            ),
        ];
        for value in bad {
            assert_eq!(parse_read(&value, &read, KEEP, 1 << 20), None, "{value:?}");
        }
        assert!(parse_read(&reply("E", 2, now, 1, good()), &read, KEEP, 1 << 20).is_some());
    }

    #[test]
    fn read_arguments() {
        let args = read_args(&recover(u64::MAX, "E"), KEEP, usize::MAX);
        assert_eq!(args[0], "r");
        assert_eq!(args[1], u64::MAX.to_string());
        assert_eq!(args[2], u64::MAX.to_string(), "since + 1 saturates");
        assert_eq!(args[3], "E");
        assert_eq!(args[4], "10");
        assert_eq!(args[5], i64::MAX.to_string());
        let args = read_args(&Read::Query(Query::After { since: 4, limit: 7 }), KEEP, 9);
        assert_eq!(args, ["a", "4", "5", "", "7", "9"]);
    }
}
