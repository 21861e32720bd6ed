//! SPEC section 17, "nor one address hold every socket": with a per-address limit on, one
//! address that opens sockets and never finishes a request (or keeps idle HTTP connections)
//! must not take the sockets every other client and the backend need. Clients of several
//! addresses on one machine: 127.0.0.1 is the attacker, 127.0.0.2 and .3 the others.

mod common;

use std::net::TcpStream;
use std::time::Instant;

use common::abuse::connect_from;
use common::api::{get, Http};
use common::{recv_json, Daemon, WAIT};

/// Small limits, so the room for sockets is small: 8 WebSockets, 8 HTTP connections, and the
/// smallest room for handshakes in flight (64): 80 sockets in all.
const CONFIG: &str = "logging_level = \"warn\"\nmax_connections = 8\n\
                      max_http_connections = 8\n[limits]\nmax_connections_per_ip = 2\n";

/// More idle sockets than the daemon holds in all, from the attacker's address.
const IDLE: usize = 150;

/// A WebSocket client from `from`, with its welcome read.
#[track_caller]
fn client_from(daemon: &Daemon, from: [u8; 4]) -> common::Client {
    let stream = connect_from(daemon.addr, from);
    let url = format!("ws://{}/", daemon.addr);
    let (ws, _) = tungstenite::client(url, tungstenite::stream::MaybeTlsStream::Plain(stream))
        .unwrap_or_else(|e| panic!("the handshake from {from:?} failed: {e}"));
    let mut ws = ws;
    let welcome = recv_json(&mut ws);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    ws
}

#[test]
fn one_address_of_idle_sockets_leaves_room_for_the_others() {
    let daemon = Daemon::start(CONFIG, &[]);
    // Connected and silent: each would hold a socket for `handshake_timeout`.
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| connect_from(daemon.addr, [127, 0, 0, 1]))
        .collect();
    // The daemon takes sockets in the order they came: these are after every idle one.
    let mut ws = client_from(&daemon, [127, 0, 0, 2]);
    let mut api = Http::from_stream(connect_from(daemon.addr, [127, 0, 0, 3]));
    api.send(&get("/health", None));
    assert_eq!(api.read_response().status, 200);
    // Counted as refusals of kind `ip` (the rest of the attacker's sockets were dropped).
    api.send(&get("/metrics", None));
    let metrics = api.read_response();
    let refused = common::api::value_of(metrics.text(), "rakit_rate_limited_total{kind=\"ip\"}");
    assert!(refused.is_some_and(|n| n >= 1.0), "{}", metrics.text());
    drop(ws.close(None));
    // Once its sockets are gone the attacker's address connects again (nothing stays counted).
    drop(idle);
    let deadline = Instant::now() + WAIT;
    loop {
        let stream = connect_from(daemon.addr, [127, 0, 0, 1]);
        let url = format!("ws://{}/", daemon.addr);
        let plain = tungstenite::stream::MaybeTlsStream::Plain(stream);
        if tungstenite::client(url, plain).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "127.0.0.1 is still refused");
    }
}
