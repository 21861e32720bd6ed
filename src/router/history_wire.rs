//! The JSON side of history (SPEC section 16) in the router: reading `since`, `limit` and the
//! API's query, the `history` answer, and the history fields of `subscribed`; used by one node
//! (`history.rs`) and the cluster (`history_cluster.rs`) alike.

use std::borrow::Cow;
use std::rc::Rc;

use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::remote::payload;
use super::wire::{self, ErrorCode, Incoming, Out, Outgoing, Reject};
use super::{ApiError, ConnId, Frame, Outbox, Router};
use crate::history::{Position, Query, Since, MAX_LIMIT};

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
struct Publications<'a>(Vec<Publication<'a>>);

impl Serialize for Publications<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.0)
    }
}

/// The answer to a `history` request, `type` included: the WebSocket frame and the HTTP
/// API's body. `payloads` are the stored publications' JSON, oldest first; one that does not
/// read as a channel frame (from a Redis that holds garbage) is left out.
pub(super) fn answer(channel: &str, position: &Position, payloads: &[&[u8]]) -> Option<Outgoing> {
    let publications: Vec<Publication<'_>> = payloads
        .iter()
        .filter_map(|json| serde_json::from_slice::<Publication<'_>>(json).ok())
        .collect();
    let list = serde_json::to_string(&Publications(publications)).ok()?;
    let list = RawValue::from_string(list).ok()?;
    Outgoing::encode(&Out::History {
        channel,
        publications: &list,
        offset: position.offset,
        epoch: &position.epoch,
    })
}

/// A channel without history: what a `history` request gets (SPEC section 16).
pub(super) fn no_history() -> Position {
    Position {
        offset: 0,
        epoch: Rc::from(""),
    }
}

/// The error a `history` request gets while Redis cannot answer.
pub(super) fn unavailable(channel: &str) -> Reject {
    Reject::new(
        ErrorCode::Unavailable,
        "history is unavailable right now (Redis is out of reach); try again",
    )
    .on(channel)
}

/// The answer of [`Router::api_history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiHistory {
    /// The JSON body, now.
    Ready(String),
    /// Asked of Redis: the answer comes later under this tag.
    Later(u64),
}

impl Router {
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
