//! Installing (SPEC section 18): `cargo install --path . --locked` installs `rakit`, and
//! `dist/rakit-websocket.service` is a hardened systemd unit that `systemd-analyze verify`
//! accepts and whose commands work with this daemon.
//!
//! `systemd-analyze` comes with Debian's `systemd` package, also where systemd does not run
//! (scripts/test.sh installs it). Without it the unit's tests are skipped, unless
//! RAKIT_REQUIRE_SYSTEMD=1 (set by scripts/test.sh), which makes a missing tool a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::ops::RELOADED;
use common::{scratch_dir, Daemon};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn unit_text() -> String {
    std::fs::read_to_string(root().join("dist/rakit-websocket.service")).unwrap()
}

/// Every `Key=value` of the unit's `[section]`, in order.
fn directives(unit: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
        } else if current == section {
            let (k, v) = line.split_once('=').expect("Key=value");
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

/// The last value of `key` in `[Service]` (systemd: later assignments win, empty resets).
#[track_caller]
fn service(unit: &str, key: &str) -> String {
    directives(unit, "Service")
        .into_iter()
        .rfind(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key}= in [Service]"))
        .1
}

/// False (after saying why) when systemd-analyze is missing and may be (tests/common/tools.rs).
#[track_caller]
fn have_systemd_analyze() -> bool {
    common::tools::have(common::tools::Tool::Systemd)
}

/// The unit as installed, but starting this build's binary (verify checks that it exists).
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = unit_text().replace("/usr/local/bin/rakit", env!("CARGO_BIN_EXE_rakit"));
    let path = dir.join("rakit-websocket.service");
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn the_unit_is_hardened_as_the_spec_asks() {
    let unit = unit_text();
    let user = service(&unit, "User");
    assert!(!user.is_empty() && user != "root", "its own user: {user}");
    assert_eq!(service(&unit, "NoNewPrivileges"), "yes");
    assert_eq!(service(&unit, "ProtectSystem"), "strict");
    assert_eq!(service(&unit, "ProtectHome"), "yes");
    assert_eq!(service(&unit, "CapabilityBoundingSet"), "");
    let nofile: u64 = service(&unit, "LimitNOFILE").parse().unwrap();
    assert!(nofile >= 65536, "LimitNOFILE={nofile}");
    assert_eq!(service(&unit, "Restart"), "on-failure");
    assert_eq!(service(&unit, "KillSignal"), "SIGTERM");
    assert_eq!(service(&unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
    // `systemctl start` returns once the daemon says it serves (SPEC 18's restart script).
    assert_eq!(service(&unit, "Type"), "notify");
    // What it may write: the state and logs directories, nothing else.
    assert_eq!(service(&unit, "StateDirectory"), "rakit-websocket");
    assert_eq!(service(&unit, "LogsDirectory"), "rakit-websocket");
    assert!(
        directives(&unit, "Service")
            .iter()
            .all(|(k, _)| k != "ReadWritePaths"),
        "no other writable path"
    );
    // The command line is one this daemon accepts.
    let exec = service(&unit, "ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/rakit"));
    let command = rakit::cli::parse(words.map(str::to_owned)).expect("rakit accepts ExecStart");
    assert!(
        matches!(
            &command,
            rakit::cli::Command::Run { config: Some(path), host: None, port: None, echo: false }
                if path == Path::new("/etc/rakit-websocket/websocket.toml")
        ),
        "{command:?}"
    );
}

#[test]
fn systemd_analyze_verifies_the_unit_without_a_word() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = scratch_dir();
    let unit = unit_for_this_build(&dir);
    assert_verified(&unit);

    // And its own hardening review rates it "OK" or better (exposure below 2 out of 10).
    assert_hardened(&unit);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `systemd-analyze verify` says nothing about the unit file `path`.
#[track_caller]
fn assert_verified(path: &Path) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(path)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    // Unknown keys and bad values are only warnings to systemd: any output is a failure here.
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

/// systemd's own hardening review rates the unit `path` "OK" or better (exposure below 2 out
/// of 10).
#[track_caller]
fn assert_hardened(path: &Path) {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let name = path.file_name().unwrap().to_string_lossy();
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split_once(&format!("Overall exposure level for {name}: ")))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    assert!(exposure < 2.0, "exposure {exposure}:\n{text}");
}

/// The restart without loss with systemd (docs/operations.md): the same unit installed as the
/// template `rakit-websocket@.service`, two instances; verify accepts an instance without a
/// word, and rates it as hardened as the plain unit.
#[test]
fn the_unit_installed_as_a_template_verifies_as_an_instance() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = scratch_dir();
    let plain = unit_for_this_build(&dir);
    std::fs::rename(&plain, dir.join("rakit-websocket@.service")).unwrap();
    let instance = dir.join("rakit-websocket@a.service");
    assert_verified(&instance);
    assert_hardened(&instance);
    let _ = std::fs::remove_dir_all(&dir);
}

/// docs/operations.md shows the restart script that tests/restart.rs runs, word for word (from
/// `set -eu` on; the file's header comment is its own), so the documented one cannot drift.
#[test]
fn the_documented_restart_script_is_the_tested_one() {
    let script = std::fs::read_to_string(root().join("dist/restart-rakit-websocket.sh")).unwrap();
    let body = &script[script.find("set -eu\n").expect("set -eu")..];
    let docs = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    assert!(
        docs.contains(&format!("```sh\n#!/bin/sh\n{body}```\n")),
        "docs/operations.md, \"With a script\", differs from dist/restart-rakit-websocket.sh"
    );
}

/// `Type=notify`: the daemon sends `READY=1` to `NOTIFY_SOCKET` (a path, or `@name` in the
/// abstract namespace, as systemd may give) once it listens, and only then.
#[test]
fn the_daemon_tells_systemd_when_it_serves() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let dir = scratch_dir();
    let path = dir.join("notify.sock");
    let abstract_name = format!("rakit-test-notify-{}", std::process::id());
    let sockets = [
        (
            UnixDatagram::bind(&path).unwrap(),
            path.display().to_string(),
        ),
        (
            UnixDatagram::bind_addr(
                &SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap(),
            )
            .unwrap(),
            format!("@{abstract_name}"),
        ),
    ];
    for (socket, target) in sockets {
        socket.set_read_timeout(Some(common::WAIT)).unwrap();
        let child = common::rakit()
            .current_dir(&dir)
            .args(["websocket:run", "--port=0"])
            .env("NOTIFY_SOCKET", &target)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let sub = scratch_dir();
        let daemon = common::daemon_from(child, sub);
        let mut buf = [0u8; 64];
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification on {target}: {e}"));
        assert_eq!(&buf[..n], b"READY=1", "{target}");
        // It was sent when the daemon served: a client connects and is welcomed.
        let (_ws, welcome) = daemon.client();
        assert_eq!(welcome["type"], "welcome");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exec_reload_reloads_the_running_daemon() {
    let unit = unit_text();
    let daemon = Daemon::start("logging_level = \"info\"\n", &[]);
    // systemd runs ExecReload with $MAINPID set to the daemon's pid.
    let reload = service(&unit, "ExecReload").replace("$MAINPID", &daemon.child.id().to_string());
    let mut words = reload.split_whitespace();
    let status = Command::new(words.next().unwrap())
        .args(words)
        .status()
        .unwrap();
    assert!(status.success());
    daemon.wait_for_line(RELOADED);
}

#[test]
fn cargo_install_locked_finds_a_lock_file_in_step_and_a_rakit_binary() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = root().join("Cargo.toml");
    // `--locked` refuses a Cargo.lock that does not match Cargo.toml: the check
    // `cargo install --locked` makes, without building (offline: every crate is fetched).
    let out = Command::new(&cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-e",
            "normal,build",
            "--depth",
            "0",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Cargo.lock is not in step with Cargo.toml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&cargo)
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(out.status.success());
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let package = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["manifest_path"] == manifest.display().to_string())
        .expect("the root package");
    let bins: Vec<&str> = package["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == serde_json::json!(["bin"]))
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        bins,
        ["rakit"],
        "cargo install --path . installs exactly `rakit`"
    );
    // And the documents tell it that way.
    for doc in ["README.md", "docs/operations.md"] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        assert!(
            text.contains("cargo install --path . --locked"),
            "{doc} shows the install command"
        );
    }
}
