//! echo: round trips of small messages, one in flight per connection
//!
//! `--json`: `{"ping":1}` answered by `{"type":"pong"}` through the router (a server not in
//! `--echo` mode; a JSON request/reply workload). `--rounds N`: every connection makes exactly
//! N round trips and the run ends when all are done (no warm-up, the whole run measured): a
//! fixed workload, for instruction counts.

use super::*;

pub(super) fn echo(c: &Common, args: &Args) -> io::Result<String> {
    let conns: usize = args.num("conns", 100);
    let size: usize = args.num("size", 20);
    let json = args.flag("json");
    let rounds: u64 = args.num("rounds", 0);
    let secs: f64 = if rounds > 0 { 120.0 } else { args.num("secs", 5.0) };
    let warmup: f64 = if rounds > 0 { 0.0 } else { args.num("warmup", 1.0) };
    let (msg, reply) = if json {
        (b"{\"ping\":1}".to_vec(), b"{\"type\":\"pong\"}".to_vec())
    } else {
        let msg = padded("", "", "", size);
        (msg.clone(), msg)
    };
    let mut poll = Poll::new()?;
    let mut clients = Vec::with_capacity(conns);
    let mut scratch = vec![0u8; SCRATCH];
    // Echo servers send nothing on connect: being open is being ready. The router greets.
    setup(
        &c.addrs[..1],
        "/",
        !json,
        &mut poll,
        &mut clients,
        conns,
        &mut scratch,
        &mut |_, _| {},
        &mut |_, m| json && find(m, b"\"welcome\"").is_some(),
    )?;
    let mut sent_at = vec![Instant::now(); conns];
    for (i, cl) in clients.iter_mut().enumerate() {
        cl.queue_text(&msg);
        cl.flush()?;
        sent_at[i] = Instant::now();
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let measure_to = measure_from + Duration::from_secs_f64(secs);
    let mut cpu0 = f64::NAN;
    let mut measuring = false;
    let mut count: u64 = 0;
    let mut bad: u64 = 0;
    let mut done = vec![0u64; conns];
    let mut finished = 0;
    let mut lat_ns: Vec<u64> = Vec::with_capacity(4_000_000);
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        if !measuring && now >= measure_from {
            measuring = true;
            cpu0 = cpu(c);
        }
        if now >= measure_to || (rounds > 0 && finished == conns) {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let cl = &mut clients[i];
            if ev.is_writable() {
                cl.flush()?;
            }
            if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                continue;
            }
            let mut got = 0u32;
            let state = cl.read_ready(&mut scratch, &mut || {}, &mut |m| {
                if m == reply.as_slice() {
                    got += 1;
                } else {
                    bad += 1;
                }
            })?;
            if state == ReadState::Closed {
                return Err(io::Error::other(format!("client {i} closed")));
            }
            if got > 0 {
                let now = Instant::now();
                if measuring && now < measure_to {
                    count += 1;
                    lat_ns.push((now - sent_at[i]).as_nanos() as u64);
                }
                if got > 1 {
                    bad += u64::from(got - 1);
                }
                done[i] += 1;
                if rounds > 0 && done[i] == rounds {
                    finished += 1;
                    continue;
                }
                cl.queue_text(&msg);
                cl.flush()?;
                sent_at[i] = Instant::now();
            }
        }
    }
    let cpu1 = cpu(c);
    let window = if rounds > 0 {
        start.elapsed().as_secs_f64()
    } else {
        secs
    };
    lat_ns.sort_unstable();
    let lat_us: Vec<u32> = lat_ns.iter().map(|n| (n / 1000) as u32).collect();
    let p50 = quantile(&lat_us, 0.50);
    let p99 = quantile(&lat_us, 0.99);
    let cpu_used = cpu1 - cpu0;
    let rss = c.pid.and_then(rss_kb).unwrap_or(0);
    Ok(format!(
        "workload={} server={} conns={conns} size={size} secs={window:.3} msgs={count} \
         msgs_per_s={:.0} p50_us={p50} p99_us={p99} cpu_ms={:.0} cpu_ns_per_msg={:.0} \
         rss_kb={rss} bad={bad} valid={}",
        if json { "ping" } else { "echo" },
        c.server,
        count as f64 / window,
        cpu_used,
        cpu_used * 1e6 / count.max(1) as f64,
        u8::from(bad == 0 && count > 0 && (rounds == 0 || finished == conns)),
    ))
}
