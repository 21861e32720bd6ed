//! `[cluster] redis_url`: where Redis is and how to log in.
//!
//! Accepted forms (a subset of the `redis` crate's, without pulling in a URL
//! parser): `redis://[[user]:password@]host[:port][/db]` and
//! `unix:/path/to/redis.sock[?db=N]` (also `unix:///path`, `redis+unix:///path`).
//! TLS (`rediss://`) is refused: there is no TLS client here.

use std::fmt;

/// Where the Redis server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp { host: String, port: u16 },
    Unix(std::path::PathBuf),
}

/// A parsed `redis_url`.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: Address,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("db", &self.db)
            .finish()
    }
}

impl fmt::Display for Endpoint {
    /// For logs: the address, never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.address {
            Address::Tcp { host, port } => write!(f, "redis://{host}:{port}/{}", self.db),
            Address::Unix(path) => write!(f, "unix:{}?db={}", path.display(), self.db),
        }
    }
}

impl Endpoint {
    /// Parses a `redis_url`; the error is a short sentence for the config error line.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        if let Some(rest) = url
            .strip_prefix("redis+unix://")
            .or_else(|| url.strip_prefix("unix://"))
            .or_else(|| url.strip_prefix("unix:"))
        {
            return unix(rest);
        }
        if url.starts_with("rediss://") {
            return Err("TLS (`rediss://`) is not supported; use `redis://` or `unix:`".into());
        }
        let Some(rest) = url.strip_prefix("redis://") else {
            return Err(format!(
                "`{url}` is not a `redis://host:port/db` or `unix:/path` url"
            ));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (
                    (!user.is_empty()).then(|| crate::percent::decode_lossy(user)),
                    Some(crate::percent::decode_lossy(pass)),
                ),
                None => (Some(crate::percent::decode_lossy(u)), None),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or("an unclosed `[` in the host")?;
            (h, p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err("the url has no host".into());
        }
        let port = match port {
            None | Some("") => 6379,
            Some(p) => p.parse().map_err(|_| format!("`{p}` is not a port"))?,
        };
        let path = path.split('?').next().unwrap_or("");
        let db = if path.is_empty() {
            0
        } else {
            path.parse()
                .map_err(|_| format!("`/{path}` is not a database number"))?
        };
        Ok(Endpoint {
            address: Address::Tcp {
                host: host.to_owned(),
                port,
            },
            username,
            password,
            db,
        })
    }
}

fn unix(rest: &str) -> Result<Endpoint, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') {
        return Err(format!("`{path}` is not an absolute socket path"));
    }
    let mut endpoint = Endpoint {
        address: Address::Unix(path.into()),
        username: None,
        password: None,
        db: 0,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("db", n)) => {
                endpoint.db = n
                    .parse()
                    .map_err(|_| format!("`{n}` is not a database number"))?
            }
            Some(("user", u)) => endpoint.username = Some(crate::percent::decode_lossy(u)),
            Some(("pass" | "password", p)) => {
                endpoint.password = Some(crate::percent::decode_lossy(p))
            }
            _ => return Err(format!("unknown parameter `{pair}`")),
        }
    }
    Ok(endpoint)
}

/// The url with its password replaced by `<set>`, for `websocket:check`.
pub fn mask_password(url: &str) -> String {
    let Some(rest) = url.strip_prefix("redis://") else {
        return match url.split_once("pass") {
            Some(_) if url.contains('?') => {
                let (path, _) = url.split_once('?').unwrap_or((url, ""));
                format!("{path}?<set>")
            }
            _ => url.to_owned(),
        };
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("redis://{user}:<set>@{}", &rest[userinfo.len() + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Address {
        Address::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_the_forms() {
        let e = Endpoint::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (e.address, e.db, e.password),
            (tcp("127.0.0.1", 6380), 2, None)
        );
        let e = Endpoint::parse("redis://localhost").unwrap();
        assert_eq!((e.address, e.db), (tcp("localhost", 6379), 0));
        let e = Endpoint::parse("redis://:p%40ss@h:1/0").unwrap();
        assert_eq!((e.username, e.password), (None, Some("p@ss".into())));
        let e = Endpoint::parse("redis://u:p@[::1]:7/3").unwrap();
        assert_eq!(
            (e.address, e.username, e.db),
            (tcp("::1", 7), Some("u".into()), 3)
        );
        let e = Endpoint::parse("unix:/tmp/r.sock?db=4").unwrap();
        assert_eq!((e.address, e.db), (Address::Unix("/tmp/r.sock".into()), 4));
        let e = Endpoint::parse("unix:///tmp/r.sock").unwrap();
        assert_eq!(e.address, Address::Unix("/tmp/r.sock".into()));
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for bad in [
            "",
            "http://x",
            "rediss://x",
            "redis://",
            "redis://h:99999",
            "redis://h/x",
            "unix:relative.sock",
            "unix:/s?db=x",
            "unix:/s?foo=1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_and_hides_passwords() {
        assert_eq!(mask_password("redis://u:pw@h:1/0"), "redis://u:<set>@h:1/0");
        assert_eq!(mask_password("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(mask_password("unix:/s?password=x"), "unix:/s?<set>");
        let e = Endpoint::parse("redis://:secret@h/0").unwrap();
        assert!(!format!("{e:?} {e}").contains("secret"));
    }
}
