//! Handshake decisions: what the daemon answers to a parsed upgrade request.
//!
//! The protocol crate parses and checks the request against RFC 6455; this
//! module adds the daemon's own rules (SPEC section 3): the health check,
//! `allowed_hosts`, `origin_required` / `allowed_origins`, the connection
//! limit, subprotocols, and the session token. It does no IO.

use rakit_protocol::{HandshakeError, Request};

use crate::config::Config;
use crate::session::{self, User};

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `GET /health` without upgrade headers: answer `200 ok`.
    Health,
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
pub fn decide(req: &Request, config: &Config, open: usize, now_unix: u64) -> Decision {
    match decide_upgrade(req, config, open, now_unix) {
        Err(_) if is_health_check(req) => Decision::Health,
        Err(e) => Decision::Refuse(e),
        Ok(d) => d,
    }
}

fn is_health_check(req: &Request) -> bool {
    req.method == "GET" && req.path == "/health" && !req.is_upgrade()
}

fn decide_upgrade(
    req: &Request,
    config: &Config,
    open: usize,
    now_unix: u64,
) -> Result<Decision, HandshakeError> {
    let accept_key = req.validate()?;
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
        match session::token_from_request(
            req.query.as_deref(),
            req.cookie.as_deref(),
            &config.session.cookie,
        ) {
            None => None,
            Some(token) => Some(
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
    let rest = rest.split(['/', '?', '#']).next().unwrap_or_default();
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
    }

    #[test]
    fn health_check_only_without_upgrade() {
        let cfg = Config::default();
        let mut req = Request {
            method: "GET".into(),
            path: "/health".into(),
            http_minor: 1,
            ..Request::default()
        };
        assert_eq!(decide(&req, &cfg, 0, 0), Decision::Health);
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
