//! Router tests, driven without sockets or clocks: a recording [`Outbox`],
//! a recording [`Handler`] and made-up instants.

mod api;
mod budget;
mod cluster;
mod commands;
mod flood;
mod history;
mod members;
mod namespaces;
mod occupancy;
mod presence;
mod reporting;
mod routing;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{CommandPolicy, ConnId, Frame, Outbox, Router, RouterConfig};
use crate::events::{ChannelActivity, Handler};
use crate::session::User;

/// Records what the router asked the event loop to do.
#[derive(Default)]
struct MockOut {
    sent: Vec<(ConnId, Frame)>,
    closed: Vec<(ConnId, u16, String)>,
}

impl Outbox for MockOut {
    fn send(&mut self, conn: ConnId, frame: &Frame) {
        self.sent.push((conn, Rc::clone(frame)));
    }
    fn close(&mut self, conn: ConnId, code: u16, reason: &str) {
        self.closed.push((conn, code, reason.to_owned()));
    }
}

/// The JSON text of an unmasked FIN text frame (the only kind the router
/// sends), checking the header on the way.
#[track_caller]
fn payload(frame: &[u8]) -> &str {
    assert_eq!(frame[0], 0x81, "FIN text frame");
    assert_eq!(frame[1] & 0x80, 0, "server frames are unmasked");
    let (len, start) = match frame[1] & 0x7F {
        126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&frame[2..10]);
            (usize::try_from(u64::from_be_bytes(b)).unwrap(), 10)
        }
        n => (usize::from(n), 2),
    };
    assert_eq!(frame.len(), start + len, "length field matches");
    std::str::from_utf8(&frame[start..]).expect("UTF-8 payload")
}

/// Handler events, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Connect(String, Option<String>),
    Disconnect(String, Option<String>),
    Receive(String, String),
    Send(String, String),
    Subscribe(String, String),
    Unsubscribe(String, String),
    /// `Handler::channel`: `occupied:C`, `vacated:C` (the router fires no other).
    Channel(String),
}

struct Recorder(Rc<RefCell<Vec<Ev>>>);

fn user_id(user: Option<&User>) -> Option<String> {
    user.map(|u| u.id.clone())
}

impl Handler for Recorder {
    fn connect(&mut self, client_id: &str, user: Option<&User>) {
        self.0
            .borrow_mut()
            .push(Ev::Connect(client_id.into(), user_id(user)));
    }
    fn disconnect(&mut self, client_id: &str, user: Option<&User>) {
        self.0
            .borrow_mut()
            .push(Ev::Disconnect(client_id.into(), user_id(user)));
    }
    fn receive(&mut self, client_id: &str, _user: Option<&User>, message: &str) {
        self.0
            .borrow_mut()
            .push(Ev::Receive(client_id.into(), message.into()));
    }
    fn send(&mut self, client_id: &str, _user: Option<&User>, message: &str) {
        self.0
            .borrow_mut()
            .push(Ev::Send(client_id.into(), message.into()));
    }
    fn subscribe(&mut self, client_id: &str, _user: Option<&User>, channel: &str) {
        self.0
            .borrow_mut()
            .push(Ev::Subscribe(client_id.into(), channel.into()));
    }
    fn unsubscribe(&mut self, client_id: &str, _user: Option<&User>, channel: &str) {
        self.0
            .borrow_mut()
            .push(Ev::Unsubscribe(client_id.into(), channel.into()));
    }
    fn channel(&mut self, activity: &ChannelActivity<'_>) {
        let ev = match activity {
            ChannelActivity::Occupied { channel } => format!("occupied:{channel}"),
            ChannelActivity::Vacated { channel } => format!("vacated:{channel}"),
            other => format!("{other:?}"),
        };
        self.0.borrow_mut().push(Ev::Channel(ev));
    }
}

fn user(id: &str, name: &str, email: Option<&str>, admin: bool) -> User {
    User {
        id: id.into(),
        name: name.into(),
        email: email.map(Into::into),
        admin,
    }
}

/// Unix time at which connection `conn` connects in these tests.
fn connected_at(conn: ConnId) -> u64 {
    1_700_000_000 + conn as u64
}

/// A router plus everything needed to drive and observe it.
struct Harness {
    router: Router,
    out: MockOut,
    events: Rc<RefCell<Vec<Ev>>>,
    t0: Instant,
    now: Instant,
}

impl Harness {
    /// Defaults, except that any connection may send commands.
    fn new() -> Harness {
        Harness::with(RouterConfig {
            command_policy: CommandPolicy::Any,
            ..RouterConfig::default()
        })
    }

    fn with(config: RouterConfig) -> Harness {
        let events = Rc::new(RefCell::new(Vec::new()));
        let router = Router::new(config, Box::new(Recorder(Rc::clone(&events))), 12345);
        let t0 = Instant::now();
        Harness {
            router,
            out: MockOut::default(),
            events,
            t0,
            now: t0,
        }
    }

    fn at(&mut self, ms: u64) -> Instant {
        self.now = self.t0 + Duration::from_millis(ms);
        self.now
    }

    /// Connects `conn` and discards its welcome; returns its client id.
    #[track_caller]
    fn join(&mut self, conn: ConnId, user: Option<User>) -> String {
        let id = self.connect(conn, user);
        let msgs = self.take();
        assert_eq!(msgs.len(), 1, "only the welcome: {msgs:?}");
        id
    }

    fn connect(&mut self, conn: ConnId, user: Option<User>) -> String {
        let (now, at) = (self.now, connected_at(conn));
        self.router
            .connect(conn, user, at, now, &mut self.out)
            .to_owned()
    }

    fn disconnect(&mut self, conn: ConnId) {
        self.router.disconnect(conn, self.now, &mut self.out);
    }

    fn text(&mut self, conn: ConnId, text: &str) {
        self.router.handle_text(conn, text, self.now, &mut self.out);
    }

    fn tick(&mut self) {
        self.router.handle_timeout(self.now, &mut self.out);
    }

    /// Everything sent since the last call, as (recipient, JSON text).
    fn take_raw(&mut self) -> Vec<(ConnId, String)> {
        self.out
            .sent
            .drain(..)
            .map(|(conn, frame)| (conn, payload(&frame).to_owned()))
            .collect()
    }

    /// Everything sent since the last call, as (recipient, parsed JSON).
    fn take(&mut self) -> Vec<(ConnId, Value)> {
        self.take_raw()
            .into_iter()
            .map(|(conn, text)| (conn, serde_json::from_str(&text).expect("valid JSON")))
            .collect()
    }

    /// Sends `text` from `conn` and expects exactly one error back to it;
    /// returns its code.
    #[track_caller]
    fn error_code(&mut self, conn: ConnId, text: &str) -> String {
        self.text(conn, text);
        let msgs = self.take();
        assert_eq!(msgs.len(), 1, "one reply to {text}: {msgs:?}");
        let (to, msg) = &msgs[0];
        assert_eq!(*to, conn, "errors go to the sender only");
        assert_error_shape(msg);
        assert!(self.out.closed.is_empty(), "errors never close");
        msg["code"].as_str().unwrap().to_owned()
    }

    fn take_events(&mut self) -> Vec<Ev> {
        self.events.borrow_mut().drain(..).collect()
    }
}

/// `{"type":"error","code":CODE,"message":TEXT}` and nothing else.
#[track_caller]
fn assert_error_shape(msg: &Value) {
    let obj = msg.as_object().expect("an object");
    assert_eq!(obj.len(), 3, "{msg}");
    assert_eq!(msg["type"], "error");
    assert!(msg["code"].is_string());
    assert!(!msg["message"].as_str().expect("a text").is_empty());
}

/// A handler that says it does not observe `send`.
struct Deaf(Rc<RefCell<usize>>);

impl Handler for Deaf {
    fn send(&mut self, _: &str, _: Option<&User>, _: &str) {
        *self.0.borrow_mut() += 1;
    }
    fn observes_send(&self) -> bool {
        false
    }
}

#[test]
fn send_is_not_called_for_a_handler_that_does_not_observe_it() {
    let calls = Rc::new(RefCell::new(0));
    let mut router = Router::new(
        RouterConfig::default(),
        Box::new(Deaf(Rc::clone(&calls))),
        1,
    );
    let mut out = MockOut::default();
    let now = Instant::now();
    router.connect(1, None, 0, now, &mut out);
    router.connect(2, None, 0, now, &mut out);
    router.handle_text(1, r#"{"message":"hi"}"#, now, &mut out);
    // Welcomes and the broadcast were all delivered, and none reported.
    assert_eq!(out.sent.len(), 2 + 2);
    assert_eq!(*calls.borrow(), 0);
}
