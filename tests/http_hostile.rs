//! The HTTP side and the metrics against hostile clients (issue 16): what a
//! client controls must not choose metric labels, stall the loop, pin the
//! port or make the daemon hold its unread answers.

mod common;

use std::io::Write;

use common::api::scrape;
use common::*;
use rakit_protocol::OpCode;

/// The `rakit_closes_total` lines of a scrape.
fn close_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("rakit_closes_total{"))
        .collect()
}

/// `rakit_closes_total{code}` labels only the close codes the server
/// chooses: a client's own close code, echoed back, counts as
/// `code="other"`, so a client cannot make up to 2,000 series.
#[test]
fn closes_label_only_the_servers_own_codes() {
    let daemon = Daemon::start("logging_level = \"warn\"\npresence = false\n", &[]);
    for code in [1000u16, 3000, 3999, 4321, 4999] {
        let mut s = raw_ws(&daemon);
        send_frame(&mut s, true, OpCode::Close, &code.to_be_bytes());
        let echo = loop {
            let f = read_frame(&mut s);
            if f.byte0 == 0x88 {
                break f;
            }
        };
        assert_eq!(echo.close_code(), code, "the echo carries the peer's code");
        expect_eof(&mut s);
    }
    // A code the server chooses keeps its label: an unmasked frame is 1002.
    let mut s = raw_ws(&daemon);
    s.write_all(&[0x81, 0x01, b'x']).unwrap();
    let close = loop {
        let f = read_frame(&mut s);
        if f.byte0 == 0x88 {
            break f;
        }
    };
    assert_eq!(close.close_code(), 1002);
    let text = scrape(daemon.addr, None);
    assert_eq!(
        close_lines(&text),
        [
            "rakit_closes_total{code=\"1002\"} 1",
            "rakit_closes_total{code=\"other\"} 5"
        ],
        "{text}"
    );
}
