//! Presence channel members: one member per `user_id`, however many connections it has. The
//! first connection of a user adds the member (`member_added`), the last one to leave removes
//! it (`member_removed`), as Pusher does (laravel/reverb#216 is the bug of doing it per socket).

use std::collections::{BTreeMap, HashMap};

use serde_json::value::RawValue;

/// One user on a presence channel.
#[derive(Debug)]
struct Member {
    /// Its connections on this channel.
    conns: u32,
    /// `user_info` as its first connection gave it (`null` when absent).
    info: Box<RawValue>,
}

/// Every presence channel's members (local to this node).
#[derive(Debug, Default)]
pub struct Presence {
    channels: HashMap<String, BTreeMap<String, Member>>,
}

impl Presence {
    /// A connection of `user` joined `channel`: true when it is the user's first.
    pub fn add(&mut self, channel: &str, user: &str, info: Option<&RawValue>) -> bool {
        let members = self.channels.entry(channel.to_owned()).or_default();
        match members.get_mut(user) {
            Some(member) => {
                member.conns += 1;
                false
            }
            None => {
                let info = info.map_or_else(
                    || RawValue::from_string("null".to_owned()).expect("valid JSON"),
                    RawValue::to_owned,
                );
                members.insert(user.to_owned(), Member { conns: 1, info });
                true
            }
        }
    }

    /// A connection of `user` left `channel`: true when it was the user's last.
    pub fn remove(&mut self, channel: &str, user: &str) -> bool {
        let Some(members) = self.channels.get_mut(channel) else {
            return false;
        };
        let Some(member) = members.get_mut(user) else {
            return false;
        };
        member.conns -= 1;
        if member.conns > 0 {
            return false;
        }
        members.remove(user);
        if members.is_empty() {
            self.channels.remove(channel);
        }
        true
    }

    /// How many users are on `channel`.
    pub fn user_count(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, BTreeMap::len)
    }

    /// The user ids on `channel`, sorted.
    pub fn users(&self, channel: &str) -> impl Iterator<Item = &str> + '_ {
        self.channels
            .get(channel)
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
    }

    /// `{"presence":{"ids":[...],"hash":{id:info},"count":N}}`, the data of
    /// `pusher_internal:subscription_succeeded` on a presence channel.
    pub fn snapshot(&self, channel: &str) -> String {
        let mut ids = Vec::new();
        let mut hash = serde_json::Map::new();
        if let Some(members) = self.channels.get(channel) {
            for (id, member) in members {
                ids.push(serde_json::Value::String(id.clone()));
                let info = serde_json::from_str(member.info.get()).unwrap_or_default();
                hash.insert(id.clone(), info);
            }
        }
        let count = ids.len();
        serde_json::json!({ "presence": { "ids": ids, "hash": hash, "count": count } }).to_string()
    }

    /// `{"user_id":ID,"user_info":INFO}` for `member_added`.
    pub fn member_json(&self, channel: &str, user: &str) -> String {
        let info = self
            .channels
            .get(channel)
            .and_then(|m| m.get(user))
            .and_then(|m| serde_json::from_str(m.info.get()).ok())
            .unwrap_or(serde_json::Value::Null);
        serde_json::json!({ "user_id": user, "user_info": info }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_member_per_user() {
        let mut p = Presence::default();
        let info = RawValue::from_string(r#"{"name":"Ann"}"#.to_owned()).unwrap();
        assert!(p.add("presence-a", "1", Some(&info)));
        assert!(!p.add("presence-a", "1", None));
        assert!(p.add("presence-a", "2", None));
        assert_eq!(p.user_count("presence-a"), 2);
        assert_eq!(
            p.snapshot("presence-a"),
            r#"{"presence":{"count":2,"hash":{"1":{"name":"Ann"},"2":null},"ids":["1","2"]}}"#
        );
        assert!(!p.remove("presence-a", "1"));
        assert!(p.remove("presence-a", "1"));
        assert!(!p.remove("presence-a", "1"));
        assert!(p.remove("presence-a", "2"));
        assert_eq!(p.user_count("presence-a"), 0);
        assert!(p.channels.is_empty());
    }
}
