//! What the cluster's directory holds about one client (SPEC sections 11 and 13): its presence
//! entry, and each channel it is subscribed to with, on a presence channel of the other dialect,
//! the member it joined as. The same types describe a local client (to announce it), a client
//! of another node (in the replica, `replica.rs`) and what travels between nodes
//! (`src/cluster/`), so they live apart from all three.
//!
//! Member data is opaque here: a user id and its info as text (for Pusher, `user_id` and the
//! JSON of `user_info`); only the dialect that made it reads it.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::Client;

/// One client as the presence directory holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// Its node's connection sequence number (orders ties).
    pub seq: u64,
    /// Unix seconds.
    pub connected_at: u64,
    /// Its presence entry, `{"id","name","email","connected_at"}`.
    pub entry: String,
}

/// One channel subscription of a client, as the directory holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The client's id.
    pub id: String,
    pub channel: String,
    /// The member it joined as, on a presence channel.
    pub member: Option<ChannelMember>,
}

/// Who a connection is on a presence channel: one member per `user`, however many
/// connections it has on however many nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMember {
    /// The user id, as text.
    pub user: String,
    /// What the dialect shows of the user (Pusher: the JSON of `user_info`).
    pub info: String,
}

/// The longest channel name either dialect allows, in bytes (Pusher's 200 characters of ASCII;
/// section 5 allows 128 bytes).
pub const MAX_CHANNEL_LEN: usize = 200;
/// The longest user id a member may have, in bytes (Pusher documents 128 characters).
pub const MAX_USER_LEN: usize = 128;
/// The most a member's info may hold, in bytes (Pusher documents 1 KB for the user object).
pub const MAX_INFO_LEN: usize = 1024;

impl ChannelMember {
    /// Within the limits above (what a node stores for another node's member, too).
    pub fn is_valid(&self) -> bool {
        (1..=MAX_USER_LEN).contains(&self.user.len()) && self.info.len() <= MAX_INFO_LEN
    }
}

/// A channel name some dialect could have made: 1 to 200 bytes, no control characters. Names
/// from other nodes are checked against it before they are stored.
pub fn is_plausible_channel(name: &str) -> bool {
    (1..=MAX_CHANNEL_LEN).contains(&name.len()) && !name.chars().any(char::is_control)
}

/// One presence entry: `{"id","name","email","connected_at"}`.
pub(crate) struct Entry<'a>(pub(crate) &'a Client);

impl Serialize for Entry<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let client = self.0;
        let mut s = serializer.serialize_struct("Entry", 4)?;
        s.serialize_field("id", client.id.as_str())?;
        match &client.user {
            Some(user) => {
                s.serialize_field("name", &user.name)?;
                s.serialize_field("email", &user.email)?;
            }
            None => {
                s.serialize_field("name", "Guest")?;
                s.serialize_field("email", &None::<&str>)?;
            }
        }
        s.serialize_field("connected_at", &client.connected_at)?;
        s.end()
    }
}

/// A local client as a directory member.
pub(crate) fn member(client: &Client) -> Member {
    Member {
        id: client.id.as_str().to_owned(),
        seq: client.seq,
        connected_at: u64::from(client.connected_at),
        entry: serde_json::to_string(&Entry(client)).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let m = |user: &str, info: usize| ChannelMember {
            user: user.into(),
            info: "x".repeat(info),
        };
        assert!(m("1", 0).is_valid());
        assert!(m(&"u".repeat(MAX_USER_LEN), MAX_INFO_LEN).is_valid());
        assert!(!m("", 4).is_valid());
        assert!(!m(&"u".repeat(MAX_USER_LEN + 1), 4).is_valid());
        assert!(!m("1", MAX_INFO_LEN + 1).is_valid());
        assert!(is_plausible_channel("presence-room"));
        assert!(is_plausible_channel(&"x".repeat(200)));
        for bad in ["", "a\nb", &"x".repeat(201)] {
            assert!(!is_plausible_channel(bad), "{bad:?}");
        }
    }
}
