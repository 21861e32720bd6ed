//! Routing of the HTTP side: the backend API (SPEC section 8), `/metrics` (section 9), the demo
//! page (section 14), the browser client (section 16.2) and `/health`.
//!
//! Order of checks on `/api/`: the API must be on (else 404, so a daemon without a key does not
//! even reveal the API), then the key (401, before anything else about the request is judged),
//! then the path (404) and the method (405 with `Allow`).

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use super::{response, HttpCtx, KeepAlive};
use crate::metrics;
use crate::router::{ApiError, ApiHistory};

/// Most commands in one `POST /api/commands` array (SPEC section 8).
pub const MAX_BATCH: usize = 100;

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The client changes only with the daemon: an hour in caches, so an upgrade reaches every
/// page within the hour (docs/client.md).
const CLIENT_CACHE: &str = "public, max-age=3600";

/// The page may run its own inline script and connect back to this host, and load nothing else.
const DEMO_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self' ws: wss:; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// A response before it is written.
pub(super) struct Reply {
    pub status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Cow<'static, [u8]>,
    /// Answered later, under this tag (a history request waiting for Redis: `history.rs`).
    pub later: Option<u64>,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: impl Into<Cow<'static, [u8]>>) -> Reply {
        Reply {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
            later: None,
        }
    }

    fn json(status: u16, body: String) -> Reply {
        Reply::new(status, JSON, body.into_bytes())
    }

    /// `{"ok":false,"code":CODE,"message":TEXT}` on API paths, the message as one line of text
    /// elsewhere.
    pub(super) fn error(api: bool, status: u16, code: &str, message: &str) -> Reply {
        if api {
            Reply::json(status, failure(code, message))
        } else {
            Reply::new(status, TEXT, format!("{message}\n").into_bytes())
        }
    }

    pub(super) fn with(mut self, name: &'static str, value: &'static str) -> Reply {
        self.headers.push((name, value));
        self
    }

    pub(super) fn write(&self, out: &mut Vec<u8>, keep: KeepAlive) {
        response::write(
            out,
            self.status,
            self.content_type,
            &self.headers,
            &self.body,
            keep,
        );
    }
}

/// The API's failure body.
fn failure(code: &str, message: &str) -> String {
    #[derive(Serialize)]
    struct Failure<'a> {
        ok: bool,
        code: &'a str,
        message: &'a str,
    }
    serde_json::to_string(&Failure {
        ok: false,
        code,
        message,
    })
    .unwrap_or_default()
}

const OK: &str = r#"{"ok":true}"#;

pub(super) fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

fn not_found(api: bool) -> Reply {
    Reply::error(api, 404, "not_found", "not found")
}

fn method_not_allowed(api: bool, allow: &'static str) -> Reply {
    Reply::error(api, 405, "method_not_allowed", "method not allowed").with("Allow", allow)
}

fn unauthorized(api: bool) -> Reply {
    Reply::error(
        api,
        401,
        "unauthorized",
        "missing or wrong key: send Authorization: Bearer KEY",
    )
    .with("WWW-Authenticate", "Bearer")
}

/// Answers one request (see the module docs for the order of checks).
pub(super) fn route(head: &super::Head, body: &[u8], ctx: &mut HttpCtx<'_>) -> Reply {
    let path = head.path.as_str();
    let get = head.method == "GET";
    if crate::pusher::api::wants(path) {
        return pusher_api(head, body, ctx, None);
    }
    if is_api_path(path) {
        let Some(key) = &ctx.settings.api_key else {
            return not_found(true);
        };
        if !key.matches(head.authorization.as_deref()) {
            return unauthorized(true);
        }
        return match path {
            "/api/commands" if head.method == "POST" => commands(body, ctx),
            "/api/commands" => method_not_allowed(true, "POST"),
            "/api/channels" | "/api/presence" if !get => method_not_allowed(true, "GET"),
            "/api/channels" => channels(ctx),
            "/api/presence" => Reply::json(200, ctx.router.presence_json()),
            _ => match path.strip_prefix("/api/channels/") {
                Some(_) if !get => method_not_allowed(true, "GET"),
                // SPEC 16 (the name before it may hold `/`; `%2F` names a channel that ends so).
                Some(rest) if rest.ends_with(super::history::SUFFIX) => {
                    match super::history::history(rest, head.query.as_deref(), ctx.router) {
                        Ok(ApiHistory::Ready(json)) => Reply::json(200, json),
                        Ok(ApiHistory::Later(tag)) => Reply {
                            later: Some(tag),
                            ..Reply::json(200, String::new())
                        },
                        Err(e) => api_error(&e),
                    }
                }
                Some(name) => channel(name, ctx),
                None => not_found(true),
            },
        };
    }
    match path {
        "/metrics" if !ctx.settings.metrics_enabled => not_found(false),
        "/metrics" if !get => method_not_allowed(false, "GET"),
        "/metrics" => {
            if let Some(key) = &ctx.settings.metrics_key {
                if !key.matches(head.authorization.as_deref()) {
                    return unauthorized(false);
                }
            }
            let mut gauges = ctx.gauges;
            gauges.channels = ctx.router.channel_count() as u64;
            gauges.rate_limited = ctx.router.rate_limited();
            let mut text = String::with_capacity(4096);
            metrics::render(ctx.metrics, &gauges, ctx.now, &mut text);
            Reply::new(200, metrics::CONTENT_TYPE, text.into_bytes())
        }
        "/health" if !get => method_not_allowed(false, "GET"),
        "/health" => Reply::new(200, TEXT, &b"ok"[..]),
        "/" if !get => method_not_allowed(false, "GET"),
        "/" if !ctx.settings.demo_page => not_found(false),
        "/" => Reply::new(200, HTML, super::DEMO_PAGE.as_bytes())
            .with("Content-Security-Policy", DEMO_CSP)
            .with("Cache-Control", "no-cache")
            .with("X-Content-Type-Options", "nosniff"),
        super::CLIENT_PATH if !get => method_not_allowed(false, "GET"),
        super::CLIENT_PATH => Reply::new(200, JAVASCRIPT, super::CLIENT_JS.as_bytes())
            .with("Cache-Control", CLIENT_CACHE)
            .with("X-Content-Type-Options", "nosniff")
            .with("Access-Control-Allow-Origin", "*"),
        _ => not_found(false),
    }
}

/// Pusher's API (`src/pusher/api.rs`); 404 when the dialect is off.
pub(super) fn pusher_api(
    head: &super::Head,
    body: &[u8],
    ctx: &mut HttpCtx<'_>,
    pusher: Option<&mut crate::pusher::Pusher>,
) -> Reply {
    let Some(pusher) = pusher else {
        return not_found(false);
    };
    let req = crate::pusher::api::Request {
        method: &head.method,
        path: &head.path,
        query: head.query.as_deref(),
        body,
    };
    let (status, json) = pusher.api(
        ctx.router,
        &req,
        crate::session::now_unix(),
        ctx.now,
        &mut *ctx.outbox,
    );
    Reply::json(status, json)
}

/// `POST /api/commands`: one command object, or an array of at most [`MAX_BATCH`] carried out
/// in order. An array that is not all command objects is refused whole before anything runs.
fn commands(body: &[u8], ctx: &mut HttpCtx<'_>) -> Reply {
    let Ok(text) = std::str::from_utf8(body) else {
        return api_error(&ApiError::invalid_json("the body is not UTF-8"));
    };
    let is_array = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('[');
    if !is_array {
        let cmd: &RawValue = match serde_json::from_str(text) {
            Ok(cmd) => cmd,
            Err(e) => return api_error(&ApiError::invalid_json(format!("invalid JSON: {e}"))),
        };
        return match ctx.router.api_command(cmd, ctx.now, &mut ctx.outbox) {
            Ok(()) => Reply::json(200, OK.to_owned()),
            Err(e) => api_error(&e),
        };
    }
    let batch: Vec<&RawValue> = match serde_json::from_str(text) {
        Ok(batch) => batch,
        Err(e) => return api_error(&ApiError::invalid_json(format!("invalid JSON: {e}"))),
    };
    if batch.len() > MAX_BATCH {
        return api_error(&ApiError::bad_request(format!(
            "at most {MAX_BATCH} commands in one request; nothing was carried out"
        )));
    }
    if let Some(i) = batch.iter().position(|c| !c.get().starts_with('{')) {
        return api_error(&ApiError::bad_request(format!(
            "element {i} is not a command object; nothing was carried out"
        )));
    }
    let mut results = String::from(r#"{"results":["#);
    for (i, cmd) in batch.iter().enumerate() {
        if i > 0 {
            results.push(',');
        }
        match ctx.router.api_command(cmd, ctx.now, &mut ctx.outbox) {
            Ok(()) => results.push_str(OK),
            Err(e) => results.push_str(&failure(e.code, &e.message)),
        }
    }
    results.push_str("]}");
    Reply::json(200, results)
}

/// Writes the answer of a history request that waited for Redis (`history.rs`), and counts it.
pub fn write_later(
    answer: Result<String, ApiError>,
    keep: KeepAlive,
    metrics: &mut crate::metrics::Metrics,
    out: &mut Vec<u8>,
) {
    let reply = match answer {
        Ok(json) => Reply::json(200, json),
        Err(e) => api_error(&e),
    };
    metrics.api_requests.incr(reply.status);
    reply.write(out, keep);
}

fn api_error(e: &ApiError) -> Reply {
    Reply::json(e.status, failure(e.code, &e.message))
}

/// `GET /api/channels`.
fn channels(ctx: &HttpCtx<'_>) -> Reply {
    #[derive(Serialize)]
    struct Entry<'a> {
        name: &'a str,
        subscribers: usize,
    }
    #[derive(Serialize)]
    struct List<'a> {
        channels: Vec<Entry<'a>>,
    }
    let list = List {
        channels: ctx
            .router
            .channel_list()
            .into_iter()
            .map(|c| Entry {
                name: c.name,
                subscribers: c.subscribers,
            })
            .collect(),
    };
    Reply::json(200, serde_json::to_string(&list).unwrap_or_default())
}

/// `GET /api/channels/{name}`, the name percent-decoded.
fn channel(encoded: &str, ctx: &HttpCtx<'_>) -> Reply {
    let Some(name) = crate::percent::decode_strict(encoded) else {
        return api_error(&ApiError::bad_request(
            "the channel name is not valid percent-encoded UTF-8",
        ));
    };
    #[derive(Serialize)]
    struct Channel<'a> {
        name: &'a str,
        subscribers: usize,
        clients: Vec<&'a str>,
        /// On a channel with presence (SPEC section 15.3), never truncated.
        #[serde(skip_serializing_if = "Option::is_none")]
        presence: Option<Box<serde_json::value::RawValue>>,
    }
    match ctx.router.channel_clients(&name) {
        Ok(clients) => {
            let presence = ctx
                .router
                .channel_presence_json(&name)
                .and_then(|json| serde_json::value::RawValue::from_string(json).ok());
            let body = Channel {
                name: &name,
                subscribers: clients.len(),
                clients,
                presence,
            };
            Reply::json(200, serde_json::to_string(&body).unwrap_or_default())
        }
        Err(e) => api_error(&e),
    }
}
