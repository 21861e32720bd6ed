//! permessage-deflate (SPEC section 12): negotiation on the wire, compressed
//! echoes and broadcasts checked by hand, and an independent client (Python
//! `websockets`, installed by scripts/test.sh) for interoperability.

mod common;

use std::process::Command;

use common::*;
use rakit_protocol::deflate::{Deflater, Inflater, Params};
use rakit_protocol::OpCode;
use serde_json::Value;

const ON: &str = "logging_level = \"warn\"\ncompression = true\nmax_buffer_size = 1048576\n";

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

fn params() -> Params {
    Params {
        server_max_window_bits: 15,
        server_bits_requested: false,
    }
}

/// A raw connection that agreed permessage-deflate (its 101 checked).
#[track_caller]
fn deflate_ws(daemon: &Daemon, offer: &str, answer: &str) -> std::net::TcpStream {
    let (s, head) = raw_handshake(daemon, &upgrade_request("/", offer));
    assert_eq!(status_of(&head), 101, "{head}");
    assert!(
        head.contains(&format!("\r\nSec-WebSocket-Extensions: {answer}\r\n")),
        "{head}"
    );
    s
}

/// Sends one compressed (RSV1) masked message.
fn send_compressed(s: &mut std::net::TcpStream, opcode: OpCode, message: &[u8]) {
    use std::io::Write;
    let mut payload = Vec::new();
    Deflater::new(1).compress(&params(), message, &mut payload);
    let mut out = Vec::new();
    rakit_protocol::encode_masked(&mut out, true, opcode, &payload, [1, 2, 3, 4]);
    out[0] |= 0x40;
    s.write_all(&out).unwrap();
}

fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Inflater::default()
        .inflate(payload, 1 << 24, &mut out)
        .unwrap();
    out
}

#[test]
fn echoes_are_compressed_and_small_ones_are_not() {
    let daemon = Daemon::start(ON, &["--echo"]);
    let mut s = deflate_ws(
        &daemon,
        OFFER,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    );
    let text = "{\"type\":\"message\",\"data\":\"hello, world\"} ".repeat(100);
    // Sent plain, echoed compressed.
    send_frame(&mut s, true, OpCode::Text, text.as_bytes());
    let f = read_frame(&mut s);
    assert_eq!(f.byte0, 0xc1, "FIN, RSV1, text");
    assert!(f.payload.len() < text.len() / 10, "{}", f.payload.len());
    assert_eq!(inflate(&f.payload), text.as_bytes());
    // Sent compressed (fragmented), echoed compressed.
    send_compressed(&mut s, OpCode::Binary, text.as_bytes());
    let f = read_frame(&mut s);
    assert_eq!(f.byte0, 0xc2);
    assert_eq!(inflate(&f.payload), text.as_bytes());
    // Under compression_min_size (256): plain.
    send_compressed(&mut s, OpCode::Text, b"short");
    let f = read_frame(&mut s);
    assert_eq!((f.byte0, &f.payload[..]), (0x81, &b"short"[..]));
}

/// Inflates a permessage-deflate payload with Python's zlib (an independent inflater) held to
/// a `bits`-bit window, a few bytes of output per call: zlib only checks a distance against
/// its window when it reaches before the current call's output, so with everything in one
/// call a window too small would go unnoticed.
fn inflate_with_window(payload: &[u8], bits: u8) -> Result<Vec<u8>, String> {
    const PY: &str = r#"
import sys, zlib
data = sys.stdin.buffer.read() + b"\x00\x00\xff\xff"
d = zlib.decompressobj(wbits=-int(sys.argv[1]))
out = b""
try:
    while data:
        out += d.decompress(data, 64)
        data = d.unconsumed_tail
except zlib.error as e:
    sys.stderr.write(str(e))
    sys.exit(3)
sys.stdout.buffer.write(out)
"#;
    let mut child = Command::new("python3")
        .args(["-c", PY, &bits.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), payload).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `server_max_window_bits=9` (RFC 7692 7.1.2.1): what the server compresses must inflate in
/// a 512-byte window. The message repeats a 992-byte block, so a 15-bit compressor reaches
/// back 992 bytes, which a 9-bit inflater refuses.
#[test]
fn window_bits_are_honoured_and_bad_offers_declined() {
    if common::api::skip_python() {
        return;
    }
    let daemon = Daemon::start(ON, &["--echo"]);
    let mut s = deflate_ws(
        &daemon,
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=9",
    );
    // Words of 8 random letters, each written twice (something to compress within a small
    // window), 992 bytes of them; then the whole block again twice.
    let mut seed = 0x2545_f491_u32;
    let mut letter = || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        char::from(b'a' + (seed >> 16) as u8 % 26)
    };
    let block: String = (0..62)
        .map(|_| (0..8).map(|_| letter()).collect::<String>().repeat(2))
        .collect();
    let text = block.repeat(3);
    send_frame(&mut s, true, OpCode::Text, text.as_bytes());
    let f = read_frame(&mut s);
    assert_eq!(f.byte0, 0xc1);
    let inflated = inflate_with_window(&f.payload, 9);
    assert_eq!(inflated.map(|out| out == text.as_bytes()), Ok(true));
    // The default offer gets the whole 15-bit window, which the 992-byte distance needs:
    // the same message is then smaller, and a 9-bit inflater refuses it (so the check above
    // can fail).
    let mut wide = deflate_ws(
        &daemon,
        OFFER,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    );
    send_frame(&mut wide, true, OpCode::Text, text.as_bytes());
    let w = read_frame(&mut wide);
    assert_eq!(inflate(&w.payload), text.as_bytes());
    assert!(
        w.payload.len() < f.payload.len(),
        "{} / {}",
        w.payload.len(),
        f.payload.len()
    );
    let refused = inflate_with_window(&w.payload, 9).unwrap_err();
    assert!(refused.contains("too far back"), "{refused}");
    // Malformed offers: served uncompressed, RSV1 is then 1002.
    for offer in [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; x=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    ] {
        let (mut s, head) = raw_handshake(
            &daemon,
            &upgrade_request("/", &format!("Sec-WebSocket-Extensions: {offer}\r\n")),
        );
        assert_eq!(status_of(&head), 101, "{head}");
        assert!(
            !head.contains("Sec-WebSocket-Extensions"),
            "{offer}: {head}"
        );
        send_compressed(&mut s, OpCode::Text, b"hello");
        expect_close(&mut s, 1002);
    }
}

#[test]
fn off_by_default() {
    let daemon = Daemon::start("logging_level = \"warn\"\n", &["--echo"]);
    let (mut s, head) = raw_handshake(&daemon, &upgrade_request("/", OFFER));
    assert_eq!(status_of(&head), 101, "{head}");
    assert!(!head.contains("Sec-WebSocket-Extensions"), "{head}");
    send_compressed(&mut s, OpCode::Text, b"hello");
    expect_close(&mut s, 1002);
}

#[test]
fn a_zip_bomb_closes_1009_and_bad_data_1002() {
    let daemon = Daemon::start(ON, &["--echo"]);
    let mut s = deflate_ws(
        &daemon,
        OFFER,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    );
    // 8 MiB of zeros compress to about 8 KiB; the limit is 1 MiB inflated.
    send_compressed(&mut s, OpCode::Binary, &vec![0; 8 << 20]);
    expect_close(&mut s, 1009);
    let mut s = deflate_ws(
        &daemon,
        OFFER,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    );
    let mut out = Vec::new();
    rakit_protocol::encode_masked(&mut out, true, OpCode::Text, &[0xff; 8], [1, 2, 3, 4]);
    out[0] |= 0x40;
    std::io::Write::write_all(&mut s, &out).unwrap();
    expect_close(&mut s, 1002);
    // Compressed text that inflates to invalid UTF-8: 1007.
    let mut s = deflate_ws(
        &daemon,
        OFFER,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    );
    send_compressed(&mut s, OpCode::Text, b"ok \xff");
    expect_close(&mut s, 1007);
}

/// SPEC 12: memory per compressed connection is bounded and documented (README: a few bytes
/// of protocol state; the compressors, one per window size in use, about 300 KiB each, and
/// the one inflater, about 40 KiB, are shared by every connection). 200 connections that
/// agreed permessage-deflate, over all seven window sizes, each with a message inflated and
/// one compressed, may cost no more than 200 plain ones plus the shared contexts and 1 KiB
/// each. A context per connection would cost hundreds of KiB each.
#[test]
fn compressed_connections_share_their_contexts() {
    let daemon = Daemon::start(&format!("{ON}max_connections = 1000\n"), &["--echo"]);
    let n = 200;
    let pid = daemon.child.id();
    let text = "{\"type\":\"message\",\"data\":\"hello, world\"} ".repeat(20);
    let rss0 = vm_rss_kib(pid);
    let plain: Vec<std::net::TcpStream> = (0..n)
        .map(|_| {
            let mut s = raw_ws(&daemon);
            send_frame(&mut s, true, OpCode::Text, text.as_bytes());
            assert_eq!(read_frame(&mut s).payload, text.as_bytes());
            s
        })
        .collect();
    let rss1 = vm_rss_kib(pid);
    let compressed: Vec<std::net::TcpStream> = (0..n)
        .map(|i| {
            let bits = 9 + i % 7;
            let base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
            let mut s = deflate_ws(
                &daemon,
                &format!(
                    "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits={bits}\r\n"
                ),
                &format!("{base}; server_max_window_bits={bits}"),
            );
            send_compressed(&mut s, OpCode::Text, text.as_bytes());
            let f = read_frame(&mut s);
            assert_eq!(f.byte0, 0xc1);
            assert_eq!(inflate(&f.payload), text.as_bytes());
            s
        })
        .collect();
    let rss2 = vm_rss_kib(pid);
    let (plain_kib, compressed_kib) = (rss1.saturating_sub(rss0), rss2.saturating_sub(rss1));
    eprintln!("{n} connections: plain +{plain_kib} KiB, compressed +{compressed_kib} KiB");
    let shared_kib = 7 * 300 + 40;
    assert!(
        compressed_kib <= plain_kib + shared_kib + n as u64,
        "{n} compressed connections cost {compressed_kib} KiB, {n} plain ones {plain_kib} KiB"
    );
    drop((plain, compressed));
}

const PY_CLIENT: &str = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.exceptions import ConnectionClosed

async def welcome(ws):
    return json.loads(await ws.recv())

async def message(ws):
    while True:
        m = json.loads(await ws.recv())
        if m.get("type") == "message":
            return m.get("message")
        if m.get("type") == "error":
            return m

async def main(url):
    out = {}
    big = "hello, compressed world " * 400
    deflate = await connect(url)
    narrow = await connect(url, extensions=[ClientPerMessageDeflateFactory(
        server_max_window_bits=10, client_max_window_bits=True)], compression=None)
    plain = await connect(url, compression=None)
    out["headers"] = [c.response.headers.get("Sec-WebSocket-Extensions") for c in (deflate, narrow, plain)]
    ids = [(await welcome(c))["client_id"] for c in (deflate, narrow, plain)]
    # A broadcast from the plain client reaches all three; one from a deflate
    # client (compressed, fragmented) too.
    await plain.send(json.dumps({"message": big}))
    out["from_plain"] = [await message(c) == big for c in (deflate, narrow, plain)]
    await deflate.send([json.dumps({"message": big})[:100], json.dumps({"message": big})[100:]])
    out["from_deflate"] = [await message(c) == big for c in (deflate, narrow, plain)]
    # A message that inflates past max_buffer_size: 1009.
    await narrow.send(json.dumps({"message": "x" * 2000000}))
    out["bomb"] = None
    try:
        for _ in range(100):  # presence updates may come first
            await asyncio.wait_for(narrow.recv(), 10)
    except ConnectionClosed as e:
        out["bomb"] = e.rcvd.code if e.rcvd else None
    for c in (deflate, plain):
        await c.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1]))
"#;

/// Python's `websockets` (an independent permessage-deflate implementation)
/// against the router: compressed and plain clients share broadcasts.
/// Skipped without python3 and websockets where that is allowed (tests/common/tools.rs).
#[test]
fn an_independent_client_interoperates() {
    if common::api::skip_python() {
        return;
    }
    let daemon = Daemon::start(ON, &[]);
    let output = Command::new("python3")
        .args(["-c", PY_CLIENT, &daemon.url()])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "python3 -m pip install websockets? {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    let base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    assert_eq!(
        out["headers"],
        serde_json::json!([base, format!("{base}; server_max_window_bits=10"), null])
    );
    assert_eq!(out["from_plain"], serde_json::json!([true, true, true]));
    assert_eq!(out["from_deflate"], serde_json::json!([true, true, true]));
    assert_eq!(out["bomb"], 1009);
}
