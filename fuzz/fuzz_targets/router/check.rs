//! The router target's checks of the frames the router sent against the model's [`Want`]s.

use std::collections::BTreeMap;

use rakit::router::{ConnId, Frame};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::model::{string, Model, Want};

/// The JSON payload of one server frame: a FIN, unmasked text frame.
pub fn payload(frame: &[u8]) -> &str {
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

/// A frame's fields, values raw (never `Value` where a client's value is passed through: see
/// the target's docs).
pub fn fields(frame: &[u8]) -> BTreeMap<String, &RawValue> {
    serde_json::from_str(payload(frame)).expect("a JSON object")
}

/// A frame the server made up itself (no client value in it), as a `Value`.
fn value(frame: &[u8]) -> Value {
    serde_json::from_str(payload(frame)).expect("a JSON object")
}

/// The channel of a `leave` frame (read raw: any frame may pass a client's number on).
fn leave_channel(frame: &[u8]) -> Option<String> {
    let f = fields(frame);
    let leave = f
        .get("type")
        .and_then(|t| string(t))
        .is_some_and(|t| t == "leave");
    leave.then(|| f.get("channel").and_then(|c| string(c)))?
}

impl Model {
    /// `[{"client_id","user"}...]` of `members`, as SPEC 15.3 lists them.
    fn member_list(&self, members: &[ConnId]) -> Value {
        members
            .iter()
            .map(|&c| json!({"client_id": self.clients[c].id, "user": self.clients[c].user_json()}))
            .collect()
    }

    /// Checks one frame against what the model wants of it.
    fn check(&self, frame: &[u8], want: &Want) {
        let f = fields(frame);
        let ty = string(f["type"]).expect("a string type");
        let keys: Vec<&str> = f.keys().map(String::as_str).collect();
        let id = |key: &str| f.get(key).map(|v| string(v).expect("an id string"));
        // What a frame of the server's own making must be, whole.
        let made = |expected: Value| assert_eq!(value(frame), expected, "{want:?}");
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
            Want::Subscribed {
                channel,
                presence,
                since,
            } => {
                let mut expected = json!({"type": "subscribed", "channel": channel});
                if let Some(members) = presence {
                    expected["presence"] = self.member_list(members);
                }
                if *since {
                    expected["recovered"] = json!(false);
                    expected["offset"] = json!(0);
                    expected["epoch"] = json!("");
                }
                made(expected);
            }
            Want::History(channel) => made(json!({
                "type": "history", "channel": channel, "publications": [],
                "offset": 0, "epoch": "",
            })),
            Want::Unsubscribed(channel) => {
                made(json!({"type": "unsubscribed", "channel": channel}))
            }
            Want::Join { channel, who } | Want::Leave { channel, who } => {
                let ty = if matches!(want, Want::Join { .. }) {
                    "join"
                } else {
                    "leave"
                };
                let who = &self.clients[*who];
                made(json!({"type": ty, "channel": channel, "client_id": who.id,
                    "user": who.user_json()}));
            }
            Want::ChannelPresence { channel, members } => made(json!({
                "type": "channel_presence", "channel": channel,
                "clients": self.member_list(members), "count": members.len(),
            })),
            Want::Pong => made(json!({"type": "pong"})),
            Want::Ack(command) => made(json!({"type": "ack", "command": command})),
            Want::Error(refusal) => {
                let mut got = value(frame);
                let text = got.as_object_mut().and_then(|o| o.remove("message"));
                let mut expected = json!({"type": "error", "code": refusal.code});
                if let Some(channel) = &refusal.channel {
                    expected["channel"] = json!(channel);
                }
                assert_eq!(got, expected, "error");
                assert!(
                    text.as_ref().is_some_and(Value::is_string),
                    "an error's text"
                );
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
        for (entry, &conn) in p.users.iter().zip(&self.live) {
            let client = &self.clients[conn];
            let (name, email) = client.user.map_or(("Guest", None), |(_, n, e)| (n, e));
            assert_eq!(entry.id, client.id);
            assert_eq!(entry.name, name);
            assert_eq!(entry.email.as_deref(), email);
            assert_eq!(entry.connected_at, client.at);
        }
    }

    /// The deliveries match the wanted ones exactly, in order; only `leave`s that follow each
    /// other (a connection gone from several channels) are compared in channel name order, as
    /// the model lists them, since SPEC gives no order between channels.
    pub fn check_all(&self, sent: &[(ConnId, Frame)], want: &[(ConnId, Want)]) {
        let mut sent = sent.to_vec();
        let mut start = 0;
        while start < sent.len() {
            let run = sent[start..]
                .iter()
                .take_while(|(_, f)| leave_channel(f).is_some())
                .count();
            sent[start..start + run].sort_by_cached_key(|(_, f)| leave_channel(f));
            start += run.max(1);
        }
        let to: Vec<ConnId> = sent.iter().map(|(c, _)| *c).collect();
        let want_to: Vec<ConnId> = want.iter().map(|(c, _)| *c).collect();
        assert_eq!(to, want_to, "recipients: {want:?}");
        for ((_, frame), (_, w)) in sent.iter().zip(want) {
            self.check(frame, w);
        }
    }
}
