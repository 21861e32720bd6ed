//! The HTTP side of the WebSocket port (SPEC sections 8, 9, 14 and 16.2): the backend API under
//! `/api/`, `GET /metrics`, the demo page at `GET /`, the browser client at
//! `GET /rakit-websocket.js`, and `GET /health`. Sans-IO: requests in,
//! response bytes out; the event loop does all reading and writing.
//!
//! # Wiring it into the event loop
//!
//! 1. **Head.** The protocol crate's handshake decoder parses every request head as it does now
//!    (so `max_handshake_size` gives 431 before anything here runs). Build a [`Head`] from the
//!    `rakit_protocol::Request` with [`Head::from_request`], then set `authorization`,
//!    `content_length` and `transfer_encoding` from the Request's new fields (several
//!    `Content-Length` headers joined with `,`, which [`body::plan`] refuses).
//! 2. **Which side.** If [`wants`] is false (an upgrade attempt, or a path that is not ours),
//!    hand the request to `accept::decide` exactly as today. Otherwise it is HTTP:
//! 3. **Body.** Call [`body::plan`]`(&head, config.max_buffer_size)`. `Err(e)`: write
//!    [`refuse`] and close. `Ok(n)`: keep the bytes after the head that the decoder did not
//!    consume, read until `n` body bytes are there (the connection's read buffer, bounded by
//!    `max_buffer_size`), under the same `handshake_timeout` timer as the head.
//! 4. **Answer.** Call [`handle`] with the head, exactly `n` body bytes and an [`HttpCtx`]
//!    (the router, the loop's outbox for the frames a command queues, the metrics, a [`Gauges`]
//!    snapshot, now). Queue `out` on the connection, then settle deliveries and overflows as
//!    after a client message.
//! 5. **Then.** [`KeepAlive::Close`]: close after flushing (the lingering close of a refused
//!    handshake). [`KeepAlive::Keep`]: drop the consumed bytes, reset the request decoder,
//!    start the `handshake_timeout` idle timeout from this answer, and parse the next head from
//!    what is left (pipelined requests are answered in order). An HTTP connection never counts
//!    towards `max_connections` or `rakit_connections`: only upgraded ones do; it counts
//!    towards `max_http_connections` instead, beyond which the loop answers [`refuse_busy`].
//!
//! The loop owns one [`HttpSettings`] built from the config at start, and one
//! [`crate::metrics::Metrics`] it increments as it works.

mod api;
pub mod auth;
pub mod body;
mod history;
pub mod response;

use std::time::Instant;

use rakit_protocol::Request;

pub use self::api::write_later;
pub use self::body::{BodyError, KeepAlive};
use crate::config::Config;
use crate::metrics::{Gauges, Metrics};
use crate::router::{Outbox, Router};
use auth::BearerKey;

/// The demo chat page (SPEC section 14), self-contained: inline style and script, no external
/// resources. Its script is the browser client ([`CLIENT_JS`], SPEC 16.2: "the demo page uses
/// it"), inlined so that the page loads nothing else, then the page's own (`demo.js`).
pub const DEMO_PAGE: &str = concat!(
    include_str!("demo.html"),
    "<!-- The browser client, as served at /rakit-websocket.js -->\n<script>\n",
    include_str!("../../clients/js/rakit-websocket.js"),
    "</script>\n<script>\n",
    include_str!("demo.js"),
    "</script>\n</body>\n</html>\n"
);

/// The browser client (SPEC section 16.2), served at [`CLIENT_PATH`] whether or not the demo
/// page is on: applications load it from the daemon they talk to.
pub const CLIENT_JS: &str = include_str!("../../clients/js/rakit-websocket.js");

/// Where [`CLIENT_JS`] is served.
pub const CLIENT_PATH: &str = "/rakit-websocket.js";

/// The parts of a request head the HTTP side looks at. Filled by the loop from the protocol
/// crate's parsed request (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target's path, without the query, still percent-encoded.
    pub path: String,
    /// The query after `?`, if any.
    pub query: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub http_minor: u8,
    /// `Authorization`.
    pub authorization: Option<String>,
    /// `Content-Length`, unparsed.
    pub content_length: Option<String>,
    /// `Transfer-Encoding`.
    pub transfer_encoding: Option<String>,
    /// `Connection`.
    pub connection: Option<String>,
    /// The request has an `Upgrade` header, any `Sec-WebSocket-*` header, or `upgrade` in
    /// `Connection`: it is judged as a handshake (SPEC section 14), never here.
    pub attempts_upgrade: bool,
}

impl Head {
    /// The fields the protocol's `Request` has today. `authorization`, `content_length` and
    /// `transfer_encoding` are left `None` for the caller to fill from the Request's new fields.
    pub fn from_request(req: &Request) -> Head {
        let upgrade_token = req.connection.as_deref().is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
        Head {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            http_minor: req.http_minor,
            connection: req.connection.clone(),
            attempts_upgrade: req.upgrade.is_some()
                || req.key.is_some()
                || req.version.is_some()
                || !req.protocols.is_empty()
                || upgrade_token,
            ..Head::default()
        }
    }
}

/// The configuration the HTTP side needs, prepared once at start (keys are hashed here).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `[api] key`; `None`: the API is off.
    pub api_key: Option<BearerKey>,
    /// `[metrics] enabled`.
    pub metrics_enabled: bool,
    /// `[metrics] key`; `None`: no key needed.
    pub metrics_key: Option<BearerKey>,
    /// `demo_page`.
    pub demo_page: bool,
    /// `max_buffer_size`: the largest body.
    pub max_body: usize,
}

impl HttpSettings {
    pub fn new(config: &Config) -> HttpSettings {
        HttpSettings {
            api_key: BearerKey::new(&config.api.key),
            metrics_enabled: config.metrics.enabled,
            metrics_key: BearerKey::new(&config.metrics.key),
            demo_page: config.demo_page,
            max_body: config.max_buffer_size,
        }
    }
}

/// Everything one request may read or change.
pub struct HttpCtx<'a> {
    pub settings: &'a HttpSettings,
    /// Commands run through it; queries read it.
    pub router: &'a mut Router,
    /// Where the frames and closes a command causes go: the loop's outbox.
    pub outbox: &'a mut dyn Outbox,
    /// `rakit_api_requests_total` is counted here; `/metrics` renders it.
    pub metrics: &'a mut Metrics,
    /// Values owned elsewhere, for `/metrics`. `channels` is filled from the router here.
    pub gauges: Gauges,
    pub now: Instant,
}

/// Whether a request is the HTTP side's: not an upgrade attempt, and one of its paths (`/`,
/// `/health`, `/metrics`, [`CLIENT_PATH`], `/api` and everything under `/api/`). Other plain requests keep the
/// handshake's answers (400 malformed, 405 for a non-GET).
pub fn wants(head: &Head) -> bool {
    !head.attempts_upgrade
        && (matches!(head.path.as_str(), "/" | "/health" | "/metrics" | "/api")
            || head.path == CLIENT_PATH
            || head.path.starts_with("/api/")
            || crate::pusher::api::wants(&head.path))
}

/// Answers one request whose body (exactly the length [`body::plan`] gave) has been read:
/// appends the response to `out` and says whether the connection stays open.
pub fn handle(head: &Head, body: &[u8], ctx: &mut HttpCtx<'_>, out: &mut Vec<u8>) -> KeepAlive {
    match handle_deferrable(head, body, ctx, out) {
        Handled::Now(keep) => keep,
        // Only a cluster defers (the loop uses `handle_deferrable`): never left unanswered.
        Handled::Later { keep, .. } => {
            let e = crate::router::ApiError {
                code: "unavailable",
                message: "this request waits for Redis, which is not wired here".into(),
                status: 503,
            };
            write_later(Err(e), keep, ctx.metrics, out);
            keep
        }
    }
}

/// What [`handle_deferrable`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Answered into `out`.
    Now(KeepAlive),
    /// Waits for Redis (a history request in a cluster): answer it with [`write_later`] when
    /// the router's [`Router::take_api_answers`] has `tag`.
    Later { tag: u64, keep: KeepAlive },
}

/// [`handle`], except that a request whose answer waits for Redis is not answered now.
pub fn handle_deferrable(
    head: &Head,
    body: &[u8],
    ctx: &mut HttpCtx<'_>,
    out: &mut Vec<u8>,
) -> Handled {
    let keep = body::keep_alive(head);
    let reply = api::route(head, body, ctx);
    if let Some(tag) = reply.later {
        return Handled::Later { tag, keep };
    }
    if api::is_api_path(&head.path) {
        ctx.metrics.api_requests.incr(reply.status);
    }
    reply.write(out, keep);
    Handled::Now(keep)
}

/// [`handle`] for Pusher's API under `/apps/` (SPEC section 13; `src/pusher/api.rs`): 404 when
/// the dialect is off (`pusher` is `None`).
pub fn handle_pusher(
    head: &Head,
    body: &[u8],
    ctx: &mut HttpCtx<'_>,
    pusher: Option<&mut crate::pusher::Pusher>,
    out: &mut Vec<u8>,
) -> KeepAlive {
    let keep = body::keep_alive(head);
    api::pusher_api(head, body, ctx, pusher).write(out, keep);
    keep
}

/// Answers a request whose body [`body::plan`] refused (JSON on API paths, text elsewhere);
/// the connection must then be closed.
pub fn refuse(
    head: &Head,
    error: BodyError,
    metrics: &mut Metrics,
    out: &mut Vec<u8>,
) -> KeepAlive {
    let api = api::is_api_path(&head.path);
    if api {
        metrics.api_requests.incr(error.status());
    }
    api::Reply::error(api, error.status(), error.code(), error.message())
        .write(out, KeepAlive::Close);
    KeepAlive::Close
}

/// Answers a request on a new connection when `max_http_connections` are held already: 503
/// with `Retry-After` (JSON on API paths, text elsewhere); the connection must then be closed.
pub fn refuse_busy(head: &Head, metrics: &mut Metrics, out: &mut Vec<u8>) {
    let api = api::is_api_path(&head.path);
    if api {
        metrics.api_requests.incr(503);
    }
    api::Reply::error(
        api,
        503,
        "server_busy",
        "too many HTTP connections; try again later",
    )
    .with("Retry-After", "1")
    .write(out, KeepAlive::Close);
}

/// Whether the start of a request whose head the protocol's decoder refused (larger than
/// `max_handshake_size`, or malformed) is an API request: its request line targets `/api` or a
/// path under `/api/`, and none of the header lines received attempts an upgrade (those are
/// judged as handshakes, SPEC section 14). Such a refusal is answered by [`refuse_head`].
pub fn is_api_head(bytes: &[u8]) -> bool {
    let mut lines = bytes.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let target = first.split(|&b| b == b' ').nth(1).unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if !std::str::from_utf8(path).is_ok_and(api::is_api_path) {
        return false;
    }
    !lines.any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with(b"upgrade:")
            || line.starts_with(b"sec-websocket-")
            || (line.starts_with(b"connection:") && line.windows(7).any(|w| w == b"upgrade"))
    })
}

/// Answers an API request whose head was refused before it could be parsed (`status` 431 or
/// 400, `message` the decoder's reason) in the API's JSON, as every API response is (SPEC
/// section 8), and counts it; the connection must then be closed.
pub fn refuse_head(status: u16, message: &str, metrics: &mut Metrics, out: &mut Vec<u8>) {
    metrics.api_requests.incr(status);
    let code = if status == 431 {
        "headers_too_large"
    } else {
        "bad_request"
    };
    api::Reply::error(true, status, code, message).write(out, KeepAlive::Close);
}

#[cfg(test)]
mod tests;
