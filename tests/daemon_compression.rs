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

#[test]
fn window_bits_are_honoured_and_bad_offers_declined() {
    let daemon = Daemon::start(ON, &["--echo"]);
    let mut s = deflate_ws(
        &daemon,
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=9",
    );
    let text: String = (0..2000).map(|i| format!("{} ", i % 37)).collect();
    send_frame(&mut s, true, OpCode::Text, text.as_bytes());
    let f = read_frame(&mut s);
    assert_eq!(f.byte0, 0xc1);
    assert_eq!(inflate(&f.payload), text.as_bytes());
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
