//! TLS (SPEC section 12): certificates made by the `openssl` CLI in the test
//! (a CA and a leaf it signs), rustls as an independent client, and the
//! daemon's edges: plain text on a TLS port, a stalled handshake, a reload
//! on SIGHUP, config errors.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tls::make_certs;
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::Message;

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

fn client_config(ca: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS connection to the daemon, its handshake done.
fn tls_connect(daemon: &Daemon, ca: &Path) -> Result<TlsStream, std::io::Error> {
    let tcp = daemon.tcp();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(client_config(ca), name).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

struct Tls {
    daemon: Daemon,
    dir: PathBuf,
}

impl Tls {
    fn start(extra_toml: &str, flags: &[&str]) -> Tls {
        let dir = scratch_dir();
        make_certs(&dir, "a");
        let toml = format!(
            "logging_level = \"info\"\n{extra_toml}\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.join("a.pem").display(),
            dir.join("a.key").display()
        );
        Tls {
            daemon: Daemon::start(&toml, flags),
            dir,
        }
    }

    fn ca(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-ca.pem"))
    }

    fn ws(&self) -> tungstenite::WebSocket<TlsStream> {
        let stream = tls_connect(&self.daemon, &self.ca("a")).expect("TLS handshake");
        assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let url = format!("wss://localhost:{}/", self.daemon.addr.port());
        let (ws, _) = tungstenite::client(url, stream).expect("WebSocket handshake");
        ws
    }
}

/// The next `{"type":"message"}` (presence updates come and go).
fn next_message(ws: &mut tungstenite::WebSocket<TlsStream>) -> serde_json::Value {
    loop {
        if let Message::Text(t) = ws.read().unwrap() {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "message" {
                return v;
            }
        }
    }
}

#[test]
fn websocket_and_http_over_tls() {
    let tls = Tls::start("", &[]);
    let mut a = tls.ws();
    let mut b = tls.ws();
    let welcome = |ws: &mut tungstenite::WebSocket<TlsStream>| match ws.read().unwrap() {
        Message::Text(t) => serde_json::from_str::<serde_json::Value>(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(welcome(&mut a)["type"], "welcome");
    assert_eq!(welcome(&mut b)["type"], "welcome");
    a.send(Message::text(r#"{"message":"over tls"}"#)).unwrap();
    for ws in [&mut a, &mut b] {
        let m = next_message(ws);
        assert_eq!(
            (m["type"].as_str(), m["message"].as_str()),
            (Some("message"), Some("over tls"))
        );
    }
    a.close(None).unwrap();
    // /health over https.
    let mut s = tls_connect(&tls.daemon, &tls.ca("a")).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn large_messages_both_ways() {
    let tls = Tls::start(
        "max_buffer_size = 4194304\nmax_send_buffer = 8388608\n",
        &["--echo"],
    );
    let mut ws = tls.ws();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for _ in 0..2 {
        ws.send(Message::binary(big.clone())).unwrap();
    }
    for i in 0..200 {
        ws.send(Message::text(format!("small {i}"))).unwrap();
    }
    for _ in 0..2 {
        match ws.read().unwrap() {
            Message::Binary(b) => assert!(b[..] == big[..], "echo differs"),
            other => panic!("{other:?}"),
        }
    }
    for i in 0..200 {
        assert_eq!(ws.read().unwrap(), Message::text(format!("small {i}")));
    }
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

#[test]
fn plain_text_on_a_tls_port_is_refused_cleanly() {
    let tls = Tls::start("", &[]);
    let (mut s, _) = (tls.daemon.tcp(), ());
    s.write_all(&upgrade_request("/", "")).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    // A TLS alert record (content type 21), never an HTTP answer.
    assert!(!got.starts_with(b"HTTP"), "{got:?}");
    assert!(got.is_empty() || got[0] == 21, "{got:?}");
    // The daemon serves on.
    let mut ws = tls.ws();
    assert!(matches!(ws.read().unwrap(), Message::Text(_)));
    assert!(
        !tls.daemon.log_lines().iter().any(|l| l.contains("connect:")
            && !l.contains("disconnect")
            && l.matches("connect:").count() > 1)
    );
}

#[test]
fn a_stalled_tls_handshake_is_dropped_at_handshake_timeout() {
    let tls = Tls::start("handshake_timeout = 1\n", &[]);
    // Half a ClientHello: a record header promising 512 bytes, then 5 of them.
    let mut s = tls.daemon.tcp();
    s.write_all(&[22, 3, 1, 2, 0, 1, 0, 1, 252, 3]).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = loop {
        match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    let waited = start.elapsed();
    assert!(matches!(n, Ok(0)) || n.is_err(), "{n:?}");
    assert!(waited >= Duration::from_millis(800), "{waited:?}");
    assert!(waited < Duration::from_secs(1) + SLACK, "{waited:?}");
    // No event fired for it.
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !tls.daemon
            .log_lines()
            .iter()
            .any(|l| l.contains("connect:")),
        "{:?}",
        tls.daemon.log_lines()
    );
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections() {
    let tls = Tls::start("", &[]);
    let mut old = tls.ws();
    assert!(matches!(old.read().unwrap(), Message::Text(_)));
    // New files from another CA, in place.
    make_certs(&tls.dir, "b");
    std::fs::copy(tls.dir.join("b.pem"), tls.dir.join("a.pem")).unwrap();
    std::fs::copy(tls.dir.join("b.key"), tls.dir.join("a.key")).unwrap();
    let hup = || {
        let status = Command::new("kill")
            .args(["-HUP", &tls.daemon.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    hup();
    tls.daemon.wait_for_line("TLS certificate reloaded");
    assert!(tls_connect(&tls.daemon, &tls.ca("a")).is_err(), "old CA");
    tls_connect(&tls.daemon, &tls.ca("b")).expect("new CA");
    // The connection made before goes on with its own session.
    old.send(Message::text(r#"{"message":"still here"}"#))
        .unwrap();
    assert_eq!(next_message(&mut old)["message"], "still here");
    // A bad file: logged, and the last good certificate stays.
    std::fs::write(tls.dir.join("a.pem"), "not a certificate").unwrap();
    hup();
    let line = tls.daemon.wait_for_line("not reloaded");
    assert!(line.contains("tls.cert"), "{line}");
    tls_connect(&tls.daemon, &tls.ca("b")).expect("still the new CA");
}

#[test]
fn tls_config_errors_name_the_key() {
    let dir = scratch_dir();
    make_certs(&dir, "a");
    let cases = [
        (
            format!("[tls]\ncert = \"{}\"\n", dir.join("a.pem").display()),
            "tls.key",
        ),
        (
            format!("[tls]\nkey = \"{}\"\n", dir.join("a.key").display()),
            "tls.cert",
        ),
        (
            format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                dir.join("missing.pem").display(),
                dir.join("a.key").display()
            ),
            "tls.cert",
        ),
        (
            format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                dir.join("a.pem").display(),
                dir.join("a.pem").display()
            ),
            "tls.key",
        ),
    ];
    for (toml, key) in cases {
        let cfg = dir.join("bad.toml");
        std::fs::write(&cfg, &toml).unwrap();
        let done = run_to_exit(
            rakit()
                .arg("websocket:run")
                .arg("--port=0")
                .arg(format!("--config={}", cfg.display())),
        );
        assert_eq!(done.code, Some(2), "{toml}: {done:?}");
        assert!(done.stderr.contains(key), "{toml}: {}", done.stderr);
        assert_eq!(done.stderr.lines().count(), 1, "{}", done.stderr);
    }
}

/// Resident memory per idle connection, plain and TLS, after the WebSocket
/// handshake (echo mode: no router state). A measurement, not a check:
/// `cargo test --release --test daemon_tls -- --ignored --nocapture`
/// (RAKIT_IDLE_CONNECTIONS, default 10000).
#[test]
#[ignore]
fn idle_memory_per_connection() {
    let n: usize = std::env::var("RAKIT_IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let tls = Tls::start(&format!("max_connections = {}\n", n + 10), &["--echo"]);
    let plain = Daemon::start(
        &format!("max_connections = {}\nlogging_level = \"warn\"\n", n + 10),
        &["--echo"],
    );
    let request = upgrade_request("/", "");
    let settle = || std::thread::sleep(Duration::from_millis(500));
    let measure = |daemon: &Daemon, open: &mut dyn FnMut() -> Box<dyn std::any::Any>| {
        settle();
        let before = vm_rss_kib(daemon.child.id());
        let held: Vec<_> = (0..n).map(|_| open()).collect();
        settle();
        let after = vm_rss_kib(daemon.child.id());
        drop(held);
        (
            after.saturating_sub(before) as f64 * 1024.0 / n as f64,
            before,
            after,
        )
    };
    let (p, p0, p1) = measure(&plain, &mut || {
        let (s, head) = raw_handshake(&plain, &request);
        assert_eq!(status_of(&head), 101);
        Box::new(s)
    });
    let ca = tls.ca("a");
    let (t, t0, t1) = measure(&tls.daemon, &mut || {
        let mut s = tls_connect(&tls.daemon, &ca).unwrap();
        s.write_all(&request).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));
        Box::new(s)
    });
    eprintln!(
        "{n} idle connections: plain {p:.0} B each ({p0} -> {p1} KiB), \
         TLS {t:.0} B each ({t0} -> {t1} KiB)"
    );
}

const PY_TLS: &str = r#"
import asyncio, json, ssl, sys
from websockets.asyncio.client import connect

async def main(url, ca):
    ctx = ssl.create_default_context(cafile=ca)
    async with connect(url, ssl=ctx, max_size=None) as ws:
        big = "compressed and encrypted " * 8000
        ok = []
        for m in (big, "tiny", big.encode()):
            await ws.send(m)
            ok.append(await ws.recv() == m)
        print(json.dumps({"ext": ws.response.headers.get("Sec-WebSocket-Extensions"),
                          "ok": ok}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"#;

/// Python's `websockets` with its own TLS (OpenSSL) and permessage-deflate,
/// against the echo daemon with both on. Skipped only with RAKIT_SKIP_PYTHON=1.
#[test]
fn python_websockets_over_tls_with_compression() {
    if std::env::var("RAKIT_SKIP_PYTHON").as_deref() == Ok("1") {
        eprintln!("skipped: RAKIT_SKIP_PYTHON=1 (needs python3 with websockets)");
        return;
    }
    let tls = Tls::start(
        "compression = true\nmax_buffer_size = 1048576\n",
        &["--echo"],
    );
    let url = format!("wss://localhost:{}/", tls.daemon.addr.port());
    let output = Command::new("python3")
        .args(["-c", PY_TLS, &url, tls.ca("a").to_str().unwrap()])
        .output()
        .expect("python3 (or set RAKIT_SKIP_PYTHON=1)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        out["ext"],
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert_eq!(out["ok"], serde_json::json!([true, true, true]));
}

/// The ciphertext of `plaintext` sent as one TLS record per byte (each
/// `writer().write` call makes its own record), ready to be written to the
/// socket in one go.
fn one_byte_records(conn: &mut ClientConnection, plaintext: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    for b in plaintext {
        assert_eq!(conn.writer().write(std::slice::from_ref(b)).unwrap(), 1);
        while conn.wants_write() {
            conn.write_tls(&mut wire).unwrap();
        }
    }
    wire
}

/// A client sending a message as one-byte TLS records (23 bytes of
/// ciphertext each) does not monopolise the loop: each read takes a bounded
/// amount of ciphertext, as a plain read takes at most its buffer, so a
/// message another client sends meanwhile is delivered first. (When a read
/// went on until 64 KiB of plaintext, the whole message was decrypted in one
/// turn before anyone else was served.)
#[test]
fn tiny_tls_records_do_not_monopolise_the_loop() {
    let tls = Tls::start("presence = false\nmax_buffer_size = 1048576\n", &[]);
    let subscribe = |ws: &mut tungstenite::WebSocket<TlsStream>| {
        ws.send(Message::text(r#"{"event":"subscribe","channel":"c"}"#))
            .unwrap();
        loop {
            if let Message::Text(t) = ws.read().unwrap() {
                if t.contains("\"subscribed\"") {
                    return;
                }
            }
        }
    };
    let mut victim = tls.ws();
    subscribe(&mut victim);
    let mut attacker = tls.ws();
    subscribe(&mut attacker);
    // A channel message of 100 KB, framed and masked, one byte per record.
    let data = "x".repeat(100_000);
    let text = format!(r#"{{"event":"message","channel":"c","data":"{data}"}}"#);
    let mut frame = Vec::new();
    rakit_protocol::encode_masked(
        &mut frame,
        true,
        rakit_protocol::OpCode::Text,
        text.as_bytes(),
        [9, 8, 7, 6],
    );
    let stream = attacker.get_mut();
    let wire = one_byte_records(&mut stream.conn, &frame);
    assert!(wire.len() > 20 * frame.len(), "{} bytes", wire.len());
    let mut socket = stream.sock.try_clone().unwrap();
    let started = std::sync::Arc::new(std::sync::Barrier::new(2));
    let writer = {
        let started = started.clone();
        std::thread::spawn(move || {
            socket.write_all(&wire[..64 * 1024]).unwrap();
            started.wait();
            socket.write_all(&wire[64 * 1024..]).unwrap();
        })
    };
    // The attacker's records are arriving: now the victim publishes.
    started.wait();
    victim
        .send(Message::text(
            r#"{"event":"message","channel":"c","data":"small"}"#,
        ))
        .unwrap();
    let first = loop {
        if let Message::Text(t) = victim.read().unwrap() {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "channel" {
                break v;
            }
        }
    };
    // (Compared by length: the other message is 100 KB of `x`.)
    assert_eq!(
        first["data"].as_str().map(str::len),
        Some("small".len()),
        "the 100 KB message of one-byte records was handled first"
    );
    writer.join().unwrap();
    let second = loop {
        if let Message::Text(t) = victim.read().unwrap() {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "channel" {
                break v;
            }
        }
    };
    assert_eq!(second["data"].as_str().map(str::len), Some(100_000));
}
