//! The JSON wire format (SPEC section 5): reading what clients send and
//! serialising what the server sends.
//!
//! Incoming values that are passed on (`message`, `data`) are kept as
//! borrowed [`RawValue`]s, so they go out byte for byte as they came in:
//! `1.0` stays `1.0` and a 30-digit integer keeps every digit, which a
//! round trip through `serde_json::Value` would not guarantee.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::members::ChannelMembers;
use super::presence::PresenceUsers;
use super::Frame;
use crate::session::User;

/// The error codes of SPEC section 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    InvalidJson,
    BadRequest,
    UnknownClient,
    UnknownEvent,
    UnknownCommand,
    InvalidChannel,
    TooManyChannels,
    Forbidden,
    BinaryUnsupported,
    /// SPEC section 17: a message over its sender's bucket (sent at most once a second).
    RateLimited,
    /// History could not be read (Redis unreachable or answering nonsense; SPEC 16, docs/history.md).
    Unavailable,
}

impl ErrorCode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownClient => "unknown_client",
            ErrorCode::UnknownEvent => "unknown_event",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::TooManyChannels => "too_many_channels",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BinaryUnsupported => "binary_unsupported",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// Why a client's message was refused: becomes an `error` frame to the
/// sender only; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject {
    pub code: ErrorCode,
    /// A short sentence for humans; clients should match on `code`.
    pub text: Cow<'static, str>,
    /// The channel a refusal by its rules is about (SPEC section 15).
    pub channel: Option<String>,
}

impl Reject {
    pub(crate) fn new(code: ErrorCode, text: impl Into<Cow<'static, str>>) -> Reject {
        Reject {
            code,
            text: text.into(),
            channel: None,
        }
    }

    /// The same refusal, naming `channel` in the error frame.
    pub(crate) fn on(self, channel: &str) -> Reject {
        Reject {
            channel: Some(channel.to_owned()),
            ..self
        }
    }

    pub(crate) fn bad_request(text: impl Into<Cow<'static, str>>) -> Reject {
        Reject::new(ErrorCode::BadRequest, text)
    }
}

/// The keys routing looks at, borrowed from the message text. `Some` means
/// the key is present, even when its value is `null`: routing goes by key
/// presence (`{"to":null,"message":1}` is a malformed private message, not
/// a broadcast). Other keys are ignored.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Incoming<'a> {
    pub command: Option<&'a RawValue>,
    pub event: Option<&'a RawValue>,
    pub to: Option<&'a RawValue>,
    pub message: Option<&'a RawValue>,
    pub channel: Option<&'a RawValue>,
    pub data: Option<&'a RawValue>,
    pub ping: Option<&'a RawValue>,
    pub client_id: Option<&'a RawValue>,
    /// A channel token (SPEC section 15).
    pub token: Option<&'a RawValue>,
    /// What a subscriber saw last, or where a `history` request starts (SPEC section 16).
    pub since: Option<&'a RawValue>,
    /// How many publications a `history` request wants (SPEC section 16).
    pub limit: Option<&'a RawValue>,
}

/// Parses one client text message.
///
/// Malformed JSON is `invalid_json`; well-formed JSON that is not an object,
/// or repeats a key routing looks at (which of the two values would be
/// meant is a guess), is `bad_request`.
pub(crate) fn parse(text: &str) -> Result<Incoming<'_>, Reject> {
    match serde_json::from_str::<Incoming<'_>>(text) {
        Ok(incoming) => Ok(incoming),
        // A data error (not an object, a repeated key) stops the parse where
        // it is found, possibly before a syntax error further on; only
        // well-formed JSON deserves bad_request, so check the whole text (as a raw value:
        // a number beyond f64, `1E400`, is well-formed JSON, which `IgnoredAny` would refuse).
        Err(e) => match serde_json::from_str::<&RawValue>(text) {
            Err(syntax) => Err(Reject::new(
                ErrorCode::InvalidJson,
                format!("invalid JSON: {syntax}"),
            )),
            // Well-formed, but not a message: not an object, a repeated key, a field of the
            // wrong type, or a number we would have to read beyond f64's range.
            Ok(_) => Err(Reject::bad_request(e.to_string())),
        },
    }
}

/// A required field: present (with any value, `null` included).
pub(crate) fn required<'a>(
    field: Option<&'a RawValue>,
    name: &'static str,
) -> Result<&'a RawValue, Reject> {
    field.ok_or_else(|| Reject::bad_request(format!("missing field `{name}`")))
}

/// A required field that must be a JSON string; borrowed unless it has escapes.
pub(crate) fn required_str<'a>(
    field: Option<&'a RawValue>,
    name: &'static str,
) -> Result<Cow<'a, str>, Reject> {
    as_str(required(field, name)?)
        .ok_or_else(|| Reject::bad_request(format!("field `{name}` must be a string")))
}

/// The string a raw value holds, or `None` when it is not a string.
pub(crate) fn as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let json = raw.get();
    if !json.starts_with('"') {
        return None;
    }
    match serde_json::from_str::<&str>(json) {
        Ok(s) => Some(Cow::Borrowed(s)),
        // An escaped string cannot be borrowed.
        Err(_) => serde_json::from_str::<String>(json).ok().map(Cow::Owned),
    }
}

/// The keys of [`Incoming`], matched on the unescaped key.
enum Key {
    Command,
    Event,
    To,
    Message,
    Channel,
    Data,
    Ping,
    ClientId,
    Token,
    Since,
    Limit,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "command" => Key::Command,
                    "event" => Key::Event,
                    "to" => Key::To,
                    "message" => Key::Message,
                    "channel" => Key::Channel,
                    "data" => Key::Data,
                    "ping" => Key::Ping,
                    "client_id" => Key::ClientId,
                    "token" => Key::Token,
                    "since" => Key::Since,
                    "limit" => Key::Limit,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// Written by hand rather than derived: a derived struct also accepts a JSON
/// array (fields by position) and cannot tell an absent key from `null`.
impl<'de> Deserialize<'de> for Incoming<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Incoming<'de>, D::Error> {
        struct IncomingVisitor;
        impl<'de> Visitor<'de> for IncomingVisitor {
            type Value = Incoming<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Incoming<'de>, A::Error> {
                let mut m = Incoming::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let (slot, name) = match key {
                        Key::Command => (&mut m.command, "command"),
                        Key::Event => (&mut m.event, "event"),
                        Key::To => (&mut m.to, "to"),
                        Key::Message => (&mut m.message, "message"),
                        Key::Channel => (&mut m.channel, "channel"),
                        Key::Data => (&mut m.data, "data"),
                        Key::Ping => (&mut m.ping, "ping"),
                        Key::ClientId => (&mut m.client_id, "client_id"),
                        Key::Token => (&mut m.token, "token"),
                        Key::Since => (&mut m.since, "since"),
                        Key::Limit => (&mut m.limit, "limit"),
                        Key::Other => {
                            // Raw: never reads a number it does not need (`1E400` is fine).
                            map.next_value::<&RawValue>()?;
                            continue;
                        }
                    };
                    if slot.is_some() {
                        return Err(de::Error::duplicate_field(name));
                    }
                    *slot = Some(map.next_value::<&'de RawValue>()?);
                }
                Ok(m)
            }
        }
        deserializer.deserialize_map(IncomingVisitor)
    }
}

/// The `user` of a welcome: the public part of a [`User`] (not `admin`).
#[derive(Debug, Serialize)]
pub(crate) struct PublicUser<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub email: Option<&'a str>,
}

impl<'a> From<&'a User> for PublicUser<'a> {
    fn from(user: &'a User) -> PublicUser<'a> {
        PublicUser {
            id: &user.id,
            name: &user.name,
            email: user.email.as_deref(),
        }
    }
}

/// Every message the server sends, tagged with its `type`. A `client_id` of
/// `None` is left out: messages caused by commands name no sender.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Out<'a> {
    Welcome {
        client_id: &'a str,
        user: Option<PublicUser<'a>>,
    },
    Message {
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
        message: &'a RawValue,
    },
    Private {
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
        message: &'a RawValue,
    },
    Subscribed {
        channel: &'a str,
        /// The answer to a `since` (SPEC section 16).
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// A history channel's newest offset and its epoch (SPEC section 16).
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
        /// On a channel with presence (SPEC section 15.3): its members, itself included.
        #[serde(skip_serializing_if = "Option::is_none")]
        presence: Option<ChannelMembers<'a>>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
    Unsubscribed {
        channel: &'a str,
    },
    Channel {
        channel: &'a str,
        /// The event name of a message from the Pusher dialect (SPEC section 13).
        #[serde(skip_serializing_if = "Option::is_none")]
        event: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
        data: &'a RawValue,
        /// On a history channel: the publication's offset and the stream's epoch (SPEC
        /// section 16); absent elsewhere, so those frames stay as section 5 has them.
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
    },
    Pong,
    Ack {
        command: &'a str,
    },
    Error {
        code: &'static str,
        /// The channel whose rules refused the message (SPEC section 15).
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
        message: &'a str,
    },
    Presence {
        users: PresenceUsers<'a>,
        count: usize,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
    /// A subscriber arrived on a channel with presence (SPEC section 15.3).
    Join {
        channel: &'a str,
        client_id: &'a str,
        user: &'a RawValue,
    },
    /// A subscriber left a channel with presence.
    Leave {
        channel: &'a str,
        client_id: &'a str,
        user: &'a RawValue,
    },
    /// The answer to `{"event":"history",...}` (SPEC section 16).
    History {
        channel: &'a str,
        /// `[{"offset":N,"data":D,"client_id":S}...]`, written by `history_wire.rs`.
        publications: &'a RawValue,
        offset: u64,
        epoch: &'a str,
    },
    /// The answer to `{"event":"presence","channel":C}`.
    ChannelPresence {
        channel: &'a str,
        clients: ChannelMembers<'a>,
        count: usize,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
}

/// One outgoing message, serialised and framed once and then shared by all
/// of its recipients.
pub(crate) struct Outgoing {
    /// The complete WebSocket text frame.
    pub frame: Frame,
    /// The frame's JSON payload, for `Handler::send`. Kept beside the frame
    /// rather than re-read from it so that it needs no UTF-8 check.
    pub json: String,
}

impl Outgoing {
    /// Serialises and frames `msg`. `None` only if serialisation fails,
    /// which none of the [`Out`] variants can do; it is logged, not a panic.
    pub(crate) fn encode(msg: &Out<'_>) -> Option<Outgoing> {
        let json = match serde_json::to_string(msg) {
            Ok(json) => json,
            Err(e) => {
                log::error!("router: cannot serialise an outgoing message: {e}");
                return None;
            }
        };
        let mut frame = Vec::new();
        rakit_protocol::encode_frame(&mut frame, rakit_protocol::OpCode::Text, json.as_bytes());
        Some(Outgoing {
            frame: Frame::from(frame),
            json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(text: &str) -> ErrorCode {
        parse(text).map(|_| ()).unwrap_err().code
    }

    #[test]
    fn syntax_errors_are_invalid_json() {
        for text in [
            "",
            "   ",
            "{",
            "{\"message\":",
            "{\"message\":1,}",
            "{message:1}",
            "{\"message\":1} x",
            "[1,",
            "nul",
            "{\"message\":1,\"message\":",
            "\"unterminated",
        ] {
            assert_eq!(codes(text), ErrorCode::InvalidJson, "{text:?}");
        }
    }

    #[test]
    fn well_formed_non_objects_are_bad_request() {
        for text in [
            "[]", "[1,2]", "[\"x\"]", "1", "\"s\"", "null", "true", " [ ] ",
        ] {
            assert_eq!(codes(text), ErrorCode::BadRequest, "{text:?}");
        }
    }

    #[test]
    fn duplicate_routed_keys_are_bad_request_but_other_duplicates_are_fine() {
        assert_eq!(codes(r#"{"message":1,"message":2}"#), ErrorCode::BadRequest);
        assert_eq!(codes(r#"{"to":"a","t\u006f":"b"}"#), ErrorCode::BadRequest);
        let m = parse(r#"{"x":1,"x":2,"message":3}"#).unwrap();
        assert_eq!(m.message.map(RawValue::get), Some("3"));
    }

    #[test]
    fn null_counts_as_present() {
        let m = parse(r#"{"to":null,"message":null}"#).unwrap();
        assert_eq!(m.to.map(RawValue::get), Some("null"));
        assert_eq!(m.message.map(RawValue::get), Some("null"));
        assert!(m.command.is_none() && m.event.is_none() && m.ping.is_none());
    }

    #[test]
    fn values_are_borrowed_verbatim() {
        let text = r#" { "message" : { "a" : [1.0, 1e400, 123456789012345678901234567890] } , "data":"\u00e9" } "#;
        let m = parse(text).unwrap();
        assert_eq!(
            m.message.map(RawValue::get),
            Some(r#"{ "a" : [1.0, 1e400, 123456789012345678901234567890] }"#)
        );
        assert_eq!(m.data.map(RawValue::get), Some(r#""\u00e9""#));
    }

    #[test]
    fn escaped_keys_are_recognised() {
        let m = parse(r#"{"\u0063ommand":"x"}"#).unwrap();
        assert_eq!(m.command.map(RawValue::get), Some(r#""x""#));
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = format!(
            r#"{{"message":{}{}}}"#,
            "[".repeat(50_000),
            "]".repeat(50_000)
        );
        assert!(parse(&deep).is_ok());
        let broken = format!(r#"{{"message":{}}}"#, "[".repeat(50_000));
        assert_eq!(codes(&broken), ErrorCode::InvalidJson);
    }

    #[test]
    fn strings_decode_escapes() {
        let raw: &RawValue = serde_json::from_str(r#""a\"b\u00e9""#).unwrap();
        assert_eq!(as_str(raw).as_deref(), Some("a\"bé"));
        let raw: &RawValue = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(as_str(raw), Some(Cow::Borrowed("plain"))));
        for not_string in ["1", "null", "[\"a\"]", "{\"a\":1}", "true"] {
            let raw: &RawValue = serde_json::from_str(not_string).unwrap();
            assert!(as_str(raw).is_none(), "{not_string}");
        }
    }

    #[test]
    fn required_fields() {
        let m = parse(r#"{"to":5,"channel":"c"}"#).unwrap();
        assert_eq!(required_str(m.channel, "channel").as_deref(), Ok("c"));
        let err = required_str(m.to, "to").unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.text.contains("`to`"));
        let err = required(m.message, "message").unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.text.contains("`message`"));
    }

    #[test]
    fn outgoing_is_framed_once_with_the_json_as_payload() {
        let raw: &RawValue = serde_json::from_str("1.0").unwrap();
        let out = Outgoing::encode(&Out::Message {
            client_id: None,
            message: raw,
        })
        .unwrap();
        assert_eq!(out.json, r#"{"type":"message","message":1.0}"#);
        assert_eq!(out.frame[0], 0x81);
        assert_eq!(usize::from(out.frame[1]), out.json.len());
        assert_eq!(&out.frame[2..], out.json.as_bytes());
    }

    #[test]
    fn error_codes_are_the_spec_strings() {
        let all = [
            (ErrorCode::InvalidJson, "invalid_json"),
            (ErrorCode::BadRequest, "bad_request"),
            (ErrorCode::UnknownClient, "unknown_client"),
            (ErrorCode::UnknownEvent, "unknown_event"),
            (ErrorCode::UnknownCommand, "unknown_command"),
            (ErrorCode::InvalidChannel, "invalid_channel"),
            (ErrorCode::TooManyChannels, "too_many_channels"),
            (ErrorCode::Forbidden, "forbidden"),
            (ErrorCode::BinaryUnsupported, "binary_unsupported"),
            (ErrorCode::RateLimited, "rate_limited"),
            (ErrorCode::Unavailable, "unavailable"),
        ];
        for (code, text) in all {
            assert_eq!(code.as_str(), text);
        }
    }
}
