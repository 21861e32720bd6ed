//! `GET /api/channels/{name}/history?limit=N&since=OFFSET` (SPEC section 16): the same object a
//! WebSocket `history` request gets, `type` included.
//!
//! On one node it is answered at once. In a cluster history is in Redis, and the request waits
//! for its answer: [`history`] returns a reply marked `later` with the router's tag, the loop
//! holds the connection (no further request of it is read), and [`write_later`] writes the
//! answer when the router has it. The router bounds how many wait (`MAX_API_READS`) and the
//! cluster module how long (`node_timeout_ms`), both answered 503 `unavailable`.

use super::api::{api_error, Reply};
use super::{HttpCtx, KeepAlive};
use crate::metrics::Metrics;
use crate::router::{parse_api_query, ApiError, ApiHistory};

/// The end of a history path: `/api/channels/{name}/history`.
pub(super) const SUFFIX: &str = "/history";

/// `rest` is the path after `/api/channels/`, ending in [`SUFFIX`].
pub(super) fn history(rest: &str, query: Option<&str>, ctx: &mut HttpCtx<'_>) -> Reply {
    let encoded = &rest[..rest.len() - SUFFIX.len()];
    let Some(name) = crate::percent::decode_strict(encoded) else {
        return api_error(&ApiError::bad_request(
            "the channel name is not valid percent-encoded UTF-8",
        ));
    };
    let query = match parse_api_query(query) {
        Ok(query) => query,
        Err(e) => return api_error(&e),
    };
    match ctx.router.api_history(&name, query) {
        Ok(ApiHistory::Ready(json)) => Reply::json(200, json),
        Ok(ApiHistory::Later(tag)) => {
            let mut reply = Reply::json(200, String::new());
            reply.later = Some(tag);
            reply
        }
        Err(e) => api_error(&e),
    }
}

/// Writes the answer of a history request that waited for Redis, and counts it.
pub fn write_later(
    answer: Result<String, ApiError>,
    keep: KeepAlive,
    metrics: &mut Metrics,
    out: &mut Vec<u8>,
) {
    let reply = match answer {
        Ok(json) => Reply::json(200, json),
        Err(e) => api_error(&e),
    };
    metrics.api_requests.incr(reply.status);
    reply.write(out, keep);
}
