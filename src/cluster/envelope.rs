//! What nodes say to each other over Redis pub/sub, and what a node keeps in
//! its presence hash.
//!
//! The hash `NS:presence:ID` holds one field per client (`CLIENT_ID` ->
//! [`Member`]), one per subscription (`CLIENT_ID:CHANNEL` -> the member it
//! joined a presence channel as, [`Joined`], empty for none) and the version
//! (`~v`). Client ids are 8 characters of `[A-Za-z0-9]`, so the three kinds of
//! field cannot be mistaken for one another.
//!
//! An envelope is `KIND ORIGIN '\n' FIELD '\n' ... PAYLOAD`: one kind byte,
//! the origin's node id, a fixed number of newline-ended fields per kind
//! (ids, channel names and numbers, none of which can hold a newline), then
//! the payload, raw. For a message the payload is the complete WebSocket
//! frame as the origin built it: a receiver hands those bytes to its
//! clients unchanged, so a message is serialised once in the whole cluster.

/// One message between nodes, borrowed from the bytes it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The node that sent it.
    pub origin: &'a str,
    pub body: Body<'a>,
}

/// What an envelope says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    /// A frame for every client.
    Broadcast { frame: &'a [u8] },
    /// A frame for the subscribers of `channel`.
    Channel { channel: &'a str, frame: &'a [u8] },
    /// A frame for client `to`; `req` 0 asks for no reply.
    Private {
        to: &'a str,
        req: u64,
        frame: &'a [u8],
    },
    /// Close client `id` with 4000; `req` 0 asks for no reply.
    Disconnect { id: &'a str, req: u64 },
    /// The answer to request `req`: whether the target was here.
    Reply { req: u64, found: bool },
    /// A client connected at the origin (its presence entry as JSON); `ver`
    /// is the origin's directory version after the change.
    Join {
        id: &'a str,
        seq: u64,
        connected_at: u64,
        ver: u64,
        entry: &'a str,
    },
    /// A client of the origin left (and so left all its channels).
    Leave { id: &'a str, ver: u64 },
    /// A client of the origin subscribed to `channel`; `member` is the
    /// encoded [`Joined`], empty when it joined as nobody in particular.
    Subscribe {
        id: &'a str,
        ver: u64,
        channel: &'a str,
        member: &'a str,
    },
    /// A client of the origin unsubscribed from `channel`.
    Unsubscribe {
        id: &'a str,
        ver: u64,
        channel: &'a str,
    },
    /// The origin is alive, at directory version `ver`.
    Heartbeat { ver: u64 },
    /// The origin is leaving (SIGTERM): forget its clients now.
    Bye,
    /// The `presence` command: send presence to your clients now.
    Presence,
}

impl Envelope<'_> {
    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (kind, fields, payload): (u8, Vec<String>, &[u8]) = match &self.body {
            Body::Broadcast { frame } => (b'B', vec![], frame),
            Body::Channel { channel, frame } => (b'C', vec![channel.to_string()], frame),
            Body::Private { to, req, frame } => {
                (b'P', vec![to.to_string(), req.to_string()], frame)
            }
            Body::Disconnect { id, req } => (b'D', vec![id.to_string(), req.to_string()], b""),
            Body::Reply { req, found } => (
                b'R',
                vec![req.to_string(), u8::from(*found).to_string()],
                b"",
            ),
            Body::Join {
                id,
                seq,
                connected_at,
                ver,
                entry,
            } => (
                b'J',
                vec![
                    id.to_string(),
                    seq.to_string(),
                    connected_at.to_string(),
                    ver.to_string(),
                ],
                entry.as_bytes(),
            ),
            Body::Leave { id, ver } => (b'L', vec![id.to_string(), ver.to_string()], b""),
            Body::Subscribe {
                id,
                ver,
                channel,
                member,
            } => (
                b'S',
                vec![id.to_string(), ver.to_string(), channel.to_string()],
                member.as_bytes(),
            ),
            Body::Unsubscribe { id, ver, channel } => (
                b'U',
                vec![id.to_string(), ver.to_string(), channel.to_string()],
                b"",
            ),
            Body::Heartbeat { ver } => (b'H', vec![ver.to_string()], b""),
            Body::Bye => (b'X', vec![], b""),
            Body::Presence => (b'Q', vec![], b""),
        };
        out.push(kind);
        out.extend_from_slice(self.origin.as_bytes());
        out.push(b'\n');
        for field in fields {
            out.extend_from_slice(field.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(payload);
    }

    /// Reads an envelope; `None` for anything malformed (a message from a
    /// foreign program on our channel, or a newer version of us).
    pub fn decode(bytes: &[u8]) -> Option<Envelope<'_>> {
        let (&kind, rest) = bytes.split_first()?;
        let fields = match kind {
            b'B' | b'X' | b'Q' => 0,
            b'C' | b'H' => 1,
            b'P' | b'D' | b'R' | b'L' => 2,
            b'S' | b'U' => 3,
            b'J' => 4,
            _ => return None,
        };
        let mut rest = rest;
        let mut next = || -> Option<&str> {
            let end = rest.iter().position(|&b| b == b'\n')?;
            let field = std::str::from_utf8(&rest[..end]).ok()?;
            rest = &rest[end + 1..];
            Some(field)
        };
        let origin = next()?;
        let mut f = Vec::with_capacity(fields);
        for _ in 0..fields {
            f.push(next()?);
        }
        let payload = rest;
        let num = |s: &str| s.parse::<u64>().ok();
        let empty = payload.is_empty();
        let body = match kind {
            b'B' => Body::Broadcast { frame: payload },
            b'C' => Body::Channel {
                channel: f[0],
                frame: payload,
            },
            b'P' => Body::Private {
                to: f[0],
                req: num(f[1])?,
                frame: payload,
            },
            b'D' if empty => Body::Disconnect {
                id: f[0],
                req: num(f[1])?,
            },
            b'R' if empty => Body::Reply {
                req: num(f[0])?,
                found: match f[1] {
                    "1" => true,
                    "0" => false,
                    _ => return None,
                },
            },
            b'J' => Body::Join {
                id: f[0],
                seq: num(f[1])?,
                connected_at: num(f[2])?,
                ver: num(f[3])?,
                entry: std::str::from_utf8(payload).ok()?,
            },
            b'L' if empty => Body::Leave {
                id: f[0],
                ver: num(f[1])?,
            },
            b'S' => Body::Subscribe {
                id: f[0],
                ver: num(f[1])?,
                channel: f[2],
                member: std::str::from_utf8(payload).ok()?,
            },
            b'U' if empty => Body::Unsubscribe {
                id: f[0],
                ver: num(f[1])?,
                channel: f[2],
            },
            b'H' if empty => Body::Heartbeat { ver: num(f[0])? },
            b'X' if empty => Body::Bye,
            b'Q' if empty => Body::Presence,
            _ => return None,
        };
        Some(Envelope { origin, body })
    }
}

/// One client in a node's presence hash: the value of its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    pub seq: u64,
    pub connected_at: u64,
    /// Its presence entry, JSON.
    pub entry: &'a str,
}

impl Member<'_> {
    /// `SEQ CONNECTED_AT ENTRY`.
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.seq, self.connected_at, self.entry)
    }

    pub fn decode(text: &str) -> Option<Member<'_>> {
        let mut parts = text.splitn(3, ' ');
        Some(Member {
            seq: parts.next()?.parse().ok()?,
            connected_at: parts.next()?.parse().ok()?,
            entry: parts.next()?,
        })
    }
}

/// The member a subscription joined a presence channel as: `LEN ' ' USER
/// INFO`, LEN being the user id's length in bytes (a user id may hold any
/// character). The empty string is no member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined<'a> {
    pub user: &'a str,
    pub info: &'a str,
}

impl Joined<'_> {
    pub fn encode(member: Option<&Joined<'_>>) -> String {
        member.map_or_else(String::new, |m| {
            format!("{} {}{}", m.user.len(), m.user, m.info)
        })
    }

    /// `Some(None)` for no member, `None` for something malformed.
    pub fn decode(text: &str) -> Option<Option<Joined<'_>>> {
        if text.is_empty() {
            return Some(None);
        }
        let (len, rest) = text.split_once(' ')?;
        if len.is_empty() || len.len() > 9 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let len: usize = len.parse().ok()?;
        if !rest.is_char_boundary(len.min(rest.len())) || len > rest.len() {
            return None;
        }
        let (user, info) = rest.split_at(len);
        Some(Some(Joined { user, info }))
    }
}

/// The hash field of client `id`'s subscription to `channel`.
pub fn subscription_field(id: &str, channel: &str) -> String {
    format!("{id}:{channel}")
}

/// A hash field as `(client id, channel)` if it is a subscription's.
pub fn parse_subscription_field(field: &str) -> Option<(&str, &str)> {
    field.split_once(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let frame: &[u8] = b"\x81\x05a\nb\x00c";
        let bodies = [
            Body::Broadcast { frame },
            Body::Broadcast { frame: b"" },
            Body::Channel {
                channel: "room 1",
                frame,
            },
            Body::Private {
                to: "AbCd1234",
                req: 7,
                frame,
            },
            Body::Disconnect {
                id: "AbCd1234",
                req: 0,
            },
            Body::Reply {
                req: 9,
                found: true,
            },
            Body::Reply {
                req: 9,
                found: false,
            },
            Body::Join {
                id: "AbCd1234",
                seq: 3,
                connected_at: 1_700_000_000,
                ver: 12,
                entry: r#"{"id":"AbCd1234","name":"A\nB"}"#,
            },
            Body::Leave {
                id: "AbCd1234",
                ver: 13,
            },
            Body::Subscribe {
                id: "AbCd1234",
                ver: 14,
                channel: "presence-room; a=b",
                member: "3 a\nb{\"name\":\"A B\"}",
            },
            Body::Subscribe {
                id: "AbCd1234",
                ver: 15,
                channel: "news",
                member: "",
            },
            Body::Unsubscribe {
                id: "AbCd1234",
                ver: 16,
                channel: "news",
            },
            Body::Heartbeat { ver: 13 },
            Body::Bye,
            Body::Presence,
        ];
        for body in bodies {
            let env = Envelope {
                origin: "node00000001",
                body,
            };
            let mut bytes = Vec::new();
            env.encode(&mut bytes);
            assert_eq!(Envelope::decode(&bytes), Some(env.clone()), "{bytes:?}");
            // Any truncation in the header is refused, never misread.
            let header = bytes.iter().rposition(|&b| b == b'\n').unwrap_or(0);
            for cut in 0..header {
                assert!(
                    Envelope::decode(&bytes[..cut]).is_none_or(|e| e.body != env.body),
                    "{cut}"
                );
            }
        }
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            &b""[..],
            b"Znode\n",
            b"Hnode\nx\n",
            b"Hnode\n1\nextra",
            b"Rnode\n1\n2\n",
            b"Dnode\nid\n",
            b"Jnode\nid\n1\n2\n",
            b"Snode\nid\nx\nchan\n",
            b"Unode\nid\n1\nchan\nextra",
            b"Unode\nid\n1\n",
            b"Snode\nid\n1\nchan\n\xff",
        ] {
            assert_eq!(Envelope::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn members_round_trip() {
        let m = Member {
            seq: 4,
            connected_at: 99,
            entry: r#"{"name":"a b"}"#,
        };
        assert_eq!(Member::decode(&m.encode()), Some(m));
        assert_eq!(Member::decode("x 1 {}"), None);
        assert_eq!(Member::decode("1 2"), None);
    }

    #[test]
    fn joined_members_round_trip_and_garbage_is_refused() {
        for m in [
            Joined {
                user: "42",
                info: r#"{"name":"Ann"}"#,
            },
            Joined {
                user: "a b\n1",
                info: "null",
            },
            Joined {
                user: "é",
                info: "",
            },
        ] {
            assert_eq!(
                Joined::decode(&Joined::encode(Some(&m))),
                Some(Some(m.clone()))
            );
        }
        assert_eq!(Joined::encode(None), "");
        assert_eq!(Joined::decode(""), Some(None));
        for bad in [
            "x",
            "2",
            "2x",
            " ab",
            "-1 ab",
            "5 ab",
            "99999999999 ab",
            "1 é",
        ] {
            assert_eq!(Joined::decode(bad), None, "{bad:?}");
        }
        assert_eq!(subscription_field("AbCd1234", "a:b"), "AbCd1234:a:b");
        assert_eq!(
            parse_subscription_field("AbCd1234:a:b"),
            Some(("AbCd1234", "a:b"))
        );
        assert_eq!(parse_subscription_field("AbCd1234"), None);
    }
}
