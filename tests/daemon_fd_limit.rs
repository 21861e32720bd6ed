//! Out of file descriptors: the daemon keeps serving the clients it has,
//! backs off accepting instead of spinning, and accepts again once
//! descriptors free up.

mod common;

use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ").expect("stat format").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[track_caller]
fn echo_once(ws: &mut Client, text: &str) {
    ws.send(Message::Text(text.to_owned())).expect("send");
    assert_eq!(recv_text(ws), text);
}

#[test]
fn out_of_descriptors_keeps_serving_and_recovers() {
    let dir = scratch_dir();
    let cfg = dir.join("websocket.toml");
    std::fs::write(&cfg, "logging_level = \"warn\"\n").unwrap();
    // A hard limit of 48 descriptors: the daemon cannot raise it.
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 48 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_rakit"))
        .args(["websocket:run", "--port=0", "--echo"])
        .arg(format!("--config={}", cfg.display()))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rakit under ulimit");
    let daemon = daemon_from(child, dir);
    let pid = daemon.child.id();

    let mut first = daemon.ws_at("/");
    echo_once(&mut first, "before");

    // Far more sockets than descriptors: the kernel completes the TCP
    // handshakes, the daemon's accepts fail with EMFILE.
    let hogs: Vec<TcpStream> = (0..80).map(|_| daemon.tcp()).collect();

    // The daemon saw the failure (so this test exercises it) ...
    let line = daemon.wait_for_line("accept failed");
    assert!(line.contains("pausing accepts"), "{line}");

    // ... and the client it has is still served, several times over.
    for i in 0..5 {
        echo_once(&mut first, &format!("during {i}"));
    }

    // And it is not spinning on a listener that stays readable: over one
    // second, well under half a core (a busy loop would use all of it).
    let ticks_per_s = 100; // USER_HZ on Linux
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    assert!(used < ticks_per_s / 2, "daemon used {used} ticks in 1 s");

    // Descriptors free up: new clients get in again.
    drop(hogs);
    let deadline = Instant::now() + WAIT;
    let mut second = loop {
        match tungstenite::connect(daemon.url()) {
            Ok((ws, _)) => break ws,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("no new client accepted after descriptors freed: {e}"),
        }
    };
    set_timeout(&second);
    echo_once(&mut second, "after");
    echo_once(&mut first, "still here");
}
