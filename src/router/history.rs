//! The router's side of history and recovery (SPEC section 16): offsets and epochs on the
//! channel frames of history channels, `subscribed` with the position, subscribes with
//! `since`, and the `history` request (WebSocket and HTTP API).
//!
//! It hooks into the router at a few marked places: the fan-out (a publication on a history
//! channel gets its offset first, `fanout.rs`), the subscribe reply (`channel_presence.rs`),
//! the `history` event (`mod.rs`), the timers (`mod.rs`) and a departure (`history_cluster.rs`).
//!
//! On one node the streams are the sans-IO [`Store`]: everything is answered at once. In a
//! cluster they live in Redis and everything that reads them waits for its answer
//! (`history_cluster.rs`). A publication is encoded once: the frame with its offset and epoch
//! goes into the store and to every Rakit subscriber (the same `Rc`).

use std::borrow::Cow;
use std::rc::Rc;
use std::time::Instant;

use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::dialect::ChannelEvent;
use super::history_cluster::Reads;
use super::remote::payload;
use super::wire::{self, ErrorCode, Incoming, Out, Outgoing, Reject};
use super::{channel_name, ApiError, ConnId, Frame, Outbox, Router};
use crate::history::{Position, Query, Recovery, Retention, Since, Store, MAX_LIMIT};

/// Where the router's streams are.
#[derive(Debug)]
enum Mode {
    /// In this process (one node).
    Local(Store),
    /// In Redis, asked through the cluster module.
    Cluster(Reads),
}

/// The router's history (see the module docs).
#[derive(Debug)]
pub(crate) struct History {
    mode: Mode,
    /// Some namespace keeps history (else a publication does not even look).
    any: bool,
    /// A replay, or a `history` answer, over this many bytes is refused (`max_send_buffer`).
    max_bytes: usize,
    /// The time of a publication (the router's calls that publish carry none).
    clock: fn() -> Instant,
}

impl History {
    pub(crate) fn new(max_memory: usize, max_bytes: usize, seed: u64, any: bool) -> History {
        History {
            mode: Mode::Local(Store::new(max_memory, seed)),
            any,
            max_bytes,
            clock: Instant::now,
        }
    }

    /// In a cluster the streams are in Redis.
    pub(crate) fn use_redis(&mut self) {
        self.mode = Mode::Cluster(Reads::default());
    }

    pub(super) fn reads(&mut self) -> Option<&mut Reads> {
        match &mut self.mode {
            Mode::Cluster(reads) => Some(reads),
            Mode::Local(_) => None,
        }
    }

    pub(super) fn reads_ref(&self) -> Option<&Reads> {
        match &self.mode {
            Mode::Cluster(reads) => Some(reads),
            Mode::Local(_) => None,
        }
    }

    pub(super) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// When the store next expires something.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match &self.mode {
            Mode::Local(store) => store.next_deadline(),
            Mode::Cluster(_) => None,
        }
    }

    pub(super) fn sweep(&mut self, now: Instant) {
        if let Mode::Local(store) = &mut self.mode {
            store.sweep(now);
        }
    }

    /// The store, on one node (for tests and metrics).
    pub(crate) fn store(&self) -> Option<&Store> {
        match &self.mode {
            Mode::Local(store) => Some(store),
            Mode::Cluster(_) => None,
        }
    }
}

/// What became of a publication on a channel, for the fan-out.
pub(super) enum Published {
    /// Not a history channel (or Redis is down): deliver the section 5 frame.
    Plain,
    /// Stored here with its offset: deliver this frame.
    Stored(Option<Outgoing>),
    /// Sent to Redis, which gives it its offset; every node, this one included, delivers it
    /// when Redis publishes it (`history_cluster.rs`), so all deliver in offset order.
    Elsewhere,
}

/// The history part of a `subscribed` reply.
#[derive(Debug, Clone, Default)]
pub(super) struct SubscribedFields {
    pub recovered: Option<bool>,
    pub offset: Option<u64>,
    pub epoch: Option<Rc<str>>,
}

impl SubscribedFields {
    /// On a history channel: its position, and whether a `since` was recovered.
    pub(super) fn at(position: &Position, recovered: Option<bool>) -> SubscribedFields {
        SubscribedFields {
            recovered,
            offset: Some(position.offset),
            epoch: Some(Rc::clone(&position.epoch)),
        }
    }

    /// No position known: a channel without history, or Redis out of reach. `since` is
    /// answered `recovered: false` with offset 0 and epoch `""`.
    pub(super) fn unknown(since: bool) -> SubscribedFields {
        SubscribedFields {
            recovered: since.then_some(false),
            offset: since.then_some(0),
            epoch: since.then(|| Rc::from("")),
        }
    }
}

/// A subscribe's history answer: the reply's fields and what to replay after it.
#[derive(Debug, Default)]
pub(super) struct Answer {
    pub fields: SubscribedFields,
    pub replay: Vec<Frame>,
}

/// The `since` of a subscribe: absent, or `{"offset":N,"epoch":E}` with N a non-negative
/// integer and E a string (anything else is `bad_request`). Other keys are ignored. An offset
/// beyond what a `u64` holds is kept as `u64::MAX` (no stream ever gets there).
pub(super) fn parse_since(field: Option<&RawValue>) -> Result<Option<Since>, Reject> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        offset: &'a RawValue,
        #[serde(borrow)]
        epoch: &'a RawValue,
    }
    let Some(field) = field else {
        return Ok(None);
    };
    let bad = || {
        Reject::bad_request(
            "`since` must be {\"offset\":N,\"epoch\":E}: N a non-negative integer, E a string",
        )
    };
    // A derived struct also reads an array (fields by position): an object only.
    if !field.get().starts_with('{') {
        return Err(bad());
    }
    let raw: Raw<'_> = serde_json::from_str(field.get()).map_err(|_| bad())?;
    let offset = offset_of(raw.offset).ok_or_else(bad)?;
    let epoch = wire::as_str(raw.epoch).ok_or_else(bad)?;
    Ok(Some(Since {
        offset,
        epoch: epoch.into_owned(),
    }))
}

/// A non-negative integer (digits only: no sign, fraction or exponent); `u64::MAX` for one
/// too large to hold.
fn offset_of(raw: &RawValue) -> Option<u64> {
    digits(raw.get())
}

/// Digits only: their value, `u64::MAX` for one too large to hold.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// `limit` (1 to 100, default 100) and `since` (an offset) of a `history` request, each
/// absent, or read as digits (`Some(None)`: it is not).
fn query_of(limit: Option<Option<u64>>, since: Option<Option<u64>>) -> Result<Query, &'static str> {
    let limit = match limit {
        None => MAX_LIMIT,
        Some(n) => n
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or("`limit` must be an integer from 1 to 100")?,
    };
    match since {
        None => Ok(Query::Newest(limit)),
        Some(since) => {
            let since =
                since.ok_or("`since` of a history request must be a non-negative integer")?;
            Ok(Query::After { since, limit })
        }
    }
}

/// A `history` request's `limit` and `since` ([`query_of`]).
pub(super) fn parse_query(msg: &Incoming<'_>) -> Result<Query, Reject> {
    query_of(msg.limit.map(offset_of), msg.since.map(offset_of)).map_err(Reject::bad_request)
}

/// Reads `limit` and `since` of `GET /api/channels/{name}/history?limit=N&since=OFFSET` (the
/// same rules as the WebSocket request; other parameters are ignored).
pub fn parse_api_query(query: Option<&str>) -> Result<Query, ApiError> {
    let mut limit = None;
    let mut since = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "limit" => &mut limit,
            "since" => &mut since,
            _ => continue,
        };
        if slot.is_some() {
            return Err(ApiError::bad_request(format!("`{key}` is given twice")));
        }
        *slot = Some(digits(value));
    }
    query_of(limit, since).map_err(ApiError::bad_request)
}

/// One publication of a `history` answer: `{"offset":N,"data":D,"client_id":S}`
/// (`client_id` absent for a command's or the API's; `event` added for a Pusher event's).
#[derive(Deserialize)]
struct Publication<'a> {
    offset: u64,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(borrow, default)]
    client_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
}

impl Serialize for Publication<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Publication", 4)?;
        s.serialize_field("offset", &self.offset)?;
        s.serialize_field("data", self.data)?;
        if let Some(id) = &self.client_id {
            s.serialize_field("client_id", id)?;
        }
        if let Some(event) = &self.event {
            s.serialize_field("event", event)?;
        }
        s.end()
    }
}

/// The `publications` of a `history` answer, read from the stored frames' JSON.
pub(crate) struct Publications<'a>(Vec<Publication<'a>>);

impl Serialize for Publications<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.0)
    }
}

/// The answer to a `history` request, `type` included: the WebSocket frame and the HTTP
/// API's body. `payloads` are the stored publications' JSON, oldest first; one that does not
/// read as a channel frame (from a Redis that holds garbage) is left out.
pub(super) fn answer(channel: &str, position: &Position, payloads: &[&[u8]]) -> Option<Outgoing> {
    let publications = payloads
        .iter()
        .filter_map(|json| serde_json::from_slice::<Publication<'_>>(json).ok())
        .collect();
    Outgoing::encode(&Out::History {
        channel,
        publications: Publications(publications),
        offset: position.offset,
        epoch: &position.epoch,
    })
}

/// A channel without history: what a `history` request gets (SPEC section 16).
fn no_history() -> Position {
    Position {
        offset: 0,
        epoch: Rc::from(""),
    }
}

impl Router {
    /// The retention of `channel`, if it is a history channel.
    pub(super) fn retention(&self, channel: &str) -> Option<Retention> {
        if !self.history.any {
            return None;
        }
        let namespace = self.namespace_of(channel);
        namespace.has_history().then_some(Retention {
            size: namespace.history_size,
            ttl: namespace.history_ttl,
        })
    }

    /// SPEC 16, the fan-out's hook: a publication on a history channel gets its offset. On one
    /// node it is stored here and the frame returned; in a cluster it goes to Redis.
    pub(super) fn history_publish(
        &mut self,
        event: &ChannelEvent<'_>,
        except: Option<ConnId>,
        remote_except: Option<&str>,
    ) -> Published {
        let Some(keep) = self.retention(event.channel) else {
            return Published::Plain;
        };
        let encode = |offset: Option<u64>, epoch: Option<&str>| {
            Outgoing::encode(&Out::Channel {
                channel: event.channel,
                event: event.event,
                client_id: event.client_id,
                data: event.data,
                offset,
                epoch,
            })
        };
        let now = (self.history.clock)();
        match &mut self.history.mode {
            Mode::Local(store) => {
                let mut encoded = None;
                store.publish(event.channel, keep, now, |offset, epoch| {
                    let out = encode(Some(offset), Some(epoch))?;
                    let frame = out.frame.clone();
                    encoded = Some(out);
                    Some(frame)
                });
                Published::Stored(encoded)
            }
            Mode::Cluster(reads) if reads.up => {
                let Some(plain) = encode(None, None) else {
                    return Published::Elsewhere;
                };
                let except = remote_except
                    .map(str::to_owned)
                    .or_else(|| except.and_then(|c| self.aliases.name_of(c).map(str::to_owned)));
                let publication = super::HistoryPublication {
                    channel: event.channel.to_owned(),
                    json: plain.json,
                    frame: plain.frame,
                    except,
                    user: event.user_id.map(str::to_owned),
                    keep,
                };
                self.publish(|| super::ClusterOut::HistoryPublish(publication));
                Published::Elsewhere
            }
            Mode::Cluster(_) => {
                // Redis is down: delivered here without offset, stored nowhere; the cluster
                // module gives the channel a new epoch when Redis is back.
                self.publish(|| super::ClusterOut::Unstored {
                    channel: event.channel.to_owned(),
                });
                Published::Plain
            }
        }
    }

    /// SPEC 16, the subscribe's hook: the history part of the `subscribed` reply to `conn`
    /// (subscribed to `channel` now) and what to replay after it; `None` when it is asked of
    /// Redis (the reply comes with the answer).
    pub(super) fn history_subscribe(
        &mut self,
        conn: ConnId,
        channel: &str,
        since: Option<Since>,
    ) -> Option<Answer> {
        let Some(keep) = self.retention(channel) else {
            return Some(Answer {
                fields: SubscribedFields::unknown(since.is_some()),
                replay: Vec::new(),
            });
        };
        let now = (self.history.clock)();
        let max_bytes = self.history.max_bytes;
        match &mut self.history.mode {
            Mode::Local(store) => Some(match since {
                None => Answer {
                    fields: SubscribedFields::at(&store.position(channel), None),
                    replay: Vec::new(),
                },
                Some(since) => match store.recover(channel, &since, now, max_bytes) {
                    Recovery::Recovered { position, replay } => Answer {
                        fields: SubscribedFields::at(&position, Some(true)),
                        replay,
                    },
                    Recovery::Lost(position) => Answer {
                        fields: SubscribedFields::at(&position, Some(false)),
                        replay: Vec::new(),
                    },
                },
            }),
            Mode::Cluster(_) => self.ask_subscribe(conn, channel, since, keep),
        }
    }

    /// Sends `frames` (whole frames the server built) to `conn`, firing `Handler::send`.
    pub(super) fn deliver_frames(&mut self, conn: ConnId, frames: &[Frame], out: &mut impl Outbox) {
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        let observed = self.handler.observes_send();
        for frame in frames {
            out.send(conn, frame);
            if observed {
                let json = String::from_utf8_lossy(payload(frame));
                self.handler
                    .send(client.id.as_str(), client.user.as_deref(), &json);
            }
        }
    }

    /// `{"event":"history","channel":C,"limit":N,"since":OFFSET}` from `conn`: for a subscriber
    /// of C or a connection C's rule admits (with its `token` where the rule needs one, which
    /// costs a subscribe's token of the budget, as the presence query does).
    pub(super) fn history_event(
        &mut self,
        conn: ConnId,
        msg: &Incoming<'_>,
        now: Instant,
        out: &mut impl Outbox,
    ) -> Result<(), Reject> {
        let channel = channel_name(msg.channel)?;
        let query = parse_query(msg)?;
        if !self.channels.is_member(conn, &channel) {
            if msg.token.is_some() {
                self.spend_subscribes(conn, 1, now)?;
            }
            self.authorize_subscribe(conn, &channel, msg.token)?;
        }
        let Some(keep) = self.retention(&channel) else {
            return self.send_history(conn, &channel, &no_history(), &[], out);
        };
        let max_bytes = self.history.max_bytes;
        let now = (self.history.clock)();
        let (position, frames) = match &mut self.history.mode {
            Mode::Local(store) => store.read(&channel, query, now),
            Mode::Cluster(_) => return self.ask_history(conn, &channel, query, keep, max_bytes),
        };
        let payloads: Vec<&[u8]> = frames.iter().map(|f| payload(f)).collect();
        self.send_history(conn, &channel, &position, &payloads, out)
    }

    /// Sends a `history` answer to `conn`, unless it is over `max_send_buffer` (then
    /// `bad_request`: the client asks for fewer).
    pub(super) fn send_history(
        &mut self,
        conn: ConnId,
        channel: &str,
        position: &Position,
        payloads: &[&[u8]],
        out: &mut impl Outbox,
    ) -> Result<(), Reject> {
        let Some(encoded) = answer(channel, position, payloads) else {
            return Ok(());
        };
        if encoded.frame.len() > self.history.max_bytes {
            return Err(Reject::bad_request(
                "the answer would be over max_send_buffer: ask for fewer (`limit`, `since`)",
            )
            .on(channel));
        }
        self.deliver(&encoded, [conn], out);
        Ok(())
    }

    /// `GET /api/channels/{name}/history`: the answer's JSON now, or `Ok(None)` when it is
    /// asked of Redis (then [`Router::take_api_answers`] gives it, under the returned tag).
    pub fn api_history(&mut self, channel: &str, query: Query) -> Result<ApiHistory, ApiError> {
        if !super::channels::is_valid_name(channel) {
            return Err(ApiError::invalid_channel());
        }
        let Some(keep) = self.retention(channel) else {
            let encoded = answer(channel, &no_history(), &[]);
            return Ok(ApiHistory::Ready(
                encoded.map(|e| e.json).unwrap_or_default(),
            ));
        };
        let now = (self.history.clock)();
        match &mut self.history.mode {
            Mode::Local(store) => {
                let (position, frames) = store.read(channel, query, now);
                let payloads: Vec<&[u8]> = frames.iter().map(|f| payload(f)).collect();
                let encoded = answer(channel, &position, &payloads);
                Ok(ApiHistory::Ready(
                    encoded.map(|e| e.json).unwrap_or_default(),
                ))
            }
            Mode::Cluster(_) => self.ask_api(channel, query, keep).map(ApiHistory::Later),
        }
    }

    /// The history store, on one node.
    pub fn history_store(&self) -> Option<&Store> {
        self.history.store()
    }

    /// The error a `history` request gets while Redis cannot answer.
    pub(super) fn unavailable(channel: &str) -> Reject {
        Reject::new(
            ErrorCode::Unavailable,
            "history is unavailable right now (Redis is out of reach); try again",
        )
        .on(channel)
    }
}

/// The answer of [`Router::api_history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiHistory {
    /// The JSON body, now.
    Ready(String),
    /// Asked of Redis: the answer comes later under this tag.
    Later(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn since_is_an_offset_and_an_epoch() {
        let since = |t: &str| parse_since(Some(&raw(t)));
        assert_eq!(
            since(r#"{"offset":5,"epoch":"ab","x":1}"#).unwrap(),
            Some(Since {
                offset: 5,
                epoch: "ab".into()
            })
        );
        assert_eq!(
            since(r#"{"epoch":"a\u0062","offset":0}"#)
                .unwrap()
                .unwrap()
                .epoch,
            "ab"
        );
        assert_eq!(
            since(r#"{"offset":123456789012345678901234567890,"epoch":""}"#)
                .unwrap()
                .unwrap()
                .offset,
            u64::MAX
        );
        for bad in [
            "null",
            "5",
            "\"x\"",
            "[5,\"e\"]",
            "{}",
            r#"{"offset":5}"#,
            r#"{"epoch":"e"}"#,
            r#"{"offset":-1,"epoch":"e"}"#,
            r#"{"offset":1.5,"epoch":"e"}"#,
            r#"{"offset":1e3,"epoch":"e"}"#,
            r#"{"offset":"5","epoch":"e"}"#,
            r#"{"offset":null,"epoch":"e"}"#,
            r#"{"offset":5,"epoch":5}"#,
            r#"{"offset":5,"epoch":null}"#,
            r#"{"offset":5,"epoch":"e","offset":6}"#,
        ] {
            let e = since(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{bad}");
        }
        assert_eq!(parse_since(None).unwrap(), None);
    }

    #[test]
    fn limit_and_since_of_a_history_request() {
        let query = |text: &str| {
            let msg = wire::parse(text).unwrap();
            parse_query(&msg)
        };
        assert_eq!(query(r#"{"event":"history"}"#).unwrap(), Query::Newest(100));
        assert_eq!(query(r#"{"limit":1}"#).unwrap(), Query::Newest(1));
        assert_eq!(
            query(r#"{"limit":100,"since":7}"#).unwrap(),
            Query::After {
                since: 7,
                limit: 100
            }
        );
        for bad in [
            r#"{"limit":0}"#,
            r#"{"limit":101}"#,
            r#"{"limit":-1}"#,
            r#"{"limit":1.5}"#,
            r#"{"limit":"5"}"#,
            r#"{"limit":null}"#,
            r#"{"limit":99999999999999999999999}"#,
            r#"{"since":-1}"#,
            r#"{"since":"3"}"#,
            r#"{"since":{"offset":1,"epoch":"e"}}"#,
        ] {
            assert_eq!(query(bad).unwrap_err().code, ErrorCode::BadRequest, "{bad}");
        }
    }

    #[test]
    fn limit_and_since_of_the_api() {
        let q = |t: Option<&str>| parse_api_query(t);
        assert_eq!(q(None).unwrap(), Query::Newest(100));
        assert_eq!(q(Some("limit=3&x=y")).unwrap(), Query::Newest(3));
        assert_eq!(
            q(Some("since=0&limit=100")).unwrap(),
            Query::After {
                since: 0,
                limit: 100
            }
        );
        for bad in [
            "limit=0",
            "limit=101",
            "limit=",
            "limit=-1",
            "limit=1&limit=2",
            "since=x",
            "since=",
            "since=-3",
        ] {
            assert_eq!(q(Some(bad)).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn answers_read_the_stored_frames() {
        let position = Position {
            offset: 9,
            epoch: "E".into(),
        };
        let a = br#"{"type":"channel","channel":"c","client_id":"AbCd1234","data":{"x":1},"offset":8,"epoch":"E"}"#;
        let b = br#"{"type":"channel","channel":"c","event":"ev\u0041","data":"s","offset":9,"epoch":"E"}"#;
        let garbage = b"{not json";
        let out = answer("c", &position, &[a, b, garbage]).unwrap();
        assert_eq!(
            out.json,
            r#"{"type":"history","channel":"c","publications":[{"offset":8,"data":{"x":1},"client_id":"AbCd1234"},{"offset":9,"data":"s","event":"evA"}],"offset":9,"epoch":"E"}"#
        );
    }
}
