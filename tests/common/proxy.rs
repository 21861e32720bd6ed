//! A TCP proxy between a client under test (the browser client, SPEC 16.2) and the daemon, on
//! 127.0.0.1 port 0, one thread per direction of each connection. The test can cut every
//! connection at once (both sides see the TCP connection end, as when a phone loses its
//! network), refuse new connections for a while (each is accepted and closed at once, and
//! counted), and end the client's side with a WebSocket close frame of its choice.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::WAIT;

pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    target: SocketAddr,
    refusing: AtomicBool,
    stopping: AtomicBool,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    links: Mutex<Vec<Link>>,
}

/// One proxied connection: the client's socket (its writing half behind a lock, so a frame the
/// test injects never lands inside one the daemon sent) and the daemon's.
struct Link {
    to_client: Arc<Mutex<TcpStream>>,
    server: TcpStream,
}

impl Link {
    fn cut(&self) {
        let _ = self.to_client.lock().unwrap().shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

impl Proxy {
    /// A proxy to `target`, accepting.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            target,
            refusing: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            links: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if s.refusing.load(Ordering::SeqCst) {
                    s.refused.fetch_add(1, Ordering::SeqCst);
                    continue; // dropped: closed before any answer
                }
                if let Err(e) = forward(&s, client) {
                    eprintln!("proxy: {e}");
                }
            }
        });
        Proxy { addr, shared }
    }

    /// `ws://ADDR/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Connections forwarded to the target so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections refused so far.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// From now on, new connections are closed at once (`true`) or forwarded (`false`).
    pub fn refuse(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::SeqCst);
    }

    /// Ends every open connection, on both sides, at once.
    pub fn cut(&self) {
        for link in self.shared.links.lock().unwrap().drain(..) {
            link.cut();
        }
    }

    /// Sends every open connection's client a close frame with `code` (as a server would:
    /// unmasked), then cuts it. The connections must be quiet (nothing half-sent by the daemon).
    pub fn close_with(&self, code: u16) {
        let reason = b"from the proxy";
        let mut frame = vec![0x88, (2 + reason.len()) as u8];
        frame.extend_from_slice(&code.to_be_bytes());
        frame.extend_from_slice(reason);
        for link in self.shared.links.lock().unwrap().drain(..) {
            let _ = link.to_client.lock().unwrap().write_all(&frame);
            link.cut();
        }
    }

    /// Waits, at most [`WAIT`], until `count` holds for (accepted, refused).
    #[track_caller]
    pub fn wait_for(&self, what: &str, count: impl Fn(usize, usize) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !count(self.accepted(), self.refused()) {
            assert!(
                Instant::now() < deadline,
                "proxy: no {what} within {WAIT:?} (accepted {}, refused {})",
                self.accepted(),
                self.refused()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accepting thread so it sees `stopping`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn forward(shared: &Arc<Shared>, client: TcpStream) -> std::io::Result<()> {
    let server = TcpStream::connect(shared.target)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let to_client = Arc::new(Mutex::new(client.try_clone()?));
    shared.links.lock().unwrap().push(Link {
        to_client: Arc::clone(&to_client),
        server: server.try_clone()?,
    });
    shared.accepted.fetch_add(1, Ordering::SeqCst);
    let (client_end, server_end) = (client.try_clone()?, server.try_clone()?);
    std::thread::spawn(move || copy(client, |b| (&server_end).write_all(b), &server_end));
    std::thread::spawn(move || {
        copy(
            server,
            |b| to_client.lock().unwrap().write_all(b),
            &client_end,
        )
    });
    Ok(())
}

/// Copies `from` into `write` until either side ends, then ends both (`to` is the other side).
fn copy(mut from: TcpStream, write: impl Fn(&[u8]) -> std::io::Result<()>, to: &TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if write(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
