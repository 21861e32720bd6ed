//! The daemon's life around its clients (SPEC sections 1 and 2): the listen
//! backlog.

mod common;

use std::process::Command;

use common::Daemon;

/// The daemon's listen backlog as the kernel reports it: `ss` shows it as
/// the Send-Q of a listening socket.
#[track_caller]
fn listen_backlog(port: u16) -> u32 {
    let out = Command::new("ss")
        .args(["-ltn", &format!("sport = :{port}")])
        .output()
        .unwrap_or_else(|e| {
            panic!("`ss` (Debian package iproute2) is needed to read the listen backlog: {e}")
        });
    assert!(out.status.success(), "ss failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let row: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| {
            f.first() == Some(&"LISTEN")
                && f.get(3).is_some_and(|a| a.ends_with(&format!(":{port}")))
        })
        .unwrap_or_else(|| panic!("no listening socket on port {port} in: {text}"));
    row[2]
        .parse()
        .unwrap_or_else(|_| panic!("Send-Q in {row:?}"))
}

#[test]
fn the_listen_backlog_holds_a_reconnect_storm() {
    let daemon = Daemon::default_config();
    let backlog = listen_backlog(daemon.addr.port());
    assert!(backlog >= 1024, "listen backlog {backlog}");
}
