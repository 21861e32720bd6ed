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
//! only, with the code SPEC section 5 gives (the model knows the order of the
//! checks, and the subscribe budget of docs/limits.md). Presence follows the
//! throttle of SPEC section 5: after a connect or disconnect, every live
//! client must get a presence message no later than one
//! `presence_interval_ms` after the previous one, and none is sent without
//! a change or a `presence` command. Passed-through values (`message`, `data`) must go out byte for
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
use rakit::router::{
    ConnId, Frame, Outbox, Router, RouterConfig, RouterLimits, MIN_SUBSCRIBE_BURST,
};
use rakit::session::User;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

const CLIENTS: usize = 4;
const MAX_CHANNELS: usize = 4;
/// `presence_interval_ms`.
const INTERVAL: Duration = Duration::from_millis(50);
/// A connection's burst of subscribes: twice `max_channels_per_client`, and
/// no fewer than the router's minimum.
const SUBSCRIBE_BURST: u64 = {
    let twice = 2 * MAX_CHANNELS as u64;
    if twice > MIN_SUBSCRIBE_BURST {
        twice
    } else {
        MIN_SUBSCRIBE_BURST
    }
};

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
}

/// What the model expects of a message it does not accept: the error code.
type Code = &'static str;

/// SPEC section 5: malformed JSON is `invalid_json`; well-formed JSON that is
/// not an object, or that repeats a key routing looks at, is `bad_request`.
fn parse(text: &str) -> Result<Incoming<'_>, Code> {
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
        return Err("invalid_json");
    }
    // A derived struct would also take an array (fields by position).
    let first = text.trim_start_matches([' ', '\t', '\n', '\r']).bytes().next();
    if first != Some(b'{') {
        return Err("bad_request");
    }
    serde_json::from_str(text).map_err(|_| "bad_request")
}

/// A field routing needs: present (`null` included), else `bad_request`.
fn required(field: Option<&RawValue>) -> Result<&RawValue, Code> {
    field.ok_or("bad_request")
}

/// A field that must be a string: missing or another type is `bad_request`.
fn required_str(field: Option<&RawValue>) -> Result<String, Code> {
    string(required(field)?).ok_or("bad_request")
}

/// SPEC section 5: 1 to 128 bytes, no control characters.
fn valid_channel(name: String) -> Result<String, Code> {
    if (1..=128).contains(&name.len()) && !name.chars().any(char::is_control) {
        Ok(name)
    } else {
        Err("invalid_channel")
    }
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
    Subscribed(String),
    Unsubscribed(String),
    Pong,
    Ack(&'static str),
    Error(Code),
    Presence,
}

/// The presence throttle of SPEC section 5: a change is sent at most one
/// interval after the previous presence message (at once if that is past),
/// changes meanwhile share it, and the `presence` command sends at once.
#[derive(Default)]
struct Throttle {
    /// When the pending change is due.
    due: Option<Duration>,
    /// When the last presence message went out.
    last: Option<Duration>,
}

impl Throttle {
    fn changed(&mut self, now: Duration) {
        if self.due.is_none() {
            self.due = Some(self.last.map_or(now, |last| (last + INTERVAL).max(now)));
        }
    }

    fn sent(&mut self, now: Duration) {
        self.due = None;
        self.last = Some(now);
    }
}

/// The subscribe budget (docs/limits.md): a bucket of `SUBSCRIBE_BURST`
/// tokens, one regained every 100 ms; times in ms since the start.
fn spend(full_at: &mut u64, now: u64) -> bool {
    let next = (*full_at).max(now) + 100;
    if next - now > SUBSCRIBE_BURST * 100 {
        return false;
    }
    *full_at = next;
    true
}

struct Model {
    /// Live clients in connection order: (connection, client id).
    live: Vec<(ConnId, String)>,
    /// Channel -> live members in subscription order.
    channels: BTreeMap<String, Vec<ConnId>>,
    /// Presence entries by connection: (name, email, connected_at).
    who: BTreeMap<ConnId, (&'static str, Option<&'static str>, u64)>,
    /// Each connection's subscribe budget: when its bucket is full again (ms).
    budget: BTreeMap<ConnId, u64>,
    presence: Throttle,
}

impl Model {
    fn id(&self, conn: ConnId) -> Option<&str> {
        self.live
            .iter()
            .find(|(c, _)| *c == conn)
            .map(|(_, id)| id.as_str())
    }

    fn lookup(&self, id: &str) -> Result<ConnId, Code> {
        self.live
            .iter()
            .find(|(_, i)| i == id)
            .map(|(c, _)| *c)
            .ok_or("unknown_client")
    }

    fn everyone(&self, want: &Want) -> Vec<(ConnId, Want)> {
        self.live.iter().map(|(c, _)| (*c, want.clone())).collect()
    }

    fn subscribers(&self, channel: &str, want: &Want) -> Vec<(ConnId, Want)> {
        let members = self.channels.get(channel).map_or(&[][..], Vec::as_slice);
        members.iter().map(|c| (*c, want.clone())).collect()
    }

    fn leave(&mut self, conn: ConnId, now: Duration) {
        self.live.retain(|(c, _)| *c != conn);
        for members in self.channels.values_mut() {
            members.retain(|c| *c != conn);
        }
        self.channels.retain(|_, members| !members.is_empty());
        self.presence.changed(now);
    }

    /// What `sender` sending `text` at `now` must cause: deliveries in order
    /// and closes, or the code of the one error the sender gets. Updates the
    /// model as the router must update itself.
    fn predict(
        &mut self,
        sender: ConnId,
        text: &str,
        now: Duration,
    ) -> Result<(Vec<(ConnId, Want)>, Vec<ConnId>), Code> {
        let me = self.id(sender).expect("a live sender").to_owned();
        let msg = parse(text)?;
        let raw = |v: &RawValue| v.get().to_owned();
        if let Some(command) = msg.command {
            // command_policy is "any": every connection may.
            let name = string(command).ok_or("bad_request")?;
            let (mut sends, mut closes, ack) = match name.as_str() {
                "broadcast" => {
                    let want = Want::Carry {
                        ty: "message",
                        client_id: None,
                        message: raw(required(msg.message)?),
                    };
                    (self.everyone(&want), vec![], "broadcast")
                }
                "broadcast_to_channel" => {
                    let channel = required_str(msg.channel)?;
                    let data = raw(required(msg.message)?);
                    let channel = valid_channel(channel)?;
                    let want = Want::Channel {
                        channel: channel.clone(),
                        client_id: None,
                        data,
                    };
                    (self.subscribers(&channel, &want), vec![], "broadcast_to_channel")
                }
                "private_message" => {
                    let to = required_str(msg.to)?;
                    let message = raw(required(msg.message)?);
                    let target = self.lookup(&to)?;
                    let want = Want::Carry {
                        ty: "private",
                        client_id: None,
                        message,
                    };
                    (vec![(target, want)], vec![], "private_message")
                }
                "disconnect" => {
                    let target = self.lookup(&required_str(msg.client_id)?)?;
                    self.leave(target, now);
                    (vec![], vec![target], "disconnect")
                }
                "presence" => {
                    self.presence.sent(now);
                    (self.everyone(&Want::Presence), vec![], "presence")
                }
                _ => return Err("unknown_command"),
            };
            // The issuer may have disconnected itself: then no ack.
            if self.id(sender).is_some() {
                sends.push((sender, Want::Ack(ack)));
            }
            closes.sort_unstable();
            return Ok((sends, closes));
        }
        let sends = if let Some(event) = msg.event {
            match string(event).ok_or("bad_request")?.as_str() {
                "subscribe" => {
                    // The budget is spent first, whatever the rest says.
                    let now_ms = now.as_millis() as u64;
                    if !spend(self.budget.get_mut(&sender).unwrap(), now_ms) {
                        return Err("too_many_channels");
                    }
                    let channel = valid_channel(required_str(msg.channel)?)?;
                    let count = self
                        .channels
                        .values()
                        .filter(|m| m.contains(&sender))
                        .count();
                    let members = self.channels.get(&channel);
                    if !members.is_some_and(|m| m.contains(&sender)) {
                        if count >= MAX_CHANNELS {
                            return Err("too_many_channels");
                        }
                        self.channels.entry(channel.clone()).or_default().push(sender);
                    }
                    vec![(sender, Want::Subscribed(channel))]
                }
                "unsubscribe" => {
                    let channel = valid_channel(required_str(msg.channel)?)?;
                    if let Some(members) = self.channels.get_mut(&channel) {
                        members.retain(|c| *c != sender);
                        if members.is_empty() {
                            self.channels.remove(&channel);
                        }
                    }
                    vec![(sender, Want::Unsubscribed(channel))]
                }
                "message" => {
                    let channel = required_str(msg.channel)?;
                    let data = raw(required(msg.data)?);
                    let channel = valid_channel(channel)?;
                    let want = Want::Channel {
                        channel: channel.clone(),
                        client_id: Some(me),
                        data,
                    };
                    self.subscribers(&channel, &want)
                }
                _ => return Err("unknown_event"),
            }
        } else if let Some(to) = msg.to {
            let to = string(to).ok_or("bad_request")?;
            let message = raw(required(msg.message)?);
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
            return Err("bad_request");
        };
        Ok((sends, vec![]))
    }

    /// The presence the throttle owes at `now`, to every live client.
    fn due_presence(&mut self, now: Duration) -> Vec<(ConnId, Want)> {
        match self.presence.due {
            Some(due) if due <= now => {
                self.presence.due = None;
                if self.live.is_empty() {
                    // Dropped: nobody to tell, and no message went out.
                    return vec![];
                }
                self.presence.sent(now);
                self.everyone(&Want::Presence)
            }
            _ => vec![],
        }
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
            Want::Subscribed(channel) | Want::Unsubscribed(channel) => {
                let want_ty = match want {
                    Want::Subscribed(_) => "subscribed",
                    _ => "unsubscribed",
                };
                assert_eq!(ty, want_ty);
                assert_eq!(string(f["channel"]).as_ref(), Some(channel));
                assert_eq!(keys, ["channel", "type"]);
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
            Want::Error(code) => {
                assert_eq!(ty, "error");
                assert_eq!(keys, ["code", "message", "type"]);
                assert!(string(f["message"]).is_some());
                assert_eq!(string(f["code"]).as_deref(), Some(*code), "error code");
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
        presence_interval: INTERVAL,
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
        budget: BTreeMap::new(),
        presence: Throttle::default(),
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
        assert!(id.len() == 8 && id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        assert!(model.lookup(&id).is_err(), "ids are unique");
        // The welcome, first and only to the new client.
        let (to, welcome) = out.sent.pop().expect("a welcome");
        assert!(out.sent.is_empty());
        assert_eq!(to, conn);
        let f = fields(&welcome);
        assert_eq!(string(f["type"]).as_deref(), Some("welcome"));
        assert_eq!(string(f["client_id"]).as_deref(), Some(id.as_str()));
        model.live.push((conn, id));
        model.who.insert(conn, (name, email, at));
        model.budget.insert(conn, 0);
        model.presence.changed(Duration::ZERO);
    }
    // Client ids, so that inputs can name them (`{"to": "$1"}` means client 1's id).
    let ids: Vec<String> = model.live.iter().map(|(_, id)| id.clone()).collect();

    // Messages are separated by 0xff bytes; each starts with its sender.
    for (step, chunk) in data.split(|b| *b == 0xff).enumerate() {
        let Some((&who, text)) = chunk.split_first() else {
            continue;
        };
        let conn = (who % 5) as ConnId; // 4 is never connected
        let since = Duration::from_millis(step as u64 * 20);
        let now = t0 + since;
        let mut text = String::from_utf8_lossy(text).into_owned();
        for (i, id) in ids.iter().enumerate() {
            text = text.replace(&format!("${i}"), id);
        }
        out.sent.clear();
        out.closed.clear();
        let is_live = model.id(conn).is_some();
        let (want, closes) = if !is_live {
            // Not (or no longer) connected: nothing for anyone.
            if who & 0x80 != 0 {
                router.handle_binary(conn, now, &mut out);
            } else {
                router.handle_text(conn, &text, now, &mut out);
            }
            (vec![], vec![])
        } else if who & 0x80 != 0 {
            router.handle_binary(conn, now, &mut out);
            (vec![(conn, Want::Error("binary_unsupported"))], vec![])
        } else {
            router.handle_text(conn, &text, now, &mut out);
            match model.predict(conn, &text, since) {
                Ok(predicted) => predicted,
                Err(code) => (vec![(conn, Want::Error(code))], vec![]),
            }
        };
        let mut closed = out.closed.clone();
        closed.sort_unstable();
        assert_eq!(closed, closes, "closes for {text:?}");
        model.check_all(&out.sent, &want);
        assert_eq!(router.len(), model.live.len());

        // Throttled presence: exactly when due, to every live client.
        out.sent.clear();
        out.closed.clear();
        router.handle_timeout(now, &mut out);
        let want = model.due_presence(since);
        model.check_all(&out.sent, &want);
        assert!(out.closed.is_empty(), "a close from a timeout");
    }
});
