//! The server's fatal errors.

use std::io;

/// A fatal error: the server could not start or the loop failed.
#[derive(Debug)]
pub enum ServerError {
    /// The listen address could not be bound.
    Bind {
        /// The address.
        addr: String,
        /// Why.
        error: io::Error,
    },
    /// Setting up or polling failed.
    Io {
        /// What was being done.
        context: &'static str,
        /// Why.
        error: io::Error,
    },
    /// The loop itself panicked.
    Panic(String),
    /// The TLS certificate or key could not be used.
    Tls(crate::transport::TlsError),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Bind { addr, error } if error.kind() == io::ErrorKind::AddrInUse => {
                write!(f, "cannot listen on {addr}: address already in use")
            }
            ServerError::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            ServerError::Io { context, error } => write!(f, "{context}: {error}"),
            ServerError::Panic(msg) => write!(f, "event loop panicked: {msg}"),
            ServerError::Tls(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ServerError {}
