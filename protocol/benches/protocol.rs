//! Throughput of the hot paths: unmasking, frame decoding through
//! `Connection::read`, UTF-8 validation, frame encoding and the handshake.
//!
//! `cargo bench -p rakit-protocol --bench protocol` (about two minutes; the
//! warm-up and measurement times are set below and can be overridden on the
//! command line, e.g. `-- --measurement-time 5`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rakit_protocol::handshake::Decoder;
use rakit_protocol::mask::{apply_mask, apply_mask_naive};
use rakit_protocol::{encode_frame, encode_masked, utf8, Connection, Event, Limits, OpCode};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn label(size: usize) -> String {
    match size {
        s if s >= MIB => format!("{} MiB", s / MIB),
        s if s >= KIB => format!("{} KiB", s / KIB),
        s => format!("{s} B"),
    }
}

/// Bytes that are not all equal, so nothing can be folded away.
fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 + 7) as u8).collect()
}

/// JSON-ish ASCII text of exactly `size` bytes.
fn ascii_text(size: usize) -> String {
    let unit = r#"{"type":"message","channel":"general","text":"hello, world"},"#;
    unit.chars().cycle().take(size).collect()
}

/// Text of exactly `size` bytes made of 2-, 3- and 4-byte characters (and
/// some ASCII), so the ASCII fast path of the validator does not apply.
fn multibyte_text(size: usize) -> String {
    let unit = "κόσμε мир 世界 🎉 ";
    let mut s = String::with_capacity(size);
    for c in unit.chars().cycle() {
        if s.len() + c.len_utf8() > size {
            break;
        }
        s.push(c);
    }
    while s.len() < size {
        s.push('.');
    }
    s
}

fn limits(max: usize) -> Limits {
    Limits {
        max_message_size: max,
        ..Limits::default()
    }
}

fn masked_frame(opcode: OpCode, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    encode_masked(&mut frame, true, opcode, data, KEY);
    frame
}

/// (a) Unmasking in place: the word-at-a-time loop against the byte loop.
fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for size in [16, KIB, 64 * KIB, MIB] {
        group.throughput(Throughput::Bytes(size as u64));
        let mut buf = payload(size);
        group.bench_function(BenchmarkId::new("fast", label(size)), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), black_box(0)))
        });
        group.bench_function(BenchmarkId::new("naive", label(size)), |b| {
            b.iter(|| apply_mask_naive(black_box(&mut buf), black_box(KEY), black_box(0)))
        });
    }
    group.finish();
}

/// Reads one whole frame from a fresh copy of `frame` (copied outside the
/// timed part, since `read` unmasks in place) and checks what came out.
fn bench_read(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    frame: &[u8],
    data_len: usize,
    text: bool,
) {
    let batch = if frame.len() > 256 * KIB {
        BatchSize::LargeInput
    } else {
        BatchSize::SmallInput
    };
    let limits = limits(data_len.max(16));
    group.bench_function(id, |b| {
        b.iter_batched_ref(
            || (Connection::open(limits), frame.to_vec(), Vec::new()),
            |(conn, input, out)| {
                let (n, event) = conn.read(black_box(input), out).unwrap();
                let got = match event {
                    Some(Event::Binary(data)) if !text => data.len(),
                    Some(Event::Text(data)) if text => data.len(),
                    other => panic!("unexpected {other:?}"),
                };
                assert_eq!(got, data_len);
                n
            },
            batch,
        )
    });
}

/// (b) Header decode + unmask of one binary frame through `Connection::read`.
fn read_binary(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_binary");
    for size in [16, KIB, 64 * KIB, MIB] {
        group.throughput(Throughput::Bytes(size as u64));
        let frame = masked_frame(OpCode::Binary, &payload(size));
        bench_read(
            &mut group,
            BenchmarkId::from_parameter(label(size)),
            &frame,
            size,
            false,
        );
    }
    group.finish();
}

/// (c) Header decode + unmask + UTF-8 validation of one text frame.
fn read_text(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_text");
    for (kind, size, text) in [
        ("ascii", KIB, ascii_text(KIB)),
        ("ascii", 64 * KIB, ascii_text(64 * KIB)),
        ("multibyte", 64 * KIB, multibyte_text(64 * KIB)),
    ] {
        assert_eq!(text.len(), size);
        group.throughput(Throughput::Bytes(size as u64));
        let frame = masked_frame(OpCode::Text, text.as_bytes());
        bench_read(
            &mut group,
            BenchmarkId::new(kind, label(size)),
            &frame,
            size,
            true,
        );
    }
    group.finish();
}

/// (d) Encoding a server frame into a reused buffer.
fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_frame");
    for size in [16, KIB, 64 * KIB] {
        group.throughput(Throughput::Bytes(size as u64));
        let data = payload(size);
        let mut out = Vec::with_capacity(size + 14);
        group.bench_function(BenchmarkId::from_parameter(label(size)), |b| {
            b.iter(|| {
                out.clear();
                encode_frame(&mut out, OpCode::Binary, black_box(&data));
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// (e) UTF-8 validation alone.
fn validate_utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8_validate");
    for (kind, text) in [
        ("ascii", ascii_text(64 * KIB)),
        ("multibyte", multibyte_text(64 * KIB)),
    ] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(BenchmarkId::new(kind, "64 KiB"), |b| {
            b.iter(|| utf8::validate(black_box(text.as_bytes()), 0, true))
        });
    }
    group.finish();
}

/// (f) A typical browser upgrade request: finding its end and parsing it,
/// then also validating it (SHA-1 + base64 of the accept key).
fn handshake(c: &mut Criterion) {
    let request: &[u8] = b"GET /ws?token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl HTTP/1.1\r\n\
Host: chat.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://chat.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: theme=dark; lang=en\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    let limits = Limits::default();
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Bytes(request.len() as u64));
    group.bench_function(
        BenchmarkId::new("decode", format!("{} B", request.len())),
        |b| {
            b.iter(|| {
                let (req, n) = Decoder::default()
                    .decode(black_box(request), &limits)
                    .unwrap()
                    .unwrap();
                assert_eq!(n, request.len());
                req
            })
        },
    );
    group.bench_function(
        BenchmarkId::new("decode+validate", format!("{} B", request.len())),
        |b| {
            b.iter(|| {
                let (req, _) = Decoder::default()
                    .decode(black_box(request), &limits)
                    .unwrap()
                    .unwrap();
                req.validate().unwrap()
            })
        },
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = unmask, read_binary, read_text, encode, validate_utf8, handshake
}
criterion_main!(benches);
