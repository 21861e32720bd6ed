//! fan-out (channel) and broadcast: one publisher, every delivery checked in order

use super::*;

/// Where a receiver stands in the sequence.
#[derive(Clone, Copy)]
pub(super) struct Track {
    pub(super) next: u32,
    pub(super) errors: u32,
}

pub(super) fn seq_of(m: &[u8]) -> Option<u32> {
    let at = m.iter().position(|&b| b == b'#')?;
    let mut v: u32 = 0;
    for &b in m.get(at + 1..at + 7)? {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Some(v)
}

pub(super) fn client_id_of(m: &[u8]) -> Option<String> {
    let key = b"\"client_id\":\"";
    let at = find(m, key)? + key.len();
    let end = m[at..].iter().position(|&b| b == b'"')? + at;
    Some(String::from_utf8_lossy(&m[at..end]).into_owned())
}

pub(super) fn fanout(c: &Common, args: &Args, broadcast: bool) -> io::Result<String> {
    let subs: usize = args.num("subs", 1000);
    let msgs: u32 = args.num("msgs", 2000);
    let size: usize = args.num("size", 64);
    let timeout: f64 = args.num("timeout", 60.0);
    let pusher = args.get("pusher").filter(|_| !broadcast);
    let workload = match (broadcast, &pusher) {
        (true, _) => "broadcast",
        (false, None) => "fanout",
        (false, Some(_)) => "pusher-fanout",
    };
    // `--channel hist.bench`: a channel whose namespace keeps history (rakit-bench.toml).
    let channel = args.get("channel").unwrap_or_else(|| "bench".to_owned());
    let channel = channel.as_str();
    let mut poll = Poll::new()?;
    let mut clients: Vec<WsClient> = Vec::with_capacity(subs + 1);
    let mut scratch = vec![0u8; SCRATCH];

    // Subscribers: subscribed (channel) or welcomed (broadcast).
    let subscribe = format!(r#"{{"event":"subscribe","channel":"{channel}"}}"#);
    if let Some(key) = &pusher {
        // Pusher protocol 7: connection_established, then pusher:subscribe;
        // ready on pusher_internal:subscription_succeeded.
        let psub = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#);
        setup_with(
            &c.addrs,
            &pusher_path(key),
            false,
            &mut poll,
            &mut clients,
            subs,
            &mut scratch,
            &mut |_, _| {},
            &mut |_, m, cl| {
                if find(m, b"pusher:connection_established").is_some() {
                    cl.queue_text(psub.as_bytes());
                    false
                } else {
                    find(m, b"pusher_internal:subscription_succeeded").is_some()
                }
            },
        )?;
    } else {
        setup(
            &c.addrs,
            "/",
            false,
            &mut poll,
            &mut clients,
            subs,
            &mut scratch,
            &mut |_, cl| {
                if !broadcast {
                    cl.queue_text(subscribe.as_bytes());
                }
            },
            &mut |_, m| {
                if broadcast {
                    find(m, b"\"welcome\"").is_some()
                } else {
                    find(m, b"\"subscribed\"").is_some()
                }
            },
        )?;
    }
    // The publisher: its client id from the welcome.
    let mut pub_id = String::new();
    setup(
        &c.addrs[..1],
        "/",
        false,
        &mut poll,
        &mut clients,
        1,
        &mut scratch,
        &mut |_, _| {},
        &mut |_, m| {
            if find(m, b"\"welcome\"").is_some() {
                pub_id = client_id_of(m).unwrap_or_default();
                true
            } else {
                false
            }
        },
    )?;
    if pub_id.is_empty() {
        return Err(io::Error::other("no client_id in the publisher's welcome"));
    }
    let publisher = subs;
    // Receivers: the subscribers, and for a broadcast the publisher too.
    let receivers = if broadcast { subs + 1 } else { subs };
    let mut track = vec![Track { next: 0, errors: 0 }; subs + 1];
    let expected = receivers as u64 * u64::from(msgs);

    // Every message is `size` bytes of client JSON with "#NNNNNN#" in it.
    for seq in 0..msgs {
        let body = format!("#{seq:06}#");
        let text = if broadcast {
            padded(r#"{"message":""#, &body, r#""}"#, size)
        } else {
            padded(
                &format!(r#"{{"event":"message","channel":"{channel}","data":""#),
                &body,
                r#""}"#,
                size,
            )
        };
        clients[publisher].queue_text(&text);
    }
    // Subscriber i is on node i % nodes; per node: deliveries, last one.
    let nodes = c.addrs.len();
    let mut node_delivered = vec![0u64; nodes];
    let mut node_last = vec![None::<Instant>; nodes];
    let (each0, redis0) = cpu_each(c);
    let cpu0 = cpu(c);
    let self0 = cpu_ms(std::process::id()).unwrap_or(f64::NAN);
    let t0 = Instant::now();
    clients[publisher].flush()?;
    let mut published_at = (clients[publisher].pending() == 0).then(Instant::now);
    let deadline = t0 + Duration::from_secs_f64(timeout);
    let mut delivered: u64 = 0;
    let mut last = t0;
    let mut id_errors = 0u64;
    let mut closed = 0u64;
    let mut events = Events::with_capacity(1024);
    while delivered < expected && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let cl = &mut clients[i];
            if ev.is_writable() {
                cl.flush()?;
                if i == publisher && published_at.is_none() && cl.pending() == 0 {
                    published_at = Some(Instant::now());
                }
            }
            if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                continue;
            }
            if i == publisher && !broadcast {
                // The publisher is no subscriber: nothing should come.
                let st = cl.read_ready(&mut scratch, &mut || {}, &mut |m| {
                    if seq_of(m).is_some() {
                        id_errors += 1;
                    }
                })?;
                closed += u64::from(st == ReadState::Closed);
                continue;
            }
            let t = &mut track[i];
            let mut got = 0u64;
            let st = cl.read_ready(&mut scratch, &mut || {}, &mut |m| {
                let Some(seq) = seq_of(m) else {
                    return; // presence or another control message
                };
                if seq != t.next {
                    t.errors += 1;
                }
                let from_publisher = if pusher.is_some() {
                    // Pusher frame: event `message` on the channel, the
                    // Rakit data as a JSON string.
                    find(m, b"\"event\":\"message\"").is_some()
                } else {
                    client_id_of(m).as_deref() == Some(pub_id.as_str())
                };
                if seq == 0 && !from_publisher {
                    id_errors += 1;
                }
                t.next = seq + 1;
                got += 1;
            })?;
            if st == ReadState::Closed {
                closed += 1;
            }
            if got > 0 {
                delivered += got;
                last = Instant::now();
                let node = if i == publisher { 0 } else { i % nodes };
                node_delivered[node] += got;
                node_last[node] = Some(last);
            }
        }
    }
    let cpu1 = cpu(c);
    let (each1, redis1) = cpu_each(c);
    let self1 = cpu_ms(std::process::id()).unwrap_or(f64::NAN);
    let rss = c.pid.and_then(rss_kb).unwrap_or(0);
    let order_errors: u64 = track.iter().map(|t| u64::from(t.errors)).sum();
    let incomplete = track[..receivers].iter().filter(|t| t.next != msgs).count();
    let secs = (last - t0).as_secs_f64();
    let valid = delivered == expected && order_errors == 0 && incomplete == 0 && id_errors == 0;
    let cpu_used = cpu1 - cpu0;
    let mut line = format!(
        "workload={workload} server={} nodes={nodes} receivers={receivers} msgs={msgs} size={size} \
         delivered={delivered} expected={expected} lost={} order_errors={order_errors} \
         incomplete={incomplete} id_errors={id_errors} closed={closed} secs={secs:.3} \
         publish_s={:.3} deliveries_per_s={:.0} cpu_ms={cpu_used:.0} cpu_ns_per_delivery={:.0} \
         client_cpu_ms={:.0} rss_kb={rss} wire_bytes={} valid={}",
        c.server,
        expected.saturating_sub(delivered),
        published_at.map_or(f64::NAN, |p| (p - t0).as_secs_f64()),
        delivered as f64 / secs.max(1e-9),
        cpu_used * 1e6 / delivered.max(1) as f64,
        self1 - self0,
        rakit_load::WIRE_BYTES.load(std::sync::atomic::Ordering::Relaxed),
        u8::from(valid),
    );
    if nodes > 1 {
        for (j, (&n, l)) in node_delivered.iter().zip(&node_last).enumerate() {
            let s = l.map_or(f64::NAN, |l| (l - t0).as_secs_f64());
            line += &format!(" n{j}_delivered={n} n{j}_secs={s:.3}");
            if let (Some(a), Some(b)) = (each0.get(j), each1.get(j)) {
                let used = b - a;
                line += &format!(
                    " n{j}_cpu_ms={used:.0} n{j}_cpu_ns_per_delivery={:.0} n{j}_peak_rss_kb={}",
                    used * 1e6 / n.max(1) as f64,
                    c.pids.get(j).and_then(|&p| peak_rss_kb(p)).unwrap_or(0)
                );
            }
        }
    }
    // Deliveries per CPU-second of every server process (and of Redis).
    let redis_used = redis1 - redis0;
    if let Some(p) = c.redis_pid {
        line += &format!(
            " redis_cpu_ms={redis_used:.0} redis_peak_rss_kb={}",
            peak_rss_kb(p).unwrap_or(0)
        );
    }
    let all = cpu_used + if redis_used.is_nan() { 0.0 } else { redis_used };
    line += &format!(
        " deliveries_per_cpu_s={:.0} deliveries_per_cpu_s_no_redis={:.0}",
        delivered as f64 * 1e3 / all,
        delivered as f64 * 1e3 / cpu_used
    );
    Ok(line)
}
