//! Events (SPEC section 7): what embedding code can observe.
//!
//! Every method has a no-op default, so a handler implements only what it needs.
//! The daemon installs [`LogHandler`], which logs each event.

use std::net::SocketAddr;

use crate::session::User;

/// Receives the server's events. All methods run on the event-loop thread and
/// must not block: a slow handler delays every client.
///
/// A handler that panics while a client's message is handled closes only that
/// client (close code 1011); the server keeps serving everyone else.
pub trait Handler {
    /// The server is listening on `addr`.
    fn start(&mut self, _addr: SocketAddr) {}
    /// A client finished its handshake and got its id.
    fn connect(&mut self, _client_id: &str, _user: Option<&User>) {}
    /// A client left (closed, dropped, or disconnected by a command).
    fn disconnect(&mut self, _client_id: &str, _user: Option<&User>) {}
    /// A text message arrived from a client.
    fn receive(&mut self, _client_id: &str, _user: Option<&User>, _message: &str) {}
    /// A message was queued for a client (the JSON text of the frame).
    fn send(&mut self, _client_id: &str, _user: Option<&User>, _message: &str) {}
    /// Whether to call [`Handler::send`] at all. A fan-out calls it once per
    /// recipient; a handler that does nothing with it (or logs it at a level
    /// that is off) returns false and spares that work. Asked once per
    /// message.
    fn observes_send(&self) -> bool {
        true
    }
    /// The event loop failed fatally; the process exits non-zero after this.
    fn crash(&mut self, _error: &dyn std::error::Error) {}
}

/// The daemon's handler: logs every event (`receive`/`send` at debug, the rest at info).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogHandler;

fn who(user: Option<&User>) -> &str {
    user.map_or("guest", |u| u.name.as_str())
}

impl Handler for LogHandler {
    fn start(&mut self, addr: SocketAddr) {
        log::info!("start: listening on {addr}");
    }
    fn connect(&mut self, client_id: &str, user: Option<&User>) {
        log::info!("connect: {client_id} ({})", who(user));
    }
    fn disconnect(&mut self, client_id: &str, user: Option<&User>) {
        log::info!("disconnect: {client_id} ({})", who(user));
    }
    fn receive(&mut self, client_id: &str, user: Option<&User>, message: &str) {
        log::debug!("receive: {client_id} ({}): {message}", who(user));
    }
    fn send(&mut self, client_id: &str, user: Option<&User>, message: &str) {
        log::debug!("send: {client_id} ({}): {message}", who(user));
    }
    fn observes_send(&self) -> bool {
        log::log_enabled!(log::Level::Debug)
    }
    fn crash(&mut self, error: &dyn std::error::Error) {
        log::error!("crash: {error}");
    }
}
