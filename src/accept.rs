//! Handshake decisions: what the daemon answers to a parsed upgrade request.
//!
//! The protocol crate parses and checks the request against RFC 6455; this
//! module adds the daemon's own rules (SPEC section 3): the health check,
//! `allowed_hosts`, `origin_required` / `allowed_origins`, the connection
//! limit, subprotocols, and the session token. It does no IO.

use rakit_protocol::{HandshakeError, Request};

use crate::config::Config;
use crate::session::{self, TokenSource, User};

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Complete the handshake.
    Upgrade {
        /// `Sec-WebSocket-Accept`.
        accept_key: String,
        /// The selected subprotocol.
        protocol: Option<String>,
        /// The session's user; `None` for a guest.
        user: Option<User>,
    },
    /// Refuse with this error's HTTP status.
    Refuse(HandshakeError),
}

/// Decides on `req`, given how many WebSocket connections are open now.
/// (Requests that attempt no upgrade on the HTTP side's paths, `/health`
/// among them, never come here: see `crate::http::wants`.)
pub fn decide(req: &Request, config: &Config, open: usize, now_unix: u64) -> Decision {
    match decide_upgrade(req, config, open, now_unix) {
        Err(e) => Decision::Refuse(e),
        Ok(d) => d,
    }
}

fn decide_upgrade(
    req: &Request,
    config: &Config,
    open: usize,
    now_unix: u64,
) -> Result<Decision, HandshakeError> {
    let accept_key = req.validate()?;
    // An upgrade request has no body (RFC 6455 4.1); bytes after it would be
    // read as frames.
    if req.content_length.is_some_and(|n| n > 0) || req.transfer_encoding.is_some() {
        return Err(HandshakeError::Malformed);
    }
    if !config.allowed_hosts.is_empty() {
        let host = req.host.as_deref().unwrap_or_default();
        if !config
            .allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
        {
            return Err(HandshakeError::HostNotAllowed);
        }
    }
    match req.origin.as_deref() {
        None if config.origin_required => return Err(HandshakeError::OriginNotAllowed),
        Some(origin)
            if !config.allowed_origins.is_empty()
                && !config
                    .allowed_origins
                    .iter()
                    .any(|pattern| origin_matches(pattern, origin)) =>
        {
            return Err(HandshakeError::OriginNotAllowed)
        }
        _ => {}
    }
    if open >= config.max_connections {
        return Err(HandshakeError::ServiceUnavailable);
    }
    let user = if config.session.secret.is_empty() {
        None
    } else {
        match session::find_token(
            req.query.as_deref(),
            req.cookie.as_deref(),
            &config.session.cookie,
        ) {
            None => None,
            // Checked before the token itself: a foreign page learns nothing about the cookie.
            Some((_, TokenSource::Cookie)) if !cookie_origin_trusted(req, config) => {
                return Err(HandshakeError::OriginNotAllowed)
            }
            Some((token, _)) => Some(
                session::verify(&token, config.session.secret.as_bytes(), now_unix)
                    .map_err(|_| HandshakeError::Unauthorized)?,
            ),
        }
    };
    let protocol = req
        .select_protocol(&config.supported_protocols)
        .map(str::to_owned);
    Ok(Decision::Upgrade {
        accept_key,
        protocol,
        user,
    })
}

/// May a session token from the cookie be used with this request (SPEC section 4)?
///
/// A browser attaches our cookie to a handshake that a page of any site opens, and tells us which
/// site in `Origin`. The cookie counts when that origin is trusted: it matches `allowed_origins`,
/// or, when that list is empty, its host is the `Host` header's host (ports may differ: a page on
/// `:8000` talking to the daemon on `:6001` is the same site). `Origin: null` (sandboxed frames,
/// `file:` pages) is never trusted.
///
/// A request without `Origin` is not a browser (browsers send it on every WebSocket handshake), so
/// no third-party page can be behind it: its cookie counts, unless `origin_required` refused the
/// request earlier.
pub fn cookie_origin_trusted(req: &Request, config: &Config) -> bool {
    let Some(origin) = req.origin.as_deref() else {
        return true;
    };
    if !config.allowed_origins.is_empty() {
        return config
            .allowed_origins
            .iter()
            .any(|pattern| origin_matches(pattern, origin));
    }
    if !origin.contains("://") {
        return false;
    }
    let origin_host = origin_host(origin);
    let host = authority_host(req.host.as_deref().unwrap_or_default());
    !origin_host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// The warning the daemon logs at start when session cookies are accepted from same-host pages
/// only because `allowed_origins` is empty.
pub fn cookie_origin_warning(config: &Config) -> Option<&'static str> {
    (!config.session.secret.is_empty() && config.allowed_origins.is_empty()).then_some(
        "[session] secret is set but allowed_origins is empty: a session cookie counts only \
         when the page's Origin has the same host as the Host header; list your sites in \
         allowed_origins",
    )
}

/// Does `origin` match an `allowed_origins` entry? An entry is either an
/// exact origin (`https://app.example.com`), or `*.example.com`, which
/// matches any subdomain of example.com with any scheme and port (but not
/// example.com itself).
pub fn origin_matches(pattern: &str, origin: &str) -> bool {
    match pattern.strip_prefix("*.") {
        None => pattern == origin,
        Some(domain) => {
            let host = origin_host(origin);
            host.len() > domain.len() + 1
                && host
                    .get(host.len() - domain.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(domain))
                && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
        }
    }
}

/// The host of an origin: `https://a.example.com:8443` -> `a.example.com`.
fn origin_host(origin: &str) -> &str {
    let rest = origin.split_once("://").map_or(origin, |(_, r)| r);
    authority_host(rest.split(['/', '?', '#']).next().unwrap_or_default())
}

/// The host of `host[:port]` (a `Host` header, or an origin's authority), without the brackets
/// of an IPv6 address: `[::1]:6001` -> `::1`.
fn authority_host(rest: &str) -> &str {
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    rest.rsplit_once(':').map_or(rest, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn request(extra: &[(&str, &str)]) -> Request {
        let mut req = Request {
            method: "GET".into(),
            path: "/".into(),
            http_minor: 1,
            host: Some("localhost:6001".into()),
            upgrade: Some("websocket".into()),
            connection: Some("Upgrade".into()),
            key: Some("dGhlIHNhbXBsZSBub25jZQ==".into()),
            version: Some("13".into()),
            ..Request::default()
        };
        for (k, v) in extra {
            match *k {
                "origin" => req.origin = Some(v.to_string()),
                "host" => req.host = Some(v.to_string()),
                "query" => req.query = Some(v.to_string()),
                "cookie" => req.cookie = Some(v.to_string()),
                "protocol" => req.protocols.push(v.to_string()),
                _ => unreachable!(),
            }
        }
        req
    }

    fn refused(d: Decision) -> u16 {
        match d {
            Decision::Refuse(e) => e.http_status(),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn origin_patterns() {
        assert!(origin_matches(
            "https://app.example.com",
            "https://app.example.com"
        ));
        assert!(!origin_matches(
            "https://app.example.com",
            "http://app.example.com"
        ));
        assert!(origin_matches("*.example.com", "https://a.example.com"));
        assert!(origin_matches(
            "*.example.com",
            "http://a.b.example.com:8080"
        ));
        assert!(!origin_matches("*.example.com", "https://example.com"));
        assert!(!origin_matches("*.example.com", "https://badexample.com"));
        assert!(!origin_matches(
            "*.example.com",
            "https://example.com.evil.org"
        ));
        assert!(!origin_matches("*.example.com", "null"));
        // A subdomain has a name: an empty label before the dot is none.
        assert!(!origin_matches("*.example.com", "https://.example.com"));
        assert!(origin_matches("*.example.com", "https://x.example.com"));
    }

    #[test]
    fn a_plain_get_is_no_handshake_and_health_may_be_upgraded() {
        let cfg = Config::default();
        let mut req = Request {
            method: "GET".into(),
            path: "/health".into(),
            http_minor: 1,
            ..Request::default()
        };
        // The HTTP side takes this one (crate::http::wants); here it is no handshake.
        assert!(crate::http::wants(&crate::http::Head::from_request(&req)));
        assert_eq!(refused(decide(&req, &cfg, 0, 0)), 400);
        req.path = "/other".into();
        assert_eq!(refused(decide(&req, &cfg, 0, 0)), 400);
        let mut up = request(&[]);
        up.path = "/health".into();
        assert!(matches!(decide(&up, &cfg, 0, 0), Decision::Upgrade { .. }));
    }

    #[test]
    fn hosts_origins_and_capacity() {
        let mut cfg = Config {
            allowed_hosts: vec!["LOCALHOST:6001".into()],
            ..Config::default()
        };
        assert!(matches!(
            decide(&request(&[]), &cfg, 0, 0),
            Decision::Upgrade { .. }
        ));
        assert_eq!(
            refused(decide(&request(&[("host", "evil:6001")]), &cfg, 0, 0)),
            400
        );
        cfg.origin_required = true;
        assert_eq!(refused(decide(&request(&[]), &cfg, 0, 0)), 403);
        cfg.allowed_origins = vec!["*.example.com".into()];
        let ok = request(&[("origin", "https://a.example.com")]);
        assert!(matches!(decide(&ok, &cfg, 0, 0), Decision::Upgrade { .. }));
        let bad = request(&[("origin", "https://a.example.org")]);
        assert_eq!(refused(decide(&bad, &cfg, 0, 0)), 403);
        cfg.max_connections = 1;
        assert_eq!(refused(decide(&ok, &cfg, 1, 0)), 503);
    }

    #[test]
    fn allowed_origins_without_origin_required_lets_a_missing_origin_in() {
        let cfg = Config {
            allowed_origins: vec!["https://app.example.com".into()],
            ..Config::default()
        };
        assert!(matches!(
            decide(&request(&[]), &cfg, 0, 0),
            Decision::Upgrade { .. }
        ));
    }

    #[test]
    fn sessions() {
        let mut cfg = Config::default();
        cfg.session.secret = "s3cret".into();
        let user = User {
            id: "42".into(),
            name: "Ada".into(),
            email: None,
            admin: false,
        };
        let token = session::issue(b"s3cret", &user, 2_000);
        let q = format!("token={token}");
        match decide(&request(&[("query", &q)]), &cfg, 0, 1_000) {
            Decision::Upgrade { user: Some(u), .. } => assert_eq!(u, user),
            other => panic!("{other:?}"),
        }
        let cookie = format!("rakit_ws_session={token}");
        match decide(&request(&[("cookie", &cookie)]), &cfg, 0, 1_000) {
            Decision::Upgrade { user: Some(u), .. } => assert_eq!(u.name, "Ada"),
            other => panic!("{other:?}"),
        }
        // Expired, and wrongly signed.
        assert_eq!(
            refused(decide(&request(&[("query", &q)]), &cfg, 0, 3_000)),
            401
        );
        let forged = session::issue(b"other", &user, 2_000);
        let q = format!("token={forged}");
        assert_eq!(
            refused(decide(&request(&[("query", &q)]), &cfg, 0, 1_000)),
            401
        );
        // No token: a guest.
        assert!(matches!(
            decide(&request(&[]), &cfg, 0, 1_000),
            Decision::Upgrade { user: None, .. }
        ));
    }

    /// SPEC section 4, cross-site WebSocket hijacking: where the token came from, times the
    /// request's `Origin` and `Host`, times `allowed_origins`.
    #[test]
    fn a_cookie_token_counts_only_from_a_trusted_origin() {
        const USER: u16 = 101;
        let user = User {
            id: "42".into(),
            name: "Ada".into(),
            email: None,
            admin: false,
        };
        let token = session::issue(b"s3cret", &user, 2_000);
        let cookie = format!("rakit_ws_session={token}");
        let query = format!("token={token}");
        let listed = ["https://app.example.com", "*.example.org"];
        // (allowed_origins, token source, Host, Origin, expected)
        type Case<'a> = (&'a [&'a str], &'a str, &'a str, Option<&'a str>, u16);
        let cases: &[Case] = &[
            (
                &[],
                "cookie",
                "localhost:6001",
                Some("http://localhost:8000"),
                USER,
            ),
            (
                &[],
                "cookie",
                "localhost:6001",
                Some("https://LocalHost"),
                USER,
            ),
            (
                &[],
                "cookie",
                "LOCALHOST",
                Some("http://localhost:6001"),
                USER,
            ),
            (
                &[],
                "cookie",
                "localhost:6001",
                Some("https://evil.example"),
                403,
            ),
            (
                &[],
                "cookie",
                "localhost:6001",
                Some("http://localhost.evil.example"),
                403,
            ),
            (
                &[],
                "cookie",
                "localhost:6001",
                Some("http://evil.localhost"),
                403,
            ),
            (&[], "cookie", "localhost:6001", Some("null"), 403),
            (&[], "cookie", "localhost:6001", Some("localhost"), 403),
            (&[], "cookie", "localhost:6001", None, USER),
            (&[], "cookie", "[::1]:6001", Some("http://[::1]:3000"), USER),
            (&[], "cookie", "[::1]:6001", Some("http://[::2]:6001"), 403),
            (&[], "cookie", "[::1]:6001", Some("http://::1"), 403),
            (
                &[],
                "query",
                "localhost:6001",
                Some("https://evil.example"),
                USER,
            ),
            (&[], "query", "localhost:6001", Some("null"), USER),
            (&[], "query", "localhost:6001", None, USER),
            (
                &listed,
                "cookie",
                "localhost:6001",
                Some("https://app.example.com"),
                USER,
            ),
            (
                &listed,
                "cookie",
                "localhost:6001",
                Some("https://a.example.org:8443"),
                USER,
            ),
            // Same host as Host, but not listed: the list is the whole truth.
            (
                &listed,
                "cookie",
                "localhost:6001",
                Some("http://localhost:8000"),
                403,
            ),
            (
                &listed,
                "cookie",
                "localhost:6001",
                Some("https://evil.example"),
                403,
            ),
            (&listed, "cookie", "localhost:6001", None, USER),
            (
                &listed,
                "query",
                "localhost:6001",
                Some("https://app.example.com"),
                USER,
            ),
            (&listed, "query", "localhost:6001", None, USER),
        ];
        for &(allowed, source, host, origin, expected) in cases {
            let mut cfg = Config {
                allowed_origins: allowed.iter().map(|o| o.to_string()).collect(),
                ..Config::default()
            };
            cfg.session.secret = "s3cret".into();
            let mut req = match source {
                "cookie" => request(&[("host", host), ("cookie", &cookie)]),
                _ => request(&[("host", host), ("query", &query)]),
            };
            req.origin = origin.map(str::to_owned);
            let case = format!("{allowed:?} {source} Host {host} Origin {origin:?}");
            match decide(&req, &cfg, 0, 1_000) {
                Decision::Upgrade { user: Some(u), .. } if expected == USER => {
                    assert_eq!(u, user, "{case}")
                }
                Decision::Refuse(e) if e.http_status() == expected => {}
                other => panic!("{case}: expected {expected}, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_foreign_origin_learns_nothing_about_the_cookie() {
        let mut cfg = Config::default();
        cfg.session.secret = "s3cret".into();
        let bad = "rakit_ws_session=a.b.c";
        let foreign = request(&[("cookie", bad), ("origin", "https://evil.example")]);
        assert_eq!(refused(decide(&foreign, &cfg, 0, 1_000)), 403);
        let own = request(&[("cookie", bad), ("origin", "http://localhost:8000")]);
        assert_eq!(refused(decide(&own, &cfg, 0, 1_000)), 401);
        // Without a secret there are no sessions and nothing to protect.
        cfg.session.secret.clear();
        assert!(matches!(
            decide(&foreign, &cfg, 0, 1_000),
            Decision::Upgrade { user: None, .. }
        ));
    }

    #[test]
    fn warns_when_cookies_rely_on_the_same_host_rule() {
        let mut cfg = Config::default();
        assert_eq!(cookie_origin_warning(&cfg), None);
        cfg.session.secret = "s3cret".into();
        assert!(cookie_origin_warning(&cfg).is_some_and(|w| w.contains("allowed_origins")));
        cfg.allowed_origins = vec!["https://app.example.com".into()];
        assert_eq!(cookie_origin_warning(&cfg), None);
    }

    #[test]
    fn an_upgrade_with_a_body_is_malformed_and_health_needs_no_upgrade_attempt() {
        let cfg = Config::default();
        let mut req = request(&[]);
        req.content_length = Some(5);
        assert_eq!(refused(decide(&req, &cfg, 0, 0)), 400);
        req.content_length = Some(0);
        assert!(matches!(decide(&req, &cfg, 0, 0), Decision::Upgrade { .. }));
        req.transfer_encoding = Some("chunked".into());
        assert_eq!(refused(decide(&req, &cfg, 0, 0)), 400);
        // A /health request that attempts an upgrade is judged as one.
        let health = Request {
            method: "GET".into(),
            path: "/health".into(),
            http_minor: 1,
            connection: Some("Upgrade".into()),
            ..Request::default()
        };
        assert_eq!(refused(decide(&health, &cfg, 0, 0)), 400);
    }

    #[test]
    fn first_client_listed_supported_protocol() {
        let cfg = Config {
            supported_protocols: vec!["b".into(), "a".into()],
            ..Config::default()
        };
        let req = request(&[("protocol", "x"), ("protocol", "a"), ("protocol", "b")]);
        match decide(&req, &cfg, 0, 0) {
            Decision::Upgrade { protocol, .. } => assert_eq!(protocol.as_deref(), Some("a")),
            other => panic!("{other:?}"),
        }
    }
}
