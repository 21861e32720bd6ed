//! SPEC section 17's last bullet, scaled to this machine: with 300 ordinary clients connected,
//! 10 guests flood broadcasts and channel messages as fast as their sockets allow, with the
//! default limits. No ordinary client is dropped, and a witness broadcast by an ordinary
//! client reaches every ordinary client within a second, throughout.
//!
//! Without the limits every flooded broadcast is a 310-fold amplifier: the witnesses queue
//! behind millions of deliveries, and readers fall behind until they are dropped (4008).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{raw_ws, Client, Daemon};
use rakit_protocol::OpCode;
use serde_json::{json, Value};
use tungstenite::Message;

const ORDINARY: usize = 300;
/// Of them, subscribed to the channel the flooders publish to.
const IN_LOBBY: usize = 30;
const FLOODERS: usize = 10;
const ATTACK: Duration = Duration::from_secs(4);
const WITNESS_EVERY: Duration = Duration::from_millis(200);
/// SPEC 17: a message between two ordinary clients still arrives within one second.
const WITNESS_WITHIN: Duration = Duration::from_secs(1);

/// What one ordinary client saw.
#[derive(Default)]
struct Seen {
    /// When each witness arrived, by number.
    witnesses: Vec<(u64, Instant)>,
    /// How it ended, if it did before the test stopped it (a close, an error).
    ended: Option<String>,
}

/// Reads everything `ws` gets until `stop`, noting witnesses.
fn read_all(mut ws: Client, stop: Arc<AtomicBool>) -> Seen {
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        match common::read(&mut ws).map_err(|e| *e) {
            Ok(Message::Text(t)) => {
                if t.contains("witness") {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    let k = v["message"]["witness"].as_u64().unwrap();
                    seen.witnesses.push((k, Instant::now()));
                }
            }
            Ok(Message::Close(frame)) => {
                seen.ended = Some(format!("closed: {frame:?}"));
                return seen;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => {
                seen.ended = Some(format!("error: {e}"));
                return seen;
            }
        }
    }
    seen
}

/// A guest that writes broadcasts and channel messages as fast as its socket takes them
/// (and reads whatever comes, so that it is not simply dropped as a slow reader), until the
/// attack ends or the daemon closes it. Returns the bytes it got written.
fn flood(mut s: TcpStream, until: Instant) -> JoinHandle<usize> {
    let mut reader = s.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    let mut batch = Vec::new();
    for i in 0..500 {
        let text = if i % 2 == 0 {
            json!({"message": {"flood": i, "pad": "x".repeat(100)}})
        } else {
            json!({"event": "message", "channel": "lobby", "data": {"flood": i}})
        };
        rakit_protocol::encode_masked(
            &mut batch,
            true,
            OpCode::Text,
            text.to_string().as_bytes(),
            [9, 8, 7, 6],
        );
    }
    std::thread::spawn(move || {
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut sent = 0;
        while Instant::now() < until {
            match s.write(&batch) {
                Ok(n) => sent += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        sent
    })
}

#[test]
fn ordinary_clients_are_served_while_guests_flood() {
    // Default limits: the point is that they are on without being asked for.
    let daemon = Daemon::start(
        "logging_level = \"warn\"\npresence = false\nmax_connections = 2000\n",
        &[],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for i in 0..ORDINARY {
        let (mut ws, _) = daemon.client();
        if i < IN_LOBBY {
            common::send_json(&mut ws, &json!({"event": "subscribe", "channel": "lobby"}));
            assert_eq!(common::recv_json(&mut ws)["type"], "subscribed");
        }
        let stop = Arc::clone(&stop);
        readers.push(
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || read_all(ws, stop))
                .unwrap(),
        );
    }
    // The witness: an ordinary client of its own, broadcasting within its bucket.
    let (mut witness, _) = daemon.client();
    // Every guest connected first, then all flood at once.
    let guests: Vec<TcpStream> = (0..FLOODERS).map(|_| raw_ws(&daemon)).collect();
    let sent = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let start = Instant::now();
    let until = start + ATTACK;
    let flooders: Vec<_> = guests.into_iter().map(|s| flood(s, until)).collect();
    let witness_thread = {
        let sent = Arc::clone(&sent);
        std::thread::spawn(move || {
            if let tungstenite::stream::MaybeTlsStream::Plain(s) = witness.get_ref() {
                s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            }
            let mut next = Instant::now();
            let mut k = 0u64;
            while Instant::now() < until {
                if Instant::now() >= next {
                    let text = json!({"message": {"witness": k}}).to_string();
                    sent.lock().unwrap().push(Instant::now());
                    if witness.send(Message::Text(text)).is_err() {
                        return Some("the witness's connection failed");
                    }
                    k += 1;
                    next += WITNESS_EVERY;
                }
                // Read what comes to it too, as an ordinary page does.
                loop {
                    match common::read(&mut witness).map_err(|e| *e) {
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(e))
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            break
                        }
                        Err(_) => return Some("the witness's connection failed"),
                    }
                }
            }
            None
        })
    };
    let flooded: usize = flooders.into_iter().map(|f| f.join().unwrap()).sum();
    let witness_failed = witness_thread.join().unwrap();
    // Time for the last witness to arrive, then stop the readers.
    std::thread::sleep(WITNESS_WITHIN + Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let sent = sent.lock().unwrap().clone();

    let dropped: Vec<(usize, &String)> = seen
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.ended.as_ref().map(|e| (i, e)))
        .collect();
    assert!(dropped.is_empty(), "ordinary clients dropped: {dropped:?}");
    let mut late = 0;
    let mut missing = 0;
    let mut worst = Duration::ZERO;
    for s in &seen {
        for (k, at) in sent.iter().enumerate() {
            match s.witnesses.iter().find(|(n, _)| *n == k as u64) {
                Some((_, arrived)) => {
                    let took = arrived.saturating_duration_since(*at);
                    worst = worst.max(took);
                    late += usize::from(took > WITNESS_WITHIN);
                }
                None => missing += 1,
            }
        }
    }
    let deliveries = sent.len() * ORDINARY;
    assert!(
        late == 0 && missing == 0,
        "of {deliveries} witness deliveries, {late} took over {WITNESS_WITHIN:?} and \
         {missing} never came (worst {worst:?}; the flooders wrote {flooded} bytes)"
    );
    assert_eq!(witness_failed, None);
    assert!(sent.len() >= 10, "{} witnesses sent", sent.len());
    assert_eq!(
        common::abuse::metric(daemon.addr, "rakit_slow_client_drops_total"),
        0.0
    );
    // Every flooder was closed for it.
    assert_eq!(
        common::abuse::metric(daemon.addr, "rakit_closes_total{code=\"4029\"}"),
        FLOODERS as f64
    );
}
