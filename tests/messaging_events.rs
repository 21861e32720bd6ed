//! Events (SPEC section 7) in-process, through the library API: a recording
//! `Handler` on a `Server` bound to port 0 and run on its own thread, driven
//! by tungstenite clients.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use common::msg::{expect_gone, recv_close, recv_json, recv_text, until_pong};
use common::{send_json, send_text, set_timeout, Client};
use rakit::config::{Config, SessionConfig};
use rakit::events::Handler;
use rakit::session::{self, User};
use rakit::{Server, ServerError, ShutdownHandle};
use serde_json::{json, Value};

const SECRET: &str = "events-secret";

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Start(SocketAddr),
    Connect(String, Option<User>),
    Disconnect(String, Option<User>),
    Receive(String, Option<User>, String),
    Send(String, Option<User>, String),
    Crash(String),
}

type Log = Arc<Mutex<Vec<Ev>>>;

/// Records every event; panics in `receive` on a message containing `panic_on`.
struct Recorder {
    log: Log,
    panic_on: Option<&'static str>,
}

impl Recorder {
    fn push(&self, ev: Ev) {
        self.log.lock().unwrap().push(ev);
    }
}

impl Handler for Recorder {
    fn start(&mut self, addr: SocketAddr) {
        self.push(Ev::Start(addr));
    }
    fn connect(&mut self, id: &str, user: Option<&User>) {
        self.push(Ev::Connect(id.into(), user.cloned()));
    }
    fn disconnect(&mut self, id: &str, user: Option<&User>) {
        self.push(Ev::Disconnect(id.into(), user.cloned()));
    }
    fn receive(&mut self, id: &str, user: Option<&User>, message: &str) {
        // Outside the lock, so the log is not poisoned.
        if self.panic_on.is_some_and(|p| message.contains(p)) {
            panic!("handler refuses {message}");
        }
        self.push(Ev::Receive(id.into(), user.cloned(), message.into()));
    }
    fn send(&mut self, id: &str, user: Option<&User>, message: &str) {
        self.push(Ev::Send(id.into(), user.cloned(), message.into()));
    }
    fn crash(&mut self, error: &dyn std::error::Error) {
        self.push(Ev::Crash(error.to_string()));
    }
}

struct Running {
    addr: SocketAddr,
    stop: ShutdownHandle,
    thread: JoinHandle<Result<(), ServerError>>,
    log: Log,
}

impl Running {
    /// Builds and runs a server on its own thread (the handler need not be
    /// `Send`: it lives where the server is built).
    fn start(panic_on: Option<&'static str>) -> Running {
        let log = Log::default();
        let recorder_log = Arc::clone(&log);
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let config = Config {
                port: 0,
                presence: false,
                command_policy: rakit::config::CommandPolicy::Any,
                session: SessionConfig {
                    secret: SECRET.into(),
                    ..SessionConfig::default()
                },
                ..Config::default()
            };
            let recorder = Recorder {
                log: recorder_log,
                panic_on,
            };
            let bound = Server::new(config).handler(recorder).bind()?;
            tx.send((bound.local_addr(), bound.shutdown_handle()))
                .expect("test alive");
            bound.run()
        });
        let (addr, stop) = rx.recv().expect("server bound");
        Running {
            addr,
            stop,
            thread,
            log,
        }
    }

    fn ws(&self, path: &str) -> Client {
        let (ws, _) = tungstenite::connect(format!("ws://{}{path}", self.addr)).expect("connect");
        set_timeout(&ws);
        ws
    }

    /// Connects and returns the client, its welcome's raw text and its id.
    fn client(&self, path: &str) -> (Client, String, String) {
        let mut ws = self.ws(path);
        let raw = recv_text(&mut ws);
        let welcome: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(welcome["type"], "welcome");
        let id = welcome["client_id"].as_str().unwrap().to_owned();
        (ws, raw, id)
    }

    fn events(&self) -> Vec<Ev> {
        self.log.lock().unwrap().clone()
    }

    /// Shuts down, expects every client to get close 1001, and `run` to
    /// return `Ok`. (That the listener closes is checked by
    /// daemon_lifecycle, in a process of its own: here a test running beside
    /// this one may bind the freed port at once.)
    fn shutdown(self, clients: Vec<Client>) -> Vec<Ev> {
        self.stop.shutdown();
        for mut ws in clients {
            assert_eq!(recv_close(&mut ws).0, 1001);
            // Answer the close (tungstenite flushes its reply on the next
            // read); the server then closes TCP.
            expect_gone(&mut ws);
        }
        let result = self.thread.join().expect("server thread");
        assert!(result.is_ok(), "run() returned {result:?}");
        let events = self.log.lock().unwrap().clone();
        events
    }
}

fn ada() -> User {
    User {
        id: "u-1".into(),
        name: "Ada".into(),
        email: Some("ada@example.com".into()),
        admin: false,
    }
}

#[test]
fn events_fire_in_order_with_client_id_and_user() {
    let server = Running::start(None);
    let addr = server.addr;
    let token = session::issue(SECRET.as_bytes(), &ada(), session::now_unix() + 600);

    let (mut a, welcome_a, a_id) = server.client("/");
    let (mut b, welcome_b, b_id) = server.client(&format!("/?token={token}"));
    let sent = r#"{"message": "hi"}"#;
    send_text(&mut a, sent);
    let message = recv_text(&mut a);
    assert_eq!(recv_text(&mut b), message);
    assert_eq!(
        serde_json::from_str::<Value>(&message).unwrap(),
        json!({"type": "message", "client_id": a_id, "message": "hi"})
    );
    // B leaves with a close handshake.
    b.close(None).unwrap();
    expect_gone(&mut b);
    drop(b);

    let events = server.shutdown(vec![a]);
    let user = Some(ada());
    assert_eq!(
        events,
        [
            Ev::Start(addr),
            Ev::Connect(a_id.clone(), None),
            Ev::Send(a_id.clone(), None, welcome_a),
            Ev::Connect(b_id.clone(), user.clone()),
            Ev::Send(b_id.clone(), user.clone(), welcome_b),
            Ev::Receive(a_id.clone(), None, sent.into()),
            Ev::Send(a_id.clone(), None, message.clone()),
            Ev::Send(b_id.clone(), user.clone(), message),
            Ev::Disconnect(b_id, user),
            // Shutdown disconnects A.
            Ev::Disconnect(a_id, None),
        ]
    );
}

#[test]
fn errors_and_command_output_fire_send_events_too() {
    let server = Running::start(None);
    let (mut a, _, a_id) = server.client("/");
    let (mut b, _, b_id) = server.client("/");
    send_text(&mut a, "not json");
    let error = recv_text(&mut a);
    send_json(&mut a, &json!({"command": "disconnect", "client_id": b_id}));
    let ack = recv_text(&mut a);
    assert_eq!(
        serde_json::from_str::<Value>(&ack).unwrap(),
        json!({"type": "ack", "command": "disconnect"})
    );
    assert_eq!(recv_close(&mut b).0, 4000);
    expect_gone(&mut b);
    drop(b);
    let command = json!({"command": "disconnect", "client_id": b_id}).to_string();
    let events = server.events();
    assert_eq!(
        events[events.len() - 5..],
        [
            Ev::Receive(a_id.clone(), None, "not json".into()),
            Ev::Send(a_id.clone(), None, error),
            Ev::Receive(a_id.clone(), None, command),
            // The command is carried out (B leaves), then acknowledged.
            Ev::Disconnect(b_id, None),
            Ev::Send(a_id, None, ack),
        ]
    );
    server.shutdown(vec![a]);
}

#[test]
fn a_panicking_handler_closes_only_that_client_with_1011() {
    let server = Running::start(Some("boom"));
    let (mut a, _, a_id) = server.client("/");
    let (mut b, _, b_id) = server.client("/");

    send_json(&mut a, &json!({"message": "boom"}));
    assert_eq!(recv_close(&mut a).0, 1011);
    expect_gone(&mut a);
    drop(a);
    // The message was never routed; B noticed nothing.
    assert!(until_pong(&mut b).is_empty());
    send_json(&mut b, &json!({"message": "still here"}));
    assert_eq!(
        recv_json(&mut b),
        json!({"type": "message", "client_id": b_id, "message": "still here"})
    );
    // New clients are served as before.
    let (mut c, _, c_id) = server.client("/");
    send_json(&mut c, &json!({"to": b_id, "message": "hello"}));
    assert_eq!(
        recv_json(&mut b),
        json!({"type": "private", "client_id": c_id, "message": "hello"})
    );

    let events = server.shutdown(vec![b, c]);
    assert!(
        events.contains(&Ev::Disconnect(a_id.clone(), None)),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Ev::Send(_, _, m) if m.contains("boom"))),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, Ev::Crash(_))),
        "{events:?}"
    );
}

#[test]
fn refused_handshakes_fire_no_event() {
    let server = Running::start(None);
    let expired = session::issue(SECRET.as_bytes(), &ada(), session::now_unix() - 1);
    let wrong = session::issue(b"other", &ada(), session::now_unix() + 600);
    for token in [expired, wrong, "x.y.z".to_owned()] {
        match tungstenite::connect(format!("ws://{}/?token={token}", server.addr)) {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
            other => panic!("expected 401, got {other:?}"),
        }
    }
    // A later client is the first to connect.
    let (ws, welcome, id) = server.client("/");
    assert_eq!(
        server.events(),
        [
            Ev::Start(server.addr),
            Ev::Connect(id.clone(), None),
            Ev::Send(id, None, welcome),
        ]
    );
    server.shutdown(vec![ws]);
}

/// Panics when the server starts; records crashes.
struct FailsToStart(Log);

impl Handler for FailsToStart {
    fn start(&mut self, _addr: SocketAddr) {
        panic!("cannot start today");
    }
    fn crash(&mut self, error: &dyn std::error::Error) {
        self.0.lock().unwrap().push(Ev::Crash(error.to_string()));
    }
}

#[test]
fn a_fatal_failure_fires_crash_once_and_run_returns_the_error() {
    let log = Log::default();
    let handler_log = Arc::clone(&log);
    let result = std::thread::spawn(move || {
        let config = Config {
            port: 0,
            ..Config::default()
        };
        Server::new(config)
            .handler(FailsToStart(handler_log))
            .bind()?
            .run()
    })
    .join()
    .expect("run() returns; the panic does not escape");
    let err = result.expect_err("a fatal failure is an error");
    assert!(matches!(err, ServerError::Panic(_)), "{err:?}");
    assert!(err.to_string().contains("cannot start today"), "{err}");
    assert_eq!(
        *log.lock().unwrap(),
        vec![Ev::Crash(err.to_string())],
        "crash fires once, with the error"
    );
}
