//! The reference model of the router target: its own reading of a client message, and what
//! SPEC sections 5 and 15 say must follow from it (see the target's docs).

use std::collections::BTreeMap;
use std::time::Duration;

use rakit::router::{ConnId, Namespace, PublishPolicy, SubscribePolicy, MIN_SUBSCRIBE_BURST};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{json, Value};

pub const CLIENTS: usize = 4;
pub const MAX_CHANNELS: usize = 4;
/// `presence_interval_ms`.
pub const INTERVAL: Duration = Duration::from_millis(50);
/// A connection's burst of subscribes: twice `max_channels_per_client`, and
/// no fewer than the router's minimum.
const SUBSCRIBE_BURST: u64 = {
    let twice = 2 * MAX_CHANNELS as u64;
    if twice > MIN_SUBSCRIBE_BURST {
        twice
    } else {
        MIN_SUBSCRIBE_BURST
    }
};
/// The router's clock (Unix seconds), for the expiry of channel tokens.
pub const NOW_UNIX: u64 = 1_800_000_000;

/// The namespaces of SPEC section 15 the router is configured with, prefixes short enough for
/// the fuzzer to hit: every subscribe and publish rule, a longer prefix inside a shorter one
/// (`a.o` in `a.`), and channel presence with a public and with a token rule. Every other
/// channel is in the default namespace (section 5: public, anyone publishes, no presence).
pub fn namespaces() -> Vec<Namespace> {
    use PublishPolicy as P;
    use SubscribePolicy as S;
    let ns = |prefix: &str, subscribe, publish, presence| Namespace {
        prefix: prefix.into(),
        subscribe,
        publish,
        presence,
        ..Namespace::default_rules()
    };
    vec![
        ns("a.", S::Authenticated, P::Subscribers, false),
        ns("a.o", S::Public, P::Authenticated, false),
        ns("u.", S::User, P::Any, false),
        ns("t.", S::Token, P::Backend, false),
        ns("p.", S::Public, P::Any, true),
        ns("q.", S::Token, P::Subscribers, true),
    ]
}

/// Who a channel token was signed for.
#[derive(Debug, Clone, Copy)]
pub enum Holder {
    User(&'static str),
    Client(ConnId),
}

/// A channel token the input can name (`%0`, `%1`, ...). The fuzzer cannot forge a signature,
/// so any other string is no valid token.
#[derive(Debug)]
pub struct Token {
    pub text: String,
    pub channel: &'static str,
    pub holder: Holder,
    pub exp: u64,
    /// Signed with `[session] secret` (else with another key).
    pub key_ok: bool,
}

/// The tokens to sign: (channel, holder, seconds from now to `exp`, signed with the right key).
pub const TOKENS: [(&str, Holder, i64, bool); 8] = [
    ("t.a", Holder::User("2"), 3600, true),
    ("t.a", Holder::Client(2), 3600, true),
    ("t.a", Holder::User("2"), -60, true),
    ("q.a", Holder::Client(3), 3600, true),
    ("q.a", Holder::User("1"), 3600, true),
    ("t.a", Holder::User("2"), 3600, false),
    ("t.b", Holder::User("1"), 3600, true),
    ("q.a", Holder::User("2"), 3600, true),
];

/// The string a raw value holds, if it is a string.
pub fn string(raw: &RawValue) -> Option<String> {
    raw.get()
        .starts_with('"')
        .then(|| serde_json::from_str(raw.get()).ok())
        .flatten()
}

/// A JSON number written with digits only (no sign, fraction or exponent): its value, with
/// `u64::MAX` standing for any larger one.
fn digits(raw: &RawValue) -> Option<u64> {
    let text = raw.get();
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().unwrap_or(u64::MAX))
}

/// SPEC 16: a subscribe's `since` is `{"offset":N,"epoch":E}`, N a non-negative integer and E
/// a string; other keys do not matter, a repeated one is malformed JSON.
fn since_ok(raw: &RawValue) -> Result<(), Refusal> {
    #[derive(Deserialize)]
    struct Since<'a> {
        #[serde(borrow)]
        offset: &'a RawValue,
        #[serde(borrow)]
        epoch: &'a RawValue,
    }
    let since: Since<'_> = raw
        .get()
        .starts_with('{')
        .then(|| serde_json::from_str(raw.get()).ok())
        .flatten()
        .ok_or("bad_request")?;
    match (digits(since.offset), string(since.epoch)) {
        (Some(_), Some(_)) => Ok(()),
        _ => Err("bad_request".into()),
    }
}

/// A key that is present, even with `null`: routing goes by presence.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The model's reading of a client message: the keys routing looks at.
/// Derived, so a repeated known key is an error, as in the router.
#[derive(Deserialize, Default)]
struct Incoming<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    command: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    event: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    to: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    message: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    channel: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    ping: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    client_id: Option<&'a RawValue>,
    /// A channel token (SPEC section 15).
    #[serde(default, borrow, deserialize_with = "present")]
    token: Option<&'a RawValue>,
    /// A subscribe's recovery point, or a `history` request's offset (SPEC section 16).
    #[serde(default, borrow, deserialize_with = "present")]
    since: Option<&'a RawValue>,
    /// A `history` request's count (SPEC section 16).
    #[serde(default, borrow, deserialize_with = "present")]
    limit: Option<&'a RawValue>,
}

/// An error code of SPEC section 5.
pub type Code = &'static str;

/// What the model expects of a message it does not accept: the code of the one error the
/// sender gets, and the channel a refusal by a channel's rules names (SPEC section 15).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: Code,
    pub channel: Option<String>,
}

impl From<Code> for Refusal {
    fn from(code: Code) -> Refusal {
        Refusal {
            code,
            channel: None,
        }
    }
}

fn forbidden(channel: &str) -> Refusal {
    Refusal {
        code: "forbidden",
        channel: Some(channel.to_owned()),
    }
}

/// SPEC section 5: malformed JSON is `invalid_json`; well-formed JSON that is
/// not an object, or that repeats a key routing looks at, is `bad_request`.
/// Well-formed is RFC 8259's grammar, so a number beyond f64 (`1E400`) is
/// well-formed: checked as a raw value, which reads no number.
fn parse(text: &str) -> Result<Incoming<'_>, Code> {
    if serde_json::from_str::<&RawValue>(text).is_err() {
        return Err("invalid_json");
    }
    // A derived struct would also take an array (fields by position).
    let first = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .bytes()
        .next();
    if first != Some(b'{') {
        return Err("bad_request");
    }
    serde_json::from_str(text).map_err(|_| "bad_request")
}

/// A field routing needs: present (`null` included), else `bad_request`.
fn required(field: Option<&RawValue>) -> Result<&RawValue, Code> {
    field.ok_or("bad_request")
}

/// A field that must be a string: missing or another type is `bad_request`.
fn required_str(field: Option<&RawValue>) -> Result<String, Code> {
    string(required(field)?).ok_or("bad_request")
}

/// SPEC section 5: 1 to 128 bytes, no control characters.
fn valid_channel(name: String) -> Result<String, Code> {
    if (1..=128).contains(&name.len()) && !name.chars().any(char::is_control) {
        Ok(name)
    } else {
        Err("invalid_channel")
    }
}

/// One frame the model expects, with what it must hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Want {
    /// `message` or `private` (`ty`), with the sender's id or none.
    Carry {
        ty: &'static str,
        client_id: Option<String>,
        message: String,
    },
    Channel {
        channel: String,
        client_id: Option<String>,
        data: String,
    },
    /// `subscribed`, with the channel's members on a channel with presence, and with
    /// `recovered:false`, offset 0 and epoch `""` when it had a `since` (SPEC 16: no channel
    /// here keeps history).
    Subscribed {
        channel: String,
        presence: Option<Vec<ConnId>>,
        since: bool,
    },
    /// SPEC 16's answer to `history` on a channel without history: nothing, offset 0,
    /// epoch `""`.
    History(String),
    Unsubscribed(String),
    /// SPEC 15.3: `who` joined or left a channel with presence.
    Join {
        channel: String,
        who: ConnId,
    },
    Leave {
        channel: String,
        who: ConnId,
    },
    /// The answer to `{"event":"presence","channel":C}`.
    ChannelPresence {
        channel: String,
        members: Vec<ConnId>,
    },
    Pong,
    Ack(&'static str),
    Error(Refusal),
    Presence,
}

/// The presence throttle of SPEC section 5: a change is sent at most one
/// interval after the previous presence message (at once if that is past),
/// changes meanwhile share it, and the `presence` command sends at once.
#[derive(Default)]
pub struct Throttle {
    /// When the pending change is due.
    due: Option<Duration>,
    /// When the last presence message went out.
    last: Option<Duration>,
}

impl Throttle {
    pub fn changed(&mut self, now: Duration) {
        if self.due.is_none() {
            self.due = Some(self.last.map_or(now, |last| (last + INTERVAL).max(now)));
        }
    }

    fn sent(&mut self, now: Duration) {
        self.due = None;
        self.last = Some(now);
    }
}

/// The subscribe budget (docs/limits.md): a bucket of `SUBSCRIBE_BURST`
/// tokens, one regained every 100 ms; times in ms since the start.
fn spend(full_at: &mut u64, now: u64) -> Result<(), Code> {
    let next = (*full_at).max(now) + 100;
    if next - now > SUBSCRIBE_BURST * 100 {
        return Err("too_many_channels");
    }
    *full_at = next;
    Ok(())
}

/// A session user: (id, name, email).
pub type User = (&'static str, &'static str, Option<&'static str>);

/// A client as the model knows it, kept after it leaves (a `leave` still names it).
pub struct Client {
    pub id: String,
    pub user: Option<User>,
    /// `connected_at`.
    pub at: u64,
    /// When its subscribe budget is full again (ms since the start).
    pub budget: u64,
}

impl Client {
    /// Its `user` as in `welcome`: `{"id","name","email"}`, or `null` for a guest.
    pub fn user_json(&self) -> Value {
        self.user.map_or(
            Value::Null,
            |(id, name, email)| json!({"id": id, "name": name, "email": email}),
        )
    }
}

pub struct Model {
    /// Every client by connection (the index).
    pub clients: Vec<Client>,
    /// Live clients in connection order.
    pub live: Vec<ConnId>,
    /// Channel -> live members in subscription order.
    pub channels: BTreeMap<String, Vec<ConnId>>,
    pub tokens: Vec<Token>,
    pub presence: Throttle,
    rules: Vec<Namespace>,
}

impl Model {
    pub fn new(clients: Vec<Client>, tokens: Vec<Token>) -> Model {
        let mut presence = Throttle::default();
        presence.changed(Duration::ZERO);
        Model {
            live: (0..clients.len()).collect(),
            clients,
            channels: BTreeMap::new(),
            tokens,
            presence,
            rules: namespaces(),
        }
    }

    pub fn id(&self, conn: ConnId) -> Option<&str> {
        self.live
            .contains(&conn)
            .then(|| self.clients[conn].id.as_str())
    }

    fn lookup(&self, id: &str) -> Result<ConnId, Code> {
        self.live
            .iter()
            .copied()
            .find(|&c| self.clients[c].id == id)
            .ok_or("unknown_client")
    }

    fn everyone(&self, want: &Want) -> Vec<(ConnId, Want)> {
        self.live.iter().map(|c| (*c, want.clone())).collect()
    }

    fn members(&self, channel: &str) -> &[ConnId] {
        self.channels.get(channel).map_or(&[][..], Vec::as_slice)
    }

    fn subscribers(&self, channel: &str, want: &Want) -> Vec<(ConnId, Want)> {
        self.members(channel)
            .iter()
            .map(|c| (*c, want.clone()))
            .collect()
    }

    fn is_member(&self, conn: ConnId, channel: &str) -> bool {
        self.members(channel).contains(&conn)
    }

    /// The rules of `channel`: the namespace with the longest prefix of its name, else the
    /// default (public, anyone publishes, no presence).
    fn rules(&self, channel: &str) -> (SubscribePolicy, PublishPolicy, bool, usize) {
        self.rules
            .iter()
            .filter(|n| channel.starts_with(n.prefix.as_str()))
            .max_by_key(|n| n.prefix.len())
            .map_or(
                (SubscribePolicy::Public, PublishPolicy::Any, false, 0),
                |n| (n.subscribe, n.publish, n.presence, n.prefix.len()),
            )
    }

    fn user_id(&self, conn: ConnId) -> Option<&'static str> {
        self.clients[conn].user.map(|(id, _, _)| id)
    }

    /// SPEC section 15's `subscribe` rule of `channel`, for `conn` presenting `token`.
    fn may_subscribe(
        &self,
        conn: ConnId,
        channel: &str,
        token: Option<&RawValue>,
    ) -> Result<(), Refusal> {
        let (subscribe, _, _, prefix) = self.rules(channel);
        let ok = match subscribe {
            SubscribePolicy::Public => true,
            SubscribePolicy::Authenticated => self.user_id(conn).is_some(),
            SubscribePolicy::User => {
                let owner = &channel[prefix..];
                !owner.is_empty() && self.user_id(conn) == Some(owner)
            }
            SubscribePolicy::Token => token.and_then(string).is_some_and(|text| {
                self.tokens.iter().any(|t| {
                    t.text == text
                        && t.key_ok
                        && t.exp > NOW_UNIX
                        && t.channel == channel
                        && match t.holder {
                            Holder::User(id) => self.user_id(conn) == Some(id),
                            Holder::Client(c) => c == conn,
                        }
                })
            }),
        };
        ok.then_some(()).ok_or_else(|| forbidden(channel))
    }

    /// SPEC section 15's `publish` rule of `channel`, for a client's channel message.
    fn may_publish(&self, conn: ConnId, channel: &str) -> Result<(), Refusal> {
        let ok = match self.rules(channel).1 {
            PublishPolicy::Any => true,
            PublishPolicy::Subscribers => self.is_member(conn, channel),
            PublishPolicy::Authenticated => self.user_id(conn).is_some(),
            PublishPolicy::Backend => false,
        };
        ok.then_some(()).ok_or_else(|| forbidden(channel))
    }

    /// `conn` leaves `channel`: on a channel with presence, the others still on it hear of it.
    fn unsubscribe(&mut self, conn: ConnId, channel: &str) -> Vec<(ConnId, Want)> {
        let Some(members) = self.channels.get_mut(channel) else {
            return vec![];
        };
        let before = members.len();
        members.retain(|c| *c != conn);
        let left = members.len() < before;
        if members.is_empty() {
            self.channels.remove(channel);
        }
        let leave = Want::Leave {
            channel: channel.to_owned(),
            who: conn,
        };
        if left && self.rules(channel).2 {
            self.subscribers(channel, &leave)
        } else {
            vec![]
        }
    }

    /// `conn` goes away: it leaves every channel (in name order here; the target sorts the
    /// router's leaves the same way, as SPEC gives no order between channels).
    fn leave(&mut self, conn: ConnId, now: Duration) -> Vec<(ConnId, Want)> {
        self.live.retain(|c| *c != conn);
        let mine: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, m)| m.contains(&conn))
            .map(|(c, _)| c.clone())
            .collect();
        let sends = mine
            .iter()
            .flat_map(|c| self.unsubscribe(conn, c))
            .collect();
        self.presence.changed(now);
        sends
    }

    /// What `sender` sending `text` at `now` must cause: deliveries in order
    /// and closes, or the one error the sender gets. Updates the
    /// model as the router must update itself.
    pub fn predict(
        &mut self,
        sender: ConnId,
        text: &str,
        now: Duration,
    ) -> Result<(Vec<(ConnId, Want)>, Vec<ConnId>), Refusal> {
        let me = self.id(sender).expect("a live sender").to_owned();
        let msg = parse(text)?;
        let raw = |v: &RawValue| v.get().to_owned();
        if let Some(command) = msg.command {
            // command_policy is "any": every connection may. Commands are not subject to
            // the namespaces' rules.
            let name = string(command).ok_or("bad_request")?;
            let (mut sends, mut closes, ack) = match name.as_str() {
                "broadcast" => {
                    let want = Want::Carry {
                        ty: "message",
                        client_id: None,
                        message: raw(required(msg.message)?),
                    };
                    (self.everyone(&want), vec![], "broadcast")
                }
                "broadcast_to_channel" => {
                    let channel = required_str(msg.channel)?;
                    let data = raw(required(msg.message)?);
                    let channel = valid_channel(channel)?;
                    let want = Want::Channel {
                        channel: channel.clone(),
                        client_id: None,
                        data,
                    };
                    (
                        self.subscribers(&channel, &want),
                        vec![],
                        "broadcast_to_channel",
                    )
                }
                "private_message" => {
                    let to = required_str(msg.to)?;
                    let message = raw(required(msg.message)?);
                    let target = self.lookup(&to)?;
                    let want = Want::Carry {
                        ty: "private",
                        client_id: None,
                        message,
                    };
                    (vec![(target, want)], vec![], "private_message")
                }
                "disconnect" => {
                    let target = self.lookup(&required_str(msg.client_id)?)?;
                    (self.leave(target, now), vec![target], "disconnect")
                }
                "presence" => {
                    self.presence.sent(now);
                    (self.everyone(&Want::Presence), vec![], "presence")
                }
                _ => return Err("unknown_command".into()),
            };
            // The issuer may have disconnected itself: then no ack.
            if self.id(sender).is_some() {
                sends.push((sender, Want::Ack(ack)));
            }
            closes.sort_unstable();
            return Ok((sends, closes));
        }
        let sends = if let Some(event) = msg.event {
            match string(event).ok_or("bad_request")?.as_str() {
                "subscribe" => {
                    // The budget is spent first, whatever the rest says.
                    spend(&mut self.clients[sender].budget, now.as_millis() as u64)?;
                    let channel = valid_channel(required_str(msg.channel)?)?;
                    // SPEC 16: a malformed `since` is refused before any rule.
                    let since = msg.since.map(since_ok).transpose()?.is_some();
                    let presence = self.rules(&channel).2;
                    let mut sends = vec![];
                    // Already subscribed: answered again, with no check (it passed one).
                    if !self.is_member(sender, &channel) {
                        // On a channel with presence a subscribe costs one more token per ten
                        // members: never more than none with four clients.
                        self.may_subscribe(sender, &channel, msg.token)?;
                        let count = self
                            .channels
                            .values()
                            .filter(|m| m.contains(&sender))
                            .count();
                        if count >= MAX_CHANNELS {
                            return Err("too_many_channels".into());
                        }
                        if presence {
                            let join = Want::Join {
                                channel: channel.clone(),
                                who: sender,
                            };
                            sends = self.subscribers(&channel, &join);
                        }
                        self.channels
                            .entry(channel.clone())
                            .or_default()
                            .push(sender);
                    }
                    let presence = presence.then(|| self.members(&channel).to_vec());
                    sends.push((
                        sender,
                        Want::Subscribed {
                            channel,
                            presence,
                            since,
                        },
                    ));
                    sends
                }
                "unsubscribe" => {
                    let channel = valid_channel(required_str(msg.channel)?)?;
                    let mut sends = self.unsubscribe(sender, &channel);
                    sends.push((sender, Want::Unsubscribed(channel)));
                    sends
                }
                "message" => {
                    let channel = required_str(msg.channel)?;
                    let data = raw(required(msg.data)?);
                    let channel = valid_channel(channel)?;
                    self.may_publish(sender, &channel)?;
                    let want = Want::Channel {
                        channel: channel.clone(),
                        client_id: Some(me),
                        data,
                    };
                    self.subscribers(&channel, &want)
                }
                // SPEC 15.3: the members of a channel with presence, for a subscriber or a
                // connection its subscribe rule admits (a query on a token channel costs a
                // subscribe's token first); `bad_request` on any other channel.
                "presence" => {
                    let channel = valid_channel(required_str(msg.channel)?)?;
                    let (subscribe, _, presence, _) = self.rules(&channel);
                    if !presence {
                        return Err("bad_request".into());
                    }
                    if !self.is_member(sender, &channel) {
                        if subscribe == SubscribePolicy::Token {
                            spend(&mut self.clients[sender].budget, now.as_millis() as u64)?;
                        }
                        self.may_subscribe(sender, &channel, msg.token)?;
                    }
                    let members = self.members(&channel).to_vec();
                    vec![(sender, Want::ChannelPresence { channel, members })]
                }
                // SPEC 16: `limit` 1 to 100 and `since` an offset, each optional; for a
                // subscriber or a connection the subscribe rule admits (a token costs a
                // subscribe's token first). No channel here keeps history.
                "history" => {
                    let channel = valid_channel(required_str(msg.channel)?)?;
                    if let Some(limit) = msg.limit {
                        digits(limit)
                            .filter(|n| (1..=100).contains(n))
                            .ok_or("bad_request")?;
                    }
                    if let Some(since) = msg.since {
                        digits(since).ok_or("bad_request")?;
                    }
                    if !self.is_member(sender, &channel) {
                        if msg.token.is_some() {
                            spend(&mut self.clients[sender].budget, now.as_millis() as u64)?;
                        }
                        self.may_subscribe(sender, &channel, msg.token)?;
                    }
                    vec![(sender, Want::History(channel))]
                }
                _ => return Err("unknown_event".into()),
            }
        } else if let Some(to) = msg.to {
            let to = string(to).ok_or("bad_request")?;
            let message = raw(required(msg.message)?);
            let target = self.lookup(&to)?;
            let want = Want::Carry {
                ty: "private",
                client_id: Some(me),
                message,
            };
            vec![(target, want)]
        } else if let Some(message) = msg.message {
            self.everyone(&Want::Carry {
                ty: "message",
                client_id: Some(me),
                message: raw(message),
            })
        } else if msg.ping.is_some() {
            vec![(sender, Want::Pong)]
        } else {
            return Err("bad_request".into());
        };
        Ok((sends, vec![]))
    }

    /// The presence the throttle owes at `now`, to every live client.
    pub fn due_presence(&mut self, now: Duration) -> Vec<(ConnId, Want)> {
        match self.presence.due {
            Some(due) if due <= now => {
                self.presence.due = None;
                if self.live.is_empty() {
                    // Dropped: nobody to tell, and no message went out.
                    return vec![];
                }
                self.presence.sent(now);
                self.everyone(&Want::Presence)
            }
            _ => vec![],
        }
    }
}
