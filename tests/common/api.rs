//! A raw HTTP/1.1 client for the HTTP side of the port (SPEC sections 8, 9
//! and 14; tests/api_*.rs): requests are written as the exact bytes a test
//! gives, responses are read by their `Content-Length` over a persistent
//! connection, so keep-alive, pipelining and closes can be observed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::WAIT;

/// The API key the tests configure (`[api] key`, at least 16 characters).
pub const API_KEY: &str = "api-key-for-tests-0123456789";

/// `[api] key = API_KEY` as a TOML table (append it after top-level keys).
pub fn api_table() -> String {
    format!("[api]\nkey = \"{API_KEY}\"\n")
}

/// One parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The status line and headers, as received.
    pub head: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of the first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a UTF-8 body")
    }

    /// The body as JSON, after checking `Content-Type: application/json`
    /// (SPEC section 8: every API response).
    #[track_caller]
    pub fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "an API response is JSON: {self:?}"
        );
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Whether the server announced it closes the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A raw connection to the HTTP side; responses are read in order.
pub struct Http {
    pub stream: TcpStream,
    /// Bytes read past the last response.
    buf: Vec<u8>,
}

impl Http {
    /// A new connection to `addr` with the tests' read timeout.
    pub fn connect(addr: SocketAddr) -> Http {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Http {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads responses from an already connected stream.
    pub fn from_stream(stream: TcpStream) -> Http {
        Http {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes` as they are.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write the request");
    }

    /// One read into the buffer; `false` at end of file or reset.
    #[track_caller]
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return false,
                Err(e) => panic!(
                    "reading a response: {e}; so far: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Reads the next whole response. Every response must have a
    /// `Content-Length` that the body matches (SPEC section 8).
    #[track_caller]
    pub fn read_response(&mut self) -> Response {
        match self.try_read_response() {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Http::read_response`], or why there is none: the connection closed
    /// before a whole response (a dropped socket).
    #[track_caller]
    pub fn try_read_response(&mut self) -> Result<Response, String> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill() {
                return Err(format!(
                    "the connection closed before a whole response head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("an ASCII head");
        let mut lines = head.trim_end().split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{head}");
        let status = status_line[9..12].parse().expect("a status code");
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').expect("a header line");
                (k.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .unwrap_or_else(|| panic!("every response has Content-Length: {head}"))
            .1
            .parse()
            .expect("a numeric Content-Length");
        while self.buf.len() < head_end + len {
            if !self.fill() {
                return Err(format!(
                    "the connection closed inside a body of {len} bytes: {head}"
                ));
            }
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Ok(Response {
            status,
            head,
            headers,
            body,
        })
    }

    /// Writes one request and reads its response.
    #[track_caller]
    pub fn request(&mut self, bytes: &[u8]) -> Response {
        self.send(bytes);
        self.read_response()
    }

    /// Expects the server to close the connection with nothing more sent
    /// (within the read timeout).
    #[track_caller]
    pub fn expect_closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        while self.fill() {
            assert!(
                self.buf.is_empty(),
                "expected the connection to close, got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }
}

/// `GET path` (HTTP/1.1), with the bearer key when given.
pub fn get(path: &str, key: Option<&str>) -> Vec<u8> {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n").into_bytes()
}

/// `POST path` with a JSON body and its `Content-Length`.
pub fn post(path: &str, key: Option<&str>, body: &str) -> Vec<u8> {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `POST /api/commands` with [`API_KEY`].
pub fn command(body: &str) -> Vec<u8> {
    post("/api/commands", Some(API_KEY), body)
}

/// One request on a fresh connection; the response.
#[track_caller]
pub fn once(addr: SocketAddr, request: &[u8]) -> Response {
    Http::connect(addr).request(request)
}

/// The Prometheus text format parsed by the reference parser
/// (prometheus_client's `text_string_to_metric_families`, installed by
/// scripts/test.sh): one JSON object per family with `name` (a counter's
/// without `_total`), `type`, `help` and `samples` (`[name, labels, value]`).
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [[s.name, s.labels, s.value] for s in f.samples]})
print(json.dumps(out))
"#;

/// Whether the Python tests are skipped (RAKIT_SKIP_PYTHON=1).
pub fn skip_python() -> bool {
    if std::env::var("RAKIT_SKIP_PYTHON").as_deref() == Ok("1") {
        eprintln!("skipped: RAKIT_SKIP_PYTHON=1 (needs python3 with prometheus-client)");
        return true;
    }
    false
}

/// Parses an exposition with the reference Python parser; panics if it
/// refuses it.
#[track_caller]
pub fn parse_metrics(text: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (or set RAKIT_SKIP_PYTHON=1)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the parser refused it (python3 -m pip install prometheus-client?): {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the parser's JSON")
}

/// The value of the sample called `name` with exactly `labels` in parsed
/// families (0 when absent: a labelled counter shows only labels seen).
pub fn sample(families: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    families
        .iter()
        .flat_map(|f| f["samples"].as_array().unwrap())
        .find(|s| s[0] == name && s[1].as_object() == Some(&want))
        .map_or(0.0, |s| s[2].as_f64().unwrap())
}

/// `GET /metrics` on a fresh connection (with `key` as bearer when given);
/// checks status 200 and the exposition's content type, returns the text.
#[track_caller]
pub fn scrape(addr: SocketAddr, key: Option<&str>) -> String {
    let r = once(addr, &get("/metrics", key));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{}",
        r.head
    );
    r.text().to_owned()
}

/// The value of one series (`name{labels}` exactly as exposed) in a scrape's text.
#[track_caller]
pub fn series(text: &str, series: &str) -> u64 {
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}in\n{text}"))
        .parse()
        .unwrap()
}

/// Sends SIGTERM to a process (with kill(1): the tests use no libc).
#[track_caller]
pub fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
}

/// The value of the unlabelled sample `name` in an exposition (`None` when absent), read without
/// the Python parser.
pub fn value_of(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}
