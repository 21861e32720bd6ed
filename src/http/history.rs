//! `GET /api/channels/{name}/history?limit=N&since=OFFSET` (SPEC section 16): the same object a
//! WebSocket `history` request gets, `type` included.
//!
//! On one node it is answered at once. In a cluster history is in Redis, and the request waits
//! for its answer: the reply is marked `later` with the router's tag (`api.rs`), the loop holds
//! the connection (no further request of it is read), and `write_later` writes the answer when
//! the router has it. The router bounds how many wait (`MAX_API_READS`) and the cluster module
//! how long (`node_timeout_ms`), both answered 503 `unavailable`.

use crate::router::{parse_api_query, ApiError, ApiHistory, Router};

/// The end of a history path: `/api/channels/{name}/history`.
pub(super) const SUFFIX: &str = "/history";

/// `rest` is the path after `/api/channels/`, ending in [`SUFFIX`].
pub(super) fn history(
    rest: &str,
    query: Option<&str>,
    router: &mut Router,
) -> Result<ApiHistory, ApiError> {
    let encoded = &rest[..rest.len() - SUFFIX.len()];
    let name = crate::percent::decode_strict(encoded).ok_or_else(|| {
        ApiError::bad_request("the channel name is not valid percent-encoded UTF-8")
    })?;
    router.api_history(&name, parse_api_query(query)?)
}
