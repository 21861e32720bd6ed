//! Pusher's signatures: channel authorization (`KEY:HEX(HMAC-SHA256(secret, TEXT))`), and the
//! hex HMAC the HTTP API and webhooks use. Every check compares in constant time (a timing
//! leak on a byte-by-byte compare lets a client forge a signature one byte at a time).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The hex HMAC-SHA256 of `text` under `secret`.
pub fn sign_hex(secret: &[u8], text: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(text);
    hex(&mac.finalize().into_bytes())
}

/// Whether `signature` (hex, any case) is the HMAC-SHA256 of `parts` joined with `:`, in
/// constant time.
pub fn verify_hex(secret: &[u8], parts: &[&str], signature: &str) -> bool {
    let Some(bytes) = unhex(signature) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            mac.update(b":");
        }
        mac.update(part.as_bytes());
    }
    mac.verify_slice(&bytes).is_ok()
}

/// Checks a channel `auth` field (`KEY:SIGNATURE`) over `parts` joined with `:`. The key is
/// public, so comparing it plainly leaks nothing.
pub fn verify_auth(key: &str, secret: &[u8], auth: &str, parts: &[&str]) -> bool {
    match auth.split_once(':') {
        Some((k, signature)) if k == key => verify_hex(secret, parts, signature),
        _ => false,
    }
}

/// Checks a `pusher:signin` `auth` field: signed over `SOCKET_ID::user::USER_DATA` (Pusher's
/// user authentication; the parts joined with `:` around two empty ones).
pub fn verify_signin(
    key: &str,
    secret: &[u8],
    auth: &str,
    socket_id: &str,
    user_data: &str,
) -> bool {
    verify_auth(key, secret, auth, &[socket_id, "", "user", "", user_data])
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pusher_documentation_example() {
        // From Pusher's "auth signatures" documentation.
        let secret = b"7ad3773142a6692b25b8";
        let sig = sign_hex(secret, b"1234.1234:private-foobar");
        assert_eq!(
            sig,
            "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        let auth = format!("278d425bdf160c739803:{sig}");
        assert!(verify_auth(
            "278d425bdf160c739803",
            secret,
            &auth,
            &["1234.1234", "private-foobar"]
        ));
        assert!(verify_auth(
            "278d425bdf160c739803",
            secret,
            &auth
                .to_uppercase()
                .replace("278D425BDF160C739803", "278d425bdf160c739803"),
            &["1234.1234", "private-foobar"]
        ));
        for bad in [
            format!("other:{sig}"),
            format!("278d425bdf160c739803:{}", &sig[1..]),
            format!("278d425bdf160c739803:{}0", &sig[..63]),
            "278d425bdf160c739803".to_owned(),
            String::new(),
        ] {
            assert!(!verify_auth(
                "278d425bdf160c739803",
                secret,
                &bad,
                &["1234.1234", "private-foobar"]
            ));
        }
        assert!(!verify_auth(
            "278d425bdf160c739803",
            secret,
            &auth,
            &["1234.1235", "private-foobar"]
        ));
    }

    #[test]
    fn signin_as_the_node_library_signs_it() {
        // `authenticateUser("1234.1234", {id: "42", name: "Ann"})` of the Node `pusher` 5.3.4
        // library with the documentation's key and secret.
        let (key, secret) = ("278d425bdf160c739803", b"7ad3773142a6692b25b8");
        let auth =
            "278d425bdf160c739803:a6c4d8f8f144fd1d8ce97b17de9cfb571561b906c424b7a868a1658f77fc0ddd";
        let user_data = r#"{"id":"42","name":"Ann"}"#;
        assert!(verify_signin(key, secret, auth, "1234.1234", user_data));
        assert!(!verify_signin(key, secret, auth, "1234.1235", user_data));
        assert!(!verify_signin(
            key,
            secret,
            auth,
            "1234.1234",
            r#"{"id":"43","name":"Ann"}"#
        ));
    }
}
