//! Runs rakit and its peers alternately (A B C A B C ...) on every workload
//! and prints the medians and the ratios ours/peer, then the targets.
//!
//! ```text
//! compare [--rounds 3] [--workloads echo,fanout,broadcast,idle,api]
//!         [--rakit ../../target/release/rakit] [--config rakit-bench.toml]
//!         [--api-config rakit-api-bench.toml (default: beside --config)]
//!         [--bin-dir DIR_OF_LOADGEN_AND_PEERS] [--raw FILE] [--echo-secs 5]
//!         [--rakit-before OTHER_RAKIT] [--subs N] [--msgs N] [--size B] [--peers none]
//!         [--deflate-vs-plain CONFIG]
//! ```
//! `--rakit-before` runs a second rakit build (e.g. the previous commit's)
//! alternately with the others, as `rakit-before`; `--subs`/`--msgs` set
//! the fan-out and broadcast sizes; `--peers none` runs rakit builds only.
//! `--deflate-vs-plain CONFIG` runs rakit (with CONFIG, which turns
//! compression on) twice, alternately: clients offering permessage-deflate
//! (`rakit`) and plain clients (`rakit-plain`), both with chat-like text.
//! Each run starts a fresh server process, runs one `loadgen` workload
//! against it (which reads the server's /proc/PID/stat before and after its
//! measured window and /proc/PID/status VmRSS), then kills the server.
//! Build first: `benches/load/run.sh` does both builds and runs this.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rakit_load::{cpu_ms, median, parse_result, Args, API_BENCH_KEY, API_BENCH_SECRET};

#[derive(Clone)]
struct Server {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    /// Added to loadgen's arguments for this server's runs.
    loadgen_extra: Vec<String>,
}

struct Run {
    fields: BTreeMap<String, String>,
    peak_rss_kb: f64,
    total_cpu_ms: f64,
}

impl Run {
    fn num(&self, key: &str) -> f64 {
        self.fields
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }
    fn valid(&self) -> bool {
        self.fields.get("valid").map(String::as_str) == Some("1")
    }
}

fn main() {
    let args = Args::from_env(1);
    let here = std::env::current_exe().expect("exe");
    let bin_dir = args
        .get("bin-dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| here.parent().expect("bin dir").to_path_buf());
    let rounds: usize = args.num("rounds", 3);
    let rakit = PathBuf::from(
        args.get("rakit")
            .unwrap_or_else(|| "../../target/release/rakit".into()),
    );
    let config = args
        .get("config")
        .unwrap_or_else(|| "rakit-bench.toml".into());
    let api_config = args.get("api-config").unwrap_or_else(|| {
        Path::new(&config)
            .with_file_name("rakit-api-bench.toml")
            .display()
            .to_string()
    });
    let echo_secs: f64 = args.num("echo-secs", 5.0);
    let workloads = args
        .get("workloads")
        .unwrap_or_else(|| "echo,fanout,broadcast,idle,api".into());
    let raw_path = args.get("raw");
    let before = args.get("rakit-before").map(PathBuf::from);
    let no_peers = args.get("peers").as_deref() == Some("none");
    let deflate_config = args.get("deflate-vs-plain");
    let mut fanout_args = Vec::new();
    for key in ["subs", "msgs", "size"] {
        if let Some(v) = args.get(key) {
            fanout_args.extend([format!("--{key}"), v]);
        }
    }
    let mut raw = raw_path
        .as_ref()
        .map(|p| std::fs::File::create(p).expect("--raw file"));
    for p in [&rakit, &bin_dir.join("loadgen")] {
        assert!(
            p.exists(),
            "{} not found: build first (run.sh)",
            p.display()
        );
    }

    let rakit_build = |name: &'static str, program: &PathBuf, echo: bool| Server {
        name,
        program: program.clone(),
        args: [
            "websocket:run".to_owned(),
            "--port=0".to_owned(),
            format!("--config={config}"),
        ]
        .into_iter()
        .chain(echo.then(|| "--echo".to_owned()))
        .collect(),
        loadgen_extra: Vec::new(),
    };
    let rakit_server = |echo: bool| rakit_build("rakit", &rakit, echo);
    let peer = |name: &'static str, bin: &str, extra: &[&str]| Server {
        name,
        program: bin_dir.join(bin),
        args: extra.iter().map(|s| s.to_string()).collect(),
        loadgen_extra: Vec::new(),
    };

    println!(
        "# compare: {rounds} rounds, load average at start: {}",
        loadavg()
    );
    let mut summaries = Vec::new();
    for workload in workloads.split(',') {
        let (servers, loadgen_args): (Vec<Server>, Vec<String>) = match workload {
            "echo" => (
                vec![
                    rakit_server(true),
                    peer("fastwebsockets", "peer-fastwebsockets", &[]),
                    peer("tungstenite-mt", "peer-tungstenite", &["--echo"]),
                    peer(
                        "tungstenite-ct",
                        "peer-tungstenite",
                        &["--echo", "--current-thread"],
                    ),
                ],
                vec!["--secs".into(), echo_secs.to_string()],
            ),
            "fanout" | "broadcast" => (
                vec![
                    rakit_server(false),
                    peer("tungstenite-mt", "peer-tungstenite", &[]),
                    peer("tungstenite-ct", "peer-tungstenite", &["--current-thread"]),
                ],
                fanout_args.clone(),
            ),
            "idle" => (
                vec![
                    rakit_server(false),
                    peer("fastwebsockets", "peer-fastwebsockets", &[]),
                    peer("tungstenite-mt", "peer-tungstenite", &[]),
                    peer("tungstenite-ct", "peer-tungstenite", &["--current-thread"]),
                ],
                vec![],
            ),
            // Ours alone: the peers have no backend API. HTTP against the
            // same commands from a WebSocket admin, in the same run.
            "api" => (
                vec![Server {
                    name: "rakit",
                    program: rakit.clone(),
                    args: vec![
                        "websocket:run".to_owned(),
                        "--port=0".to_owned(),
                        format!("--config={api_config}"),
                    ],
                    loadgen_extra: Vec::new(),
                }],
                vec![
                    "--key".into(),
                    API_BENCH_KEY.into(),
                    "--token".into(),
                    admin_token(&rakit),
                ],
            ),
            other => panic!("unknown workload {other}"),
        };
        let (mut servers, loadgen_args) = (servers, loadgen_args);
        if no_peers {
            servers.truncate(1);
        }
        if let Some(before) = &before {
            let echo = servers[0].args.iter().any(|a| a == "--echo");
            servers.insert(1, rakit_build("rakit-before", before, echo));
        }
        if let Some(deflate_config) = &deflate_config {
            // The same daemon and config (compression on) twice: clients
            // that offer permessage-deflate, and plain clients.
            let chat = vec!["--chat".to_owned()];
            let mut compressed = rakit_server(false);
            compressed.args[2] = format!("--config={deflate_config}");
            let mut plain = Server {
                name: "rakit-plain",
                ..compressed.clone()
            };
            compressed.loadgen_extra = [chat.clone(), vec!["--deflate".to_owned()]].concat();
            plain.loadgen_extra = chat;
            servers = vec![compressed, plain];
        }
        let mut runs: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
        for round in 1..=rounds {
            for server in &servers {
                let run = run_one(&bin_dir, server, workload, &loadgen_args);
                let line = format!(
                    "round={round} {} peak_rss_kb={} total_cpu_ms={:.0}",
                    run.fields
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    run.peak_rss_kb,
                    run.total_cpu_ms
                );
                eprintln!("{line}");
                if let Some(f) = raw.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                runs.entry(server.name).or_default().push(run);
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        summaries.push(report(workload, &servers, &runs));
    }
    println!("\n# load average at end: {}", loadavg());
    println!("\n== targets (ratios ours/peer, medians of the same run) ==");
    for s in summaries.iter().flatten() {
        println!("{s}");
    }
}

/// An admin session token for the `api` workload, from `rakit websocket:token`.
fn admin_token(rakit: &Path) -> String {
    let out = Command::new(rakit)
        .args(["websocket:token", "--secret", API_BENCH_SECRET])
        .args(["--sub", "1", "--name", "A", "--admin", "--ttl", "86400"])
        .output()
        .expect("rakit websocket:token");
    assert!(out.status.success(), "rakit websocket:token: {out:?}");
    String::from_utf8(out.stdout)
        .expect("a UTF-8 token")
        .trim()
        .to_owned()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn spawn_server(server: &Server) -> (Child, String) {
    let mut child = Command::new(&server.program)
        .args(&server.args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.program.display()));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{} printed no listen address", server.name));
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ws://"))
        .unwrap_or_else(|| panic!("no ws:// address in {line:?}"))
        .trim_end_matches('/')
        .to_owned();
    (child, addr)
}

fn peak_rss_kb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

fn run_one(bin_dir: &Path, server: &Server, workload: &str, extra: &[String]) -> Run {
    let (mut child, addr) = spawn_server(server);
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(200));
    let cpu0 = cpu_ms(pid).unwrap_or(f64::NAN);
    let started = Instant::now();
    let out = Command::new(bin_dir.join("loadgen"))
        .arg(workload)
        .args(["--addr", &addr, "--server", server.name])
        .args(["--server-pid", &pid.to_string()])
        .args(extra)
        .args(&server.loadgen_extra)
        .stderr(Stdio::inherit())
        .output()
        .expect("loadgen");
    let cpu1 = cpu_ms(pid).unwrap_or(f64::NAN);
    let peak = peak_rss_kb(pid);
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let fields = text
        .lines()
        .find_map(parse_result)
        .unwrap_or_else(|| {
            vec![
                ("server".into(), server.name.into()),
                ("valid".into(), "0".into()),
                ("error".into(), "no_RESULT_line".into()),
            ]
        })
        .into_iter()
        .collect();
    if started.elapsed() > Duration::from_secs(120) {
        eprintln!(
            "warning: {workload} on {} took {:?}",
            server.name,
            started.elapsed()
        );
    }
    Run {
        fields,
        peak_rss_kb: peak,
        total_cpu_ms: cpu1 - cpu0,
    }
}

struct Metric {
    key: &'static str,
    label: &'static str,
}

const fn m(key: &'static str, label: &'static str) -> Metric {
    Metric { key, label }
}

fn metrics(workload: &str) -> Vec<Metric> {
    match workload {
        "echo" => vec![
            m("msgs_per_s", "msgs/s"),
            m("p50_us", "p50 us"),
            m("p99_us", "p99 us"),
            m("cpu_ns_per_msg", "cpu ns/msg"),
            m("rss_kb", "rss KiB"),
        ],
        "fanout" | "broadcast" => vec![
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
        _ => vec![],
    }
}

fn value(run: &Run, key: &str) -> f64 {
    if key == "peak_rss_kb" {
        run.peak_rss_kb
    } else {
        run.num(key)
    }
}

/// Prints the workload's table and returns its target lines.
fn report(workload: &str, servers: &[Server], runs: &BTreeMap<&str, Vec<Run>>) -> Vec<String> {
    let ms = metrics(workload);
    println!("\n== {workload}: medians over valid runs ==");
    print!("{:<16}", "server");
    for mt in &ms {
        print!("{:>15}", mt.label);
    }
    println!("{:>8}", "valid");
    let mut med: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    for s in servers {
        let Some(rs) = runs.get(s.name) else { continue };
        let valid: Vec<&Run> = rs.iter().filter(|r| r.valid()).collect();
        print!("{:<16}", s.name);
        for mt in &ms {
            let mut v: Vec<f64> = valid.iter().map(|r| value(r, mt.key)).collect();
            let x = median(&mut v);
            med.entry(s.name).or_default().insert(mt.key, x);
            print!("{:>15}", fmt_num(x));
        }
        println!("{:>8}", format!("{}/{}", valid.len(), rs.len()));
    }
    let ours = med.get("rakit").cloned().unwrap_or_default();
    for s in servers.iter().filter(|s| s.name != "rakit") {
        let Some(theirs) = med.get(s.name) else {
            continue;
        };
        print!("{:<16}", format!("rakit/{}", short(s.name)));
        for mt in &ms {
            let r = ours.get(mt.key).copied().unwrap_or(f64::NAN)
                / theirs.get(mt.key).copied().unwrap_or(f64::NAN);
            let cell = if r.is_finite() {
                format!("{r:.2}x")
            } else {
                "-".to_owned()
            };
            print!("{cell:>15}");
        }
        println!();
    }
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
    let mut t = Vec::new();
    match workload {
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
            let b = ours.get("rss_per_conn_b").copied().unwrap_or(f64::NAN);
            t.push(format!(
                "idle rss per connection               {b:>6.0} B  (target <= 512 B)     {}",
                verdict(b <= 512.0)
            ));
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

fn short(name: &str) -> &str {
    match name {
        "fastwebsockets" => "fws",
        "tungstenite-mt" => "tung-mt",
        "tungstenite-ct" => "tung-ct",
        n => n,
    }
}

fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}
