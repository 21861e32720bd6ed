//! Cache channels (SPEC section 16, `cache.rs`): the last publication of a cache channel for
//! each new subscriber of either dialect, or the miss, on one node and in a cluster.

use std::time::Duration;

use serde_json::json;
use serde_json::value::RawValue;

use super::*;
use crate::history::{Position, Query, Read, Snapshot, Stored};
use crate::router::{CacheChannels, ChannelEvent, ChannelExtras, ClusterOut, Dialect, Foreign};

/// The other dialect's frames, as JSON these tests read back.
fn encode(event: &ChannelEvent<'_>) -> Option<Frame> {
    let v = json!({
        "event": event.event.unwrap_or("message"),
        "channel": event.channel,
        "data": event.data.get(),
        "user_id": event.user_id,
    });
    Some(super::members::frame(&v.to_string()))
}

fn miss(channel: &str) -> Option<Frame> {
    Some(super::members::frame(
        &json!({"event": "miss", "channel": channel}).to_string(),
    ))
}

const TTL: Duration = Duration::from_secs(30);

fn with_cache(mut h: Harness) -> Harness {
    h.router.set_foreign(Foreign {
        channel: encode,
        member: |_| None,
        protected: &["private-", "presence-"],
    });
    h.router.set_cache_channels(CacheChannels {
        prefixes: &["cache-", "private-cache-", "presence-cache-"],
        ttl: TTL,
        miss,
    });
    h
}

/// Without presence messages (nor their timer).
fn harness() -> Harness {
    Harness::with(RouterConfig {
        command_policy: CommandPolicy::Any,
        presence: false,
        ..RouterConfig::default()
    })
}

fn one_node() -> Harness {
    with_cache(harness())
}

fn cluster() -> Harness {
    let mut h = harness();
    h.router.enable_cluster("nodeA");
    h.router.set_history_up(true);
    with_cache(h)
}

/// Connects `conn` as a client of the other dialect.
fn foreign(h: &mut Harness, conn: ConnId) {
    let now = h.now;
    h.router
        .connect_as(conn, None, Dialect::Pusher, 0, now, &mut h.out);
}

/// The other dialect's subscribe: joined, then the cache's part.
fn foreign_subscribe(h: &mut Harness, conn: ConnId, channel: &str) {
    h.router.join(conn, channel, &mut h.out).unwrap();
    h.router.cache_subscribe(conn, channel, &mut h.out);
}

/// An event on `channel` as the other dialect's HTTP API publishes it.
fn api_event(h: &mut Harness, channel: &str, name: &str, data: &str, user: Option<&str>) {
    let data = RawValue::from_string(data.to_owned()).unwrap();
    let event = ChannelEvent {
        channel,
        event: Some(name),
        data: &data,
        client_id: None,
        user_id: user,
    };
    h.router.fan_out(&event, None, &mut h.out);
}

fn misses(h: &mut Harness) -> Vec<String> {
    h.take_events()
        .into_iter()
        .filter_map(|e| match e {
            Ev::Channel(text) if text.starts_with("CacheMiss") => Some(text),
            _ => None,
        })
        .collect()
}

#[test]
fn a_subscriber_gets_the_last_event_or_the_miss() {
    let mut h = one_node();
    foreign(&mut h, 1);
    foreign_subscribe(&mut h, 1, "cache-a");
    assert_eq!(
        h.take(),
        [(1, json!({"event": "miss", "channel": "cache-a"}))]
    );
    assert_eq!(misses(&mut h), [r#"CacheMiss { channel: "cache-a" }"#]);
    // Two events: the subscriber hears both; a new one gets the last, as it was.
    api_event(&mut h, "cache-a", "price", "1", None);
    api_event(&mut h, "cache-a", "price", r#"{"eur":2}"#, None);
    assert_eq!(h.take().len(), 2);
    foreign(&mut h, 2);
    foreign_subscribe(&mut h, 2, "cache-a");
    assert_eq!(
        h.take(),
        [(
            2,
            json!({"event": "price", "channel": "cache-a", "data": r#"{"eur":2}"#, "user_id": null})
        )]
    );
    assert!(misses(&mut h).is_empty());
    // A Rakit channel message is an event too (`message`), also when sent by a Rakit client.
    h.join(3, None);
    h.text(
        3,
        &json!({"event": "message", "channel": "cache-a", "data": {"n": 3}}).to_string(),
    );
    h.take();
    foreign(&mut h, 4);
    foreign_subscribe(&mut h, 4, "cache-a");
    assert_eq!(
        h.take(),
        [(
            4,
            json!({"event": "message", "channel": "cache-a", "data": r#"{"n":3}"#, "user_id": null})
        )]
    );
    // Any other channel: nothing, and no miss.
    foreign_subscribe(&mut h, 4, "news");
    foreign_subscribe(&mut h, 4, "xcache-a");
    assert!(h.take().is_empty());
    assert!(misses(&mut h).is_empty());
    // Counted against max_memory, as history is.
    assert_eq!(h.router.history_store().unwrap().len(), 1);
    assert!(h.router.history_store().unwrap().used() > 0);
}

#[test]
fn the_cache_expires_after_its_ttl() {
    let mut h = one_node();
    foreign(&mut h, 1);
    api_event(&mut h, "cache-a", "e", "1", None);
    let deadline = h.router.poll_timeout().expect("the cache expires");
    assert!(
        deadline >= h.now + TTL - Duration::from_secs(1),
        "{deadline:?}"
    );
    assert!(
        deadline <= h.now + TTL + Duration::from_secs(1),
        "{deadline:?}"
    );
    h.router.handle_timeout(deadline, &mut h.out);
    foreign_subscribe(&mut h, 1, "cache-a");
    assert_eq!(h.take()[0].1["event"], "miss");
}

#[test]
fn a_presence_client_event_keeps_its_sender() {
    let mut h = one_node();
    foreign(&mut h, 1);
    api_event(
        &mut h,
        "presence-cache-r",
        "client-typing",
        "true",
        Some("42"),
    );
    foreign_subscribe(&mut h, 1, "presence-cache-r");
    assert_eq!(
        h.take(),
        [(
            1,
            json!({"event": "client-typing", "channel": "presence-cache-r", "data": "true", "user_id": "42"})
        )]
    );
}

#[test]
fn a_rakit_subscriber_gets_it_after_subscribed_as_a_history_channel() {
    let mut h = one_node();
    h.join(1, None);
    // Nothing yet: subscribed at 0, and the miss is reported.
    h.text(
        1,
        &json!({"event": "subscribe", "channel": "cache-a"}).to_string(),
    );
    let got = h.take();
    let epoch = got[0].1["epoch"].as_str().unwrap().to_owned();
    assert_eq!(
        got,
        [(
            1,
            json!({"type": "subscribed", "channel": "cache-a", "offset": 0, "epoch": epoch})
        )]
    );
    assert_eq!(misses(&mut h).len(), 1);
    api_event(&mut h, "cache-a", "e", "1", None);
    api_event(&mut h, "cache-a", "e", "2", None);
    assert_eq!(h.take().len(), 2);
    // A new one: subscribed just before the last, then the last as its channel frame.
    h.join(2, None);
    h.text(
        2,
        &json!({"event": "subscribe", "channel": "cache-a"}).to_string(),
    );
    assert_eq!(
        h.take(),
        [
            (
                2,
                json!({"type": "subscribed", "channel": "cache-a", "offset": 1, "epoch": epoch})
            ),
            (
                2,
                json!({"type": "channel", "channel": "cache-a", "event": "e", "data": 2, "offset": 2, "epoch": epoch})
            ),
        ]
    );
    // `since` is SPEC 16's recovery: nothing missed, nothing replayed.
    h.text(
        2,
        &json!({"event": "subscribe", "channel": "cache-a", "since": {"offset": 2, "epoch": epoch}})
            .to_string(),
    );
    assert_eq!(
        h.take(),
        [(
            2,
            json!({"type": "subscribed", "channel": "cache-a", "recovered": true, "offset": 2, "epoch": epoch})
        )]
    );
    // Only one publication is held: a recovery of two is lost.
    h.text(
        2,
        &json!({"event": "subscribe", "channel": "cache-a", "since": {"offset": 0, "epoch": epoch}})
            .to_string(),
    );
    assert_eq!(h.take()[0].1["recovered"], false);
    assert!(misses(&mut h).is_empty(), "a recovery is no miss");
}

#[test]
fn without_the_dialect_a_cache_name_is_an_ordinary_channel() {
    let mut h = Harness::new();
    h.join(1, None);
    h.text(
        1,
        &json!({"event": "subscribe", "channel": "cache-a"}).to_string(),
    );
    assert_eq!(
        h.take(),
        [(1, json!({"type": "subscribed", "channel": "cache-a"}))]
    );
    h.text(
        1,
        &json!({"event": "message", "channel": "cache-a", "data": 1}).to_string(),
    );
    let got = h.take();
    assert!(got[0].1.get("offset").is_none(), "{got:?}");
    assert!(h.router.history_store().unwrap().is_empty());
}

/// The newest publication of `channel`, as Redis holds it.
fn stored(channel: &str, offset: u64, epoch: &str) -> Stored {
    Stored {
        offset,
        json: json_of(channel, offset, epoch).into_bytes(),
    }
}

fn json_of(channel: &str, offset: u64, epoch: &str) -> String {
    format!(
        r#"{{"type":"channel","channel":"{channel}","event":"e","data":{offset},"offset":{offset},"epoch":"{epoch}"}}"#
    )
}

fn from_redis(h: &mut Harness, channel: &str, offset: u64, epoch: &str) {
    let json = json_of(channel, offset, epoch);
    let extras = ChannelExtras::default();
    h.router
        .remote_history(channel, offset, epoch, json.as_bytes(), extras, &mut h.out);
}

/// The one history read queued for Redis.
#[track_caller]
fn read(h: &mut Harness) -> (u64, Read) {
    let reads: Vec<(u64, Read)> = h
        .router
        .take_cluster_out()
        .into_iter()
        .filter_map(|item| match item {
            ClusterOut::HistoryRead {
                tag, read, keep, ..
            } => {
                assert_eq!((keep.size, keep.ttl), (1, TTL));
                Some((tag, read))
            }
            _ => None,
        })
        .collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    reads[0].clone()
}

fn answer(offset: u64, epoch: &str, newest: Option<Stored>) -> Snapshot {
    Snapshot {
        position: Position {
            offset,
            epoch: epoch.into(),
        },
        publications: Some(newest.into_iter().collect()),
    }
}

#[test]
fn in_a_cluster_the_cached_event_comes_from_redis_then_what_was_held() {
    let mut h = cluster();
    foreign(&mut h, 1);
    foreign_subscribe(&mut h, 1, "cache-a");
    assert!(h.take().is_empty(), "waits for Redis");
    let (tag, r) = read(&mut h);
    assert_eq!(r, Read::Cached, "nothing is made in Redis for it");
    // Publications Redis made meanwhile: 4 before its answer (so in it), 5 after.
    from_redis(&mut h, "cache-a", 4, "E");
    from_redis(&mut h, "cache-a", 5, "E");
    assert!(h.take().is_empty(), "held");
    h.router.history_reply(
        tag,
        Some(answer(4, "E", Some(stored("cache-a", 4, "E")))),
        &mut h.out,
    );
    let data: Vec<Value> = h
        .take()
        .into_iter()
        .map(|(_, v)| v["data"].clone())
        .collect();
    assert_eq!(
        data,
        [json!("4"), json!("5")],
        "the cached one, then 5, each once"
    );
    from_redis(&mut h, "cache-a", 6, "E");
    assert_eq!(h.take()[0].1["data"], "6");
    // Answered before a publication it carried arrives: its late copy is skipped.
    foreign(&mut h, 2);
    foreign_subscribe(&mut h, 2, "cache-a");
    let (tag, _) = read(&mut h);
    h.router.history_reply(
        tag,
        Some(answer(7, "E", Some(stored("cache-a", 7, "E")))),
        &mut h.out,
    );
    from_redis(&mut h, "cache-a", 7, "E");
    from_redis(&mut h, "cache-a", 8, "E");
    let got: Vec<(ConnId, Value)> = h
        .take()
        .into_iter()
        .map(|(c, v)| (c, v["data"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (2, json!("7")),
            (1, json!("7")),
            (1, json!("8")),
            (2, json!("8"))
        ]
    );
    assert!(misses(&mut h).is_empty());
}

#[test]
fn in_a_cluster_nothing_cached_or_no_answer_is_a_miss() {
    let mut h = cluster();
    foreign(&mut h, 1);
    // An expired one is not in the answer: a miss at the stream's offset.
    foreign_subscribe(&mut h, 1, "cache-a");
    let (tag, _) = read(&mut h);
    h.router
        .history_reply(tag, Some(answer(3, "E", None)), &mut h.out);
    assert_eq!(h.take()[0].1["event"], "miss");
    assert_eq!(misses(&mut h).len(), 1);
    // Redis failed or took too long.
    foreign_subscribe(&mut h, 1, "cache-b");
    let (tag, _) = read(&mut h);
    h.router.history_reply(tag, None, &mut h.out);
    assert_eq!(
        h.take(),
        [(1, json!({"event": "miss", "channel": "cache-b"}))]
    );
    // Redis out of reach: at once.
    h.router.set_history_up(false);
    foreign_subscribe(&mut h, 1, "cache-c");
    assert_eq!(
        h.take(),
        [(1, json!({"event": "miss", "channel": "cache-c"}))]
    );
    assert_eq!(misses(&mut h).len(), 2);
}

#[test]
fn in_a_cluster_a_rakit_subscriber_gets_it_after_subscribed() {
    let mut h = cluster();
    h.join(1, None);
    h.text(
        1,
        &json!({"event": "subscribe", "channel": "cache-a"}).to_string(),
    );
    let (tag, r) = read(&mut h);
    assert_eq!(r, Read::Query(Query::Newest(1)));
    h.router.history_reply(
        tag,
        Some(answer(7, "E", Some(stored("cache-a", 7, "E")))),
        &mut h.out,
    );
    assert_eq!(
        h.take(),
        [
            (
                1,
                json!({"type": "subscribed", "channel": "cache-a", "offset": 6, "epoch": "E"})
            ),
            (
                1,
                json!({"type": "channel", "channel": "cache-a", "event": "e", "data": 7, "offset": 7, "epoch": "E"})
            ),
        ]
    );
    from_redis(&mut h, "cache-a", 7, "E");
    assert!(h.take().is_empty(), "not twice");
}
