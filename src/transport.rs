//! The bytes under a connection: a plain TCP socket, or TLS over it
//! (rustls, SPEC section 12). The protocol crate never sees TLS: the loop
//! reads and writes plaintext through a [`Transport`], which is the socket
//! itself for a plain connection.
//!
//! ```text
//! socket --read_tls--> rustls --process_new_packets--> reader() --plaintext--> the loop
//! the loop --plaintext, one record's worth at a time--> writer() --write_tls--> socket
//! ```
//!
//! mio is edge-triggered, so both directions keep the loop's contract:
//! - a read says whether bytes may still wait that no new readiness event
//!   will announce ([`Transport::read_some`]'s `more`): it filled its room,
//!   or a TLS read stopped at its ciphertext budget. Otherwise it has seen
//!   the socket's `WouldBlock` (or its end), and no bytes are left behind
//!   in the kernel or in rustls;
//! - a TLS read takes at most [`CIPHERTEXT_PER_READ`] bytes off the socket,
//!   as a plain read takes at most its room: the loop's fair share of reads
//!   per turn then bounds the records a client makes it decrypt, however
//!   small they are (a one-byte record is 22 bytes of ciphertext);
//! - a write hands rustls plaintext only once its earlier records are all on
//!   the socket, at most [`RECORD`] bytes, so rustls holds at most one
//!   write's worth and `max_send_buffer` is still counted on the loop's own
//!   queue. [`Transport::finish`] says whether records still wait (then the
//!   loop keeps `WRITABLE` interest, as for its own queue).
//!
//! An idle TLS connection costs its boxed `ServerConnection` (about 8 KiB
//! RSS once the handshake buffers shrink); a plain one costs nothing here.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

/// Plaintext handed to rustls per write: one TLS record.
pub const RECORD: usize = 16 * 1024;

/// Ciphertext one read of a TLS connection takes off the socket, at most:
/// two records of 16 KiB, or about 1,500 records of one byte (22 bytes each
/// with their header and tag). Without it, a read went on until 64 KiB of
/// plaintext, which one-byte records make 1.5 MB of ciphertext and 65,536
/// decryptions.
pub const CIPHERTEXT_PER_READ: usize = 32 * 1024;

/// A connection's byte stream, borrowed for one read or write.
pub enum Transport<'a> {
    /// The socket itself.
    Plain(&'a mut TcpStream),
    /// TLS over the socket.
    Tls(&'a mut TcpStream, &'a mut ServerConnection),
}

impl<'a> Transport<'a> {
    /// The stream of a connection's socket and its TLS session, if any.
    pub fn of(socket: &'a mut TcpStream, tls: &'a mut Option<Box<ServerConnection>>) -> Self {
        match tls {
            None => Transport::Plain(socket),
            Some(tls) => Transport::Tls(socket, tls),
        }
    }

    /// Writes records rustls still holds. `Ok(true)`: nothing waits.
    pub fn finish(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(socket, tls) => push_records(socket, tls),
        }
    }

    /// Shuts our sending side down, after a TLS `close_notify`.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(socket) => socket.shutdown(Shutdown::Write),
            Transport::Tls(socket, tls) => {
                tls.send_close_notify();
                // Best effort: the queue is empty, so the alert fits.
                let _ = push_records(socket, tls);
                socket.shutdown(Shutdown::Write)
            }
        }
    }
}

/// Writes rustls's pending records until it has none or the socket is full.
fn push_records(socket: &mut TcpStream, tls: &mut ServerConnection) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(socket) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What one read brought: `n` bytes of plaintext, and whether more may
/// wait that no readiness event will announce (read again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Got {
    pub n: usize,
    pub more: bool,
}

impl Transport<'_> {
    /// Reads plaintext into `buf`. `n == 0` without `more`: the peer closed
    /// (for TLS, with or without `close_notify`). `Err(WouldBlock)`: nothing
    /// waits. A TLS read may bring nothing yet with `more` (its budget went
    /// on records without plaintext).
    pub fn read_some(&mut self, buf: &mut [u8]) -> io::Result<Got> {
        match self {
            Transport::Plain(socket) => {
                let n = socket.read(buf)?;
                Ok(Got {
                    n,
                    more: n > 0 && n == buf.len(),
                })
            }
            Transport::Tls(socket, tls) => read_tls(socket, tls, buf),
        }
    }
}

/// Fills `buf` with plaintext, reading the socket until `buf` is full, the
/// socket would block or ends, or [`CIPHERTEXT_PER_READ`] bytes were read.
/// A TLS error is answered with its alert, then returned (the loop closes
/// the connection, nothing else happens).
fn read_tls(socket: &mut TcpStream, tls: &mut ServerConnection, buf: &mut [u8]) -> io::Result<Got> {
    let mut filled = 0;
    let mut budget = CIPHERTEXT_PER_READ;
    let more = |n| Got { n, more: true };
    let end = |n| Got { n, more: false };
    loop {
        if filled == buf.len() {
            return Ok(more(filled));
        }
        match tls.reader().read(&mut buf[filled..]) {
            // close_notify: the end of the peer's data.
            Ok(0) => return Ok(end(filled)),
            Ok(n) => {
                filled += n;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The socket ended without close_notify: an end all the same.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(end(filled)),
            Err(e) => return Err(e),
        }
        if budget == 0 {
            // Records may still wait in the socket: the loop comes back.
            return Ok(more(filled));
        }
        match tls.read_tls(&mut Read::take(&mut *socket, budget as u64)) {
            Ok(0) => return Ok(end(filled)),
            Ok(n) => {
                budget = budget.saturating_sub(n);
                if let Err(e) = tls.process_new_packets() {
                    // Tell the peer why (a plain-text client gets an alert).
                    let _ = push_records(socket, tls);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                // Handshake messages and tickets go out at once; if the
                // socket is full, the loop's flush finishes them.
                push_records(socket, tls)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return if filled > 0 { Ok(end(filled)) } else { Err(e) };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl Write for Transport<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.write(buf),
            Transport::Tls(socket, tls) => write_tls(socket, tls, &[IoSlice::new(buf)]),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.write_vectored(bufs),
            Transport::Tls(socket, tls) => write_tls(socket, tls, bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Encrypts up to one record of `bufs` once rustls's earlier records are
/// written; `WouldBlock` while they are not.
fn write_tls(
    socket: &mut TcpStream,
    tls: &mut ServerConnection,
    bufs: &[IoSlice<'_>],
) -> io::Result<usize> {
    if !push_records(socket, tls)? {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let mut taken = 0;
    for buf in bufs {
        let room = RECORD - taken;
        let n = tls.writer().write(&buf[..buf.len().min(room)])?;
        taken += n;
        if n < buf.len() || taken == RECORD {
            break;
        }
    }
    if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    // The records go out now if the socket takes them, else on the next
    // flush (the loop asks `finish`).
    push_records(socket, tls)?;
    Ok(taken)
}

/// Why the certificate or key could not be used.
#[derive(Debug)]
pub struct TlsError {
    /// The config key at fault (`tls.cert` or `tls.key`).
    pub key: &'static str,
    pub message: String,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Builds the server's TLS settings from PEM files: the certificate chain
/// (leaf first) and its private key. TLS 1.2 and 1.3, ALPN `http/1.1` only
/// (WebSockets over HTTP/2 are not served, and browsers pick h2 if offered).
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError {
            key: "tls.cert",
            message: format!("{}: {e}", cert.display()),
        })?;
    if certs.is_empty() {
        return Err(TlsError {
            key: "tls.cert",
            message: format!("{}: no certificate in the file", cert.display()),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError {
        key: "tls.key",
        message: format!("{}: {e}", key.display()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError {
            key: "tls.cert",
            message: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| TlsError {
            key: "tls.key",
            message: format!("{} does not fit {}: {e}", key.display(), cert.display()),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A new server-side TLS session for an accepted socket.
pub fn session(config: &Arc<ServerConfig>) -> Option<Box<ServerConnection>> {
    match ServerConnection::new(Arc::clone(config)) {
        Ok(c) => Some(Box::new(c)),
        Err(e) => {
            log::warn!("cannot start a TLS session: {e}");
            None
        }
    }
}
