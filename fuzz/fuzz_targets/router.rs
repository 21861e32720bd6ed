//! The router fed arbitrary client text: JSON or not, any shape, from
//! several clients (an admin, a user, two guests) with commands allowed for
//! all, and checked against a small reference model of who must receive
//! what.
//!
//! The model reads each input with its own (derived) parser and predicts
//! every delivery, in order: a broadcast to every live client in connection
//! order, a channel message to the live subscribers in subscription order, a
//! private message to its target, acks, pongs, closes for `disconnect`;
//! anything it does not accept must give exactly one `error`, to the sender
//! only. Passed-through values (`message`, `data`) must go out byte for
//! byte as they came in, so frames are read with `RawValue`, never through
//! `serde_json::Value` (which refuses numbers beyond f64 that the router
//! rightly passes on). Presence is never truncated here (`presence_max_users`
//! is above the client count), so its list is checked entry by entry.
#![no_main]

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rakit::config::CommandPolicy;
use rakit::events::Handler;
use rakit::router::{ConnId, Frame, Outbox, Router, RouterConfig, RouterLimits};
use rakit::session::User;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

const CLIENTS: usize = 4;
const MAX_CHANNELS: usize = 4;

struct Quiet;
impl Handler for Quiet {}

#[derive(Default)]
struct Out {
    sent: Vec<(ConnId, Frame)>,
    closed: Vec<ConnId>,
}

impl Outbox for Out {
    fn send(&mut self, conn: ConnId, frame: &Frame) {
        self.sent.push((conn, Rc::clone(frame)));
    }
    fn close(&mut self, conn: ConnId, code: u16, reason: &str) {
        assert_eq!((code, reason), (4000, "disconnected by server"));
        self.closed.push(conn);
    }
}

/// The JSON payload of one server frame: a FIN, unmasked text frame.
fn payload(frame: &[u8]) -> &str {
    assert_eq!(frame[0], 0x81, "FIN text frame");
    assert_eq!(frame[1] & 0x80, 0, "unmasked");
    let (len, start) = match frame[1] {
        126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&frame[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    assert_eq!(frame.len(), start + len);
    std::str::from_utf8(&frame[start..]).expect("UTF-8 payload")
}

/// A frame's fields, values raw (never `Value`: see the module docs).
fn fields(frame: &[u8]) -> BTreeMap<String, &RawValue> {
    serde_json::from_str(payload(frame)).expect("a JSON object")
}

/// The string a raw value holds, if it is a string.
fn string(raw: &RawValue) -> Option<String> {
    raw.get()
        .starts_with('"')
        .then(|| serde_json::from_str(raw.get()).ok())
        .flatten()
}

/// A key that is present, even with `null`: routing goes by presence.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The model's reading of a client message: the keys routing looks at.
/// Derived, so a repeated known key is an error, as in the router.
#[derive(Deserialize, Default)]
struct Incoming<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    command: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    event: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    to: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    message: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    channel: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    ping: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    client_id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    since: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    limit: Option<&'a RawValue>,
}

/// A non-negative integer written with digits only (SPEC 16's offsets and limits).
fn digits(raw: &RawValue) -> Option<u64> {
    let t = raw.get();
    (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().unwrap_or(u64::MAX))
}

/// A subscribe's `since`: `{"offset":N,"epoch":E}` (SPEC 16).
fn valid_since(raw: &RawValue) -> bool {
    #[derive(Deserialize)]
    struct Since<'a> {
        #[serde(borrow)]
        offset: &'a RawValue,
        #[serde(borrow)]
        epoch: &'a RawValue,
    }
    raw.get().starts_with('{')
        && serde_json::from_str::<Since<'_>>(raw.get())
            .is_ok_and(|s| digits(s.offset).is_some() && string(s.epoch).is_some())
}

fn parse(text: &str) -> Option<Incoming<'_>> {
    // A derived struct would also take an array (fields by position).
    let first = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .bytes()
        .next();
    if first != Some(b'{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// SPEC section 5: 1 to 128 bytes, no control characters.
fn valid_channel(name: &str) -> bool {
    (1..=128).contains(&name.len()) && !name.chars().any(char::is_control)
}

/// One frame the model expects, with what it must hold.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    /// `message` or `private` (`ty`), with the sender's id or none.
    Carry {
        ty: &'static str,
        client_id: Option<String>,
        message: String,
    },
    Channel {
        channel: String,
        client_id: Option<String>,
        data: String,
    },
    /// `subscribed`; with a `since` (no channel here keeps history): `recovered` false at 0.
    Subscribed(String, bool),
    Unsubscribed(String),
    /// The answer to a `history` request on a channel without history.
    History(String),
    Pong,
    Ack(&'static str),
    Error,
    Presence,
}

struct Model {
    /// Live clients in connection order: (connection, client id).
    live: Vec<(ConnId, String)>,
    /// Channel -> live members in subscription order.
    channels: BTreeMap<String, Vec<ConnId>>,
    /// Presence entries by connection: (name, email, connected_at).
    who: BTreeMap<ConnId, (&'static str, Option<&'static str>, u64)>,
}

impl Model {
    fn id(&self, conn: ConnId) -> Option<&str> {
        self.live
            .iter()
            .find(|(c, _)| *c == conn)
            .map(|(_, id)| id.as_str())
    }

    fn lookup(&self, id: &str) -> Option<ConnId> {
        self.live.iter().find(|(_, i)| i == id).map(|(c, _)| *c)
    }

    fn everyone(&self, want: &Want) -> Vec<(ConnId, Want)> {
        self.live.iter().map(|(c, _)| (*c, want.clone())).collect()
    }

    fn subscribers(&self, channel: &str, want: &Want) -> Vec<(ConnId, Want)> {
        let members = self.channels.get(channel).map_or(&[][..], Vec::as_slice);
        members.iter().map(|c| (*c, want.clone())).collect()
    }

    fn leave(&mut self, conn: ConnId) {
        self.live.retain(|(c, _)| *c != conn);
        for members in self.channels.values_mut() {
            members.retain(|c| *c != conn);
        }
        self.channels.retain(|_, members| !members.is_empty());
    }

    /// What `sender` sending `text` must cause: deliveries in order and
    /// closes; `None` means exactly one error to the sender. Updates the
    /// model as the router must update itself.
    fn predict(
        &mut self,
        sender: ConnId,
        text: &str,
    ) -> Option<(Vec<(ConnId, Want)>, Vec<ConnId>)> {
        let me = self.id(sender)?.to_owned();
        let msg = parse(text)?;
        let raw = |v: &RawValue| v.get().to_owned();
        if let Some(command) = msg.command {
            let (mut sends, mut closes, ack) = match string(command)?.as_str() {
                "broadcast" => {
                    let want = Want::Carry {
                        ty: "message",
                        client_id: None,
                        message: raw(msg.message?),
                    };
                    (self.everyone(&want), vec![], "broadcast")
                }
                "broadcast_to_channel" => {
                    let channel = string(msg.channel?)?;
                    let data = raw(msg.message?);
                    if !valid_channel(&channel) {
                        return None;
                    }
                    let want = Want::Channel {
                        channel: channel.clone(),
                        client_id: None,
                        data,
                    };
                    (
                        self.subscribers(&channel, &want),
                        vec![],
                        "broadcast_to_channel",
                    )
                }
                "private_message" => {
                    let to = string(msg.to?)?;
                    let message = raw(msg.message?);
                    let target = self.lookup(&to)?;
                    let want = Want::Carry {
                        ty: "private",
                        client_id: None,
                        message,
                    };
                    (vec![(target, want)], vec![], "private_message")
                }
                "disconnect" => {
                    let target = self.lookup(&string(msg.client_id?)?)?;
                    self.leave(target);
                    (vec![], vec![target], "disconnect")
                }
                "presence" => (self.everyone(&Want::Presence), vec![], "presence"),
                _ => return None,
            };
            // The issuer may have disconnected itself: then no ack.
            if self.id(sender).is_some() {
                sends.push((sender, Want::Ack(ack)));
            }
            closes.sort_unstable();
            return Some((sends, closes));
        }
        let sends = if let Some(event) = msg.event {
            match string(event)?.as_str() {
                "subscribe" => {
                    let channel = string(msg.channel?)?;
                    if !valid_channel(&channel) {
                        return None;
                    }
                    let since = msg.since.is_some();
                    if msg.since.is_some_and(|s| !valid_since(s)) {
                        return None;
                    }
                    let count = self
                        .channels
                        .values()
                        .filter(|m| m.contains(&sender))
                        .count();
                    let members = self.channels.get(&channel);
                    if !members.is_some_and(|m| m.contains(&sender)) {
                        if count >= MAX_CHANNELS {
                            return None;
                        }
                        self.channels
                            .entry(channel.clone())
                            .or_default()
                            .push(sender);
                    }
                    vec![(sender, Want::Subscribed(channel, since))]
                }
                "history" => {
                    let channel = string(msg.channel?)?;
                    if !valid_channel(&channel) {
                        return None;
                    }
                    if msg
                        .limit
                        .is_some_and(|l| !digits(l).is_some_and(|n| (1..=100).contains(&n)))
                        || msg.since.is_some_and(|s| digits(s).is_none())
                    {
                        return None;
                    }
                    vec![(sender, Want::History(channel))]
                }
                "unsubscribe" => {
                    let channel = string(msg.channel?)?;
                    if !valid_channel(&channel) {
                        return None;
                    }
                    if let Some(members) = self.channels.get_mut(&channel) {
                        members.retain(|c| *c != sender);
                        if members.is_empty() {
                            self.channels.remove(&channel);
                        }
                    }
                    vec![(sender, Want::Unsubscribed(channel))]
                }
                "message" => {
                    let channel = string(msg.channel?)?;
                    let data = raw(msg.data?);
                    if !valid_channel(&channel) {
                        return None;
                    }
                    let want = Want::Channel {
                        channel: channel.clone(),
                        client_id: Some(me),
                        data,
                    };
                    self.subscribers(&channel, &want)
                }
                _ => return None,
            }
        } else if let Some(to) = msg.to {
            let to = string(to)?;
            let message = raw(msg.message?);
            let target = self.lookup(&to)?;
            let want = Want::Carry {
                ty: "private",
                client_id: Some(me),
                message,
            };
            vec![(target, want)]
        } else if let Some(message) = msg.message {
            self.everyone(&Want::Carry {
                ty: "message",
                client_id: Some(me),
                message: raw(message),
            })
        } else if msg.ping.is_some() {
            vec![(sender, Want::Pong)]
        } else {
            return None;
        };
        Some((sends, vec![]))
    }

    /// Checks one frame against what the model wants of it.
    fn check(&self, frame: &[u8], want: &Want) {
        let f = fields(frame);
        let ty = string(f["type"]).expect("a string type");
        let keys: Vec<&str> = f.keys().map(String::as_str).collect();
        let id = |key: &str| f.get(key).map(|v| string(v).expect("an id string"));
        match want {
            Want::Carry {
                ty: want_ty,
                client_id,
                message,
            } => {
                assert_eq!(&ty, want_ty);
                assert_eq!(&id("client_id"), client_id);
                assert_eq!(f["message"].get(), message, "passed through byte for byte");
                assert_eq!(keys.len(), 2 + usize::from(client_id.is_some()), "{keys:?}");
            }
            Want::Channel {
                channel,
                client_id,
                data,
            } => {
                assert_eq!(ty, "channel");
                assert_eq!(string(f["channel"]).as_ref(), Some(channel));
                assert_eq!(&id("client_id"), client_id);
                assert_eq!(f["data"].get(), data, "passed through byte for byte");
                assert_eq!(keys.len(), 3 + usize::from(client_id.is_some()), "{keys:?}");
            }
            Want::Subscribed(channel, true) => {
                assert_eq!(ty, "subscribed");
                assert_eq!(string(f["channel"]).as_ref(), Some(channel));
                assert_eq!(keys, ["channel", "epoch", "offset", "recovered", "type"]);
                assert_eq!(
                    (f["recovered"].get(), f["offset"].get(), f["epoch"].get()),
                    ("false", "0", "\"\"")
                );
            }
            Want::Subscribed(channel, false) | Want::Unsubscribed(channel) => {
                let want_ty = match want {
                    Want::Subscribed(..) => "subscribed",
                    _ => "unsubscribed",
                };
                assert_eq!(ty, want_ty);
                assert_eq!(string(f["channel"]).as_ref(), Some(channel));
                assert_eq!(keys, ["channel", "type"]);
            }
            Want::History(channel) => {
                assert_eq!(ty, "history");
                assert_eq!(string(f["channel"]).as_ref(), Some(channel));
                assert_eq!(keys, ["channel", "epoch", "offset", "publications", "type"]);
                assert_eq!(
                    (f["publications"].get(), f["offset"].get(), f["epoch"].get()),
                    ("[]", "0", "\"\"")
                );
            }
            Want::Pong => {
                assert_eq!(ty, "pong");
                assert_eq!(keys, ["type"]);
            }
            Want::Ack(command) => {
                assert_eq!(ty, "ack");
                assert_eq!(string(f["command"]).as_deref(), Some(*command));
                assert_eq!(keys, ["command", "type"]);
            }
            Want::Error => {
                assert_eq!(ty, "error");
                assert_eq!(keys, ["code", "message", "type"]);
                assert!(string(f["message"]).is_some());
                let code = string(f["code"]).expect("a string code");
                let codes = [
                    "invalid_json",
                    "bad_request",
                    "unknown_client",
                    "unknown_event",
                    "unknown_command",
                    "invalid_channel",
                    "too_many_channels",
                    "forbidden",
                    "binary_unsupported",
                    "unavailable",
                ];
                assert!(codes.contains(&code.as_str()), "{code}");
            }
            Want::Presence => self.check_presence(frame),
        }
    }

    /// A presence message lists every live client in connection order.
    fn check_presence(&self, frame: &[u8]) {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Entry {
            id: String,
            name: String,
            email: Option<String>,
            connected_at: u64,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Presence {
            #[serde(rename = "type")]
            ty: String,
            users: Vec<Entry>,
            count: usize,
        }
        let p: Presence = serde_json::from_str(payload(frame)).expect("presence shape");
        assert_eq!(p.ty, "presence");
        assert_eq!(p.count, self.live.len());
        assert_eq!(p.users.len(), self.live.len(), "untruncated");
        for (entry, (conn, id)) in p.users.iter().zip(&self.live) {
            let (name, email, at) = self.who[conn];
            assert_eq!(&entry.id, id);
            assert_eq!(entry.name, name);
            assert_eq!(entry.email.as_deref(), email);
            assert_eq!(entry.connected_at, at);
        }
    }

    /// The deliveries match the wanted ones exactly, in order.
    fn check_all(&self, sent: &[(ConnId, Frame)], want: &[(ConnId, Want)]) {
        let to: Vec<ConnId> = sent.iter().map(|(c, _)| *c).collect();
        let want_to: Vec<ConnId> = want.iter().map(|(c, _)| *c).collect();
        assert_eq!(to, want_to, "recipients: {want:?}");
        for ((_, frame), (_, w)) in sent.iter().zip(want) {
            self.check(frame, w);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let config = RouterConfig {
        max_channels_per_client: MAX_CHANNELS,
        presence: true,
        presence_interval: Duration::from_millis(50),
        // Above the client count: presence always lists everyone.
        presence_max_users: CLIENTS + 4,
        command_policy: CommandPolicy::Any,
        // The reference model knows nothing of SPEC 17's buckets: off, explicitly.
        limits: RouterLimits::OFF,
        ..RouterConfig::default()
    };
    let mut router = Router::new(config, Box::new(Quiet), 7);
    let mut out = Out::default();
    let t0 = Instant::now();
    let admin = User {
        id: "1".into(),
        name: "Admin".into(),
        email: Some("a@example.com".into()),
        admin: true,
    };
    let user = User {
        id: "2".into(),
        name: "Ada".into(),
        email: None,
        admin: false,
    };
    let mut model = Model {
        live: Vec::new(),
        channels: BTreeMap::new(),
        who: BTreeMap::new(),
    };
    let users = [Some(admin), Some(user), None, None];
    for (conn, user) in users.into_iter().enumerate() {
        let at = conn as u64 + 1;
        let (name, email) = match conn {
            0 => ("Admin", Some("a@example.com")),
            1 => ("Ada", None),
            _ => ("Guest", None),
        };
        let id = router.connect(conn, user, at, t0, &mut out).to_owned();
        assert!(
            id.len() == 8 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{id}"
        );
        assert!(model.lookup(&id).is_none(), "ids are unique");
        // The welcome, first and only to the new client.
        let (to, welcome) = out.sent.pop().expect("a welcome");
        assert!(out.sent.is_empty());
        assert_eq!(to, conn);
        let f = fields(&welcome);
        assert_eq!(string(f["type"]).as_deref(), Some("welcome"));
        assert_eq!(string(f["client_id"]).as_deref(), Some(id.as_str()));
        model.live.push((conn, id));
        model.who.insert(conn, (name, email, at));
    }
    // Client ids, so that inputs can name them (`{"to": "$1"}` means client 1's id).
    let ids: Vec<String> = model.live.iter().map(|(_, id)| id.clone()).collect();

    // Messages are separated by 0xff bytes; each starts with its sender.
    for (step, chunk) in data.split(|b| *b == 0xff).enumerate() {
        let Some((&who, text)) = chunk.split_first() else {
            continue;
        };
        let conn = (who % 5) as ConnId; // 4 is never connected
        let now = t0 + Duration::from_millis(step as u64 * 20);
        let mut text = String::from_utf8_lossy(text).into_owned();
        for (i, id) in ids.iter().enumerate() {
            text = text.replace(&format!("${i}"), id);
        }
        out.sent.clear();
        out.closed.clear();
        let is_live = model.id(conn).is_some();
        let (want, closes) = if who & 0x80 != 0 {
            router.handle_binary(conn, now, &mut out);
            let want = if is_live {
                vec![(conn, Want::Error)]
            } else {
                vec![]
            };
            (want, vec![])
        } else {
            router.handle_text(conn, &text, now, &mut out);
            match model.predict(conn, &text) {
                Some(predicted) => predicted,
                None if is_live => (vec![(conn, Want::Error)], vec![]),
                None => (vec![], vec![]),
            }
        };
        let mut closed = out.closed.clone();
        closed.sort_unstable();
        assert_eq!(closed, closes, "closes for {text:?}");
        model.check_all(&out.sent, &want);
        assert_eq!(router.len(), model.live.len());

        // Throttled presence, if due: only presence, to every live client.
        out.sent.clear();
        out.closed.clear();
        router.handle_timeout(now, &mut out);
        let want = if out.sent.is_empty() {
            vec![]
        } else {
            model.everyone(&Want::Presence)
        };
        model.check_all(&out.sent, &want);
        assert!(out.closed.is_empty(), "a close from a timeout");
    }
});
