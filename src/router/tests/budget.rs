//! The budget of Rakit subscribes (docs/limits.md).

use super::*;
use crate::router::MIN_SUBSCRIBE_BURST;

fn subscribe(h: &mut Harness, conn: ConnId, channel: &str) -> Value {
    h.text(
        conn,
        &format!(r#"{{"event":"subscribe","channel":"{channel}"}}"#),
    );
    let msgs = h.take();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    msgs[0].1.clone()
}

#[test]
fn a_reconnecting_client_rejoins_all_its_channels_then_is_slowed_down() {
    let mut h = Harness::with(RouterConfig {
        max_channels_per_client: 40,
        ..RouterConfig::default()
    });
    h.join(1, None);
    // All 40 channels at once, then leaving and rejoining them all: 80 subscribes.
    for round in 0..2 {
        for c in 0..40 {
            let got = subscribe(&mut h, 1, &format!("c{c}"));
            assert_eq!(got["type"], "subscribed", "round {round}: {got}");
            if round == 0 {
                h.text(1, &format!(r#"{{"event":"unsubscribe","channel":"c{c}"}}"#));
                assert_eq!(h.take()[0].1["type"], "unsubscribed");
            }
        }
    }
    // The 81st is refused with section 5's closest code; unsubscribes stay free.
    h.text(1, r#"{"event":"unsubscribe","channel":"c0"}"#);
    assert_eq!(h.take()[0].1["type"], "unsubscribed");
    assert_eq!(
        h.error_code(1, r#"{"event":"subscribe","channel":"c0"}"#),
        "too_many_channels"
    );
    assert_eq!(h.router.channels.count(1), 39, "nothing joined");
    // Ten a second come back: one token per 100 ms.
    h.at(99);
    assert_eq!(subscribe(&mut h, 1, "c0")["type"], "error");
    h.at(100);
    assert_eq!(subscribe(&mut h, 1, "c0")["type"], "subscribed");
    assert_eq!(subscribe(&mut h, 1, "c0")["type"], "error");
    // Each connection has its own.
    h.join(2, None);
    assert_eq!(subscribe(&mut h, 2, "c0")["type"], "subscribed");
}

#[test]
fn a_small_channel_limit_still_gets_a_usable_burst() {
    let mut h = Harness::with(RouterConfig {
        max_channels_per_client: 1,
        ..RouterConfig::default()
    });
    h.join(1, None);
    let burst = usize::try_from(MIN_SUBSCRIBE_BURST).unwrap();
    for i in 0..burst {
        let got = subscribe(&mut h, 1, "a");
        assert_eq!(got["type"], "subscribed", "{i}: {got}");
        h.text(1, r#"{"event":"unsubscribe","channel":"a"}"#);
        h.take();
    }
    assert_eq!(subscribe(&mut h, 1, "a")["code"], "too_many_channels");
}
