//! A backend that publishes a steady stream through the HTTP API (SPEC section 8) and survives
//! restarts of the daemon behind its address (SPEC 18): one connection per request, and a
//! request that gets no answer (refused, reset, closed before the response) is sent again. A
//! request the daemon answered is never sent again, so each publication is made once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;

use super::api::API_KEY;

/// Publishes `{"n": 1}`, `{"n": 2}`, ... to a channel until stopped.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    /// The last `n` the daemon answered 200 for.
    published: AtomicU64,
    /// Requests sent again after no answer.
    retries: AtomicU64,
    /// An answer other than 200: what it was (the test fails on it).
    failure: Mutex<Option<String>>,
}

/// What a stopped publisher did.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// Publications answered 200: `{"n": 1}` to `{"n": count}`.
    pub count: u64,
    /// Requests sent again because no answer came.
    pub retries: u64,
}

impl Publisher {
    /// Starts publishing to `channel` through `addr`, one publication about every `pace`.
    pub fn start(addr: SocketAddr, channel: &str, pace: Duration) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let (stopping, sink, channel) =
            (Arc::clone(&stop), Arc::clone(&shared), channel.to_owned());
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !stopping.load(Ordering::SeqCst) {
                n += 1;
                let body = json!({"command": "broadcast_to_channel", "channel": channel,
                                  "message": {"n": n}})
                .to_string();
                loop {
                    match post_once(addr, &body) {
                        Ok(200) => break,
                        Ok(status) => {
                            let failure = format!("{{\"n\":{n}}}: status {status}");
                            eprintln!("publisher: {failure}");
                            *sink.failure.lock().unwrap() = Some(failure);
                            return;
                        }
                        Err(_) => {
                            sink.retries.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
                sink.published.store(n, Ordering::SeqCst);
                std::thread::sleep(pace);
            }
        });
        Publisher {
            stop,
            shared,
            thread: Some(thread),
        }
    }

    /// The last `n` answered so far.
    pub fn published(&self) -> u64 {
        self.shared.published.load(Ordering::SeqCst)
    }

    /// Stops after the publication in progress; what was published. Panics if a request got
    /// an answer other than 200.
    #[track_caller]
    pub fn stop(mut self) -> Published {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the publisher thread");
        }
        if let Some(failure) = self.shared.failure.lock().unwrap().take() {
            panic!("a publication was refused: {failure}");
        }
        Published {
            count: self.published(),
            retries: self.shared.retries.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `POST /api/commands` with `body` on a new connection (`Connection: close`); the status, or
/// why there is none.
fn post_once(addr: SocketAddr, body: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_nodelay(true)?;
    let request = format!(
        "POST /api/commands HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())?;
    // An answer counts once its status line is in, even if the connection then fails: the
    // request was handled, and sending it again would publish twice.
    let mut response = Vec::new();
    let read = s.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    match text
        .strip_prefix("HTTP/1.1 ")
        .filter(|rest| rest.contains("\r\n"))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
    {
        Some(status) => Ok(status),
        None => Err(read.err().unwrap_or_else(|| {
            std::io::Error::other(format!("closed without an answer: {text:?}"))
        })),
    }
}
