//! Presence channels in Pusher's words. The members themselves (one per `user_id`, however
//! many connections it has on however many nodes) are counted by the router
//! (`src/router/members.rs`), which asks this module to encode their arrival and departure:
//! the first connection of a user adds the member (`member_added`), the last one to leave
//! removes it (`member_removed`), as Pusher does (laravel/reverb#216 is the bug of doing it per
//! socket).

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::wire;
use crate::router::{Frame, MemberNotice, Router};

/// A member's `user_info` as JSON: what it joined with, `null` if that is not JSON (member
/// data from another node is not trusted to be). Checked in place, without building a tree.
fn info_value(info: &str) -> &RawValue {
    serde_json::from_str(info).unwrap_or(RawValue::NULL)
}

/// `{"presence":{"ids":[...],"hash":{id:info},"count":N}}`, the data of
/// `pusher_internal:subscription_succeeded` on a presence channel: every member in the cluster
/// (at most `max_presence_members`), written straight from the router's table.
pub fn snapshot(router: &Router, channel: &str) -> String {
    #[derive(Serialize)]
    struct Snapshot<'a> {
        presence: Presence<'a>,
    }
    serde_json::to_string(&Snapshot {
        presence: Presence { router, channel },
    })
    .unwrap_or_default()
}

struct Presence<'a> {
    router: &'a Router,
    channel: &'a str,
}

struct Ids<'a>(&'a Presence<'a>);
struct Hash<'a>(&'a Presence<'a>);

impl Serialize for Presence<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("ids", &Ids(self))?;
        map.serialize_entry("hash", &Hash(self))?;
        map.serialize_entry("count", &self.router.user_count(self.channel))?;
        map.end()
    }
}

impl Serialize for Ids<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        serializer.collect_seq(p.router.channel_users(p.channel).map(|(user, _)| user))
    }
}

impl Serialize for Hash<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        serializer.collect_map(
            p.router
                .channel_users(p.channel)
                .map(|(user, info)| (user, info_value(info))),
        )
    }
}

/// The data of `pusher_internal:member_added`.
#[derive(Serialize)]
struct Added<'a> {
    user_id: &'a str,
    user_info: &'a RawValue,
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
            serde_json::to_string(&Added {
                user_id: user,
                user_info: info_value(info),
            })
            .unwrap_or_default(),
        ),
        MemberNotice::Removed { channel, user } => (
            "pusher_internal:member_removed",
            channel,
            json!({ "user_id": user }).to_string(),
        ),
    };
    Some(wire::frame(event, Some(channel), &data, None))
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
