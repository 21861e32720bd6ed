//! Prometheus metrics (SPEC section 9): plain counters owned by the event-loop thread, and the
//! text exposition format 0.0.4 for `GET /metrics`.
//!
//! [`Metrics`] is a struct of `u64`s that the loop increments in place: no atomics, no locks, no
//! allocation per delivery. What lives elsewhere arrives as a [`Gauges`] snapshot at render time
//! (open connections, channels, the webhook worker's atomic counters, logging's drops).
//!
//! A scrape costs the same whatever the process's size: process figures come from `/proc/self`
//! at most once a second ([`ProcessCache`]), and the open descriptors are counted by listing
//! `/proc/self/fd` (a cost in proportion to the descriptors: 5 ms at 3,000 sockets) at most once
//! a second and at most 1% of the time, the loop's own sockets being followed exactly in
//! between. Before, every scrape listed them, and 400 pipelined scrapes held the loop for 2 s.
//!
//! Every family has `# HELP` and `# TYPE`; counters end in `_total`; and no two family names
//! collide once a counter's `_total` is dropped (the OpenMetrics rule that client parsers apply;
//! see the tests, which also run the reference Python parser).

use std::fmt::{self, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::limits::{Counts, Kind};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counts by a numeric label (HTTP status, close code), kept sorted by label. The label sets
/// are small (a handful of statuses or close codes), so a short vector beats a map.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LabelCounts(Vec<(u16, u64)>);

impl LabelCounts {
    /// Adds one for `label`.
    pub fn incr(&mut self, label: u16) {
        self.add(label, 1);
    }

    /// Adds `n` for `label`.
    pub fn add(&mut self, label: u16, n: u64) {
        match self.0.binary_search_by_key(&label, |&(l, _)| l) {
            Ok(i) => self.0[i].1 = self.0[i].1.wrapping_add(n),
            Err(i) => self.0.insert(i, (label, n)),
        }
    }

    /// The count for `label` (0 if never seen).
    pub fn get(&self, label: u16) -> u64 {
        self.0
            .binary_search_by_key(&label, |&(l, _)| l)
            .map_or(0, |i| self.0[i].1)
    }

    /// Every (label, count), by label.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.0.iter().copied()
    }
}

/// The close codes the server chooses (SPEC sections 6, 13 and 17): the only ones that become a
/// `code` label of `rakit_closes_total`. The echo of a peer's close frame carries the code the
/// peer chose (any of about 2,000), so it counts as `code="other"`: a client must not be able to
/// create series.
pub const SERVER_CLOSE_CODES: [u16; 16] = [
    1000, 1001, 1002, 1007, 1009, 1011, 4000, 4001, 4007, 4008, 4009, 4029, 4100, 4200, 4201, 4301,
];

/// `rakit_closes_total`: close frames sent, by the code the server chose, and the rest (echoes of
/// the peer's code, or a code outside [`SERVER_CLOSE_CODES`]) as `other`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CloseCounts {
    codes: LabelCounts,
    other: u64,
}

impl CloseCounts {
    /// A close frame the server chose to send with `code`.
    pub fn incr(&mut self, code: u16) {
        if SERVER_CLOSE_CODES.contains(&code) {
            self.codes.incr(code);
        } else {
            self.other = self.other.wrapping_add(1);
        }
    }

    /// The echo of a peer's close frame (its code is the peer's choice).
    pub fn echo(&mut self) {
        self.other = self.other.wrapping_add(1);
    }

    /// The count for a code the server chooses (0 if never seen).
    pub fn get(&self, code: u16) -> u64 {
        self.codes.get(code)
    }

    /// Echoes and codes outside [`SERVER_CLOSE_CODES`].
    pub fn other(&self) -> u64 {
        self.other
    }
}

/// The loop's counters. Increment the fields directly (`metrics.frames_sent += 1`).
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// WebSocket handshakes completed.
    pub connections_accepted: u64,
    /// Handshakes refused, by HTTP status.
    pub handshake_refusals: LabelCounts,
    /// Complete messages (text or binary) received from clients.
    pub messages_received: u64,
    /// Frames queued for clients (one per recipient of a fan-out).
    pub frames_sent: u64,
    /// Bytes read from client sockets.
    pub bytes_received: u64,
    /// Bytes written to client sockets.
    pub bytes_sent: u64,
    /// Close frames the server sent, by the close code it chose.
    pub closes: CloseCounts,
    /// Clients dropped for exceeding `max_send_buffer` (4008).
    pub slow_client_drops: u64,
    /// Requests to `/api/` paths, by HTTP status.
    pub api_requests: LabelCounts,
    /// Messages published to the cluster.
    pub cluster_messages_out: u64,
    /// Messages received from the cluster.
    pub cluster_messages_in: u64,
    /// Messages for other nodes dropped (Redis down, or its queue full).
    pub cluster_dropped_out: u64,
    /// Messages from other nodes dropped (the loop's inbound queue full).
    pub cluster_dropped_in: u64,
    /// Handshakes refused by the per-address and per-user limits (the router counts messages
    /// and broadcasts: [`Gauges::rate_limited`]).
    pub rate_limited: Counts,
    /// How `/proc` values are turned into seconds.
    pub process: ProcessInfo,
    /// The process figures last read.
    pub process_cache: ProcessCache,
}

impl Metrics {
    /// Zeroed counters, with the process facts detected once ([`ProcessInfo::detect`]). Call it
    /// at start, not per scrape: it runs `getconf`.
    pub fn new() -> Metrics {
        Metrics {
            process: ProcessInfo::detect(),
            ..Metrics::default()
        }
    }
}

/// What the webhook worker has counted so far (it owns the atomics; the loop copies them here).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WebhookCounts {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
}

/// Values read at render time from their owners.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Gauges {
    /// Open WebSocket connections.
    pub connections: u64,
    /// Channels with at least one subscriber.
    pub channels: u64,
    /// Connected to Redis (false when clustering is off).
    pub cluster_up: bool,
    /// The webhook worker's counters (all 0 when webhooks are off).
    pub webhooks: WebhookCounts,
    /// Log lines dropped because the output could not keep up, when logging counts them.
    pub log_lines_dropped: Option<u64>,
    /// Messages run through the permessage-deflate compressor.
    pub compressions: u64,
    /// The loop's connection sockets (handshakes and HTTP included): the descriptors it knows.
    pub sockets: u64,
    /// Messages and broadcasts refused by the router's buckets.
    pub rate_limited: Counts,
}

/// Facts about the process that do not change while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessInfo {
    /// USER_HZ, the unit of the times in `/proc/self/stat`.
    pub ticks_per_second: u64,
    /// The system's boot time (`btime` of `/proc/stat`), Unix seconds.
    pub boot_time: Option<u64>,
}

impl Default for ProcessInfo {
    /// USER_HZ is 100 on every mainstream Linux architecture; used when `getconf` is missing.
    fn default() -> Self {
        ProcessInfo {
            ticks_per_second: 100,
            boot_time: None,
        }
    }
}

impl ProcessInfo {
    /// Reads USER_HZ with `getconf CLK_TCK` (sysconf needs unsafe code, which this crate forbids;
    /// falls back to 100, the value on x86 and arm64) and the boot time from `/proc/stat`.
    pub fn detect() -> ProcessInfo {
        let ticks = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&t| t > 0);
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_btime(&s));
        ProcessInfo {
            ticks_per_second: ticks.unwrap_or(100),
            boot_time,
        }
    }
}

fn parse_btime(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// This process's figures, read from `/proc/self` now.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct ProcessSample {
    resident_bytes: Option<u64>,
    cpu_seconds: Option<f64>,
    open_fds: Option<u64>,
    start_time: Option<f64>,
}

impl ProcessSample {
    fn read(info: &ProcessInfo) -> ProcessSample {
        let proc_self = Path::new("/proc/self");
        let status = std::fs::read_to_string(proc_self.join("status")).ok();
        let stat = std::fs::read_to_string(proc_self.join("stat")).ok();
        let mut sample = ProcessSample {
            resident_bytes: status.as_deref().and_then(parse_vm_rss),
            ..ProcessSample::default()
        };
        if let Some(times) = stat.as_deref().and_then(parse_stat) {
            let hz = info.ticks_per_second.max(1) as f64;
            sample.cpu_seconds = Some((times.utime + times.stime) as f64 / hz);
            sample.start_time = info
                .boot_time
                .map(|boot| boot as f64 + times.starttime as f64 / hz);
        }
        sample
    }
}

/// How long process figures are reused.
const PROCESS_TTL: Duration = Duration::from_secs(1);
/// A listing of `/proc/self/fd` is redone no sooner than this many times its own duration after
/// it (so it takes at most 1% of the loop's time, however many descriptors there are).
const LISTING_SHARE: u32 = 100;

/// The process figures of the last scrape, reused for `PROCESS_TTL`; and the open descriptors
/// as last listed, with the loop's sockets at that time, so that the count follows the loop's
/// sockets (most of the descriptors) exactly without listing them again.
#[derive(Debug, Default, Clone)]
pub struct ProcessCache {
    sample: ProcessSample,
    read_at: Option<Instant>,
    /// (descriptors listed, the loop's sockets then, when the next listing may be done)
    listed: Option<(u64, u64, Instant)>,
    /// Listings done (for the tests).
    listings: u64,
}

impl ProcessCache {
    /// The figures at `now`, with the loop holding `sockets`: read from `/proc/self` if the last
    /// reading is older than `PROCESS_TTL`, the descriptors listed only when their listing is
    /// due.
    fn get(&mut self, info: &ProcessInfo, sockets: u64, now: Instant) -> ProcessSample {
        let fresh = self
            .read_at
            .is_some_and(|at| now.saturating_duration_since(at) < PROCESS_TTL);
        if !fresh {
            self.sample = ProcessSample::read(info);
            self.read_at = Some(now);
        }
        if self.listed.map_or(true, |(_, _, next)| now >= next) {
            let started = Instant::now();
            if let Some(fds) = count_fds() {
                let took = started.elapsed();
                self.listings += 1;
                let next = now + PROCESS_TTL.max(took * LISTING_SHARE);
                self.listed = Some((fds, sockets, next));
            }
        }
        let mut sample = self.sample;
        sample.open_fds = self
            .listed
            .map(|(fds, then, _)| (fds + sockets).saturating_sub(then));
        sample
    }
}

/// The entries of `/proc/self/fd` (the listing's own descriptor excluded).
fn count_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    Some((dir.count() as u64).saturating_sub(1))
}

/// `VmRSS:   1234 kB` of `/proc/self/status`, in bytes (kB there means KiB). Read from `status`
/// rather than `statm` because `statm` counts pages, and the page size needs sysconf.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

struct StatTimes {
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// Fields 14, 15 and 22 of `/proc/self/stat`. The second field (the command name) is in
/// parentheses and may itself contain spaces and parentheses, so counting starts after the last
/// `)`, where field 3 begins.
fn parse_stat(stat: &str) -> Option<StatTimes> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(StatTimes {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// Writes every metric of SPEC section 9 in the text format 0.0.4, with the process figures of
/// [`ProcessCache`] at `now`.
pub fn render(metrics: &mut Metrics, gauges: &Gauges, now: Instant, out: &mut String) {
    let info = metrics.process;
    let process = metrics.process_cache.get(&info, gauges.sockets, now);
    render_with(metrics, gauges, &process, out);
}

fn render_with(metrics: &Metrics, gauges: &Gauges, process: &ProcessSample, out: &mut String) {
    let mut w = Writer(out);
    w.gauge(
        "rakit_connections",
        "Open WebSocket connections.",
        gauges.connections,
    );
    w.counter(
        "rakit_connections_accepted_total",
        "WebSocket handshakes completed.",
        metrics.connections_accepted,
    );
    w.labelled(
        "rakit_handshake_refusals_total",
        "Handshakes refused, by HTTP status.",
        "status",
        &metrics.handshake_refusals,
    );
    w.counter(
        "rakit_messages_received_total",
        "Complete messages received from clients.",
        metrics.messages_received,
    );
    w.counter(
        "rakit_frames_sent_total",
        "Frames queued for clients (one per recipient).",
        metrics.frames_sent,
    );
    w.counter(
        "rakit_bytes_received_total",
        "Bytes read from client sockets.",
        metrics.bytes_received,
    );
    w.counter(
        "rakit_bytes_sent_total",
        "Bytes written to client sockets.",
        metrics.bytes_sent,
    );
    w.labelled(
        "rakit_closes_total",
        "Close frames the server sent, by the close code it chose (other: echoes of the peer's code).",
        "code",
        &metrics.closes.codes,
    );
    if metrics.closes.other > 0 {
        w.sample(
            "rakit_closes_total",
            Some(("code", "other")),
            metrics.closes.other,
        );
    }
    w.counter(
        "rakit_slow_client_drops_total",
        "Clients dropped for exceeding max_send_buffer.",
        metrics.slow_client_drops,
    );
    w.family(
        "rakit_rate_limited_total",
        "counter",
        "Refusals by the abuse limits ([limits]), by kind: messages and broadcasts over their \
         sender's bucket, handshakes over a per-address or per-user limit.",
    );
    let refused = metrics.rate_limited.plus(gauges.rate_limited);
    for kind in Kind::ALL {
        w.sample(
            "rakit_rate_limited_total",
            Some(("kind", kind.as_str())),
            refused.get(kind),
        );
    }
    w.gauge(
        "rakit_channels",
        "Channels with at least one subscriber.",
        gauges.channels,
    );
    w.labelled(
        "rakit_api_requests_total",
        "Requests to the HTTP API, by HTTP status.",
        "status",
        &metrics.api_requests,
    );
    let hooks = gauges.webhooks;
    w.family(
        "rakit_webhook_events_total",
        "counter",
        "Webhook events, by result (sent, failed after retries, dropped from a full queue).",
    );
    for (result, n) in [
        ("sent", hooks.sent),
        ("failed", hooks.failed),
        ("dropped", hooks.dropped),
    ] {
        w.sample("rakit_webhook_events_total", Some(("result", result)), n);
    }
    w.gauge(
        "rakit_cluster_up",
        "1 when connected to the cluster's Redis; 0 when clustering is off or down.",
        u64::from(gauges.cluster_up),
    );
    w.family(
        "rakit_cluster_messages_total",
        "counter",
        "Cluster messages, by direction.",
    );
    for (direction, n) in [
        ("out", metrics.cluster_messages_out),
        ("in", metrics.cluster_messages_in),
    ] {
        w.sample(
            "rakit_cluster_messages_total",
            Some(("direction", direction)),
            n,
        );
    }
    w.family(
        "rakit_cluster_messages_dropped_total",
        "counter",
        "Cluster messages dropped (Redis down or the queue to it full: out; the loop's queue full: in).",
    );
    for (direction, n) in [
        ("out", metrics.cluster_dropped_out),
        ("in", metrics.cluster_dropped_in),
    ] {
        w.sample(
            "rakit_cluster_messages_dropped_total",
            Some(("direction", direction)),
            n,
        );
    }
    w.counter(
        "rakit_compressions_total",
        "Messages compressed with permessage-deflate (a message sent to many clients counts once per window size among them).",
        gauges.compressions,
    );
    if let Some(dropped) = gauges.log_lines_dropped {
        w.counter(
            "rakit_log_lines_dropped_total",
            "Log lines dropped because the log output could not keep up.",
            dropped,
        );
    }
    w.optional(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        process.resident_bytes,
    );
    w.optional(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        process.cpu_seconds,
    );
    w.optional(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        process.open_fds,
    );
    w.optional(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        process.start_time,
    );
}

/// Appends exposition lines; writing to a `String` cannot fail, so results are ignored.
struct Writer<'a>(&'a mut String);

impl Writer<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, label: Option<(&str, &str)>, value: impl fmt::Display) {
        match label {
            Some((key, v)) => {
                let _ = writeln!(self.0, "{name}{{{key}=\"{}\"}} {value}", escape_label(v));
            }
            None => {
                let _ = writeln!(self.0, "{name} {value}");
            }
        }
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, None, value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, None, value);
    }

    fn labelled(&mut self, name: &str, help: &str, label: &str, counts: &LabelCounts) {
        self.family(name, "counter", help);
        for (l, n) in counts.iter() {
            self.sample(name, Some((label, &l.to_string())), n);
        }
    }

    /// A family whose one sample is left out when the value could not be read (no `/proc`).
    fn optional<T: fmt::Display>(&mut self, name: &str, kind: &str, help: &str, v: Option<T>) {
        self.family(name, kind, help);
        if let Some(v) = v {
            self.sample(name, None, v);
        }
    }
}

/// HELP text escapes `\` and newlines (format 0.0.4).
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values escape `\`, `"` and newlines.
fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
