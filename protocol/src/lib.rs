//! A sans-IO RFC 6455 WebSocket server core.
//!
//! Bytes go in, [`Event`]s and bytes to write come out; this crate never
//! touches a socket, a clock or a logger. The daemon owns all IO.
//!
//! ```text
//! bytes --> Connection::read --> Event::{Request, Text, Binary, Ping, Pong, Close}
//!                 |                  (a handshake Request waits for accept / reject)
//!                 +--> out: Vec<u8>   (101 / refusal, pong, close echo, close on error)
//! ```
//!
//! Layers, lowest first: [`mask`] and [`utf8`] (pure functions), [`frame`]
//! (one frame header), [`close`] (close payloads), [`message`] (fragment
//! reassembly and size limits), [`handshake`] (the HTTP upgrade),
//! [`deflate`] (permessage-deflate: negotiation, and compression as pure
//! functions over buffers), and [`connection`] (the state machine that ties
//! them together).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod close;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod limits;
pub mod mask;
pub mod message;
pub mod utf8;

pub use close::CloseCode;
pub use connection::{Connection, Event, State};
pub use error::{HandshakeError, ProtocolError};
pub use frame::{
    encode_close, encode_compressed, encode_frame, encode_masked, FrameHeader, OpCode,
};
pub use handshake::Request;
pub use limits::Limits;
