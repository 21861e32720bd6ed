//! Pusher protocol 7 frames: `{"event","channel"?,"data"}`. What a client sends carries `data`
//! as a JSON value; what the server sends carries it as a JSON-encoded *string* (pusher-js
//! parses it a second time), except `pusher:error` and `pusher:subscription_error`, whose
//! `data` is an object as Soketi sends it.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::router::{ChannelEvent, Frame};

/// A client frame, borrowed from its text.
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    #[serde(borrow)]
    pub event: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    pub channel: Option<std::borrow::Cow<'a, str>>,
    /// `None` only when the frame has no `data`: a `null` is `Some("null")` (data may be any
    /// JSON value, null included, as with Pusher).
    #[serde(borrow, default, deserialize_with = "present")]
    pub data: Option<&'a RawValue>,
}

/// A field that is there, whatever its value (serde reads a `null` into `None` otherwise).
fn present<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<&'a RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The `data` of `pusher:subscribe` and `pusher:signin`.
#[derive(Debug, Default, Deserialize)]
pub struct SubscribeData<'a> {
    #[serde(borrow, default)]
    pub channel: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub auth: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub channel_data: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user_data: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> SubscribeData<'a> {
    /// The `data` of an incoming event; empty when absent or not this shape.
    pub fn parse(data: Option<&'a RawValue>) -> SubscribeData<'a> {
        data.and_then(|d| serde_json::from_str(d.get()).ok())
            .unwrap_or_default()
    }
}

/// `channel_data` of a presence subscription: `user_id` is a string or a number.
#[derive(Debug, Deserialize)]
pub struct ChannelData<'a> {
    #[serde(borrow)]
    pub user_id: &'a RawValue,
    #[serde(borrow, default)]
    pub user_info: Option<&'a RawValue>,
}

/// The `user_data` of `pusher:signin`: its `id` is a string or a number.
#[derive(Debug, Deserialize)]
pub struct UserData<'a> {
    #[serde(borrow)]
    pub id: &'a RawValue,
}

/// A user id as text: a non-empty string as is, a number exactly as written (never through a
/// float, which would turn `12345678901234567890123` into `1.2345678901234568e+22`, another
/// user); `None` for anything else.
pub fn user_id(raw: &RawValue) -> Option<String> {
    let text = raw.get().trim();
    match text.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(text)
            .ok()
            .filter(|s| !s.is_empty()),
        // Valid JSON (it parsed as a RawValue) starting so is a number.
        b'-' | b'0'..=b'9' => Some(text.to_owned()),
        _ => None,
    }
}

#[derive(Serialize)]
struct Out<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

#[derive(Serialize)]
struct OutObject<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a RawValue,
}

fn framed(json: &str) -> Frame {
    let mut frame = Vec::with_capacity(json.len() + 10);
    rakit_protocol::encode_frame(&mut frame, rakit_protocol::OpCode::Text, json.as_bytes());
    Frame::from(frame)
}

/// A server frame whose `data` is `data` (JSON text) sent as a string.
pub fn frame(event: &str, channel: Option<&str>, data: &str, user_id: Option<&str>) -> Frame {
    let json = serde_json::to_string(&Out {
        event,
        channel,
        data,
        user_id,
    })
    .unwrap_or_default();
    framed(&json)
}

/// A server frame whose `data` is the object `data` itself.
pub fn frame_object(event: &str, channel: Option<&str>, data: &RawValue) -> Frame {
    let json = serde_json::to_string(&OutObject {
        event,
        channel,
        data,
    })
    .unwrap_or_default();
    framed(&json)
}

/// `pusher:error` with `code` (`null` when `None`) and `message`.
pub fn error(code: Option<u16>, message: &str) -> Frame {
    let data = serde_json::json!({ "code": code, "message": message }).to_string();
    let raw = RawValue::from_string(data).unwrap_or_else(|_| empty_object());
    frame_object("pusher:error", None, &raw)
}

/// `pusher:subscription_error` for `channel` (pusher-js emits it on that channel).
pub fn subscription_error(channel: &str, kind: &str, text: &str, status: u16) -> Frame {
    let data = serde_json::json!({ "type": kind, "error": text, "status": status }).to_string();
    let raw = RawValue::from_string(data).unwrap_or_else(|_| empty_object());
    frame_object("pusher:subscription_error", Some(channel), &raw)
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("valid JSON")
}

/// The router's encoder for Pusher clients: the event (`message` for a section 5 channel
/// message), its data as a JSON string, and the sender's `user_id` on presence channels.
pub fn encode_channel_event(event: &ChannelEvent<'_>) -> Option<Frame> {
    Some(frame(
        event.event.unwrap_or("message"),
        Some(event.channel),
        event.data.get(),
        event.user_id,
    ))
}

/// `pusher:cache_miss` on cache channel `channel`: nothing is cached there (pusher-js emits it
/// on the channel). No `data`, as Soketi sends it.
pub fn cache_miss(channel: &str) -> Option<Frame> {
    #[derive(Serialize)]
    struct Miss<'a> {
        event: &'static str,
        channel: &'a str,
    }
    let json = serde_json::to_string(&Miss {
        event: "pusher:cache_miss",
        channel,
    })
    .ok()?;
    Some(framed(&json))
}

/// The channel of a signed-in user's connections (Pusher's "sending events to authenticated
/// users": the server library triggers on `#server-to-user-{id}`, pusher-js subscribes to it
/// after `pusher:signin_success`).
pub const USER_CHANNEL: &str = "#server-to-user-";

/// Pusher channel names (SPEC section 13): 1 to 200 characters of `[A-Za-z0-9_\-=@,.;]`, or
/// [`USER_CHANNEL`] followed by such characters.
pub fn valid_channel(name: &str) -> bool {
    let rest = name.strip_prefix(USER_CHANNEL).unwrap_or(name);
    (1..=200).contains(&name.len())
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b))
}

/// The user whose [`USER_CHANNEL`] `name` is, if it is one.
pub fn channel_user(name: &str) -> Option<&str> {
    name.strip_prefix(USER_CHANNEL).filter(|id| !id.is_empty())
}

/// The value an application sees for an event's `data` string: the JSON it holds when it holds
/// JSON (what pusher-js hands the application after its second parse), else the string itself.
pub fn data_value(text: &str) -> Box<RawValue> {
    match serde_json::from_str::<&RawValue>(text) {
        Ok(raw) => raw.to_owned(),
        Err(_) => RawValue::from_string(serde_json::to_string(text).unwrap_or_default())
            .unwrap_or_else(|_| empty_object()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(frame: &Frame) -> String {
        // Short frames in these tests: a 2- or 4-byte header.
        let start = if frame[1] & 0x7f == 126 { 4 } else { 2 };
        String::from_utf8(frame[start..].to_vec()).unwrap()
    }

    #[test]
    fn server_data_is_a_string() {
        let f = frame(
            "pusher:connection_established",
            None,
            r#"{"socket_id":"1.2"}"#,
            None,
        );
        assert_eq!(
            payload(&f),
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\"}"}"#
        );
        let data = data_value(r#"{"a":1}"#);
        let ev = ChannelEvent {
            channel: "c",
            event: None,
            data: &data,
            client_id: Some("abcdefgh"),
            user_id: None,
        };
        assert_eq!(
            payload(&encode_channel_event(&ev).unwrap()),
            r#"{"event":"message","channel":"c","data":"{\"a\":1}"}"#
        );
        assert_eq!(data_value("hello").get(), r#""hello""#);
        assert_eq!(
            payload(&cache_miss("cache-a").unwrap()),
            r#"{"event":"pusher:cache_miss","channel":"cache-a"}"#
        );
        assert_eq!(data_value(" 12 ").get(), "12");
    }

    #[test]
    fn user_ids_keep_their_text() {
        let id = |json: &str| user_id(&serde_json::from_str::<Box<RawValue>>(json).unwrap());
        assert_eq!(
            id("12345678901234567890123").as_deref(),
            Some("12345678901234567890123")
        );
        assert_eq!(id("42").as_deref(), Some("42"));
        assert_eq!(id("-0.5e3").as_deref(), Some("-0.5e3"));
        assert_eq!(id(r#""42""#).as_deref(), Some("42"));
        assert_eq!(id(r#""a\u0062""#).as_deref(), Some("ab"));
        for bad in [r#""""#, "null", "true", "{}", "[1]"] {
            assert_eq!(id(bad), None, "{bad}");
        }
        let data: ChannelData<'_> =
            serde_json::from_str(r#"{"user_id": 98765432109876543210, "user_info": null}"#)
                .unwrap();
        assert_eq!(
            user_id(data.user_id).as_deref(),
            Some("98765432109876543210")
        );
        let signin: UserData<'_> = serde_json::from_str(r#"{"id":1e400,"name":"x"}"#).unwrap();
        assert_eq!(user_id(signin.id).as_deref(), Some("1e400"));
    }

    #[test]
    fn data_null_is_data() {
        let msg: Incoming<'_> =
            serde_json::from_str(r#"{"event":"client-a","channel":"c","data":null}"#).unwrap();
        assert_eq!(msg.data.map(RawValue::get), Some("null"));
        let msg: Incoming<'_> = serde_json::from_str(r#"{"event":"client-a"}"#).unwrap();
        assert!(msg.data.is_none());
    }

    #[test]
    fn channel_names() {
        for ok in [
            "a",
            "private-x",
            "presence-room.1",
            "a_b-c=d@e,f.g;h",
            "#server-to-user-42",
            &"x".repeat(200),
        ] {
            assert!(valid_channel(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "é",
            "a#b",
            "#server-to-user-",
            "#server-to-user-a b",
            "#other",
            &"x".repeat(201),
        ] {
            assert!(!valid_channel(bad), "{bad}");
        }
        assert_eq!(channel_user("#server-to-user-42"), Some("42"));
        assert_eq!(channel_user("#server-to-user-"), None);
        assert_eq!(channel_user("server-to-user-42"), None);
    }
}
