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
//!
//! A channel message is `C` when it is just a frame, and `E` when something
//! travels with it (a connection to skip, the sender's presence user id):
//! `E ORIGIN '\n' CHANNEL '\n' EXCEPT '\n' USER_LEN '\n' USER FRAME`, an
//! empty `EXCEPT` or `USER_LEN` being none. The user id may hold any
//! character, so it goes before the frame, counted. Plain messages keep the
//! older `C` form, which nodes of the version before `E` still read.
//!
//! A publication on a history channel (SPEC section 16) is `O`, written by
//! the Lua script that numbers it in Redis (`history.rs`):
//! `O ORIGIN '\n' CHANNEL '\n' EXCEPT '\n' USER_LEN '\n' SEQ '\n' OFFSET '\n'
//! EPOCH '\n' USER JSON`: the origin's own number for it (so the origin knows
//! its echo), then the offset and epoch Redis gave it, and the JSON of its
//! Rakit frame (each node frames it once for its clients).

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
    /// A frame for the subscribers of `channel`, but the connection whose
    /// dialect's name is `except` (Pusher's `socket_id`); `user` is the
    /// sender's user id on a presence channel (a Pusher client event).
    Channel {
        channel: &'a str,
        except: Option<&'a str>,
        user: Option<&'a str>,
        frame: &'a [u8],
    },
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
    /// Close the connections signed in as `user` (Pusher's
    /// `terminate_connections`).
    Terminate { user: &'a str },
    /// A publication on history channel `channel`, numbered by Redis: the
    /// origin's `seq` for it, its `offset` and `epoch`, and the JSON of its
    /// Rakit frame with both; `except` and `user` as for [`Body::Channel`].
    History {
        channel: &'a str,
        except: Option<&'a str>,
        user: Option<&'a str>,
        seq: u64,
        offset: u64,
        epoch: &'a str,
        json: &'a [u8],
    },
}

/// The start of a [`Body::History`] envelope, up to its offset: what the Lua
/// script that numbers the publication completes (`OFFSET '\n' EPOCH '\n'`,
/// then the user id and the JSON).
pub fn history_head(
    origin: &str,
    channel: &str,
    except: Option<&str>,
    user: Option<&str>,
    seq: u64,
) -> Vec<u8> {
    let user_len = user.map_or_else(String::new, |u| u.len().to_string());
    let mut out = Vec::new();
    let fields = [
        channel.to_owned(),
        except.unwrap_or_default().to_owned(),
        user_len,
        seq.to_string(),
    ];
    finish(&mut out, b'O', origin, &fields, &[]);
    out
}

impl Envelope<'_> {
    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (kind, fields, payload): (u8, Vec<String>, &[u8]) = match &self.body {
            Body::Broadcast { frame } => (b'B', vec![], frame),
            Body::Channel {
                channel,
                except: None,
                user: None,
                frame,
            } => (b'C', vec![channel.to_string()], frame),
            Body::Channel {
                channel,
                except,
                user,
                frame,
            } => {
                let user_len = user.map_or_else(String::new, |u| u.len().to_string());
                let fields = vec![
                    channel.to_string(),
                    except.unwrap_or_default().to_owned(),
                    user_len,
                ];
                let (head, frame) = (user.unwrap_or_default().as_bytes(), *frame);
                return finish(out, b'E', self.origin, &fields, &[head, frame]);
            }
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
            Body::Terminate { user } => (b'T', vec![], user.as_bytes()),
            Body::History {
                channel,
                except,
                user,
                seq,
                offset,
                epoch,
                json,
            } => {
                let mut out2 = history_head(self.origin, channel, *except, *user, *seq);
                out2.extend_from_slice(format!("{offset}\n{epoch}\n").as_bytes());
                out2.extend_from_slice(user.unwrap_or_default().as_bytes());
                out2.extend_from_slice(json);
                out.extend_from_slice(&out2);
                return;
            }
        };
        finish(out, kind, self.origin, &fields, &[payload]);
    }

    /// Reads an envelope; `None` for anything malformed (a message from a
    /// foreign program on our channel, or a newer version of us).
    pub fn decode(bytes: &[u8]) -> Option<Envelope<'_>> {
        let (&kind, rest) = bytes.split_first()?;
        let fields = match kind {
            b'B' | b'X' | b'Q' | b'T' => 0,
            b'C' | b'H' => 1,
            b'P' | b'D' | b'R' | b'L' => 2,
            b'S' | b'U' | b'E' => 3,
            b'J' => 4,
            b'O' => 6,
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
                except: None,
                user: None,
                frame: payload,
            },
            b'E' => {
                let (user, frame) = match f[2] {
                    "" => (None, payload),
                    len => {
                        let len = counted(len)?;
                        let user = payload.get(..len)?;
                        (Some(std::str::from_utf8(user).ok()?), &payload[len..])
                    }
                };
                Body::Channel {
                    channel: f[0],
                    except: Some(f[1]).filter(|e| !e.is_empty()),
                    user,
                    frame,
                }
            }
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
            b'T' if !empty => Body::Terminate {
                user: std::str::from_utf8(payload).ok()?,
            },
            b'O' => {
                let (user, json) = match f[2] {
                    "" => (None, payload),
                    len => {
                        let len = counted(len)?;
                        let user = payload.get(..len)?;
                        (Some(std::str::from_utf8(user).ok()?), &payload[len..])
                    }
                };
                Body::History {
                    channel: f[0],
                    except: Some(f[1]).filter(|e| !e.is_empty()),
                    user,
                    seq: num(f[3])?,
                    offset: num(f[4])?,
                    epoch: f[5],
                    json,
                }
            }
            _ => return None,
        };
        Some(Envelope { origin, body })
    }
}

/// Writes an envelope: kind, origin and fields, each newline-ended, then the
/// payload's parts.
fn finish(out: &mut Vec<u8>, kind: u8, origin: &str, fields: &[String], payload: &[&[u8]]) {
    out.push(kind);
    out.extend_from_slice(origin.as_bytes());
    out.push(b'\n');
    for field in fields {
        out.extend_from_slice(field.as_bytes());
        out.push(b'\n');
    }
    for part in payload {
        out.extend_from_slice(part);
    }
}

/// A length field: 1 to 9 ASCII digits (no sign, no space).
fn counted(text: &str) -> Option<usize> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
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
                except: None,
                user: None,
                frame,
            },
            Body::Channel {
                channel: "presence-room",
                except: Some("123.456"),
                user: None,
                frame,
            },
            Body::Channel {
                channel: "presence-room",
                except: None,
                user: Some("7\né 8"),
                frame,
            },
            Body::Channel {
                channel: "presence-room",
                except: Some("1.2"),
                user: Some("42"),
                frame: b"",
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
            Body::Terminate { user: "a b\n1" },
            Body::History {
                channel: "room.1",
                except: None,
                user: None,
                seq: 7,
                offset: 12,
                epoch: "AbC-1",
                json: br#"{"type":"channel","data":1}"#,
            },
            Body::History {
                channel: "room.1",
                except: Some("1.2"),
                user: Some("u\n1"),
                seq: 0,
                offset: u64::MAX,
                epoch: "e",
                json: b"",
            },
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
            b"Enode\nchan\n\n",
            b"Enode\nchan\n1.2\n3\nab",
            b"Enode\nchan\n\nx\nab",
            b"Enode\nchan\n\n-1\nab",
            b"Enode\nchan\n\n 1\nab",
            b"Enode\nchan\n\n9999999999\nab",
            b"Enode\nchan\n\n1\n\xffab",
            b"Tnode\n",
            b"Tnode\n\xff",
            b"Onode\nc\n\n\n1\n2\n",
            b"Onode\nc\n\n\nx\n2\ne\n{}",
            b"Onode\nc\n\n\n1\n-2\ne\n{}",
            b"Onode\nc\n\n5\n1\n2\ne\nab",
        ] {
            assert_eq!(Envelope::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn channel_messages_without_extras_keep_the_older_form() {
        let frame: &[u8] = b"\x81\x01x";
        let plain = Envelope {
            origin: "n1",
            body: Body::Channel {
                channel: "c",
                except: None,
                user: None,
                frame,
            },
        };
        let mut bytes = Vec::new();
        plain.encode(&mut bytes);
        assert_eq!(bytes, b"Cn1\nc\n\x81\x01x");
        // A user id's bytes are counted, so a newline in it or a frame that starts with digits
        // cannot shift the frame.
        let with = Envelope {
            origin: "n1",
            body: Body::Channel {
                channel: "c",
                except: Some("1.2"),
                user: Some("a\n"),
                frame: b"12",
            },
        };
        let mut bytes = Vec::new();
        with.encode(&mut bytes);
        assert_eq!(bytes, b"En1\nc\n1.2\n2\na\n12");
        assert_eq!(Envelope::decode(&bytes), Some(with));
        // A user id cut inside a character is refused.
        assert_eq!(Envelope::decode(b"En1\nc\n\n1\n\xc3\xa9x"), None);
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
