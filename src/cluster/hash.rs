//! A node's presence hash `NS:presence:ID` (see `envelope.rs` for its fields): written one
//! change at a time as the router reports them (each change also published on the bus with
//! the new version), or whole after a reconnect; read whole (`HGETALL`) by the other nodes to
//! resync. Clients and their subscriptions share one version, so a snapshot is consistent with
//! the deltas that follow it.

use std::time::Instant;

use super::envelope::{self, Body, Joined, Member as Stored};
use super::resp::Value;
use super::{apply_delta, Cluster};
use crate::router::{ChannelMember, ClusterOut, Member, Outbox, Router, Subscription};

/// The hash field that holds the version.
pub(super) const VERSION_FIELD: &str = "~v";

impl Cluster {
    /// A change to this node's clients or their subscriptions: the next version, written to
    /// our hash and published.
    pub(super) fn record(&mut self, item: ClusterOut) {
        match item {
            ClusterOut::Joined(member) => {
                self.ver += 1;
                let stored = Stored {
                    seq: member.seq,
                    connected_at: member.connected_at,
                    entry: &member.entry,
                };
                let hash = self.hash(&self.node);
                let ver = self.ver.to_string();
                self.command(&[
                    b"HSET",
                    hash.as_bytes(),
                    member.id.as_bytes(),
                    stored.encode().as_bytes(),
                    VERSION_FIELD.as_bytes(),
                    ver.as_bytes(),
                ]);
                let body = Body::Join {
                    id: &member.id,
                    seq: member.seq,
                    connected_at: member.connected_at,
                    ver: self.ver,
                    entry: &member.entry,
                };
                self.publish_control(body);
            }
            ClusterOut::Left { id, channels } => {
                self.ver += 1;
                let hash = self.hash(&self.node);
                let ver = self.ver.to_string();
                let mut hdel = vec![b"HDEL".to_vec(), hash.clone().into_bytes()];
                hdel.push(id.clone().into_bytes());
                for channel in &channels {
                    hdel.push(envelope::subscription_field(&id, channel).into_bytes());
                }
                self.command_owned(hdel);
                self.set_version(&hash, &ver);
                self.publish_control(Body::Leave {
                    id: &id,
                    ver: self.ver,
                });
            }
            ClusterOut::Subscribed(sub) => {
                self.ver += 1;
                let hash = self.hash(&self.node);
                let ver = self.ver.to_string();
                let field = envelope::subscription_field(&sub.id, &sub.channel);
                let member = encode_member(sub.member.as_ref());
                self.command(&[
                    b"HSET",
                    hash.as_bytes(),
                    field.as_bytes(),
                    member.as_bytes(),
                    VERSION_FIELD.as_bytes(),
                    ver.as_bytes(),
                ]);
                self.publish_control(Body::Subscribe {
                    id: &sub.id,
                    ver: self.ver,
                    channel: &sub.channel,
                    member: &member,
                });
            }
            ClusterOut::Unsubscribed { id, channel } => {
                self.ver += 1;
                let hash = self.hash(&self.node);
                let ver = self.ver.to_string();
                let field = envelope::subscription_field(&id, &channel);
                self.command(&[b"HDEL", hash.as_bytes(), field.as_bytes()]);
                self.set_version(&hash, &ver);
                self.publish_control(Body::Unsubscribe {
                    id: &id,
                    ver: self.ver,
                    channel: &channel,
                });
            }
            // Messages, published by `pump`.
            _ => {}
        }
    }

    /// Writes our hash whole, in one transaction, queued as one item: all of it or nothing
    /// (half of one, without its `EXEC`, would leave the command connection inside it, every
    /// later command answered `+QUEUED` and run never).
    pub(super) fn announce(&mut self, router: &Router) {
        if !self.can_send() {
            return;
        }
        self.announce_needed = false;
        let hash = self.hash(&self.node);
        let mut hset: Vec<Vec<u8>> = vec![b"HSET".to_vec(), hash.clone().into_bytes()];
        for member in router.local_members() {
            let stored = Stored {
                seq: member.seq,
                connected_at: member.connected_at,
                entry: &member.entry,
            };
            hset.push(member.id.into_bytes());
            hset.push(stored.encode().into_bytes());
        }
        for sub in router.local_subscriptions() {
            hset.push(envelope::subscription_field(&sub.id, &sub.channel).into_bytes());
            hset.push(encode_member(sub.member.as_ref()).into_bytes());
        }
        hset.push(VERSION_FIELD.into());
        hset.push(self.ver.to_string().into_bytes());
        let ttl = self.timeout.as_millis().to_string();
        let transaction = vec![
            vec![b"MULTI".to_vec()],
            vec![b"DEL".to_vec(), hash.clone().into_bytes()],
            hset,
            vec![b"PEXPIRE".to_vec(), hash.into_bytes(), ttl.into_bytes()],
            vec![b"EXEC".to_vec()],
        ];
        if !self.link.try_send_all(transaction) {
            self.announce_needed = true;
        }
    }

    /// The reply to the fetch of `node`'s hash ([`super::guard::FETCH`]). Only an array is a
    /// hash: anything else (an error, or `+QUEUED` from a connection left inside a
    /// transaction) is no answer, and the snapshot stays awaited (asked again at a heartbeat
    /// after `node_timeout`). Taken for an empty hash, it made every client of the node vanish.
    pub(super) fn on_snapshot(
        &mut self,
        node: &str,
        value: &Value,
        router: &mut Router,
        out: &mut impl Outbox,
        now: Instant,
    ) {
        if self.oversized(node, value, router, out, now) {
            return;
        }
        // An error is logged by the link; anything else that is no hash, here.
        let Some(snapshot) = parse_hash(value) else {
            if !matches!(value, Value::Error(_)) {
                let shape = value.shape();
                log::warn!("cluster: the hash of node {node} came back as {shape}; ignored");
            }
            return;
        };
        if !self.directory.syncing(node) {
            return;
        }
        let Some((deltas, again)) = self.directory.synced(node, snapshot.ver) else {
            return;
        };
        router.remote_node(node, snapshot.members, snapshot.subs, now, out);
        for delta in deltas {
            apply_delta(node, delta, router, out, now);
        }
        self.check_replica(router, out, now);
        if again && !self.directory.refused(node) {
            self.sync(node, now);
        }
        self.check_trust(router, now);
    }

    /// [`Cluster::command`] with owned arguments.
    fn command_owned(&mut self, args: Vec<Vec<u8>>) -> bool {
        let ok = self.can_send() && self.link.try_send(args, 0);
        if !ok {
            self.announce_needed = true;
        }
        ok
    }

    /// `HSET hash ~v ver`.
    fn set_version(&mut self, hash: &str, ver: &str) {
        self.command(&[
            b"HSET",
            hash.as_bytes(),
            VERSION_FIELD.as_bytes(),
            ver.as_bytes(),
        ]);
    }
}

/// A subscription's member as the hash and the bus carry it.
fn encode_member(member: Option<&ChannelMember>) -> String {
    let joined = member.map(|m| Joined {
        user: &m.user,
        info: &m.info,
    });
    Joined::encode(joined.as_ref())
}

/// The inverse of [`encode_member`]; `None` for something malformed.
pub(super) fn decode_member(text: &str) -> Option<Option<ChannelMember>> {
    Some(Joined::decode(text)?.map(|j| ChannelMember {
        user: j.user.to_owned(),
        info: j.info.to_owned(),
    }))
}

/// A node's presence hash, read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub members: Vec<Member>,
    pub subs: Vec<Subscription>,
    /// `None`: the hash had no version (it expired, or never was).
    pub ver: Option<u64>,
}

/// An HGETALL reply of a presence hash: its clients, their subscriptions and
/// its version. Fields that are none of these, or malformed, are skipped.
/// `None` when the reply is no array (an error, `+QUEUED`): no hash at all,
/// which is not an empty one.
pub(super) fn parse_hash(value: &Value) -> Option<Snapshot> {
    let mut snapshot = Snapshot::default();
    for pair in value.as_array()?.chunks_exact(2) {
        let (Some(field), Some(text)) = (pair[0].as_bytes(), pair[1].as_bytes()) else {
            continue;
        };
        let (Ok(field), Ok(text)) = (std::str::from_utf8(field), std::str::from_utf8(text)) else {
            continue;
        };
        if field == VERSION_FIELD {
            snapshot.ver = text.parse().ok();
        } else if let Some((id, channel)) = envelope::parse_subscription_field(field) {
            if let Some(member) = decode_member(text) {
                snapshot.subs.push(Subscription {
                    id: id.to_owned(),
                    channel: channel.to_owned(),
                    member,
                });
            }
        } else if let Some(m) = Stored::decode(text) {
            snapshot.members.push(Member {
                id: field.to_owned(),
                seq: m.seq,
                connected_at: m.connected_at,
                entry: m.entry.to_owned(),
            });
        }
    }
    Some(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{ChannelMember, Member, Subscription};

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn reads_a_presence_hash() {
        let reply = Value::Array(Some(vec![
            bulk("AbCd1234"),
            bulk(r#"3 1700000000 {"id":"AbCd1234"}"#),
            bulk("~v"),
            bulk("7"),
            bulk("AbCd1234:presence-room"),
            bulk(r#"2 42{"name":"Ann"}"#),
            bulk("AbCd1234:news"),
            bulk(""),
            bulk("AbCd1234:bad"),
            bulk("9 x"),
            bulk("broken"),
            bulk("x"),
        ]));
        let snapshot = parse_hash(&reply).unwrap();
        assert_eq!(snapshot.ver, Some(7));
        assert_eq!(
            snapshot.members,
            [Member {
                id: "AbCd1234".into(),
                seq: 3,
                connected_at: 1_700_000_000,
                entry: r#"{"id":"AbCd1234"}"#.into(),
            }]
        );
        assert_eq!(
            snapshot.subs,
            [
                Subscription {
                    id: "AbCd1234".into(),
                    channel: "presence-room".into(),
                    member: Some(ChannelMember {
                        user: "42".into(),
                        info: r#"{"name":"Ann"}"#.into(),
                    }),
                },
                Subscription {
                    id: "AbCd1234".into(),
                    channel: "news".into(),
                    member: None,
                },
            ]
        );
        assert_eq!(
            parse_hash(&Value::Array(Some(vec![]))),
            Some(Snapshot::default())
        );
    }

    #[test]
    fn a_reply_that_is_no_array_is_no_hash() {
        // `+QUEUED` is what a connection left inside a transaction answers to anything.
        for reply in [
            Value::Simple("QUEUED".into()),
            Value::Simple("OK".into()),
            Value::Error("ERR no".into()),
            Value::Bulk(None),
            Value::Array(None),
            Value::Integer(0),
        ] {
            assert_eq!(parse_hash(&reply), None, "{reply:?}");
        }
    }

    #[test]
    fn members_travel_as_they_are_stored() {
        let m = ChannelMember {
            user: "a:b c".into(),
            info: "null".into(),
        };
        assert_eq!(decode_member(&encode_member(Some(&m))), Some(Some(m)));
        assert_eq!(decode_member(&encode_member(None)), Some(None));
        assert_eq!(decode_member("x"), None);
    }
}
