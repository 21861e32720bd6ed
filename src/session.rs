//! Session tokens (SPEC section 4): HS256 JWTs that turn a connection into a user.

/// A logged-in user, from a verified session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The token's `sub` claim.
    pub id: String,
    /// The token's `name` claim.
    pub name: String,
    /// The token's optional `email` claim.
    pub email: Option<String>,
    /// The token's optional `admin` claim (false when absent).
    pub admin: bool,
}

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a session token was refused. Every variant means HTTP 401 at the handshake: an invalid
/// token is never downgraded to a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url (unpadded) segments, or a header that is not a JSON object.
    Malformed,
    /// The header's `alg` is not exactly `HS256` (this refuses `none` and algorithm confusion),
    /// or its `typ` is present and not `JWT`.
    Algorithm,
    /// The HMAC does not match: wrong secret or tampered token.
    Signature,
    /// `exp` is now or in the past.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// The signed payload is not a JSON object, or a claim is missing or has the wrong type.
    Claims(String),
}

impl TokenError {
    /// What is wrong, for a token of any kind (`"signature does not match"`).
    pub fn reason(&self) -> std::borrow::Cow<'static, str> {
        match self {
            TokenError::Malformed => "malformed".into(),
            TokenError::Algorithm => "algorithm is not HS256".into(),
            TokenError::Signature => "signature does not match".into(),
            TokenError::Expired => "expired".into(),
            TokenError::NotYetValid => "not yet valid".into(),
            TokenError::Claims(why) => format!("claims: {why}").into(),
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed => f.write_str("malformed session token"),
            _ => write!(f, "session token {}", self.reason()),
        }
    }
}

impl std::error::Error for TokenError {}

/// Seconds since the Unix epoch; 0 if the clock is before 1970 (every token then still has a
/// meaningful `exp` comparison rather than a panic).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks a compact HS256 JWT: its header (`alg` HS256), its signature (in constant time, before
/// anything in the payload is read, so an attacker's claims are never parsed), and its time
/// claims (`exp` required, `nbf` if present). Returns the claims, for the caller to read its own.
/// Session tokens ([`verify`]) and channel tokens (`src/channel_token.rs`) share it.
///
/// An empty `secret` verifies nothing: HMAC takes any key, the empty one included, so a token
/// "signed" with it is one anybody can make (`[session] secret` empty means no sessions and no
/// channel tokens, never tokens without a key).
pub fn verify_claims(
    token: &str,
    secret: &[u8],
    now_unix: u64,
) -> Result<Map<String, Value>, TokenError> {
    if secret.is_empty() {
        return Err(TokenError::Signature);
    }
    let mut parts = token.split('.');
    let (Some(header64), Some(payload64), Some(signature64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };

    let header = decode_object(header64).ok_or(TokenError::Malformed)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(TokenError::Algorithm);
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) if typ.eq_ignore_ascii_case("JWT") => {}
        Some(_) => return Err(TokenError::Algorithm),
    }

    let signature = URL_SAFE_NO_PAD
        .decode(signature64)
        .map_err(|_| TokenError::Malformed)?;
    let signed_len = header64.len() + 1 + payload64.len();
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(&token.as_bytes()[..signed_len]);
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::Signature)?;

    let payload = URL_SAFE_NO_PAD
        .decode(payload64)
        .map_err(|_| TokenError::Malformed)?;
    let claims = match serde_json::from_slice::<Value>(&payload) {
        Ok(Value::Object(claims)) => claims,
        Ok(_) => return Err(claims_error("not a JSON object")),
        Err(_) => return Err(claims_error("not valid JSON")),
    };

    let exp = numeric_date(&claims, "exp")?.ok_or_else(|| claims_error("`exp` is required"))?;
    if exp <= now_unix {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = numeric_date(&claims, "nbf")? {
        if nbf > now_unix {
            return Err(TokenError::NotYetValid);
        }
    }
    Ok(claims)
}

/// Checks a compact HS256 JWT and returns its user.
///
/// The signature is verified (in constant time) before anything in the payload is read, so an
/// attacker's claims are never parsed. Only the header is read first, and only for `alg`/`typ`.
pub fn verify(token: &str, secret: &[u8], now_unix: u64) -> Result<User, TokenError> {
    let claims = verify_claims(token, secret, now_unix)?;
    let id = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        Some(Value::String(_)) => return Err(claims_error("`sub` is empty")),
        Some(_) => return Err(claims_error("`sub` must be a string")),
        None => return Err(claims_error("`sub` is required")),
    };
    let name = match claims.get("name") {
        Some(Value::String(name)) => name.clone(),
        Some(_) => return Err(claims_error("`name` must be a string")),
        None => return Err(claims_error("`name` is required")),
    };
    let email = match claims.get("email") {
        None | Some(Value::Null) => None,
        Some(Value::String(email)) => Some(email.clone()),
        Some(_) => return Err(claims_error("`email` must be a string")),
    };
    let admin = match claims.get("admin") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(admin)) => *admin,
        Some(_) => return Err(claims_error("`admin` must be a boolean")),
    };
    Ok(User {
        id,
        name,
        email,
        admin,
    })
}

fn claims_error(why: &str) -> TokenError {
    TokenError::Claims(why.to_owned())
}

/// Strict base64url without padding (the engine refuses `=`, `+`, `/` and non-zero trailing bits),
/// then a JSON object.
fn decode_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A JWT NumericDate (RFC 7519 section 2): a JSON number of seconds, possibly fractional, which is
/// truncated. A negative date is long past, so it becomes 0. Strings are refused.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let Value::Number(n) = value else {
        return Err(TokenError::Claims(format!("`{name}` must be a number")));
    };
    if let Some(n) = n.as_u64() {
        return Ok(Some(n));
    }
    match n.as_f64() {
        // `as` saturates, so a huge float becomes u64::MAX and a negative one 0.
        Some(f) if f.is_finite() => Ok(Some(f.max(0.0) as u64)),
        _ => Err(TokenError::Claims(format!("`{name}` must be a number"))),
    }
}

/// The claims [`issue`] writes, in a fixed order.
#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    admin: bool,
    exp: u64,
}

/// Signs a token for `user` that expires at `exp` (Unix seconds); used by `websocket:token` and
/// tests. Accepts any secret, even empty, so tests can build tokens a daemon must refuse.
pub fn issue(secret: &[u8], user: &User, exp: u64) -> String {
    let claims = Claims {
        sub: &user.id,
        name: &user.name,
        email: user.email.as_deref(),
        admin: user.admin,
        exp,
    };
    sign(secret, &claims)
}

/// A compact HS256 JWT of `claims` (a struct of string and integer fields), signed with `secret`.
pub fn sign(secret: &[u8], claims: &impl Serialize) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::to_vec(claims).expect("string and integer claims always serialise");
    let mut token = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(token.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    token.push('.');
    token.push_str(&signature);
    token
}

/// Finds the session token of an upgrade request (SPEC section 4).
///
/// The `token` query parameter wins (first occurrence, `%XX` decoded; `+` is left alone since JWTs
/// never contain spaces). Without one, the first cookie named `cookie_name` in the `Cookie` header
/// is used, with surrounding double quotes removed.
///
/// An empty `token` parameter (`?token=` or `?token`) returns `Some("")`: the client asked to be
/// authenticated and supplied nothing valid, so the daemon answers 401 rather than silently
/// making it a guest. An empty cookie, by contrast, is what a logout leaves behind, so it counts
/// as no token (`None`, a guest).
pub fn token_from_request(
    query: Option<&str>,
    cookie_header: Option<&str>,
    cookie_name: &str,
) -> Option<String> {
    find_token(query, cookie_header, cookie_name).map(|(token, _)| token)
}

/// Where a session token was found. It matters because a browser attaches cookies to a WebSocket
/// handshake that any site's page opens, while a query token was handed to the page on purpose
/// (SPEC section 4, cross-site WebSocket hijacking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// The `token` query parameter.
    Query,
    /// The session cookie.
    Cookie,
}

/// [`token_from_request`], also saying where the token came from.
pub fn find_token(
    query: Option<&str>,
    cookie_header: Option<&str>,
    cookie_name: &str,
) -> Option<(String, TokenSource)> {
    let from_query = query.and_then(|query| {
        query.split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (crate::percent::decode_lossy(name) == "token")
                .then(|| crate::percent::decode_lossy(value))
        })
    });
    if let Some(token) = from_query {
        return Some((token, TokenSource::Query));
    }
    let from_cookie = cookie_header?.split(';').find_map(|cookie| {
        let (name, value) = cookie.split_once('=')?;
        if name.trim() != cookie_name {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (!value.is_empty()).then(|| value.to_owned())
    });
    from_cookie.map(|token| (token, TokenSource::Cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";
    const NOW: u64 = 1_700_000_000;

    fn alice() -> User {
        User {
            id: "42".into(),
            name: "Alice".into(),
            email: Some("alice@example.com".into()),
            admin: true,
        }
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    /// A token with arbitrary header and payload JSON, correctly signed with SECRET.
    fn signed(header: &str, payload: &str) -> String {
        let signing_input = format!("{}.{}", b64(header), b64(payload));
        let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    fn claims(payload: &str) -> Result<User, TokenError> {
        verify(
            &signed(r#"{"alg":"HS256","typ":"JWT"}"#, payload),
            SECRET,
            NOW,
        )
    }

    #[test]
    fn issue_then_verify_round_trips() {
        let token = issue(SECRET, &alice(), NOW + 60);
        assert_eq!(verify(&token, SECRET, NOW), Ok(alice()));
        let guest_like = User {
            id: "7".into(),
            name: "Bob".into(),
            email: None,
            admin: false,
        };
        let token = issue(SECRET, &guest_like, NOW + 1);
        let payload = token.split('.').nth(1).unwrap();
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(json, r#"{"sub":"7","name":"Bob","exp":1700000001}"#);
        assert_eq!(verify(&token, SECRET, NOW), Ok(guest_like));
    }

    #[test]
    fn tampered_payload_or_wrong_secret_fails_the_signature() {
        let token = issue(SECRET, &alice(), NOW + 60);
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(r#"{"sub":"1","name":"Mallory","admin":true,"exp":9999999999}"#);
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(verify(&tampered, SECRET, NOW), Err(TokenError::Signature));
        assert_eq!(verify(&token, b"other", NOW), Err(TokenError::Signature));
        assert_eq!(verify(&token, b"", NOW), Err(TokenError::Signature));
        let no_sig = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(verify(&no_sig, SECRET, NOW), Err(TokenError::Signature));
    }

    #[test]
    fn only_hs256_is_accepted() {
        let payload = b64(r#"{"sub":"1","name":"M","exp":9999999999}"#);
        let none = format!("{}.{payload}.", b64(r#"{"alg":"none"}"#));
        assert_eq!(verify(&none, SECRET, NOW), Err(TokenError::Algorithm));
        for header in [
            r#"{"alg":"HS512","typ":"JWT"}"#,
            r#"{"alg":"hs256"}"#,
            r#"{"typ":"JWT"}"#,
            r#"{"alg":"HS256","typ":"JWS"}"#,
            r#"{"alg":"HS256","typ":5}"#,
        ] {
            let token = signed(header, r#"{"sub":"1","name":"M","exp":9999999999}"#);
            assert_eq!(
                verify(&token, SECRET, NOW),
                Err(TokenError::Algorithm),
                "{header}"
            );
        }
        let token = signed(
            r#"{"alg":"HS256","typ":"jwt"}"#,
            r#"{"sub":"1","name":"M","exp":9999999999}"#,
        );
        assert!(verify(&token, SECRET, NOW).is_ok());
        let token = signed(
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"1","name":"M","exp":9999999999}"#,
        );
        assert!(verify(&token, SECRET, NOW).is_ok());
    }

    #[test]
    fn time_claims() {
        let token = issue(SECRET, &alice(), NOW);
        assert_eq!(verify(&token, SECRET, NOW), Err(TokenError::Expired));
        assert_eq!(
            verify(&token, SECRET, NOW - 1).map(|u| u.id),
            Ok("42".into())
        );
        assert_eq!(
            claims(r#"{"sub":"1","name":"M","exp":-5}"#),
            Err(TokenError::Expired)
        );
        assert!(claims(r#"{"sub":"1","name":"M","exp":1700000000.5}"#).is_err());
        assert!(claims(r#"{"sub":"1","name":"M","exp":1700000001.5}"#).is_ok());
        assert_eq!(
            claims(r#"{"sub":"1","name":"M","exp":1700000100,"nbf":1700000001}"#),
            Err(TokenError::NotYetValid)
        );
        assert!(claims(r#"{"sub":"1","name":"M","exp":1700000100,"nbf":1700000000}"#).is_ok());
    }

    #[test]
    fn claim_errors() {
        for payload in [
            r#"{"sub":"1","name":"M"}"#,
            r#"{"sub":"1","name":"M","exp":"9999999999"}"#,
            r#"{"sub":"1","name":"M","exp":9999999999,"nbf":"0"}"#,
            r#"{"name":"M","exp":9999999999}"#,
            r#"{"sub":"","name":"M","exp":9999999999}"#,
            r#"{"sub":1,"name":"M","exp":9999999999}"#,
            r#"{"sub":"1","exp":9999999999}"#,
            r#"{"sub":"1","name":"M","email":5,"exp":9999999999}"#,
            r#"{"sub":"1","name":"M","admin":"yes","exp":9999999999}"#,
            r#"["sub","name","exp"]"#,
            r#""just a string""#,
            "not json",
        ] {
            assert!(
                matches!(claims(payload), Err(TokenError::Claims(_))),
                "{payload}"
            );
        }
        let user = claims(r#"{"sub":"1","name":"","email":null,"exp":9999999999}"#).unwrap();
        assert_eq!(
            (user.name.as_str(), user.email, user.admin),
            ("", None, false)
        );
    }

    #[test]
    fn malformed_tokens() {
        let token = issue(SECRET, &alice(), NOW + 60);
        let parts: Vec<&str> = token.split('.').collect();
        let cases = [
            String::new(),
            "abc".to_owned(),
            format!("{}.{}", parts[0], parts[1]),
            format!("{token}.{}", parts[2]),
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                parts[2].replace('-', "+").replace('_', "/") + "+/"
            ),
            format!("{}.{}.{}", "!!!", parts[1], parts[2]),
            format!("{}.{}.{}", b64("[1]"), parts[1], parts[2]),
            format!("{}.{}.{}", b64("{"), parts[1], parts[2]),
        ];
        for case in cases {
            assert_eq!(
                verify(&case, SECRET, NOW),
                Err(TokenError::Malformed),
                "{case}"
            );
        }
        // A padded payload is refused even though the signature covers it as written.
        let padded = signed(
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"1","name":"M","exp":9999999999}"#,
        );
        let mut parts: Vec<String> = padded.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(r#"{"sub":"1","name":"Mx","exp":9999999999}"#) + "=";
        let input = format!("{}.{}", parts[0], parts[1]);
        let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
        mac.update(input.as_bytes());
        let token = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(verify(&token, SECRET, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn token_from_query_is_percent_decoded() {
        assert_eq!(
            token_from_request(Some("token=a.b.c"), None, "c"),
            Some("a.b.c".into())
        );
        assert_eq!(
            token_from_request(Some("x=1&token=a%2Eb%2ec%zz%4&token=second"), None, "c"),
            Some("a.b.c%zz%4".into())
        );
        assert_eq!(
            token_from_request(Some("to%6Ben=x+y"), None, "c"),
            Some("x+y".into())
        );
        assert_eq!(
            token_from_request(Some("tokens=1&xtoken=2"), None, "c"),
            None
        );
        assert_eq!(
            token_from_request(Some("token="), None, "c"),
            Some(String::new())
        );
        assert_eq!(
            token_from_request(Some("a=1&token"), None, "c"),
            Some(String::new())
        );
        assert_eq!(token_from_request(Some(""), None, "c"), None);
        assert_eq!(token_from_request(None, None, "c"), None);
    }

    #[test]
    fn token_from_cookie() {
        let header = "theme=dark;  rakit_session=framework ; rakit_ws_session = \"a.b.c\"; rakit_ws_session=second";
        assert_eq!(
            token_from_request(None, Some(header), "rakit_ws_session"),
            Some("a.b.c".into())
        );
        assert_eq!(
            token_from_request(None, Some("rakit_ws_session=x.y.z"), "rakit_ws_session"),
            Some("x.y.z".into())
        );
        assert_eq!(
            token_from_request(None, Some("other=1; junk"), "rakit_ws_session"),
            None
        );
        assert_eq!(
            token_from_request(None, Some("rakit_ws_session="), "rakit_ws_session"),
            None
        );
        assert_eq!(
            token_from_request(Some("a=1"), Some("c=v"), "c"),
            Some("v".into())
        );
    }

    #[test]
    fn query_wins_over_cookie() {
        assert_eq!(
            token_from_request(Some("token=from.query"), Some("c=from.cookie"), "c"),
            Some("from.query".into())
        );
        assert_eq!(
            token_from_request(Some("token="), Some("c=from.cookie"), "c"),
            Some(String::new())
        );
    }

    #[test]
    fn find_token_says_where_the_token_came_from() {
        assert_eq!(
            find_token(Some("token=q"), Some("c=k"), "c"),
            Some(("q".into(), TokenSource::Query))
        );
        assert_eq!(
            find_token(Some("x=1"), Some("c=k"), "c"),
            Some(("k".into(), TokenSource::Cookie))
        );
        assert_eq!(find_token(None, Some("c="), "c"), None);
    }

    /// What a refusal says (logged at the handshake): one sentence per error, naming it.
    #[test]
    fn each_error_says_what_is_wrong() {
        let said: Vec<String> = [
            TokenError::Malformed,
            TokenError::Algorithm,
            TokenError::Signature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::Claims("`exp` must be a number".into()),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            said,
            [
                "malformed session token",
                "session token algorithm is not HS256",
                "session token signature does not match",
                "session token expired",
                "session token not yet valid",
                "session token claims: `exp` must be a number",
            ]
        );
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_unix() > 1_577_836_800);
    }
}
