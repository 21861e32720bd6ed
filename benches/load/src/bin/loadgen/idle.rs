//! idle: many connections opened and left idle; memory per connection

use super::*;

pub(super) fn idle(c: &Common, args: &Args) -> io::Result<String> {
    let conns: usize = args.num("conns", 10_000);
    let inflight: usize = args.num("inflight", 100);
    let settle_ms: u64 = args.num("settle-ms", 1000);
    let timeout: f64 = args.num("timeout", 60.0);
    let path = args
        .get("pusher")
        .map_or_else(|| "/".to_owned(), |k| pusher_path(&k));
    let mut poll = Poll::new()?;
    let mut clients: Vec<WsClient> = Vec::with_capacity(conns);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(1024);
    let rss0 = c.pid.and_then(rss_kb).unwrap_or(0);
    let cpu0 = cpu(c);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(timeout);
    let mut opened = 0usize;
    let mut closed = 0usize;
    let mut failed = 0usize;
    let mut dead = vec![false; conns];
    let mut handshakes_done = t0;
    while opened + failed < conns {
        while clients.len() < conns && clients.len() - opened - failed < inflight {
            clients.push(open_client_at(&poll, c.addrs[0], clients.len(), &path)?);
        }
        if Instant::now() > deadline {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            if dead[i] {
                continue;
            }
            let cl = &mut clients[i];
            let was_open = cl.open;
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            let fail = !service_idle(cl, readable, &mut scratch);
            if !was_open && cl.open {
                opened += 1;
                if opened == conns {
                    handshakes_done = Instant::now();
                }
            }
            if fail {
                dead[i] = true;
                if cl.open {
                    closed += 1;
                } else {
                    failed += 1;
                }
            }
        }
    }
    let handshake_secs = (handshakes_done - t0).as_secs_f64();
    let cpu1 = cpu(c);
    // Hold them, idle, answering whatever comes (welcome, pings).
    let hold_until = Instant::now() + Duration::from_millis(settle_ms);
    while Instant::now() < hold_until {
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            if dead[i] {
                continue;
            }
            let cl = &mut clients[i];
            let fail = !service_idle(cl, true, &mut scratch);
            if fail {
                dead[i] = true;
                closed += 1;
            }
        }
    }
    let rss1 = c.pid.and_then(rss_kb).unwrap_or(0);
    let valid = opened == conns && closed == 0 && failed == 0;
    Ok(format!(
        "workload=idle server={} conns={conns} inflight={inflight} opened={opened} failed={failed} \
         closed={closed} handshake_secs={handshake_secs:.3} handshakes_per_s={:.0} \
         cpu_ms={:.0} cpu_us_per_handshake={:.1} rss_before_kb={rss0} rss_after_kb={rss1} \
         rss_per_conn_b={:.0} valid={}",
        c.server,
        opened as f64 / handshake_secs.max(1e-9),
        cpu1 - cpu0,
        (cpu1 - cpu0) * 1e3 / opened.max(1) as f64,
        (rss1 as f64 - rss0 as f64) * 1024.0 / opened.max(1) as f64,
        u8::from(valid),
    ))
}
