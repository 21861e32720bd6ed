//! api: the backend HTTP API, and the same commands from a WebSocket admin

use super::*;

/// How a phase of the `api` workload publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// `POST /api/commands` from `conc` keep-alive HTTP clients, one request
    /// in flight on each.
    Http,
    /// The same command objects from one WebSocket admin, at most `conc`
    /// unacknowledged.
    Ws,
}

/// The connections of the `api` workload: subscribers at tokens
/// `0..subs`, the admin at `subs`, HTTP clients from `subs + 1`.
pub(super) struct ApiWorld {
    poll: Poll,
    ws: Vec<WsClient>,
    http: Vec<HttpClient>,
    subs: usize,
    key: String,
    size: usize,
    scratch: Vec<u8>,
}

/// What one phase measured.
pub(super) struct Phase {
    name: String,
    commands: u64,
    delivered: u64,
    expected: u64,
    order_errors: u64,
    /// (subscriber, publisher) pairs that did not get all of that
    /// publisher's commands.
    incomplete: u64,
    /// Failed or missing answers, and unexpected messages to the admin.
    bad: u64,
    /// First command sent to last answer (HTTP response or ack).
    answer_secs: f64,
    /// First command sent to last delivery.
    delivery_secs: f64,
    cpu_ms: f64,
}

impl Phase {
    fn fields(&self) -> String {
        let n = &self.name;
        format!(
            "{n}_cmds={} {n}_cmds_per_s={:.0} {n}_deliveries_per_s={:.0} {n}_cpu_us_per_cmd={:.1} \
             {n}_lost={} {n}_order_errors={} {n}_incomplete={} {n}_bad={}",
            self.commands,
            self.commands as f64 / self.answer_secs.max(1e-9),
            self.delivered as f64 / self.delivery_secs.max(1e-9),
            self.cpu_ms * 1e3 / self.commands.max(1) as f64,
            self.expected.saturating_sub(self.delivered),
            self.order_errors,
            self.incomplete,
            self.bad,
        )
    }

    fn valid(&self) -> bool {
        self.delivered == self.expected
            && self.order_errors == 0
            && self.incomplete == 0
            && self.bad == 0
    }
}

impl ApiWorld {
    /// The command with sequence number `seq`: a `broadcast_to_channel` to
    /// `c` whose message is `size` bytes with `#NNNNNN#` in it.
    fn command(&self, seq: u32) -> Vec<u8> {
        let message = padded("", &format!("#{seq:06}#"), "", self.size);
        let message = String::from_utf8(message).expect("ASCII");
        format!(r#"{{"command":"broadcast_to_channel","channel":"c","message":"{message}"}}"#)
            .into_bytes()
    }

    fn post(&self, seq: u32) -> Vec<u8> {
        let body = self.command(seq);
        let mut req = format!(
            "POST /api/commands HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.key,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        req
    }

    /// Publishes `msgs` commands (rounded down to a multiple of the
    /// publishers) numbered from `base`, and waits for every answer and every
    /// delivery. Publisher `p`'s `j`-th command is `base + j * P + p`; every
    /// subscriber must get each exactly once, each publisher's in order.
    fn phase(
        &mut self,
        c: &Common,
        via: Via,
        conc: usize,
        msgs: u32,
        base: u32,
        timeout: f64,
    ) -> io::Result<Phase> {
        let subs = self.subs;
        let admin = subs;
        let publishers = if via == Via::Http { conc } else { 1 };
        let per_pub = msgs / publishers as u32;
        let total = per_pub * publishers as u32;
        let seq = |p: usize, j: u32| base + j * publishers as u32 + p as u32;
        let mut next = vec![0u32; subs * publishers];
        let mut sent = vec![0u32; publishers];
        let (mut answered, mut in_flight) = (0u32, 0usize);
        let (mut delivered, mut order_errors, mut bad) = (0u64, 0u64, 0u64);
        let expected = subs as u64 * u64::from(total);
        let mut scratch = std::mem::take(&mut self.scratch);
        let cpu0 = cpu(c);
        let t0 = Instant::now();
        let (mut last_answer, mut last_delivery) = (t0, t0);
        if via == Via::Http {
            // Keep-alive connections for this phase only (an idle one would be
            // closed after the daemon's handshake_timeout).
            for k in 0..conc {
                let mut cl = HttpClient::connect(c.addrs[0])?;
                self.poll.registry().register(
                    &mut cl.stream,
                    Token(subs + 1 + k),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                self.http.push(cl);
            }
        }
        match via {
            Via::Http => {
                for (k, sent) in sent.iter_mut().enumerate() {
                    let req = self.post(seq(k, 0));
                    self.http[k].queue(&req);
                    self.http[k].flush()?;
                    *sent = 1;
                }
            }
            Via::Ws => {
                while in_flight < conc && sent[0] < per_pub {
                    let cmd = self.command(seq(0, sent[0]));
                    self.ws[admin].queue_text(&cmd);
                    sent[0] += 1;
                    in_flight += 1;
                }
                self.ws[admin].flush()?;
            }
        }
        let deadline = t0 + Duration::from_secs_f64(timeout);
        let mut events = Events::with_capacity(1024);
        while (answered < total || delivered < expected) && Instant::now() < deadline {
            self.poll
                .poll(&mut events, Some(Duration::from_millis(100)))?;
            for ev in events.iter() {
                let i = ev.token().0;
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                if i < subs {
                    let cl = &mut self.ws[i];
                    if ev.is_writable() {
                        cl.flush()?;
                    }
                    if !readable {
                        continue;
                    }
                    let mut got = 0;
                    let next = &mut next[i * publishers..(i + 1) * publishers];
                    let st = cl.read_ready(&mut scratch, &mut || {}, &mut |m| {
                        let Some(s) = seq_of(m) else { return };
                        let Some(rel) = s.checked_sub(base) else {
                            order_errors += 1;
                            return;
                        };
                        let (p, j) = (rel as usize % publishers, rel / publishers as u32);
                        if next[p] != j {
                            order_errors += 1;
                        }
                        next[p] = j + 1;
                        got += 1;
                    })?;
                    if st == ReadState::Closed {
                        return Err(io::Error::other(format!("subscriber {i} closed")));
                    }
                    if cl.pending() > 0 {
                        // A pong to a keep-alive ping.
                        cl.flush()?;
                    }
                    if got > 0 {
                        delivered += got;
                        last_delivery = Instant::now();
                    }
                } else if i == admin {
                    if ev.is_writable() {
                        self.ws[admin].flush()?;
                    }
                    if !readable {
                        continue;
                    }
                    let mut acks = 0u32;
                    let st = self.ws[admin].read_ready(&mut scratch, &mut || {}, &mut |m| {
                        if find(m, b"\"ack\"").is_some() {
                            acks += 1;
                        } else {
                            bad += 1;
                        }
                    })?;
                    if st == ReadState::Closed {
                        return Err(io::Error::other("the admin was closed"));
                    }
                    if acks > 0 {
                        answered += acks;
                        in_flight = in_flight.saturating_sub(acks as usize);
                        last_answer = Instant::now();
                        while via == Via::Ws && in_flight < conc && sent[0] < per_pub {
                            let cmd = self.command(seq(0, sent[0]));
                            self.ws[admin].queue_text(&cmd);
                            sent[0] += 1;
                            in_flight += 1;
                        }
                    }
                    // Commands, or a pong to a keep-alive ping.
                    self.ws[admin].flush()?;
                } else {
                    let k = i - subs - 1;
                    if ev.is_writable() {
                        self.http[k].flush()?;
                    }
                    if !readable {
                        continue;
                    }
                    let mut answers = 0u32;
                    let st = self.http[k].read_ready(&mut scratch, &mut |status, body| {
                        if status != 200 || body != br#"{"ok":true}"# {
                            bad += 1;
                        }
                        answers += 1;
                    })?;
                    if answers > 0 {
                        answered += answers;
                        last_answer = Instant::now();
                        if k < publishers && sent[k] < per_pub {
                            let req = self.post(seq(k, sent[k]));
                            self.http[k].queue(&req);
                            sent[k] += 1;
                        }
                        self.http[k].flush()?;
                    }
                    if st == ReadState::Closed {
                        return Err(io::Error::other(format!("HTTP client {k} was closed")));
                    }
                }
            }
        }
        let cpu1 = cpu(c);
        for mut cl in self.http.drain(..) {
            self.poll.registry().deregister(&mut cl.stream)?;
        }
        if answered < total || delivered < expected {
            eprintln!(
                "loadgen api: {via:?} x{conc} timed out: {answered} of {total} answered, \
                 {delivered} of {expected} delivered, sent {sent:?}"
            );
        }
        self.scratch = scratch;
        let incomplete = next.iter().filter(|&&n| n != per_pub).count() as u64;
        let name = match via {
            Via::Http => format!("api{conc}"),
            Via::Ws => format!("ws{conc}"),
        };
        Ok(Phase {
            name,
            commands: u64::from(answered),
            delivered,
            expected,
            order_errors,
            incomplete,
            bad: bad + u64::from(total - answered.min(total)),
            answer_secs: (last_answer - t0).as_secs_f64(),
            delivery_secs: (last_delivery - t0).as_secs_f64(),
            cpu_ms: cpu1 - cpu0,
        })
    }
}

/// `POST /api/commands` over keep-alive from 1 and from 16 HTTP clients,
/// and the same `broadcast_to_channel` commands from a WebSocket admin (1
/// and 16 unacknowledged), to `--subs` subscribers of one channel that read
/// everything; commands/s (HTTP answers or acks) and deliveries/s per phase.
pub(super) fn api(c: &Common, args: &Args) -> io::Result<String> {
    let subs: usize = args.num("subs", 1000);
    let msgs: u32 = args.num("msgs", 480);
    let size: usize = args.num("size", 24);
    let timeout: f64 = args.num("timeout", 60.0);
    let key = args.get("key").unwrap_or_else(|| API_BENCH_KEY.to_owned());
    let token = args
        .get("token")
        .ok_or_else(|| io::Error::other("--token: an admin session token is needed"))?;
    let concurrency: Vec<usize> = args
        .get("concurrency")
        .unwrap_or_else(|| "1,16".into())
        .split(',')
        .map(|n| n.parse().expect("--concurrency: numbers"))
        .collect();
    let mut poll = Poll::new()?;
    let mut ws: Vec<WsClient> = Vec::with_capacity(subs + 1);
    let mut scratch = vec![0u8; SCRATCH];
    let subscribe = br#"{"event":"subscribe","channel":"c"}"#;
    setup(
        &c.addrs[..1],
        "/",
        false,
        &mut poll,
        &mut ws,
        subs,
        &mut scratch,
        &mut |_, cl| cl.queue_text(subscribe),
        &mut |_, m| find(m, b"\"subscribed\"").is_some(),
    )?;
    let mut admin_user = false;
    setup(
        &c.addrs[..1],
        &format!("/?token={token}"),
        false,
        &mut poll,
        &mut ws,
        1,
        &mut scratch,
        &mut |_, _| {},
        &mut |_, m| {
            admin_user = find(m, b"\"user\":{").is_some();
            find(m, b"\"welcome\"").is_some()
        },
    )?;
    if !admin_user {
        return Err(io::Error::other(
            "the admin's welcome has no user: bad --token?",
        ));
    }
    let mut world = ApiWorld {
        poll,
        ws,
        http: Vec::new(),
        subs,
        key,
        size,
        scratch,
    };
    let mut phases = Vec::new();
    let mut base = 0;
    for &conc in &concurrency {
        for via in [Via::Http, Via::Ws] {
            let phase = world.phase(c, via, conc, msgs, base, timeout)?;
            eprintln!(
                "loadgen api: {} {} commands in {:.3} s, deliveries done at {:.3} s",
                phase.name, phase.commands, phase.answer_secs, phase.delivery_secs
            );
            base += phase.commands as u32;
            phases.push(phase);
        }
    }
    let rss = c.pid.and_then(rss_kb).unwrap_or(0);
    let valid = phases.iter().all(Phase::valid);
    let lost: u64 = phases
        .iter()
        .map(|p| p.expected.saturating_sub(p.delivered))
        .sum();
    Ok(format!(
        "workload=api server={} subs={subs} msgs={msgs} size={size} {} lost={lost} rss_kb={rss} valid={}",
        c.server,
        phases.iter().map(Phase::fields).collect::<Vec<_>>().join(" "),
        u8::from(valid),
    ))
}
