//! Fan-out over real sockets: one publisher, 200 subscribers, 100 channel
//! messages; every subscriber gets every message, complete and in order.

mod common;

use std::time::Instant;

use common::msg::{client, recv_json, until_pong};
use common::{send_json, Client, Daemon};
use serde_json::json;

const SUBSCRIBERS: usize = 200;
const MESSAGES: usize = 100;
/// Subscribers read by each reader thread.
const PER_THREAD: usize = 20;

#[test]
fn channel_fan_out_to_200_subscribers_is_complete_and_ordered() {
    let started = Instant::now();
    let daemon = Daemon::start("logging_level = \"warn\"\npresence = false\n", &[]);
    let mut subscribers: Vec<Client> = (0..SUBSCRIBERS)
        .map(|_| {
            let (mut ws, _) = client(&daemon);
            send_json(&mut ws, &json!({"event": "subscribe", "channel": "fan"}));
            assert_eq!(
                recv_json(&mut ws),
                json!({"type": "subscribed", "channel": "fan"})
            );
            ws
        })
        .collect();
    let (mut publisher, welcome) = client(&daemon);
    let publisher_id = welcome["client_id"].as_str().unwrap().to_owned();

    // A payload big enough that the messages span many TCP segments.
    let pad = "x".repeat(500);
    for seq in 0..MESSAGES {
        send_json(
            &mut publisher,
            &json!({"event": "message", "channel": "fan", "data": {"seq": seq, "pad": pad}}),
        );
    }
    std::thread::scope(|scope| {
        for chunk in subscribers.chunks_mut(PER_THREAD) {
            let (pad, publisher_id) = (&pad, &publisher_id);
            scope.spawn(move || {
                for ws in chunk {
                    for seq in 0..MESSAGES {
                        let v = recv_json(ws);
                        assert_eq!(
                            v,
                            json!({"type": "channel", "channel": "fan", "client_id": publisher_id,
                                   "data": {"seq": seq, "pad": pad}}),
                        );
                    }
                    assert!(until_pong(ws).is_empty(), "nothing after the last message");
                }
            });
        }
    });
    // The publisher is not subscribed: it got none of them.
    assert!(until_pong(&mut publisher).is_empty());
    eprintln!(
        "fan-out of {MESSAGES} messages to {SUBSCRIBERS} subscribers: {:?}",
        started.elapsed()
    );
}
