//! latency: a paced publisher, time to each subscriber

use super::*;

pub(super) fn latency(c: &Common, args: &Args) -> io::Result<String> {
    let subs: usize = args.num("subs", 100);
    let rate: f64 = args.num("rate", 100.0);
    let secs: f64 = args.num("secs", 10.0);
    let warmup: f64 = args.num("warmup", 1.0);
    let size: usize = args.num("size", 64);
    let channel = "bench";
    let far = *c.addrs.last().expect("an address");
    let mut poll = Poll::new()?;
    let mut clients: Vec<WsClient> = Vec::with_capacity(subs + 1);
    let mut scratch = vec![0u8; SCRATCH];
    let subscribe = format!(r#"{{"event":"subscribe","channel":"{channel}"}}"#);
    setup(
        &[far],
        "/",
        false,
        &mut poll,
        &mut clients,
        subs,
        &mut scratch,
        &mut |_, cl| cl.queue_text(subscribe.as_bytes()),
        &mut |_, m| find(m, b"\"subscribed\"").is_some(),
    )?;
    setup(
        &c.addrs[..1],
        "/",
        false,
        &mut poll,
        &mut clients,
        1,
        &mut scratch,
        &mut |_, _| {},
        &mut |_, m| find(m, b"\"welcome\"").is_some(),
    )?;
    let publisher = subs;
    let total = ((warmup + secs) * rate).round() as u32;
    let skip = (warmup * rate).round() as u32;
    let mut sent_at: Vec<Instant> = Vec::with_capacity(total as usize);
    let mut track = vec![Track { next: 0, errors: 0 }; subs];
    let mut lat_ns: Vec<u64> = Vec::with_capacity(subs * total as usize);
    let mut delivered: u64 = 0;
    let mut closed = 0u64;
    let mut events = Events::with_capacity(1024);
    let mut cpu0 = f64::NAN;
    let mut redis0 = f64::NAN;
    let t0 = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate);
    let drain_until = t0 + Duration::from_secs_f64(warmup + secs + 2.0);
    let expected = subs as u64 * u64::from(total);
    while delivered < expected && Instant::now() < drain_until {
        let seq = sent_at.len() as u32;
        let now = Instant::now();
        if seq < total && now >= t0 + period * seq {
            if seq == skip {
                cpu0 = cpu(c);
                redis0 = cpu_each(c).1;
            }
            let body = format!("#{seq:06}#");
            let text = padded(
                &format!(r#"{{"event":"message","channel":"{channel}","data":""#),
                &body,
                r#""}"#,
                size,
            );
            let cl = &mut clients[publisher];
            cl.queue_text(&text);
            sent_at.push(Instant::now());
            cl.flush()?;
            continue;
        }
        let next = if seq < total {
            (t0 + period * seq).saturating_duration_since(now)
        } else {
            Duration::from_millis(50)
        };
        poll.poll(&mut events, Some(next))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let cl = &mut clients[i];
            if ev.is_writable() {
                cl.flush()?;
            }
            if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                continue;
            }
            if i == publisher {
                let st = cl.read_ready(&mut scratch, &mut || {}, &mut |_| {})?;
                closed += u64::from(st == ReadState::Closed);
                continue;
            }
            let t = &mut track[i];
            let st = cl.read_ready(&mut scratch, &mut || {}, &mut |m| {
                let Some(seq) = seq_of(m) else { return };
                let now = Instant::now();
                if seq != t.next {
                    t.errors += 1;
                }
                t.next = seq + 1;
                delivered += 1;
                if seq >= skip {
                    if let Some(at) = sent_at.get(seq as usize) {
                        lat_ns.push((now - *at).as_nanos() as u64);
                    }
                }
            })?;
            closed += u64::from(st == ReadState::Closed);
        }
    }
    let cpu1 = cpu(c);
    let redis1 = cpu_each(c).1;
    lat_ns.sort_unstable();
    let lat_us: Vec<u32> = lat_ns.iter().map(|n| (n / 1000) as u32).collect();
    let order_errors: u64 = track.iter().map(|t| u64::from(t.errors)).sum();
    let incomplete = track.iter().filter(|t| t.next != total).count();
    let valid = delivered == expected && order_errors == 0 && incomplete == 0 && closed == 0;
    let mean = lat_ns.iter().sum::<u64>() as f64 / lat_ns.len().max(1) as f64 / 1e3;
    Ok(format!(
        "workload=latency server={} nodes={} subs={subs} rate={rate} secs={secs} sent={} \
         delivered={delivered} expected={expected} lost={} order_errors={order_errors} \
         incomplete={incomplete} closed={closed} p50_us={} p90_us={} p99_us={} max_us={} \
         mean_us={mean:.0} cpu_ms={:.0} redis_cpu_ms={:.0} valid={}",
        c.server,
        c.addrs.len(),
        sent_at.len(),
        expected.saturating_sub(delivered),
        quantile(&lat_us, 0.50),
        quantile(&lat_us, 0.90),
        quantile(&lat_us, 0.99),
        lat_us.last().copied().unwrap_or(0),
        cpu1 - cpu0,
        redis1 - redis0,
        u8::from(valid),
    ))
}
