//! rakit-websocket: a small, fast, single-threaded WebSocket messaging daemon.
//!
//! The data path, one module a step:
//!
//! ```text
//! bytes --> rakit_protocol (handshake, frames) --> events --> accept / router --> frames --> bytes
//!           sans-IO, no sockets or clocks                     synchronous, no IO
//!           event_loop owns every socket, the slab, timers and all IO
//! ```
//!
//! Embed the server with [`Server`]; observe it with an [`events::Handler`].
#![forbid(unsafe_code)]

pub mod accept;
pub mod budget;
pub mod buffer;
pub mod channel_token;
pub mod cli;
pub mod cluster;
pub mod compression;
pub mod config;
pub mod conn;
pub mod error;
pub mod event_loop;
pub mod events;
pub mod history;
pub mod http;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod percent;
pub mod pusher;
pub mod queue_bytes;
pub mod reload;
pub mod router;
pub mod server;
pub mod session;
pub mod timers;
pub mod transport;
pub mod webhooks;

pub use server::{Bound, Server, ServerError, ShutdownHandle};
