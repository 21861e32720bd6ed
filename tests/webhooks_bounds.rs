//! The webhook queue against a hostile client (docs/limits.md, "Webhooks"): `message` events
//! carry the client's text, and JSON escapes a control character to six bytes, so a few
//! clients sending 64 KiB of `\x01` could fill `queue_max` events with gigabytes. The queue is
//! bounded in bytes too (`[webhooks] queue_max_bytes`), measured on the real daemon's resident
//! memory while the endpoint never answers.

mod common;

use common::msg::until_pong;
use common::receiver::{webhook_counts, Endpoint, Mode};
use common::*;

/// Bytes of JSON per control character of a text (`\u0001`).
const ESCAPED: usize = 6;

#[test]
fn message_events_of_control_characters_cannot_grow_the_daemon_past_the_byte_bound() {
    let endpoint = Endpoint::start(Mode::Hang);
    let daemon = Daemon::start(
        &format!(
            "logging_level = \"warn\"\npresence = false\n[webhooks]\nurl = \"{}\"\n\
             secret = \"webhook-secret-for-tests\"\nevents = [\"message\"]\nbatch_ms = 10\n\
             timeout_ms = 60000\nretries = 0\n",
            endpoint.url()
        ),
        &[],
    );
    // Defaults: queue_max = 10,000 events, queue_max_bytes = 16 MiB.
    const BOUND: u64 = 16 << 20;
    const CLIENTS: usize = 6;
    const EACH: usize = 120;
    let text = "\u{1}".repeat(64 * 1024 - 16);
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| daemon.client().0).collect();
    // Everything else is in place (clients, buffers, the worker): only the queue grows now.
    let _ = until_pong(&mut clients[0]);
    let before = vm_rss_kib(daemon.child.id());
    for ws in &mut clients {
        for _ in 0..EACH {
            send_text(ws, &text);
        }
    }
    // Each client's texts are processed (each got its `bad_request` answer) before its pong.
    for ws in &mut clients {
        assert_eq!(until_pong(ws).len(), EACH);
    }
    let after = vm_rss_kib(daemon.child.id());
    let grown = after.saturating_sub(before) * 1024;
    let events = (CLIENTS * (EACH + 1)) as u64 + 1;
    let (sent, failed, dropped) = webhook_counts(&daemon);
    eprintln!(
        "{events} message events of {} bytes of JSON each: RSS {before} -> {after} KiB, \
         dropped {dropped}",
        text.len() * ESCAPED
    );
    assert_eq!((sent, failed), (0, 0));
    // The endpoint holds one batch; what is queued or in flight is at most the bound plus
    // one event. So at most BOUND / size + 1 of the big events were kept.
    let big = (text.len() * ESCAPED) as u64;
    let kept_at_most = BOUND.div_ceil(big) + 1;
    assert!(
        dropped >= (CLIENTS * EACH) as u64 - kept_at_most,
        "only {dropped} of {events} events dropped"
    );
    // Kept: at most 16 MiB of JSON, plus the batch's body built from it (one more copy of
    // it, at most) and the allocator's slack. Without the bound: 720 x 384 KiB = 270 MiB.
    assert!(
        grown < 3 * BOUND + (8 << 20),
        "the daemon grew by {} MiB",
        grown >> 20
    );
    // The daemon still serves everyone.
    for ws in &mut clients {
        assert_eq!(until_pong(ws), Vec::<serde_json::Value>::new());
    }
    assert!(
        endpoint.posts.try_recv().is_ok(),
        "the first batch went out"
    );
}

/// `websocket:check` shows the bound (16 MiB by default) and refuses one that cannot hold a
/// single ordinary message event, naming the key (exit 2).
#[test]
fn check_shows_queue_max_bytes_and_refuses_a_useless_one() {
    let dir = scratch_dir();
    let check = |toml: &str| {
        let file = dir.join("check.toml");
        std::fs::write(&file, toml).unwrap();
        run_to_exit(rakit().args(["websocket:check", &format!("--config={}", file.display())]))
    };
    let run = check("[webhooks]\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("\nqueue_max_bytes = 16777216\n"),
        "{}",
        run.stdout
    );
    let run = check("[webhooks]\nqueue_max_bytes = 65535\n");
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("webhooks.queue_max_bytes"),
        "{}",
        run.stderr
    );
    let run = check("[webhooks]\nqueue_max_bytes = 1048576\n");
    assert!(
        run.stdout.contains("\nqueue_max_bytes = 1048576\n"),
        "{run:?}"
    );
}
