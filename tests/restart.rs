//! Restart without loss (SPEC 18, first bullet; docs/operations.md, "Restarting without losing
//! clients"): with `[cluster]` (one Redis) and `reuse_port`, a new daemon starts on the port of
//! the running one, and the old one gets SIGTERM. The browser client (SPEC 16.2) and pusher-js,
//! both in Chromium, come back to the new process at once, and the history channel loses
//! nothing, across three restarts; and the loss windows one by one: a new daemon takes no
//! client before its Redis link is up, the old one's listener closes before anything else so
//! the kernel stops giving it connections, and what its API answered before SIGTERM is in Redis.

mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::api::{api_table, command, Http};
use common::browser::Page;
use common::history::{channel_data, history, subscribe};
use common::publisher::Publisher;
use common::redis::Redis;
use common::restart_script::{self, RestartScript};
use common::{raw_handshake, read_frame, upgrade_request, wait_exit, Daemon, GONE_WITHIN, SLACK};
use serde_json::json;

const CHANNEL: &str = "feed.x";
const KEY: &str = "app-key";

/// A node of the one-Redis cluster on `redis` sharing its port (`reuse_port`), with the API,
/// the Pusher dialect and a history namespace for [`CHANNEL`]; `top` holds more top-level keys.
fn config(redis: &Redis, node_timeout_ms: u64, top: &str) -> String {
    format!(
        "logging_level = \"info\"\npresence = false\n{top}\n{}\
         [cluster]\nredis_url = \"{}\"\nreuse_port = true\nnode_timeout_ms = {node_timeout_ms}\n\
         [pusher]\napp_id = \"4242\"\nkey = \"{KEY}\"\nsecret = \"pusher-test-secret-0123456789\"\n\
         [[namespaces]]\nprefix = \"feed.\"\nhistory_size = 10000\nhistory_ttl = 600\n",
        api_table(),
        redis.url()
    )
}

/// Sends a signal (`-STOP`, `-CONT`, `-TERM`) with kill(1).
#[track_caller]
fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// SIGTERM to `daemon`, and its exit, 0, within the shutdown grace.
#[track_caller]
fn stop(mut daemon: Daemon) {
    kill("-TERM", daemon.child.id());
    let status = wait_exit(&mut daemon.child, GONE_WITHIN + SLACK).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

/// The channel's newest offset and its epoch, from the API of `daemon`.
#[track_caller]
fn position(daemon: &Daemon) -> (u64, String) {
    let r = history(daemon.addr, CHANNEL, "limit=1");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    (
        v["offset"].as_u64().unwrap(),
        v["epoch"].as_str().unwrap().to_owned(),
    )
}

/// Publishes `{"n": n}` for each `n` on one connection, every answer 200.
#[track_caller]
fn publish(daemon: &Daemon, ns: std::ops::RangeInclusive<u64>) {
    let mut http = Http::connect(daemon.addr);
    for n in ns {
        let body =
            json!({"command": "broadcast_to_channel", "channel": CHANNEL, "message": {"n": n}});
        let r = http.request(&command(&body.to_string()));
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// A new daemon is ready when it prints its listen line: with `[cluster]` that line comes once
/// its Redis link is up, so the first client it accepts recovers through Redis. Redis is
/// stalled (SIGSTOP: connections are accepted, nothing is answered) while the daemon starts and
/// resumes half a second later; before, the daemon listened at once and answered that client's
/// recovery `recovered:false` (history unavailable), a loss for a client moving to it.
#[test]
fn a_new_daemon_listens_once_its_redis_link_is_up() {
    let _serial = common::serial();
    let redis = Redis::start();
    let toml = config(&redis, 5000, "");
    let old = Daemon::start(&toml, &[]);
    publish(&old, 1..=3);
    let (offset, epoch) = position(&old);
    assert_eq!(offset, 3);

    redis.signal("-STOP");
    let pid = redis.pid();
    let resume = thread::spawn(move || {
        thread::sleep(Duration::from_millis(500));
        kill("-CONT", pid);
        Instant::now()
    });
    // Its own port: a client of the new daemon must not land on the old one.
    let new = Daemon::start(&toml, &[]);
    let listening = Instant::now();
    let resumed = resume.join().unwrap();
    assert!(
        listening >= resumed,
        "listening {:?} before Redis answered",
        resumed - listening
    );
    let (mut ws, _) = new.client();
    let sub = subscribe(&mut ws, CHANNEL, Some((1, &epoch)));
    assert_eq!(sub["recovered"], true, "{sub}");
    assert_eq!(
        channel_data(&mut ws, CHANNEL, 2),
        [json!({"n": 2}), json!({"n": 3})]
    );
    drop(old);
}

/// The wait for Redis is bounded: a Redis that accepts and never answers delays the listen
/// line by `node_timeout_ms` at most, says so, and the daemon serves its own clients.
#[test]
fn a_silent_redis_delays_listening_by_node_timeout_at_most() {
    let _serial = common::serial();
    let redis = Redis::start();
    redis.signal("-STOP");
    let started = Instant::now();
    let daemon = Daemon::start(&config(&redis, 1000, ""), &[]);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1) + SLACK,
        "listening after {took:?}"
    );
    daemon.wait_for_line("did not answer within node_timeout_ms (1000 ms)");
    let (mut ws, _) = daemon.client();
    common::send_json(&mut ws, &json!({"ping": 1}));
    assert_eq!(common::recv_json(&mut ws), json!({"type": "pong"}));
    redis.signal("-CONT");
}

/// Which daemon answered a WebSocket upgrade on `port`: each selects its own subprotocol.
/// `None` when nothing answered within a second.
fn which(port: u16) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    use std::io::Write;
    s.write_all(&upgrade_request(
        "/",
        "Sec-WebSocket-Protocol: old, new\r\n",
    ))
    .ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match std::io::Read::read(&mut s, &mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8(head).unwrap();
    head.lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Protocol: "))
        .map(str::to_owned)
}

/// SO_REUSEPORT spreads new connections over every listener of the port, and a listener that
/// is open but no longer accepted from holds them until its process exits. So the old daemon
/// closes its listener first, before its clients: while it still waits for a client that
/// does not answer its close (up to 2 s), every new connection reaches the new daemon.
#[test]
fn the_old_daemon_closes_its_listener_first() {
    let _serial = common::serial();
    let redis = Redis::start();
    let old = Daemon::start(
        &config(&redis, 1000, "supported_protocols = [\"old\"]"),
        &[],
    );
    let port = old.addr.port();
    let new = Daemon::start_on(
        port,
        &config(&redis, 1000, "supported_protocols = [\"new\"]"),
        &[],
    );
    // Both take connections on the port (the test can tell them apart)...
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..64 {
        seen.insert(which(port).expect("an answer"));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // ...and a client of the old one that will not answer its close.
    let mut stuck = loop {
        let (s, head) = raw_handshake(
            &old,
            &upgrade_request("/", "Sec-WebSocket-Protocol: old, new\r\n"),
        );
        if head.contains("Sec-WebSocket-Protocol: old\r\n") {
            break s;
        }
    };

    kill("-TERM", old.child.id());
    // Its close frame means the old daemon is shutting down (the welcome came first).
    let mut old = old;
    loop {
        let frame = read_frame(&mut stuck);
        if frame.byte0 == 0x88 {
            assert_eq!(frame.close_code(), 1001);
            break;
        }
    }
    let answers: Vec<Option<String>> = (0..20).map(|_| which(port)).collect();
    let alive = old.child.try_wait().unwrap().is_none();
    assert!(
        answers.iter().all(|a| a.as_deref() == Some("new")),
        "every connection during the old daemon's shutdown reaches the new one: {answers:?}"
    );
    assert!(
        alive,
        "the old daemon exited before the connections were made"
    );
    let status = wait_exit(&mut old.child, GONE_WITHIN + SLACK).expect("the old daemon exits");
    assert_eq!(status.code(), Some(0));
    drop(new);
}

/// What the old daemon's API answered before SIGTERM is in Redis: the API answers a
/// publication once it is queued for Redis, and the daemon writes that queue out before it
/// exits (within a second). Redis is stalled for a moment (SIGSTOP) so that the queue is
/// still full at SIGTERM: 300 publications pipelined on one connection, every answer read,
/// SIGTERM, Redis resumes 300 ms later; the new daemon then reads all 300 from the stream.
#[test]
fn what_the_old_api_answered_before_sigterm_is_in_redis() {
    let _serial = common::serial();
    let redis = Redis::start();
    // Publications wait for Redis up to node_timeout_ms: longer than the stall.
    let toml = config(&redis, 5000, "");
    let old = Daemon::start(&toml, &[]);
    let port = old.addr.port();
    const COUNT: u64 = 300;
    redis.signal("-STOP");
    let mut http = Http::connect(old.addr);
    let mut burst = Vec::new();
    for n in 1..=COUNT {
        let body =
            json!({"command": "broadcast_to_channel", "channel": CHANNEL, "message": {"n": n}});
        burst.extend(command(&body.to_string()));
    }
    http.send(&burst);
    for _ in 1..=COUNT {
        assert_eq!(http.read_response().status, 200);
    }
    kill("-TERM", old.child.id());
    thread::sleep(Duration::from_millis(300));
    redis.signal("-CONT");
    let mut old = old;
    let status = wait_exit(&mut old.child, GONE_WITHIN + SLACK).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0));

    let new = Daemon::start_on(port, &toml, &[]);
    assert_eq!(position(&new).0, COUNT);
    let r = history(
        new.addr,
        CHANNEL,
        &format!("limit=100&since={}", COUNT - 100),
    );
    let ns: Vec<u64> = r.json()["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (COUNT - 99..=COUNT).collect::<Vec<_>>());
}

/// The restart script docs/operations.md shows (dist/restart-rakit-websocket.sh), run as an
/// operator would: the first start, then a restart under a subscribed client. The script
/// returns once the new daemon serves and the old one is gone; the client was closed with
/// 1001 and recovers on the new daemon what was published meanwhile. A config the new daemon
/// refuses leaves the old one running, and the script fails saying why.
#[test]
fn the_documented_restart_script_restarts_without_loss() {
    let _serial = common::serial();
    let redis = Redis::start();
    let port = restart_script::free_port();
    let toml = config(&redis, 1000, &format!("port = {port}"));
    let mut script = RestartScript::new(&toml);
    let first = script.run();
    assert_eq!(first.code, Some(0), "{first:?}");
    let a = first.pid.expect("a pid file");
    assert!(restart_script::running(a));
    assert!(
        first.stdout.contains("listening on ws://127.0.0.1:"),
        "{first:?}"
    );

    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let url = format!("ws://{addr}/");
    let mut ws = welcomed(&url);
    let sub = subscribe(&mut ws, CHANNEL, None);
    let epoch = sub["epoch"].as_str().unwrap().to_owned();
    for n in 1..=3 {
        common::history::publish(addr, CHANNEL, json!({"n": n}));
    }
    assert_eq!(channel_data(&mut ws, CHANNEL, 3).len(), 3);

    let second = script.run();
    assert_eq!(second.code, Some(0), "{second:?}");
    let b = second.pid.unwrap();
    assert_ne!(a, b);
    assert!(!restart_script::running(a), "the old daemon is gone");
    assert!(restart_script::running(b));
    assert_eq!(common::msg::recv_close(&mut ws).0, 1001);
    for n in 4..=5 {
        common::history::publish(addr, CHANNEL, json!({"n": n}));
    }
    let mut ws = welcomed(&url);
    let sub = subscribe(&mut ws, CHANNEL, Some((3, &epoch)));
    assert_eq!(sub["recovered"], true, "{sub}");
    assert_eq!(
        channel_data(&mut ws, CHANNEL, 2),
        [json!({"n": 4}), json!({"n": 5})]
    );
    assert!(
        script
            .output_of(b)
            .starts_with("rakit-websocket listening on "),
        "{}",
        script.output_of(b)
    );

    // A config the new daemon refuses: the old one keeps serving.
    std::fs::write(script.config_path(), format!("no_such_key = 1\n{toml}")).unwrap();
    let refused = script.run();
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("no_such_key"), "{refused:?}");
    assert_eq!(refused.pid, Some(b));
    assert!(restart_script::running(b));
}

/// A client of `url` past its welcome.
#[track_caller]
fn welcomed(url: &str) -> common::Client {
    let (mut ws, _) = tungstenite::connect(url).unwrap();
    common::set_timeout(&ws);
    assert_eq!(common::recv_json(&mut ws)["type"], "welcome");
    ws
}

/// The browser client and pusher-js in one Chromium page, on the port of the running daemon,
/// while the API publishes a steady stream (through that port too, a connection per request,
/// sent again when a request gets no answer). Three times: a new daemon starts on the port
/// (ready at its listen line), the old one gets SIGTERM and exits. Each time both clients are
/// back on the new process at once (1001 and 4200, no wait), pusher-js receives there; in the
/// end the browser client has delivered every publication once, in order, each resubscribe
/// recovered.
#[test]
fn three_restarts_lose_nothing_on_the_history_channel() {
    let Some(mut page) = Page::open() else { return };
    if !common::node::available() {
        return;
    }
    let _serial = common::serial();
    let redis = Redis::start();
    let toml = config(&redis, 1000, "");
    let mut daemon = Daemon::start(&toml, &[]);
    let port = daemon.addr.port();
    page.goto(&format!("http://127.0.0.1:{port}/health"));
    page.script_url("/rakit-websocket.js");
    page.script_file("client_fixture.js");
    page.script_file("../pusher/node_modules/pusher-js/dist/web/pusher.js");
    page.script_file("pusher_fixture.js");
    page.eval(&format!(
        "T.open(['ws://127.0.0.1:{port}/'], {{}}) && T.sub({0}) && P.open({port}, {1}, {0})",
        json!(CHANNEL),
        json!(KEY)
    ));
    let mut client = page
        .wait(&format!(
            "T.rt.state === 'connected' && T.subscribed[{}].length === 1 && T.rt.clientId",
            json!(CHANNEL)
        ))
        .as_str()
        .unwrap()
        .to_owned();
    let mut socket = page
        .wait("P.pusher.connection.state === 'connected' && P.pusher.channel('feed.x').subscribed && P.pusher.connection.socket_id")
        .as_str()
        .unwrap()
        .to_owned();

    let publisher = Publisher::start(daemon.addr, CHANNEL, Duration::from_millis(10));
    for round in 1..=3 {
        // Both clients have received something on this process.
        let before = publisher.published() + 1;
        wait_got(&mut page, before);
        wait_pusher_got(&mut page, &socket, before);

        let new = Daemon::start_on(port, &toml, &[]);
        stop(std::mem::replace(&mut daemon, new));
        let after = publisher.published() + 1;
        // Back on the new process (the only one listening), with new ids, receiving.
        client = page
            .wait(&format!(
                "T.rt.state === 'connected' && T.rt.clientId !== {} && T.recovered[{}].length === {round} && T.rt.clientId",
                json!(client),
                json!(CHANNEL)
            ))
            .as_str()
            .unwrap()
            .to_owned();
        socket = page
            .wait(&format!(
                "P.pusher.connection.state === 'connected' && P.pusher.connection.socket_id !== {} && P.pusher.connection.socket_id",
                json!(socket)
            ))
            .as_str()
            .unwrap()
            .to_owned();
        wait_got(&mut page, after);
        wait_pusher_got(&mut page, &socket, after);
        eprintln!("round {round}: publishing n = {}", publisher.published());
    }
    let published = publisher.stop();
    eprintln!("{published:?}");
    let got = wait_got(&mut page, published.count);
    let ns: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        ns,
        (1..=published.count).collect::<Vec<_>>(),
        "every publication once, in order"
    );
    let offsets: Vec<u64> = got.iter().map(|g| g.1).collect();
    assert_eq!(offsets, (1..=published.count).collect::<Vec<_>>());
    assert!(got.iter().all(|g| g.2 == got[0].2), "one epoch");
    assert_eq!(
        page.eval(&format!("T.recovered[{}]", json!(CHANNEL))),
        json!([{"recovered": true}, {"recovered": true}, {"recovered": true}])
    );
    // Each loss was the daemon's 1001, and the next attempt came at once.
    let losses = page.eval("T.states.filter((s) => s[0] === 'disconnected').map((s) => s[1])");
    assert_eq!(
        losses,
        json!(vec![
            json!({"code": 1001, "reason": "server shutting down", "delay": 0});
            3
        ])
    );
    // pusher-js: closed with 4200 each time (its "reconnect at once"), four connections, and
    // what it received in order without repeats (what it missed while away is Pusher's limit).
    let pusher = page.eval(
        "({closes: P.closes.map((c) => c[1]), sockets: P.sockets, got: P.got.map((g) => g[1].n)})",
    );
    assert_eq!(pusher["closes"], json!([4200, 4200, 4200]), "{pusher}");
    assert_eq!(pusher["sockets"].as_array().unwrap().len(), 4, "{pusher}");
    let pusher_got: Vec<u64> = serde_json::from_value(pusher["got"].clone()).unwrap();
    assert!(
        pusher_got.windows(2).all(|w| w[0] < w[1]),
        "pusher-js received in order, once: {pusher_got:?}"
    );
    assert_eq!(page.errors(), json!([]));
    drop(daemon);
}

/// Waits until the browser client has delivered `{"n": n}`; everything it delivered, as
/// (n, offset, epoch).
#[track_caller]
fn wait_got(page: &mut Page, n: u64) -> Vec<(u64, u64, String)> {
    page.delivered(CHANNEL, &format!("g.some((m) => m[0].n === {n})"))
}

/// Waits until pusher-js has received `{"n": k}` with `k >= n` on connection `socket`.
#[track_caller]
fn wait_pusher_got(page: &mut Page, socket: &str, n: u64) {
    page.wait(&format!(
        "P.got.some((g) => g[0] === {} && g[1].n >= {n})",
        json!(socket)
    ));
}

/// API publications under load across restarts: four backends publish as fast as they can, a
/// connection per request (sent again when it gets no answer, as SPEC 18 asks of a backend),
/// across five restarts; every answered publication is in the stream, once.
///
/// Requests in flight at SIGTERM are served rather than reset: the old daemon accepts what the
/// kernel has queued for it and reads what was sent to it before it closes its listener. The
/// connections that still get no answer are those that reach the old listener in the
/// microseconds between its last accept and its close (with SO_REUSEPORT a closed listener
/// resets its queue unless net.ipv4.tcp_migrate_req = 1); how many depends on the scheduler,
/// so they are counted and printed, not bounded (on a loaded 2-core machine: 1 to 2 over five
/// restarts with this, 1 to 5 without it).
#[test]
fn answered_publications_survive_restarts_under_load() {
    let _serial = common::serial();
    let redis = Redis::start();
    let toml = config(&redis, 3000, "");
    let mut daemon = Daemon::start(&toml, &[]);
    let port = daemon.addr.port();
    let (mut answered, mut unanswered) = (0, 0);
    for _ in 0..5 {
        let publishers: Vec<Publisher> = (0..4)
            .map(|_| Publisher::start(daemon.addr, CHANNEL, Duration::ZERO))
            .collect();
        thread::sleep(Duration::from_millis(200));
        let new = Daemon::start_on(port, &toml, &[]);
        stop(std::mem::replace(&mut daemon, new));
        thread::sleep(Duration::from_millis(100));
        for publisher in publishers {
            let done = publisher.stop();
            answered += done.count;
            unanswered += done.retries;
        }
    }
    eprintln!("{answered} publications answered, {unanswered} requests sent again");
    assert_eq!(position(&daemon).0, answered);
}
