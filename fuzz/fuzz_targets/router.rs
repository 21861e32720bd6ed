//! The router fed arbitrary client text: JSON or not, any shape, from
//! several clients (guests, a user, an admin) with commands allowed for all.
//!
//! Invariants: no panic; every frame the router queues is one unmasked FIN
//! text frame whose payload is a JSON object with a string `type`; errors go
//! only to the sender; a closed (disconnected) client is never sent to
//! again; presence counts the clients still connected.
#![no_main]

use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rakit::config::CommandPolicy;
use rakit::events::Handler;
use rakit::router::{ConnId, Frame, Outbox, Router, RouterConfig};
use rakit::session::User;
use serde_json::Value;

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
    fn close(&mut self, conn: ConnId, code: u16, _reason: &str) {
        assert_eq!(code, 4000);
        self.closed.push(conn);
    }
}

fn payload(frame: &[u8]) -> &[u8] {
    assert_eq!(frame[0], 0x81, "FIN text frame");
    assert_eq!(frame[1] & 0x80, 0, "unmasked");
    let (len, start) = match frame[1] {
        126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&frame[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    assert_eq!(frame.len(), start + len);
    &frame[start..]
}

fuzz_target!(|data: &[u8]| {
    let config = RouterConfig {
        max_channels_per_client: 4,
        presence: true,
        presence_interval: Duration::from_millis(50),
        presence_max_users: 2,
        command_policy: CommandPolicy::Any,
    };
    let mut router = Router::new(config, Box::new(Quiet), 7);
    let mut out = Out::default();
    let t0 = Instant::now();
    let admin = User {
        id: "1".into(),
        name: "Admin".into(),
        email: Some("a@example.com".into()),
        admin: true,
    };
    let user = User {
        id: "2".into(),
        name: "Ada".into(),
        email: None,
        admin: false,
    };
    router.connect(0, Some(admin), 1, t0, &mut out);
    router.connect(1, Some(user), 2, t0, &mut out);
    router.connect(2, None, 3, t0, &mut out);
    router.connect(3, None, 4, t0, &mut out);
    let mut live: HashSet<ConnId> = (0..4).collect();
    // Client ids, so that inputs can name them (`{"to": "$1"}` means client 1's id).
    let ids: Vec<String> = (0..4)
        .map(|c| router.client_id(c).unwrap().to_owned())
        .collect();

    // Messages are separated by 0xff bytes; each starts with its sender.
    for (step, chunk) in data.split(|b| *b == 0xff).enumerate() {
        let Some((&who, text)) = chunk.split_first() else {
            continue;
        };
        let conn = (who % 5) as ConnId; // 4 is never connected
        let now = t0 + Duration::from_millis(step as u64 * 20);
        let text = String::from_utf8_lossy(text)
            .replace("$0", &ids[0])
            .replace("$1", &ids[1])
            .replace("$2", &ids[2])
            .replace("$3", &ids[3]);
        out.sent.clear();
        out.closed.clear();
        if who & 0x80 != 0 {
            router.handle_binary(conn, now, &mut out);
        } else {
            router.handle_text(conn, &text, now, &mut out);
        }
        router.handle_timeout(now, &mut out);
        for closed in &out.closed {
            assert!(live.remove(closed), "closed a client that was not live");
        }
        let mut errors_to = HashSet::new();
        for (to, frame) in &out.sent {
            assert!(live.contains(to), "sent to a client that is gone: {to}");
            let v: Value = serde_json::from_slice(payload(frame)).expect("JSON");
            let ty = v["type"].as_str().expect("a string type");
            if ty == "error" {
                errors_to.insert(*to);
                assert!(v["code"].is_string() && v["message"].is_string());
            }
            if ty == "presence" {
                assert_eq!(v["count"].as_u64(), Some(live.len() as u64));
            }
        }
        assert!(
            errors_to.iter().all(|to| *to == conn),
            "an error went to someone other than the sender"
        );
        assert_eq!(router.len(), live.len());
    }
});
