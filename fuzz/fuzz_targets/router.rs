//! The router fed arbitrary client text: JSON or not, any shape, from
//! several clients (an admin, a user, two guests) with commands allowed for
//! all, and checked against a small reference model (`router/model.rs`) of
//! who must receive what.
//!
//! The model reads each input with its own (derived) parser and predicts
//! every delivery, in order: a broadcast to every live client in connection
//! order, a channel message to the live subscribers in subscription order, a
//! private message to its target, acks, pongs, closes for `disconnect`;
//! anything it does not accept must give exactly one `error`, to the sender
//! only, with the code SPEC section 5 gives (the model knows the order of the
//! checks, and the subscribe budget of docs/limits.md). Presence follows the
//! throttle of SPEC section 5: after a connect or disconnect, every live
//! client must get a presence message no later than one
//! `presence_interval_ms` after the previous one, and none is sent without
//! a change or a `presence` command. Passed-through values (`message`, `data`) must go out byte
//! for byte as they came in, so frames are read with `RawValue`, never through
//! `serde_json::Value` (which refuses numbers beyond f64 that the router
//! rightly passes on). Presence is never truncated here (`presence_max_users`
//! is above the client count), so its lists are checked entry by entry.
//!
//! SPEC section 15: channels starting `a.`, `a.o`, `u.`, `t.`, `p.` and `q.` are in
//! namespaces with every subscribe and publish rule (`model::namespaces`), the others in
//! the default one (where `{"event":"presence"}` is `bad_request`). A refusal by a rule is
//! `forbidden` naming the channel and changes nothing. Token channels take the tokens an
//! input names as `%0` to `%7` (`model::TOKENS`: right and wrong channel, user, client,
//! key, an expired one); the fuzzer cannot forge a signature, so every other string is
//! refused. On `p.` and `q.` the model predicts the member lists, `join` and `leave`.
//!
//! SPEC section 17's buckets are off (`RouterLimits::OFF`, explicitly): the model predicts
//! routing, not rates (tests/abuse_messages.rs and the router's unit tests cover those).
//! SPEC section 16: no namespace here keeps history, so `history` (for a subscriber or a
//! connection the subscribe rule admits) answers `publications:[]`, offset 0, epoch `""`, a
//! subscribe's `since` answers `recovered:false` with offset 0 and epoch `""`, and a
//! malformed `since` or `limit` is `bad_request` (streams with offsets are tested in
//! tests/history.rs and the router's unit tests).
//!
//! Input: messages separated by 0xff bytes; each starts with its sender (`% 5`; 4 is never
//! connected; bit 7 sends it as a binary message). `$0` to `$3` in the text become the
//! clients' ids.
#![no_main]

#[path = "router/check.rs"]
mod check;
#[path = "router/model.rs"]
mod model;

use std::rc::Rc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rakit::channel_token;
use rakit::config::CommandPolicy;
use rakit::events::Handler;
use rakit::router::{
    ConnId, Frame, Namespaces, Outbox, Router, RouterConfig, RouterLimits, TokenKey,
};
use rakit::session::User;
use serde_json::json;

use self::check::payload;
use self::model::{
    Client, Holder, Model, Token, Want, CLIENTS, INTERVAL, MAX_CHANNELS, NOW_UNIX, TOKENS,
};

const SECRET: &[u8] = b"router-fuzz-secret";

struct Quiet;
impl Handler for Quiet {}

#[derive(Default)]
struct Out {
    sent: Vec<(ConnId, Frame)>,
    closed: Vec<ConnId>,
}

impl Outbox for Out {
    fn send(&mut self, conn: ConnId, frame: &Frame) {
        self.sent.push((conn, Rc::clone(frame)));
    }
    fn close(&mut self, conn: ConnId, code: u16, reason: &str) {
        assert_eq!((code, reason), (4000, "disconnected by server"));
        self.closed.push(conn);
    }
}

fn clock() -> u64 {
    NOW_UNIX
}

/// Signs the tokens of `model::TOKENS` for clients with these ids.
fn tokens(ids: &[String]) -> Vec<Token> {
    TOKENS
        .iter()
        .map(|&(channel, holder, ttl, key_ok)| {
            let exp = NOW_UNIX.saturating_add_signed(ttl);
            let signed_for = match holder {
                Holder::User(id) => channel_token::Holder::User(id),
                Holder::Client(conn) => channel_token::Holder::Client(&ids[conn]),
            };
            let key: &[u8] = if key_ok { SECRET } else { b"another secret" };
            Token {
                text: channel_token::issue(key, channel, signed_for, exp),
                channel,
                holder,
                exp,
                key_ok,
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let config = RouterConfig {
        max_channels_per_client: MAX_CHANNELS,
        presence: true,
        presence_interval: INTERVAL,
        // Above the client count: presence always lists everyone.
        presence_max_users: CLIENTS + 4,
        command_policy: CommandPolicy::Any,
        // The reference model knows nothing of SPEC 17's buckets: off, explicitly.
        limits: RouterLimits::OFF,
        namespaces: Rc::new(Namespaces::new(model::namespaces())),
        token_key: TokenKey::new(SECRET),
        unix_clock: clock,
        ..RouterConfig::default()
    };
    let mut router = Router::new(config, Box::new(Quiet), 7);
    let mut out = Out::default();
    let t0 = Instant::now();
    let users: [Option<model::User>; CLIENTS] = [
        Some(("1", "Admin", Some("a@example.com"))),
        Some(("2", "Ada", None)),
        None,
        None,
    ];
    let mut clients: Vec<Client> = Vec::new();
    for (conn, user) in users.into_iter().enumerate() {
        let at = conn as u64 + 1;
        let session = user.map(|(id, name, email)| User {
            id: id.into(),
            name: name.into(),
            email: email.map(Into::into),
            admin: conn == 0,
        });
        let id = router.connect(conn, session, at, t0, &mut out).to_owned();
        assert!(
            id.len() == 8 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{id}"
        );
        assert!(clients.iter().all(|c| c.id != id), "ids are unique");
        let client = Client {
            id,
            user,
            at,
            budget: 0,
        };
        // The welcome, first and only to the new client.
        let (to, welcome) = out.sent.pop().expect("a welcome");
        assert!(out.sent.is_empty());
        assert_eq!(to, conn);
        let welcome: serde_json::Value = serde_json::from_str(payload(&welcome)).unwrap();
        let expected =
            json!({"type": "welcome", "client_id": client.id, "user": client.user_json()});
        assert_eq!(welcome, expected);
        clients.push(client);
    }
    // Client ids, so that inputs can name them (`{"to": "$1"}` means client 1's id).
    let ids: Vec<String> = clients.iter().map(|c| c.id.clone()).collect();
    let mut model = Model::new(clients, tokens(&ids));
    let names: Vec<(String, String)> = (ids
        .iter()
        .enumerate()
        .map(|(i, id)| (format!("${i}"), id.clone())))
    .chain(
        model
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("%{i}"), t.text.clone())),
    )
    .collect();

    for (step, chunk) in data.split(|b| *b == 0xff).enumerate() {
        let Some((&who, text)) = chunk.split_first() else {
            continue;
        };
        let conn = (who % 5) as ConnId; // 4 is never connected
        let since = Duration::from_millis(step as u64 * 20);
        let now = t0 + since;
        let mut text = String::from_utf8_lossy(text).into_owned();
        for (name, value) in &names {
            text = text.replace(name, value);
        }
        out.sent.clear();
        out.closed.clear();
        let is_live = model.id(conn).is_some();
        let (want, closes) = if !is_live {
            // Not (or no longer) connected: nothing for anyone.
            if who & 0x80 != 0 {
                router.handle_binary(conn, now, &mut out);
            } else {
                router.handle_text(conn, &text, now, &mut out);
            }
            (vec![], vec![])
        } else if who & 0x80 != 0 {
            router.handle_binary(conn, now, &mut out);
            (
                vec![(conn, Want::Error("binary_unsupported".into()))],
                vec![],
            )
        } else {
            router.handle_text(conn, &text, now, &mut out);
            match model.predict(conn, &text, since) {
                Ok(predicted) => predicted,
                Err(refusal) => (vec![(conn, Want::Error(refusal))], vec![]),
            }
        };
        let mut closed = out.closed.clone();
        closed.sort_unstable();
        assert_eq!(closed, closes, "closes for {text:?}");
        model.check_all(&out.sent, &want);
        assert_eq!(router.len(), model.live.len());

        // Throttled presence: exactly when due, to every live client.
        out.sent.clear();
        out.closed.clear();
        router.handle_timeout(now, &mut out);
        let want = model.due_presence(since);
        model.check_all(&out.sent, &want);
        assert!(out.closed.is_empty(), "a close from a timeout");
    }
});
