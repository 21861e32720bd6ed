//! Runs rakit and its peers alternately (A B C A B C ...) on every workload
//! and prints the medians and the ratios ours/peer, then the targets.
//!
//! ```text
//! compare [--rounds 3] [--workloads echo,fanout,broadcast,idle,api]
//!         [--rakit ../../target/release/rakit] [--config rakit-bench.toml]
//!         [--api-config rakit-api-bench.toml (default: beside --config)]
//!         [--bin-dir DIR_OF_LOADGEN_AND_PEERS] [--raw FILE] [--echo-secs 5]
//!         [--rakit-before OTHER_RAKIT] [--subs N] [--msgs N | --deliveries 16000000]
//!         [--size B] [--peers none] [--default-config rakit-default.toml]
//!         [--deflate-vs-plain CONFIG] [--pusher-vs-rakit CONFIG]
//!         [--redis-server /usr/bin/redis-server] [--redis-tcp]
//!         [--node node] [--node-peer peer-node-ws-redis/server.js]
//!         [--rate 100] [--latency-secs 10] [--latency-subs 100] [--peer-msgs 2000]
//! ```
//! `--rakit-before` runs a second rakit build (e.g. the previous commit's)
//! alternately with the others, as `rakit-before`; `--subs`/`--msgs` set
//! the fan-out and broadcast sizes (without `--msgs`, one node's fan-out sends
//! `--deliveries` / subscribers messages: 16,000 to 1,000 subscribers); `--peers none`
//! runs rakit builds only. The idle workload runs rakit twice: with the bench config
//! (`rakit`) and with every setting at its default (`rakit-default`, an empty config).
//! `--deflate-vs-plain CONFIG` runs rakit (with CONFIG, which turns
//! compression on) twice, alternately: clients offering permessage-deflate
//! (`rakit`) and plain clients (`rakit-plain`), both with chat-like text.
//! `--pusher-vs-rakit CONFIG` runs rakit (with CONFIG, which sets `[pusher]`
//! with key `bench-key`) twice, alternately: Rakit clients on `/` (`rakit`)
//! and Pusher protocol 7 clients on `/app/bench-key` (`rakit-pusher`; on
//! fan-out the subscribers are Pusher clients, the publisher a Rakit one).
//! Each run starts a fresh server process, runs one `loadgen` workload
//! against it (which reads the server's /proc/PID/stat before and after its
//! measured window and /proc/PID/status VmRSS), then kills the server.
//! Build first: `benches/load/run.sh` does both builds and runs this.
//!
//! The cluster workloads (`cluster-fanout`, `cluster-latency`; not in the
//! default list) start, per run, a fresh `redis-server` (no persistence, on a
//! Unix socket in a scratch directory, or with `--redis-tcp` on a free
//! loopback port) and two copies of the server configured to use it; they
//! wait until both have subscribed (`PUBSUB NUMSUB`), then run `loadgen` with
//! both addresses and all three pids. Each is run alternately with the same
//! workload on one server process and no Redis (`rakit-1`, `node-1`).
//! `cluster-fanout` sends `--msgs` (default 10,000) to rakit and
//! `--peer-msgs` (default 2,000) to the much slower Node peer.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rakit_load::{cpu_ms, median, parse_result, Args, API_BENCH_KEY, API_BENCH_SECRET};

mod redis;
mod report;

use redis::*;
use report::*;

#[derive(Clone)]
struct Server {
    name: &'static str,
    program: PathBuf,
    /// `{redis}` is replaced by the Redis location (a socket path or a
    /// `redis://` URL), `{cluster-config}` by a rakit config using it.
    args: Vec<String>,
    /// Added to loadgen's arguments for this server's runs.
    loadgen_extra: Vec<String>,
    /// How many processes (each prints its own address).
    copies: usize,
    /// The pub/sub channel every copy subscribes to at start: with it, a
    /// fresh Redis is started for the run and the run waits for `copies`
    /// subscribers there.
    bus: Option<&'static str>,
}

/// Where Redis listens, and the rakit config written for it.
struct RedisSetup {
    program: PathBuf,
    tcp: bool,
    dir: PathBuf,
    base_config: String,
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
    // An empty file: every setting at its default (no `config/websocket.toml` is read by
    // accident from the working directory).
    let default_config = args.get("default-config").unwrap_or_else(|| {
        Path::new(&config)
            .with_file_name("rakit-default.toml")
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
    let pusher_config = args.get("pusher-vs-rakit");
    let pusher_key = args.get("pusher-key").unwrap_or_else(|| "bench-key".into());
    let scratch = std::env::temp_dir().join(format!("rakit-compare-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let redis = RedisSetup {
        program: args
            .get("redis-server")
            .unwrap_or_else(|| "/usr/bin/redis-server".into())
            .into(),
        tcp: args.flag("redis-tcp"),
        dir: scratch.clone(),
        base_config: std::fs::read_to_string(&config).unwrap_or_default(),
    };
    let peer_msgs = args.get("peer-msgs").unwrap_or_else(|| "2000".into());
    let node = PathBuf::from(args.get("node").unwrap_or_else(|| "node".into()));
    let node_peer = args
        .get("node-peer")
        .unwrap_or_else(|| "peer-node-ws-redis/server.js".into());
    let mut latency_args = Vec::new();
    for (key, flag) in [
        ("rate", "rate"),
        ("latency-secs", "secs"),
        ("latency-subs", "subs"),
    ] {
        if let Some(v) = args.get(key) {
            latency_args.extend([format!("--{flag}"), v]);
        }
    }
    let mut fanout_args = Vec::new();
    for key in ["subs", "msgs", "size"] {
        if let Some(v) = args.get(key) {
            fanout_args.extend([format!("--{key}"), v]);
        }
    }
    // One node's fan-out and broadcast: `--deliveries` (default 16 M) spread over the
    // subscribers, unless `--msgs` is given: 16,000 messages to 1,000 subscribers, 1,000 to
    // 16,000; at 5 to 10 M deliveries a second a run lasts 2 to 3 s, long enough for the CPU
    // clock's 10 ms ticks and the machine's noise to matter little.
    let mut single_fanout_args = fanout_args.clone();
    if args.get("msgs").is_none() {
        let subs: u64 = args.num("subs", 1000);
        let deliveries: u64 = args.num("deliveries", 16_000_000);
        let msgs = (deliveries / subs.max(1)).clamp(1, 999_999);
        single_fanout_args.extend(["--msgs".to_owned(), msgs.to_string()]);
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
        copies: 1,
        bus: None,
    };
    let rakit_server = |echo: bool| rakit_build("rakit", &rakit, echo);
    let peer = |name: &'static str, bin: &str, extra: &[&str]| Server {
        name,
        program: bin_dir.join(bin),
        args: extra.iter().map(|s| s.to_string()).collect(),
        loadgen_extra: Vec::new(),
        copies: 1,
        bus: None,
    };
    // The cluster workloads: one process alone, then two plus Redis.
    let cluster_servers = || {
        vec![
            rakit_build("rakit-1", &rakit, false),
            Server {
                name: "rakit-cluster",
                program: rakit.clone(),
                args: vec![
                    "websocket:run".into(),
                    "--port=0".into(),
                    "--config={cluster-config}".into(),
                ],
                copies: 2,
                bus: Some("rakit:bus"),
                loadgen_extra: Vec::new(),
            },
            Server {
                name: "node-1",
                program: node.clone(),
                args: vec![node_peer.clone(), "--port".into(), "0".into()],
                copies: 1,
                bus: None,
                loadgen_extra: Vec::new(),
            },
            Server {
                name: "node-cluster",
                program: node.clone(),
                args: vec![
                    node_peer.clone(),
                    "--port".into(),
                    "0".into(),
                    "--redis".into(),
                    "{redis}".into(),
                ],
                copies: 2,
                bus: Some("bus:all"),
                loadgen_extra: Vec::new(),
            },
        ]
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
            // SPEC 16: the same fan-out on a history channel (every publication numbered,
            // stored and framed with its offset) against the plain one and the peers.
            "fanout-history" => (
                vec![
                    Server {
                        name: "rakit-history",
                        loadgen_extra: vec!["--channel".into(), "hist.bench".into()],
                        ..rakit_server(false)
                    },
                    rakit_server(false),
                    peer("tungstenite-mt", "peer-tungstenite", &[]),
                    peer("tungstenite-ct", "peer-tungstenite", &["--current-thread"]),
                ],
                single_fanout_args.clone(),
            ),
            "fanout" | "broadcast" => (
                vec![
                    rakit_server(false),
                    peer("tungstenite-mt", "peer-tungstenite", &[]),
                    peer("tungstenite-ct", "peer-tungstenite", &["--current-thread"]),
                ],
                single_fanout_args.clone(),
            ),
            "idle" => (
                vec![
                    rakit_server(false),
                    // The daemon as shipped: no config file (presence on, logging on, SPEC 17's
                    // limits on, max_connections 10,000): what a user's idle connection costs.
                    Server {
                        name: "rakit-default",
                        args: vec![
                            "websocket:run".to_owned(),
                            "--port=0".to_owned(),
                            format!("--config={default_config}"),
                        ],
                        ..rakit_server(false)
                    },
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
                    copies: 1,
                    bus: None,
                }],
                vec![
                    "--key".into(),
                    API_BENCH_KEY.into(),
                    "--token".into(),
                    admin_token(&rakit),
                ],
            ),
            "cluster-fanout" => {
                let mut a = fanout_args.clone();
                if args.get("msgs").is_none() {
                    // 10 M deliveries: long enough for the CPU clock ticks.
                    a.extend(["--msgs".to_owned(), "10000".to_owned()]);
                }
                // The Node peer needs about a minute at a load average of 9.
                a.extend(["--timeout".to_owned(), "240".to_owned()]);
                (cluster_servers(), a)
            }
            "cluster-latency" => (cluster_servers(), latency_args.clone()),
            // SPEC 16: two nodes and Redis, publishing on a history channel (one Lua script
            // per publication) against the same on a plain channel.
            "cluster-fanout-history" => {
                let mut a = fanout_args.clone();
                if args.get("msgs").is_none() {
                    a.extend(["--msgs".to_owned(), "10000".to_owned()]);
                }
                a.extend(["--timeout".to_owned(), "240".to_owned()]);
                let plain = cluster_servers().swap_remove(1);
                let history = Server {
                    name: "rakit-cluster-history",
                    loadgen_extra: vec!["--channel".into(), "hist.bench".into()],
                    ..plain.clone()
                };
                (vec![history, plain], a)
            }
            other => panic!("unknown workload {other}"),
        };
        let (mut servers, loadgen_args) = (servers, loadgen_args);
        if no_peers {
            servers.retain(|s| s.name.starts_with("rakit"));
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
        if let Some(pusher_config) = &pusher_config {
            // The same daemon and config (`[pusher]` set) twice: Rakit
            // clients, and Pusher clients on /app/KEY.
            let mut ours = rakit_server(false);
            ours.args[2] = format!("--config={pusher_config}");
            let mut pusher = Server {
                name: "rakit-pusher",
                ..ours.clone()
            };
            pusher.loadgen_extra = vec!["--pusher".to_owned(), pusher_key.clone()];
            servers = vec![ours, pusher];
        }
        let mut runs: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
        for round in 1..=rounds {
            for server in &servers {
                let mut loadgen_args = loadgen_args.clone();
                if workload.starts_with("cluster-fanout") && server.name.starts_with("node") {
                    // The Node peer is some 50 times slower: fewer messages
                    // keep its runs under a minute (rates and CPU per
                    // delivery do not depend on the count).
                    if let Some(i) = loadgen_args.iter().position(|a| a == "--msgs") {
                        loadgen_args[i + 1] = peer_msgs.clone();
                    }
                }
                let run = run_one(&bin_dir, server, workload, &loadgen_args, &redis);
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
    let _ = std::fs::remove_dir_all(&scratch);
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

fn spawn_server(server: &Server, subst: &[(&str, String)]) -> (Child, String) {
    let args = server.args.iter().map(|a| {
        subst
            .iter()
            .fold(a.clone(), |a, (from, to)| a.replace(from, to))
    });
    let mut child = Command::new(&server.program)
        .args(args)
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

fn run_one(
    bin_dir: &Path,
    server: &Server,
    workload: &str,
    extra: &[String],
    redis_setup: &RedisSetup,
) -> Run {
    let redis = server.bus.map(|_| RedisRun::start(redis_setup));
    let mut subst = Vec::new();
    if let Some(r) = &redis {
        let path = redis_setup
            .dir
            .join(format!("cluster-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            format!(
                "{}\n[cluster]\nredis_url = \"{}\"\n",
                redis_setup.base_config, r.url
            ),
        )
        .expect("cluster config");
        subst.push(("{cluster-config}", path.display().to_string()));
        subst.push(("{redis}", r.location.clone()));
    }
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..server.copies {
        let (child, addr) = spawn_server(server, &subst);
        children.push(child);
        addrs.push(addr);
    }
    if let (Some(r), Some(bus)) = (&redis, server.bus) {
        r.wait_subscribers(bus, server.copies);
    }
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    let redis_pid = redis.as_ref().map(|r| r.child.id());
    let all_pids: Vec<u32> = pids.iter().copied().chain(redis_pid).collect();
    std::thread::sleep(Duration::from_millis(200));
    let total_cpu = || -> f64 {
        all_pids
            .iter()
            .map(|&p| cpu_ms(p).unwrap_or(f64::NAN))
            .sum()
    };
    let cpu0 = total_cpu();
    let started = Instant::now();
    let loadgen_workload = workload.strip_prefix("cluster-").unwrap_or(workload);
    // The history variants are the same fan-out on another channel (`--channel`).
    let loadgen_workload = loadgen_workload
        .strip_suffix("-history")
        .unwrap_or(loadgen_workload);
    let join = |v: &[String]| v.join(",");
    let mut cmd = Command::new(bin_dir.join("loadgen"));
    cmd.arg(loadgen_workload)
        .args(["--addr", &join(&addrs), "--server", server.name])
        .args([
            "--server-pid",
            &join(&pids.iter().map(u32::to_string).collect::<Vec<_>>()),
        ]);
    if let Some(p) = redis_pid {
        cmd.args(["--redis-pid", &p.to_string()]);
    }
    let out = cmd
        .args(extra)
        .args(&server.loadgen_extra)
        .stderr(Stdio::inherit())
        .output()
        .expect("loadgen");
    let cpu1 = total_cpu();
    let peak: f64 = all_pids.iter().map(|&p| peak_rss_kb(p)).sum();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(redis);
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
