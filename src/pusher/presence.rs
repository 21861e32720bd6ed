//! Presence channels in Pusher's words. The members themselves (one per `user_id`, however
//! many connections it has on however many nodes) are counted by the router
//! (`src/router/members.rs`), which asks this module to encode their arrival and departure:
//! the first connection of a user adds the member (`member_added`), the last one to leave
//! removes it (`member_removed`), as Pusher does (laravel/reverb#216 is the bug of doing it per
//! socket).

use serde_json::{json, Map, Value};

use super::wire;
use crate::router::{Frame, MemberNotice, Router};

/// A member's `user_info` as JSON: what it joined with, `null` if that is not JSON (member
/// data from another node is not trusted to be).
fn info_value(info: &str) -> Value {
    serde_json::from_str(info).unwrap_or(Value::Null)
}

/// `{"presence":{"ids":[...],"hash":{id:info},"count":N}}`, the data of
/// `pusher_internal:subscription_succeeded` on a presence channel: every member in the cluster.
pub fn snapshot(router: &Router, channel: &str) -> String {
    let mut ids = Vec::new();
    let mut hash = Map::new();
    for (user, info) in router.channel_users(channel) {
        ids.push(Value::String(user.to_owned()));
        hash.insert(user.to_owned(), info_value(info));
    }
    let count = ids.len();
    json!({ "presence": { "ids": ids, "hash": hash, "count": count } }).to_string()
}

/// The router's encoder for member notices: `pusher_internal:member_added` with
/// `{"user_id","user_info"}`, `pusher_internal:member_removed` with `{"user_id"}`.
pub fn encode_member(notice: &MemberNotice<'_>) -> Option<Frame> {
    let (event, channel, data) = match *notice {
        MemberNotice::Added {
            channel,
            user,
            info,
        } => (
            "pusher_internal:member_added",
            channel,
            json!({ "user_id": user, "user_info": info_value(info) }),
        ),
        MemberNotice::Removed { channel, user } => (
            "pusher_internal:member_removed",
            channel,
            json!({ "user_id": user }),
        ),
    };
    Some(wire::frame(event, Some(channel), &data.to_string(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(frame: &Frame) -> &str {
        std::str::from_utf8(&frame[2..]).unwrap()
    }

    #[test]
    fn member_notices() {
        let added = MemberNotice::Added {
            channel: "presence-a",
            user: "1",
            info: r#"{"name":"Ann"}"#,
        };
        assert_eq!(
            payload(&encode_member(&added).unwrap()),
            r#"{"event":"pusher_internal:member_added","channel":"presence-a","data":"{\"user_id\":\"1\",\"user_info\":{\"name\":\"Ann\"}}"}"#
        );
        let garbage = MemberNotice::Added {
            channel: "presence-a",
            user: "2",
            info: "{not json",
        };
        assert!(payload(&encode_member(&garbage).unwrap()).contains(r#"\"user_info\":null"#));
        let removed = MemberNotice::Removed {
            channel: "presence-a",
            user: "1",
        };
        assert_eq!(
            payload(&encode_member(&removed).unwrap()),
            r#"{"event":"pusher_internal:member_removed","channel":"presence-a","data":"{\"user_id\":\"1\"}"}"#
        );
    }
}
