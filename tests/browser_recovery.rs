//! Recovery with the browser client (SPEC 16 and 16.2, issue 20): the page subscribes to a
//! history channel; a TCP proxy (tests/common/proxy.rs) cuts its connection while the HTTP API
//! publishes; in the end the page has delivered every publication once and in order.
//! A single-node restart reports `recovered:false`; a cluster node killed with SIGKILL and the
//! page recovers through another node.

mod common;

use std::thread;
use std::time::Duration;

use common::api::{api_table, command, Http};
use common::browser::Page;
use common::proxy::Proxy;
use common::redis::Redis;
use common::Daemon;
use serde_json::{json, Value};

const CHANNEL: &str = "feed.x";

/// A namespace whose channels keep their last 1,000 publications for ten minutes.
fn history_config(extra: &str) -> String {
    format!(
        "logging_level = \"warn\"\n{}{extra}\n[[namespaces]]\nprefix = \"feed.\"\n\
         history_size = 1000\nhistory_ttl = 600\n",
        api_table()
    )
}

fn load(page: &mut Page, daemon: &Daemon) {
    page.goto(&format!("http://{}/health", daemon.addr));
    page.script_url("/rakit-websocket.js");
    page.script_file("client_fixture.js");
}

/// Waits until the client is connected with an id other than `old`; the id.
#[track_caller]
fn connected(page: &mut Page, old: &str) -> String {
    let id = page.wait(&format!(
        "T.rt.state === 'connected' && T.rt.clientId !== {} && T.rt.clientId",
        json!(old)
    ));
    id.as_str().unwrap().to_owned()
}

/// Opens the client on `urls`, subscribes to [`CHANNEL`] and waits for the `subscribed`; the
/// client id and that reply.
#[track_caller]
fn subscribe(page: &mut Page, urls: &[String]) -> (String, Value) {
    page.eval(&format!("T.open({}, {{}})", json!(urls)));
    let id = connected(page, "");
    page.eval(&format!("T.sub({})", json!(CHANNEL)));
    let reply = page.wait(&format!(
        "T.subscribed[{0}].length === 1 && T.subscribed[{0}][0]",
        json!(CHANNEL)
    ));
    (id, reply)
}

/// Publishes `{"n":n}` to [`CHANNEL`] through the API on `http`.
#[track_caller]
fn publish(http: &mut Http, n: u64) {
    let body = json!({"command": "broadcast_to_channel", "channel": CHANNEL, "message": {"n": n}});
    let r = http.request(&command(&body.to_string()));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Publishes 1..=`count` on a thread, one about every `pace`.
fn publisher(addr: std::net::SocketAddr, count: u64, pace: Duration) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut http = Http::connect(addr);
        for n in 1..=count {
            publish(&mut http, n);
            thread::sleep(pace);
        }
    })
}

/// Waits until the page has delivered `count` publications of [`CHANNEL`]; they, as
/// (n, offset, epoch).
#[track_caller]
fn delivered(page: &mut Page, count: u64) -> Vec<(u64, u64, String)> {
    let got = page.wait(&format!(
        "T.got[{0}].length >= {count} && T.got[{0}]",
        json!(CHANNEL)
    ));
    got.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m[0]["n"].as_u64().unwrap(),
                m[1]["offset"].as_u64().unwrap(),
                m[1]["epoch"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Cuts the page's connection, refuses it until it has tried again `refusals` times, then
/// lets it in and waits for it to be connected with a new id; that id.
#[track_caller]
fn cut(page: &mut Page, proxy: &Proxy, id: &str, refusals: usize) -> String {
    let before = proxy.refused();
    proxy.refuse(true);
    proxy.cut();
    proxy.wait_for("refused attempts", |_, r| r >= before + refusals);
    proxy.refuse(false);
    connected(page, id)
}

#[track_caller]
fn assert_once_in_order(got: &[(u64, u64, String)], count: u64) {
    let ns: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        ns,
        (1..=count).collect::<Vec<_>>(),
        "every publication once, in order"
    );
    let offsets: Vec<u64> = got.iter().map(|g| g.1).collect();
    assert_eq!(
        offsets,
        (1..=count).collect::<Vec<_>>(),
        "offsets without gaps"
    );
}

/// The proxy cuts the page's connection three times while the API publishes 600 messages; the
/// page ends with every one once, in order, and each resubscribe recovered.
#[test]
fn every_publication_once_and_in_order_across_cuts() {
    let Some(mut page) = Page::open() else { return };
    let daemon = Daemon::start(&history_config(""), &[]);
    let proxy = Proxy::start(daemon.addr);
    load(&mut page, &daemon);
    let (mut id, reply) = subscribe(&mut page, &[proxy.url()]);
    assert_eq!(reply["offset"], 0, "{reply}");
    assert!(
        reply["epoch"].as_str().is_some_and(|e| !e.is_empty()),
        "{reply}"
    );

    const COUNT: u64 = 600;
    let publishing = publisher(daemon.addr, COUNT, Duration::from_millis(3));
    for (round, refusals) in [(1, 1), (2, 2), (3, 0)] {
        delivered(&mut page, round * 100);
        id = cut(&mut page, &proxy, &id, refusals);
    }
    publishing.join().unwrap();
    // One more after the publisher: when it is in, nothing else is on its way.
    publish(&mut Http::connect(daemon.addr), COUNT + 1);
    let got = delivered(&mut page, COUNT + 1);
    assert_once_in_order(&got, COUNT + 1);
    let epoch = &got[0].2;
    assert!(got.iter().all(|g| &g.2 == epoch), "one epoch");
    assert_eq!(
        page.eval(&format!("T.recovered[{}]", json!(CHANNEL))),
        json!([{"recovered": true}, {"recovered": true}, {"recovered": true}])
    );
    // history() answers the server's reply: the newest three, oldest first.
    page.eval(&format!("T.history({}, {{limit: 3}})", json!(CHANNEL)));
    let settled = page.wait("T.histories.length === 1 && T.histories[0]");
    assert_eq!(settled[0], true, "{settled}");
    let reply = &settled[1];
    assert_eq!(reply["type"], "history");
    assert_eq!(reply["offset"], COUNT + 1);
    assert_eq!(reply["epoch"], *epoch);
    let offsets: Vec<u64> = reply["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [COUNT - 1, COUNT, COUNT + 1], "{reply}");
    assert_eq!(page.errors(), json!([]));
}

/// A single node's history does not outlive it: after a restart the page reports
/// `recovered:false` and goes on with the new stream (a new epoch).
#[test]
fn a_restart_reports_recovered_false() {
    let Some(mut page) = Page::open() else { return };
    let daemon = Daemon::start(&history_config(""), &[]);
    let port = daemon.addr.port();
    let proxy = Proxy::start(daemon.addr);
    load(&mut page, &daemon);
    let (id, _) = subscribe(&mut page, &[proxy.url()]);
    let mut http = Http::connect(daemon.addr);
    for n in 1..=3 {
        publish(&mut http, n);
    }
    let before = delivered(&mut page, 3);
    drop(http);
    drop(daemon);

    let daemon = Daemon::start_on(port, &history_config(""), &[]);
    connected(&mut page, &id);
    page.wait(&format!("T.recovered[{}].length === 1", json!(CHANNEL)));
    assert_eq!(
        page.eval(&format!("T.recovered[{}]", json!(CHANNEL))),
        json!([{"recovered": false}])
    );
    publish(&mut Http::connect(daemon.addr), 4);
    let after = delivered(&mut page, 4);
    assert_eq!(after.len(), 4, "{after:?}");
    assert_eq!(after[..3], before[..]);
    assert_eq!(
        (after[3].0, after[3].1),
        (4, 1),
        "the new stream starts at 1"
    );
    assert_ne!(after[3].2, before[0].2, "a new epoch");
}

/// Two nodes share history in Redis; the page is on node A, which is killed with SIGKILL while
/// node B's API publishes; the page moves to B (its second URL) and recovers everything.
#[test]
fn a_killed_node_recovers_through_another() {
    let Some(mut page) = Page::open() else { return };
    let redis = Redis::start();
    let cluster = format!(
        "[cluster]\nredis_url = \"{}\"\nnode_timeout_ms = 1000\n",
        redis.url()
    );
    let a = Daemon::start(&history_config(&cluster), &[]);
    let b = Daemon::start(&history_config(&cluster), &[]);
    let (to_a, to_b) = (Proxy::start(a.addr), Proxy::start(b.addr));
    load(&mut page, &b);
    let (id, _) = subscribe(&mut page, &[to_a.url(), to_b.url()]);
    assert_eq!(to_a.accepted(), 1);

    const COUNT: u64 = 300;
    let publishing = publisher(b.addr, COUNT, Duration::from_millis(3));
    delivered(&mut page, 100);
    drop(a); // SIGKILL: its sockets end, the proxy passes that on
    connected(&mut page, &id);
    assert_eq!(to_b.accepted(), 1, "moved to the second URL");
    publishing.join().unwrap();
    publish(&mut Http::connect(b.addr), COUNT + 1);
    assert_once_in_order(&delivered(&mut page, COUNT + 1), COUNT + 1);
    assert_eq!(
        page.eval(&format!("T.recovered[{}]", json!(CHANNEL))),
        json!([{"recovered": true}])
    );
}
