//! A webhook receiver for the integration tests: an HTTP endpoint on 127.0.0.1 (a std
//! `TcpListener`, a thread per connection, keep-alive) that hands every POST it reads to the test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Instant;

use serde_json::Value;

use super::api::{scrape, series};
use super::{Daemon, WAIT};

/// One POST as the receiver saw it.
#[derive(Debug)]
pub struct Post {
    pub request_line: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Post {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// `200 OK` to every POST.
    Answer,
    /// Reads every POST, never answers, keeps the connection open.
    Hang,
}

/// A webhook endpoint on 127.0.0.1: every POST it reads goes to `posts`.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub posts: Receiver<Post>,
}

impl Endpoint {
    pub fn start(mode: Mode) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, posts) = channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let tx = tx.clone();
                std::thread::spawn(move || serve(stream, mode, tx));
            }
        });
        Endpoint { addr, posts }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The next POST, within [`WAIT`].
    #[track_caller]
    pub fn next(&self) -> Post {
        self.posts
            .recv_timeout(WAIT)
            .expect("a webhook POST within the wait")
    }
}

/// Reads requests on one connection (keep-alive) and answers them per `mode`.
fn serve(mut stream: TcpStream, mode: Mode, tx: Sender<Post>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.trim_end().split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let _ = tx.send(Post {
            request_line,
            headers,
            body,
            at: Instant::now(),
        });
        match mode {
            Mode::Answer => {
                if stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .is_err()
                {
                    return;
                }
            }
            Mode::Hang => {
                // Hold the connection open, unanswered, until the peer goes.
                while matches!(stream.read(&mut chunk), Ok(n) if n > 0) {}
                return;
            }
        }
    }
}

/// `rakit_webhook_events_total{result}` from a scrape.
pub fn webhook_counts(daemon: &Daemon) -> (u64, u64, u64) {
    let text = scrape(daemon.addr, None);
    let count = |result: &str| {
        series(
            &text,
            &format!("rakit_webhook_events_total{{result=\"{result}\"}}"),
        )
    };
    (count("sent"), count("failed"), count("dropped"))
}
