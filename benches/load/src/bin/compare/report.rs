//! Medians, ratios ours/peer, and the targets.

use super::*;

pub(super) struct Metric {
    key: &'static str,
    label: &'static str,
}

pub(super) const fn m(key: &'static str, label: &'static str) -> Metric {
    Metric { key, label }
}

pub(super) fn metrics(workload: &str) -> Vec<Metric> {
    match workload {
        "echo" => vec![
            m("msgs_per_s", "msgs/s"),
            m("p50_us", "p50 us"),
            m("p99_us", "p99 us"),
            m("cpu_ns_per_msg", "cpu ns/msg"),
            m("rss_kb", "rss KiB"),
        ],
        "fanout" | "broadcast" | "fanout-history" => vec![
            m("deliveries_per_s", "deliveries/s"),
            m("secs", "secs"),
            m("cpu_ns_per_delivery", "cpu ns/deliv"),
            m("peak_rss_kb", "peak rss KiB"),
            m("lost", "lost"),
        ],
        "api" => vec![
            m("api1_cmds_per_s", "http1 req/s"),
            m("api1_deliveries_per_s", "http1 deliv/s"),
            m("ws1_cmds_per_s", "ws1 cmd/s"),
            m("ws1_deliveries_per_s", "ws1 deliv/s"),
            m("api16_cmds_per_s", "http16 req/s"),
            m("api16_deliveries_per_s", "http16 deliv/s"),
            m("ws16_cmds_per_s", "ws16 cmd/s"),
            m("ws16_deliveries_per_s", "ws16 deliv/s"),
            m("lost", "lost"),
        ],
        "idle" => vec![
            m("handshakes_per_s", "handshakes/s"),
            m("cpu_us_per_handshake", "cpu us/hs"),
            m("rss_per_conn_b", "rss B/conn"),
            m("rss_after_kb", "rss KiB"),
        ],
        // srv: the server processes (Redis not included); A, B: each node
        // (A has the publisher); per cpu-s: every process, Redis included.
        "cluster-fanout" | "cluster-fanout-history" => vec![
            m("deliveries_per_s", "deliveries/s"),
            m("secs", "secs"),
            m("cpu_ns_per_delivery", "srv ns/deliv"),
            m("n0_cpu_ns_per_delivery", "A ns/deliv"),
            m("n1_cpu_ns_per_delivery", "B ns/deliv"),
            m("b_over_a", "B/A cpu"),
            m("redis_cpu_ms", "redis cpu ms"),
            m("deliveries_per_cpu_s", "deliv/cpu-s"),
            m("deliveries_per_cpu_s_no_redis", "no redis"),
            m("peak_rss_kb", "rss KiB"),
            m("n1_peak_rss_kb", "B rss KiB"),
            m("redis_peak_rss_kb", "redis KiB"),
            m("lost", "lost"),
        ],
        "cluster-latency" => vec![
            m("p50_us", "p50 us"),
            m("p90_us", "p90 us"),
            m("p99_us", "p99 us"),
            m("max_us", "max us"),
            m("mean_us", "mean us"),
            m("cpu_ms", "srv cpu ms"),
            m("redis_cpu_ms", "redis cpu ms"),
            m("lost", "lost"),
        ],
        _ => vec![],
    }
}

pub(super) fn value(run: &Run, key: &str) -> f64 {
    match key {
        "peak_rss_kb" => run.peak_rss_kb,
        "b_over_a" => run.num("n1_cpu_ns_per_delivery") / run.num("n0_cpu_ns_per_delivery"),
        _ => run.num(key),
    }
}

/// The ratio rows (numerator, denominator) of a workload's table.
pub(super) fn pairs<'a>(workload: &str, servers: &'a [Server]) -> Vec<(&'a str, &'a str)> {
    if workload.starts_with("cluster-") {
        let has = |n: &str| servers.iter().any(|s| s.name == n);
        [
            ("rakit-cluster-history", "rakit-cluster"),
            ("rakit-cluster", "rakit-1"),
            ("node-cluster", "node-1"),
            ("rakit-cluster", "node-cluster"),
            ("rakit-1", "node-1"),
        ]
        .into_iter()
        .filter(|(a, b)| has(a) && has(b))
        .collect()
    } else {
        let mut pairs: Vec<(&str, &str)> = servers
            .iter()
            .filter(|s| s.name != "rakit")
            .map(|s| ("rakit", s.name))
            .collect();
        if servers.iter().any(|s| s.name == "rakit-history") {
            pairs.retain(|(_, b)| *b != "rakit-history");
            pairs.insert(0, ("rakit-history", "rakit"));
            pairs.push(("rakit-history", "tungstenite-mt"));
        }
        pairs
    }
}

/// Prints the workload's table and returns its target lines.
pub(super) fn report(
    workload: &str,
    servers: &[Server],
    runs: &BTreeMap<&str, Vec<Run>>,
) -> Vec<String> {
    let ms = metrics(workload);
    let w = if workload.starts_with("cluster-") {
        13
    } else {
        15
    };
    println!("\n== {workload}: medians over valid runs ==");
    print!("{:<16}", "server");
    for mt in &ms {
        print!("{:>w$}", mt.label);
    }
    println!("{:>8}{:>9}", "valid", "spread");
    let mut med: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    for s in servers {
        let Some(rs) = runs.get(s.name) else { continue };
        let valid: Vec<&Run> = rs.iter().filter(|r| r.valid()).collect();
        print!("{:<16}", s.name);
        for mt in &ms {
            let mut v: Vec<f64> = valid.iter().map(|r| value(r, mt.key)).collect();
            let x = median(&mut v);
            med.entry(s.name).or_default().insert(mt.key, x);
            print!("{:>w$}", fmt_num(x));
        }
        // The first column's spread over the valid runs: (max - min) / median.
        let mut first: Vec<f64> = ms
            .first()
            .map(|mt| valid.iter().map(|r| value(r, mt.key)).collect())
            .unwrap_or_default();
        let spread = spread(&mut first);
        let spread = if spread.is_finite() {
            format!("{:.0}%", spread * 100.0)
        } else {
            "-".to_owned()
        };
        println!(
            "{:>8}{spread:>9}",
            format!("{}/{}", valid.len(), rs.len())
        );
    }
    for (a, b) in pairs(workload, servers) {
        let (Some(num), Some(den)) = (med.get(a), med.get(b)) else {
            continue;
        };
        print!("{:<16}", format!("{}/{}", short(a), short(b)));
        for mt in &ms {
            let r = num.get(mt.key).copied().unwrap_or(f64::NAN)
                / den.get(mt.key).copied().unwrap_or(f64::NAN);
            let cell = if r.is_finite() {
                format!("{r:.2}x")
            } else {
                "-".to_owned()
            };
            print!("{cell:>w$}");
        }
        println!();
    }
    let ours = med.get("rakit").cloned().unwrap_or_default();
    let all_valid = |name: &str| {
        runs.get(name)
            .is_some_and(|rs| !rs.is_empty() && rs.iter().all(Run::valid))
    };
    let ratio = |name: &str, key: &str| {
        ours.get(key).copied().unwrap_or(f64::NAN)
            / med
                .get(name)
                .and_then(|m| m.get(key))
                .copied()
                .unwrap_or(f64::NAN)
    };
    let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
    let get = |name: &str, key: &str| {
        med.get(name)
            .and_then(|m| m.get(key))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let mut t = Vec::new();
    if servers.iter().any(|s| s.name == "rakit-pusher") {
        // --pusher-vs-rakit: the dialect against Rakit clients, same daemon.
        match workload {
            "fanout" => {
                let r = get("rakit-pusher", "deliveries_per_s") / get("rakit", "deliveries_per_s");
                let c = get("rakit-pusher", "cpu_ns_per_delivery")
                    / get("rakit", "cpu_ns_per_delivery");
                let ok = all_valid("rakit-pusher") && all_valid("rakit");
                t.push(format!(
                    "fanout deliveries/s, Pusher / Rakit subscribers {r:>6.2}x, CPU per delivery \
                     {c:.2}x  (target >= 0.90x, zero loss: {} valid)  {}",
                    if ok { "all" } else { "NOT all" },
                    verdict(r >= 0.9 && ok)
                ));
            }
            "idle" => t.push(format!(
                "idle rss per connection: Rakit {:.0} B, Pusher {:.0} B",
                get("rakit", "rss_per_conn_b"),
                get("rakit-pusher", "rss_per_conn_b"),
            )),
            _ => {}
        }
        return t;
    }
    match workload {
        "fanout-history" => {
            let c = get("rakit-history", "cpu_ns_per_delivery") / get("rakit", "cpu_ns_per_delivery");
            let ok = all_valid("rakit-history");
            t.push(format!(
                "fanout-history CPU per delivery, history / plain channel {c:>6.2}x  (target <= 1.20x, \
                 zero loss: rakit-history {} valid)  {}",
                if ok { "all" } else { "NOT all" },
                verdict(c <= 1.2 && ok)
            ));
            let r = get("rakit-history", "deliveries_per_s") / get("tungstenite-mt", "deliveries_per_s");
            t.push(format!(
                "fanout-history deliveries/s vs tungstenite-mt (plain) {r:>6.2}x"
            ));
        }
        "cluster-fanout-history" => {
            let r = get("rakit-cluster-history", "deliveries_per_s")
                / get("rakit-cluster", "deliveries_per_s");
            let c = get("rakit-cluster-history", "deliveries_per_cpu_s")
                / get("rakit-cluster", "deliveries_per_cpu_s");
            t.push(format!(
                "cluster-fanout-history deliveries/s, history / plain {r:>6.2}x; deliveries per \
                 CPU-s (Redis included) {c:.2}x  (rakit-cluster-history {} valid)",
                if all_valid("rakit-cluster-history") { "all" } else { "NOT all" },
            ));
        }
        "cluster-fanout" => {
            let ok = all_valid("rakit-cluster");
            let r = get("rakit-cluster", "deliveries_per_s") / get("rakit-1", "deliveries_per_s");
            t.push(format!(
                "cluster-fanout deliveries/s, cluster vs one daemon {r:>6.2}x  (target >= 0.70x, \
                 0 lost: rakit-cluster {} valid)  {}",
                if ok { "all" } else { "NOT all" },
                verdict(r >= 0.7 && ok)
            ));
            let r = get("rakit-cluster", "b_over_a");
            t.push(format!(
                "cluster-fanout CPU per delivery, B vs A           {r:>6.2}x  (target <= 1.20x)  {}",
                verdict(r <= 1.2)
            ));
            for (key, what) in [
                ("deliveries_per_cpu_s", "Redis included"),
                ("deliveries_per_cpu_s_no_redis", "Redis excluded"),
            ] {
                let r = get("rakit-cluster", key) / get("node-cluster", key);
                t.push(format!(
                    "cluster-fanout deliveries per CPU-s vs node-cluster {r:>6.2}x  ({what}; target > 1x)  {}",
                    if r.is_nan() { "n/a (no peer run)" } else { verdict(r > 1.0) }
                ));
            }
        }
        "cluster-latency" => {
            for (cl, one) in [("rakit-cluster", "rakit-1"), ("node-cluster", "node-1")] {
                t.push(format!(
                    "cluster-latency {cl}: p50 {:.0} us, p99 {:.0} us; the hop over {one}: \
                     p50 +{:.0} us, p99 +{:.0} us",
                    get(cl, "p50_us"),
                    get(cl, "p99_us"),
                    get(cl, "p50_us") - get(one, "p50_us"),
                    get(cl, "p99_us") - get(one, "p99_us"),
                ));
            }
        }
        "echo" => {
            let r = ratio("fastwebsockets", "msgs_per_s");
            t.push(format!(
                "echo msgs/s vs fastwebsockets        {r:>6.2}x  (target >= 0.95x)  {}",
                verdict(r >= 0.95)
            ));
            let r = ratio("fastwebsockets", "cpu_ns_per_msg");
            t.push(format!(
                "echo server CPU/msg vs fastwebsockets {r:>6.2}x  (target <= 1.00x)  {}",
                verdict(r <= 1.0)
            ));
        }
        "fanout" | "broadcast" => {
            let r = ratio("tungstenite-mt", "deliveries_per_s");
            let ok = all_valid("rakit");
            t.push(format!(
                "{workload:<9} deliveries/s vs tungstenite-mt {r:>6.2}x  (target >= 2x, zero loss: rakit {} valid)  {}",
                if ok { "all" } else { "NOT all" },
                verdict(r >= 2.0 && ok)
            ));
            // Deliveries per server CPU-second: the inverse of CPU per delivery.
            let r = 1.0 / ratio("tungstenite-mt", "cpu_ns_per_delivery");
            t.push(format!(
                "{workload:<9} deliveries per server CPU-s vs tungstenite-mt {r:>6.2}x  (target >= 3x)  {}",
                verdict(r >= 3.0)
            ));
        }
        "api" => {
            let at = |n: u32| {
                ours.get(format!("api{n}_cmds_per_s").as_str())
                    .copied()
                    .unwrap_or(f64::NAN)
                    / ours
                        .get(format!("ws{n}_cmds_per_s").as_str())
                        .copied()
                        .unwrap_or(f64::NAN)
            };
            t.push(format!(
                "api commands/s, HTTP / WebSocket admin {:>6.2}x at 1 in flight, {:.2}x at 16 \
                 (no target; zero loss: rakit {} valid)",
                at(1),
                at(16),
                if all_valid("rakit") { "all" } else { "NOT all" },
            ));
        }
        "idle" => {
            for name in ["rakit-default", "rakit"] {
                let b = get(name, "rss_per_conn_b");
                t.push(format!(
                    "idle rss per connection, {name:<13} {b:>6.0} B  (target <= 256 B)     {}",
                    verdict(b <= 256.0)
                ));
            }
            let r = ratio("fastwebsockets", "handshakes_per_s");
            t.push(format!(
                "idle handshakes/s vs fastwebsockets   {r:>6.2}x  (target >= 1.00x)  {}",
                verdict(r >= 1.0)
            ));
        }
        _ => {}
    }
    t
}

/// (max - min) / median; NaN for no values.
pub(super) fn spread(v: &mut [f64]) -> f64 {
    let m = median(v);
    let max = v.iter().copied().fold(f64::NAN, f64::max);
    let min = v.iter().copied().fold(f64::NAN, f64::min);
    (max - min) / m
}

pub(super) fn short(name: &str) -> &str {
    match name {
        "fastwebsockets" => "fws",
        "tungstenite-mt" => "tung-mt",
        "tungstenite-ct" => "tung-ct",
        "rakit-cluster" => "rakit-cl",
        "node-cluster" => "node-cl",
        n => n,
    }
}

pub(super) fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}
