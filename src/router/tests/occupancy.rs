//! `Handler::channel` occupancy: a channel is occupied when its first local subscriber (of any
//! dialect) joins and vacated when its last one leaves, by unsubscribing or disconnecting.

use super::*;
use crate::router::Dialect;

fn channel_events(h: &mut Harness) -> Vec<String> {
    h.take_events()
        .into_iter()
        .filter_map(|e| match e {
            Ev::Channel(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn first_subscriber_occupies_and_last_one_vacates() {
    let mut h = Harness::new();
    h.join(1, None);
    h.join(2, None);
    h.take_events();
    h.text(1, r#"{"event":"subscribe","channel":"news"}"#);
    h.text(1, r#"{"event":"subscribe","channel":"news"}"#); // again: nothing new
    h.text(2, r#"{"event":"subscribe","channel":"news"}"#);
    h.text(2, r#"{"event":"subscribe","channel":"sports"}"#);
    assert_eq!(channel_events(&mut h), ["occupied:news", "occupied:sports"]);
    h.text(1, r#"{"event":"unsubscribe","channel":"news"}"#);
    h.text(1, r#"{"event":"unsubscribe","channel":"news"}"#); // not in it: nothing
    assert!(channel_events(&mut h).is_empty());
    // A disconnect vacates every channel it was alone in.
    h.disconnect(2);
    let mut vacated = channel_events(&mut h);
    vacated.sort();
    assert_eq!(vacated, ["vacated:news", "vacated:sports"]);
    // Over the channel limit: refused, so not occupied.
    let mut h = Harness::with(RouterConfig {
        max_channels_per_client: 1,
        ..RouterConfig::default()
    });
    h.join(1, None);
    h.text(1, r#"{"event":"subscribe","channel":"a"}"#);
    h.take();
    assert_eq!(
        h.error_code(1, r#"{"event":"subscribe","channel":"b"}"#),
        "too_many_channels"
    );
    assert_eq!(channel_events(&mut h), ["occupied:a"]);
}

#[test]
fn both_dialects_count_as_subscribers() {
    let mut h = Harness::new();
    h.join(1, None);
    let (now, out) = (h.now, &mut h.out);
    h.router.connect_as(2, None, Dialect::Pusher, 0, now, out);
    h.take_events();
    assert_eq!(h.router.join(2, "news"), Ok(true));
    h.text(1, r#"{"event":"subscribe","channel":"news"}"#);
    assert_eq!(channel_events(&mut h), ["occupied:news"]);
    assert!(h.router.leave(2, "news", &mut h.out));
    assert!(!h.router.leave(2, "news", &mut h.out));
    assert!(
        channel_events(&mut h).is_empty(),
        "the Rakit client is still in"
    );
    h.text(1, r#"{"event":"unsubscribe","channel":"news"}"#);
    assert_eq!(channel_events(&mut h), ["vacated:news"]);
}
