//! Pusher's webhook events (with `[webhooks] format = "pusher"`; docs/pusher-webhooks.md):
//! `channel_occupied`, `channel_vacated`, `member_added`, `member_removed`, `cache_miss` and
//! `client_event`, each a JSON object encoded on the loop thread when it happens, as the Rakit
//! events are.
//!
//! Unlike SPEC section 10's events they carry no client id, user or per-event time: Pusher's
//! receivers (the Node `pusher` library's `WebHook`, the Python library's `validate_webhook`)
//! read the batch's `time_ms` only.

use std::borrow::Cow;

use serde::Serialize;

use crate::config::WebhookEvent;
use crate::events::ChannelActivity;

#[derive(Serialize)]
struct Encoded<'a> {
    name: &'static str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

/// The webhook event that reports `activity`.
pub fn event_of(activity: &ChannelActivity<'_>) -> WebhookEvent {
    match activity {
        ChannelActivity::Occupied { .. } => WebhookEvent::ChannelOccupied,
        ChannelActivity::Vacated { .. } => WebhookEvent::ChannelVacated,
        ChannelActivity::MemberAdded { .. } => WebhookEvent::MemberAdded,
        ChannelActivity::MemberRemoved { .. } => WebhookEvent::MemberRemoved,
        ChannelActivity::ClientEvent { .. } => WebhookEvent::ClientEvent,
        ChannelActivity::CacheMiss { .. } => WebhookEvent::CacheMiss,
    }
}

/// `activity` as Pusher's webhook event object:
/// `{"name":"channel_occupied","channel":C}` (and `channel_vacated`, `cache_miss`),
/// `{"name":"member_added","channel":C,"user_id":U}` (and `member_removed`),
/// `{"name":"client_event","channel":C,"event":E,"data":D,"socket_id":S}` plus `"user_id"` on a
/// presence channel. `D` is a string, as Pusher sends it: the client's string data as is, any
/// other JSON value as the text the client sent.
pub fn encode(activity: &ChannelActivity<'_>) -> String {
    let name = event_of(activity).as_str();
    let event = match *activity {
        ChannelActivity::Occupied { channel }
        | ChannelActivity::Vacated { channel }
        | ChannelActivity::CacheMiss { channel } => Encoded {
            name,
            channel,
            event: None,
            data: None,
            socket_id: None,
            user_id: None,
        },
        ChannelActivity::MemberAdded { channel, user_id }
        | ChannelActivity::MemberRemoved { channel, user_id } => Encoded {
            name,
            channel,
            event: None,
            data: None,
            socket_id: None,
            user_id: Some(user_id),
        },
        ChannelActivity::ClientEvent {
            channel,
            event,
            data,
            socket_id,
            user_id,
        } => Encoded {
            name,
            channel,
            event: Some(event),
            data: Some(match serde_json::from_str::<String>(data.get()) {
                Ok(text) => Cow::Owned(text),
                Err(_) => Cow::Borrowed(data.get()),
            }),
            socket_id: Some(socket_id),
            user_id,
        },
    };
    // Strings only: serialising cannot fail.
    serde_json::to_string(&event).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn events_have_pushers_shape() {
        let cases = [
            (
                ChannelActivity::Occupied { channel: "news" },
                r#"{"name":"channel_occupied","channel":"news"}"#,
            ),
            (
                ChannelActivity::Vacated { channel: "a\"b" },
                r#"{"name":"channel_vacated","channel":"a\"b"}"#,
            ),
            (
                ChannelActivity::CacheMiss {
                    channel: "cache-prices",
                },
                r#"{"name":"cache_miss","channel":"cache-prices"}"#,
            ),
            (
                ChannelActivity::MemberAdded {
                    channel: "presence-room",
                    user_id: "42",
                },
                r#"{"name":"member_added","channel":"presence-room","user_id":"42"}"#,
            ),
            (
                ChannelActivity::MemberRemoved {
                    channel: "presence-room",
                    user_id: "42",
                },
                r#"{"name":"member_removed","channel":"presence-room","user_id":"42"}"#,
            ),
        ];
        for (activity, json) in cases {
            assert_eq!(encode(&activity), json);
        }
    }

    #[test]
    fn client_event_data_is_a_string_and_user_id_only_on_presence() {
        let object = raw(r#"{"typing":true, "n":[1,2]}"#);
        let private = ChannelActivity::ClientEvent {
            channel: "private-chat",
            event: "client-typing",
            data: &object,
            socket_id: "123.456",
            user_id: None,
        };
        assert_eq!(event_of(&private), WebhookEvent::ClientEvent);
        assert_eq!(
            encode(&private),
            r#"{"name":"client_event","channel":"private-chat","event":"client-typing","data":"{\"typing\":true, \"n\":[1,2]}","socket_id":"123.456"}"#
        );
        let text = raw(r#""hi \"you\"""#);
        let presence = ChannelActivity::ClientEvent {
            channel: "presence-room",
            event: "client-msg",
            data: &text,
            socket_id: "1.2",
            user_id: Some("7"),
        };
        assert_eq!(
            encode(&presence),
            r#"{"name":"client_event","channel":"presence-room","event":"client-msg","data":"hi \"you\"","socket_id":"1.2","user_id":"7"}"#
        );
        // Numbers, null: their text.
        let number = raw("12.5");
        let with_number = ChannelActivity::ClientEvent {
            channel: "private-a",
            event: "client-n",
            data: &number,
            socket_id: "1.2",
            user_id: None,
        };
        let v: serde_json::Value = serde_json::from_str(&encode(&with_number)).unwrap();
        assert_eq!(v["data"], "12.5");
    }
}
