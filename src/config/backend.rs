//! The backend-facing tables of the configuration: `[api]` (SPEC section 8), `[metrics]` (section
//! 9) and `[webhooks]` (section 10). Kept apart from the WebSocket keys in `config.rs`: each table
//! is its own struct with its own `validate`, called once from [`super::Config::validate`].

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Shortest accepted `[api] key` (SPEC section 8); `[metrics] key` follows the same rule.
pub const MIN_KEY_LEN: usize = 16;

/// The `[api] key` table: the backend HTTP API (SPEC section 8).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Bearer key of the HTTP API; empty turns the API off (every `/api/` path is 404).
    pub key: String,
}

impl ApiConfig {
    /// Whether the API answers at all.
    pub fn enabled(&self) -> bool {
        !self.key.is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        bearer_key("api.key", &self.key)
    }
}

/// The `[metrics]` table: `GET /metrics` (SPEC section 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `GET /metrics`; when false it is 404.
    pub enabled: bool,
    /// When set, `/metrics` also requires `Authorization: Bearer KEY`.
    pub key: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            key: String::new(),
        }
    }
}

impl MetricsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        bearer_key("metrics.key", &self.key)
    }
}

/// An event name of `[webhooks] events`: SPEC section 10's own, or Pusher's (with `format =
/// "pusher"`). Anything else is a type error that names `webhooks.events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    Connect,
    Disconnect,
    Subscribe,
    Unsubscribe,
    /// Every client text message, with its text (off by default: it can be a lot).
    Message,
    /// Pusher: a channel got its first subscriber.
    ChannelOccupied,
    /// Pusher: a channel lost its last subscriber.
    ChannelVacated,
    /// Pusher: a user's first connection joined a presence channel.
    MemberAdded,
    /// Pusher: a user's last connection left a presence channel.
    MemberRemoved,
    /// Pusher: every relayed client event, with its data (off by default, like `message`).
    ClientEvent,
    /// Pusher: a subscriber of a cache channel found no cached event (SPEC section 16).
    CacheMiss,
}

impl WebhookEvent {
    /// Every event: SPEC section 10's in its order, then Pusher's.
    pub const ALL: [WebhookEvent; 11] = [
        WebhookEvent::Connect,
        WebhookEvent::Disconnect,
        WebhookEvent::Subscribe,
        WebhookEvent::Unsubscribe,
        WebhookEvent::Message,
        WebhookEvent::ChannelOccupied,
        WebhookEvent::ChannelVacated,
        WebhookEvent::MemberAdded,
        WebhookEvent::MemberRemoved,
        WebhookEvent::ClientEvent,
        WebhookEvent::CacheMiss,
    ];

    /// The wire and config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Connect => "connect",
            WebhookEvent::Disconnect => "disconnect",
            WebhookEvent::Subscribe => "subscribe",
            WebhookEvent::Unsubscribe => "unsubscribe",
            WebhookEvent::Message => "message",
            WebhookEvent::ChannelOccupied => "channel_occupied",
            WebhookEvent::ChannelVacated => "channel_vacated",
            WebhookEvent::MemberAdded => "member_added",
            WebhookEvent::MemberRemoved => "member_removed",
            WebhookEvent::ClientEvent => "client_event",
            WebhookEvent::CacheMiss => "cache_miss",
        }
    }

    /// The format whose POSTs carry this event.
    pub fn format(self) -> WebhookFormat {
        match self {
            WebhookEvent::Connect
            | WebhookEvent::Disconnect
            | WebhookEvent::Subscribe
            | WebhookEvent::Unsubscribe
            | WebhookEvent::Message => WebhookFormat::Rakit,
            WebhookEvent::ChannelOccupied
            | WebhookEvent::ChannelVacated
            | WebhookEvent::MemberAdded
            | WebhookEvent::MemberRemoved
            | WebhookEvent::ClientEvent
            | WebhookEvent::CacheMiss => WebhookFormat::Pusher,
        }
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[webhooks] format`: whose webhooks the daemon sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// SPEC section 10: `{"time_ms","node","events"}`, `X-Rakit-Signature` with `[webhooks]
    /// secret`.
    #[default]
    Rakit,
    /// Pusher Channels' webhooks: `{"time_ms","events"}`, `X-Pusher-Key` and
    /// `X-Pusher-Signature` with the `[pusher]` app's key and secret (docs/pusher-webhooks.md).
    Pusher,
}

impl WebhookFormat {
    /// The events sent when `events` is not set.
    pub fn default_events(self) -> &'static [WebhookEvent] {
        match self {
            WebhookFormat::Rakit => &[
                WebhookEvent::Connect,
                WebhookEvent::Disconnect,
                WebhookEvent::Subscribe,
                WebhookEvent::Unsubscribe,
            ],
            WebhookFormat::Pusher => &[
                WebhookEvent::ChannelOccupied,
                WebhookEvent::ChannelVacated,
                WebhookEvent::MemberAdded,
                WebhookEvent::MemberRemoved,
                WebhookEvent::CacheMiss,
            ],
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Rakit => "rakit",
            WebhookFormat::Pusher => "pusher",
        }
    }

    /// Every event of this format, for error messages.
    fn event_names(self) -> String {
        let names: Vec<&str> = WebhookEvent::ALL
            .iter()
            .filter(|e| e.format() == self)
            .map(|e| e.as_str())
            .collect();
        names.join(", ")
    }
}

/// The `[webhooks]` table (SPEC section 10). Defaults are the SPEC's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// `http://` endpoint that receives the POSTs; empty turns webhooks off.
    pub url: String,
    /// `"rakit"` (SPEC section 10) or `"pusher"` (Pusher's format, signed with `[pusher]`).
    pub format: WebhookFormat,
    /// HMAC-SHA256 key of `X-Rakit-Signature`; required with a url in the Rakit format, unused
    /// (so refused) in Pusher's.
    pub secret: String,
    /// Which events are sent; unset: the format's default set (see [`WebhooksConfig::events`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<WebhookEvent>>,
    /// A batch goes when it holds this many events...
    pub batch_max: usize,
    /// ...or when its oldest event is this many milliseconds old.
    pub batch_ms: u64,
    /// Events waiting beyond this many are dropped (and counted).
    pub queue_max: usize,
    /// ...and beyond this many bytes of JSON, the batch being sent included (a `message`
    /// event carries the client's text, escaped: up to six bytes a character).
    pub queue_max_bytes: u64,
    /// Timeout of one POST, in milliseconds.
    pub timeout_ms: u64,
    /// Retries of a batch after a timeout, a connection error or a 5xx.
    pub retries: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            url: String::new(),
            format: WebhookFormat::Rakit,
            secret: String::new(),
            events: None,
            batch_max: 100,
            batch_ms: 100,
            queue_max: 10_000,
            queue_max_bytes: DEFAULT_QUEUE_BYTES,
            timeout_ms: 5_000,
            retries: 3,
        }
    }
}

/// Upper bounds: values beyond them are mistakes (a day-long batch window), not tuning.
const MAX_BATCH: usize = 10_000;
const MAX_BATCH_MS: u64 = 60_000;
const MAX_QUEUE: usize = 1_000_000;
/// 16 MiB: a few thousand ordinary events, or forty `message` events of 64 KiB that escape
/// to six times their size.
const DEFAULT_QUEUE_BYTES: u64 = 16 * 1024 * 1024;
/// A queue smaller than one default-size message escaped is a mistake...
const MIN_QUEUE_BYTES: u64 = 64 * 1024;
/// ...and so is one of more than 4 GiB (memory held for an endpoint that does not answer).
const MAX_QUEUE_BYTES: u64 = 4 * 1024 * 1024 * 1024;
const MAX_TIMEOUT_MS: u64 = 300_000;
const MAX_RETRIES: u32 = 10;

impl WebhooksConfig {
    /// Whether webhooks are sent at all.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// The events sent: as configured, else the format's default set.
    pub fn events(&self) -> &[WebhookEvent] {
        self.events
            .as_deref()
            .unwrap_or_else(|| self.format.default_events())
    }

    /// Whether `event` is sent.
    pub fn wants(&self, event: WebhookEvent) -> bool {
        self.events().contains(&event)
    }

    /// Whether these webhooks sign with the `[pusher]` app (which must then be configured).
    pub fn needs_pusher(&self) -> bool {
        self.enabled() && self.format == WebhookFormat::Pusher
    }

    fn validate(&self) -> Result<(), ConfigError> {
        within(
            "webhooks.batch_max",
            self.batch_max as u64,
            1,
            MAX_BATCH as u64,
        )?;
        within("webhooks.batch_ms", self.batch_ms, 0, MAX_BATCH_MS)?;
        within(
            "webhooks.queue_max",
            self.queue_max as u64,
            1,
            MAX_QUEUE as u64,
        )?;
        within(
            "webhooks.queue_max_bytes",
            self.queue_max_bytes,
            MIN_QUEUE_BYTES,
            MAX_QUEUE_BYTES,
        )?;
        within("webhooks.timeout_ms", self.timeout_ms, 1, MAX_TIMEOUT_MS)?;
        within(
            "webhooks.retries",
            u64::from(self.retries),
            0,
            u64::from(MAX_RETRIES),
        )?;
        // Like the bounds, checked while webhooks are off too: a name of the other format is a
        // mistake whatever the url.
        if let Some(other) = self.events().iter().find(|e| e.format() != self.format) {
            return invalid(
                "webhooks.events",
                format!(
                    "`{other}` is a {} event, not one of format = \"{}\" ({})",
                    other.format().as_str(),
                    self.format.as_str(),
                    self.format.event_names()
                ),
            );
        }
        if self.format == WebhookFormat::Pusher && !self.secret.is_empty() {
            return invalid(
                "webhooks.secret",
                "is not used with format = \"pusher\" (POSTs are signed with pusher.secret, \
                 as Pusher does); remove it",
            );
        }
        if !self.enabled() {
            return Ok(());
        }
        check_url(&self.url)?;
        if self.format == WebhookFormat::Rakit && self.secret.is_empty() {
            return invalid("webhooks.secret", "is required when webhooks.url is set");
        }
        if self.events().is_empty() {
            return invalid(
                "webhooks.events",
                "must name at least one event when webhooks.url is set",
            );
        }
        Ok(())
    }

    /// The url with any password replaced, for `websocket:check`.
    pub(super) fn url_for_display(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        match rest[..authority_end].rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:<set>@{host}{}", &rest[authority_end..])
            }
            None => self.url.clone(),
        }
    }
}

/// A webhook url: `http://host[:port][/path]`. `https://` needs TLS, which this build leaves out
/// (webhooks usually go to a backend on the same host or network).
fn check_url(url: &str) -> Result<(), ConfigError> {
    let key = "webhooks.url";
    let uri = match ureq::http::Uri::try_from(url) {
        Ok(uri) => uri,
        Err(e) => return invalid(key, format!("`{url}` is not a URL: {e}")),
    };
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return invalid(
                key,
                "https:// is not supported (this build has no TLS client); use http://",
            )
        }
        _ => return invalid(key, format!("`{url}` must start with http://")),
    }
    if uri.host().map_or(true, str::is_empty) {
        return invalid(key, format!("`{url}` has no host"));
    }
    Ok(())
}

/// A bearer key: empty (off), or at least [`MIN_KEY_LEN`] visible ASCII characters (it travels in
/// an HTTP header, so no spaces or control characters).
fn bearer_key(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Ok(());
    }
    if value.chars().count() < MIN_KEY_LEN {
        return invalid(
            key,
            format!("must be at least {MIN_KEY_LEN} characters (or empty to turn it off)"),
        );
    }
    if !value.chars().all(|c| c.is_ascii_graphic()) {
        return invalid(
            key,
            "must be visible ASCII characters only (no spaces or control characters)",
        );
    }
    Ok(())
}

fn within(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return invalid(key, format!("must be between {min} and {max}"));
    }
    Ok(())
}

/// Validates the backend tables; called from [`super::Config::validate`].
pub(super) fn validate(
    api: &ApiConfig,
    metrics: &MetricsConfig,
    webhooks: &WebhooksConfig,
) -> Result<(), ConfigError> {
    api.validate()?;
    metrics.validate()?;
    webhooks.validate()
}

/// Replaces keys and secrets by `<set>` (empty ones stay empty, so "off" stays visible).
pub(super) fn mask(
    api: &mut ApiConfig,
    metrics: &mut MetricsConfig,
    webhooks: &mut WebhooksConfig,
) {
    for secret in [&mut api.key, &mut metrics.key, &mut webhooks.secret] {
        if !secret.is_empty() {
            *secret = "<set>".to_owned();
        }
    }
    webhooks.url = webhooks.url_for_display();
    // The effective set, so the default of the format shows.
    webhooks.events = Some(webhooks.events().to_vec());
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[track_caller]
    fn invalid_key(text: &str) -> String {
        let config = Config::from_str(text).expect("parses");
        let e = config.validate().expect_err("should be invalid");
        assert!(matches!(e, ConfigError::Invalid { .. }), "{e:?}");
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        e.key().expect("names a key").to_owned()
    }

    const HOOK: &str = "[webhooks]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"s\"\n";

    #[test]
    fn defaults_match_spec() {
        let c = Config::default();
        assert_eq!(c.api.key, "");
        assert!(!c.api.enabled());
        assert!(c.metrics.enabled);
        assert_eq!(c.metrics.key, "");
        assert!(c.demo_page);
        let w = &c.webhooks;
        assert!(!w.enabled());
        assert_eq!((w.url.as_str(), w.secret.as_str()), ("", ""));
        assert_eq!(w.format, WebhookFormat::Rakit);
        assert_eq!(
            w.events(),
            [
                WebhookEvent::Connect,
                WebhookEvent::Disconnect,
                WebhookEvent::Subscribe,
                WebhookEvent::Unsubscribe
            ]
        );
        assert!(!w.wants(WebhookEvent::Message));
        assert_eq!((w.batch_max, w.batch_ms, w.queue_max), (100, 100, 10_000));
        assert_eq!(w.queue_max_bytes, 16_777_216);
        assert_eq!((w.timeout_ms, w.retries), (5_000, 3));
    }

    #[test]
    fn parses_every_table() {
        let c = Config::from_str(
            "demo_page = false\n[api]\nkey = \"0123456789abcdef\"\n[metrics]\nenabled = false\n\
             key = \"fedcba9876543210\"\n[webhooks]\nurl = \"http://localhost:8000/ws-hook\"\n\
             secret = \"x\"\nevents = [\"message\", \"connect\"]\nbatch_max = 5\nbatch_ms = 0\n\
             queue_max = 7\nqueue_max_bytes = 65536\ntimeout_ms = 250\nretries = 0\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert!(!c.demo_page && c.api.enabled() && !c.metrics.enabled);
        assert_eq!(c.metrics.key, "fedcba9876543210");
        assert_eq!(
            c.webhooks.events(),
            [WebhookEvent::Message, WebhookEvent::Connect]
        );
        assert_eq!(c.webhooks.batch_max, 5);
        assert_eq!(c.webhooks.queue_max_bytes, 65_536);
        assert_eq!(c.webhooks.retries, 0);
    }

    #[test]
    fn unknown_keys_and_event_names_are_named() {
        let e = Config::from_str("[api]\nkey = \"x\"\nkeys = 1\n").unwrap_err();
        assert_eq!(e.to_string(), "unknown key `api.keys`");
        let e = Config::from_str("[metrics]\nenable = true\n").unwrap_err();
        assert_eq!(e.key(), Some("metrics.enable"));
        let e = Config::from_str("[webhooks]\nbatchmax = 1\n").unwrap_err();
        assert_eq!(e.key(), Some("webhooks.batchmax"));
        let e = Config::from_str("[webhooks]\nevents = [\"connect\", \"publish\"]\n").unwrap_err();
        assert_eq!(e.key(), Some("webhooks.events"), "{e}");
        assert!(e.to_string().contains("publish"), "{e}");
        let e = Config::from_str("[webhooks]\nretries = -1\n").unwrap_err();
        assert_eq!(e.key(), Some("webhooks.retries"), "{e}");
        let e = Config::from_str("demo_page = \"yes\"\n").unwrap_err();
        assert_eq!(e.key(), Some("demo_page"), "{e}");
    }

    #[test]
    fn keys_need_sixteen_visible_characters() {
        assert_eq!(invalid_key("[api]\nkey = \"short\"\n"), "api.key");
        assert_eq!(
            invalid_key("[api]\nkey = \"0123456789 abcdef\"\n"),
            "api.key"
        );
        assert_eq!(
            invalid_key("[metrics]\nkey = \"123456789012345\"\n"),
            "metrics.key"
        );
        Config::from_str("[api]\nkey = \"0123456789abcdef\"\n")
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn webhook_values_are_checked() {
        Config::from_str(HOOK).unwrap().validate().unwrap();
        for (extra, key) in [
            ("batch_max = 0", "webhooks.batch_max"),
            ("batch_max = 10001", "webhooks.batch_max"),
            ("batch_ms = 60001", "webhooks.batch_ms"),
            ("queue_max = 0", "webhooks.queue_max"),
            ("queue_max = 1000001", "webhooks.queue_max"),
            ("queue_max_bytes = 65535", "webhooks.queue_max_bytes"),
            ("queue_max_bytes = 4294967297", "webhooks.queue_max_bytes"),
            ("timeout_ms = 0", "webhooks.timeout_ms"),
            ("timeout_ms = 9223372036854775807", "webhooks.timeout_ms"),
            ("retries = 11", "webhooks.retries"),
            ("events = []", "webhooks.events"),
        ] {
            assert_eq!(invalid_key(&format!("{HOOK}{extra}\n")), key, "{extra}");
        }
        // Bounds apply even while webhooks are off, so a typo is caught before it matters.
        assert_eq!(
            invalid_key("[webhooks]\nbatch_max = 0\n"),
            "webhooks.batch_max"
        );
        for url in [
            "ftp://h/x",
            "https://example.com/hook",
            "not a url",
            "http://",
            "localhost:80",
        ] {
            let text = format!("[webhooks]\nurl = \"{url}\"\nsecret = \"s\"\n");
            assert_eq!(invalid_key(&text), "webhooks.url", "{url}");
        }
        assert_eq!(
            invalid_key("[webhooks]\nurl = \"http://h/x\"\n"),
            "webhooks.secret"
        );
    }

    #[test]
    fn describe_masks_keys_secrets_and_url_passwords() {
        let mut c = Config::default();
        c.api.key = "api-key-0123456789".into();
        c.metrics.key = "metrics-key-0123456".into();
        c.webhooks.url = "http://hook:pa55word@127.0.0.1:8000/hook?x=1".into();
        c.webhooks.secret = "hook-secret".into();
        let text = c.describe();
        for secret in [
            "api-key-0123456789",
            "metrics-key-0123456",
            "pa55word",
            "hook-secret",
        ] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        assert!(text.contains("[api]\nkey = \"<set>\"\n"), "{text}");
        assert!(
            text.contains("url = \"http://hook:<set>@127.0.0.1:8000/hook?x=1\"\n"),
            "{text}"
        );
        assert!(text.contains("[metrics]\nenabled = true\n"), "{text}");
        assert!(text.contains("demo_page = true\n"), "{text}");
        assert!(
            text.contains("events = [\"connect\", \"disconnect\", \"subscribe\", \"unsubscribe\"]"),
            "{text}"
        );
        // Unset stays visibly empty; the masked text still parses.
        let text = Config::default().describe();
        assert!(text.contains("[api]\nkey = \"\"\n"), "{text}");
        Config::from_str(&text).unwrap();
    }

    #[test]
    fn event_names_round_trip() {
        for e in WebhookEvent::ALL {
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{e}\""));
        }
    }

    const PUSHER: &str =
        "[pusher]\napp_id = \"4242\"\nkey = \"app-key\"\nsecret = \"0123456789abcdef\"\n";

    #[test]
    fn pusher_format_defaults_and_signs_with_the_pusher_app() {
        let text =
            format!("{PUSHER}[webhooks]\nurl = \"http://127.0.0.1:9/x\"\nformat = \"pusher\"\n");
        let c = Config::from_str(&text).unwrap();
        c.validate().unwrap();
        assert!(c.webhooks.needs_pusher());
        assert_eq!(
            c.webhooks.events(),
            [
                WebhookEvent::ChannelOccupied,
                WebhookEvent::ChannelVacated,
                WebhookEvent::MemberAdded,
                WebhookEvent::MemberRemoved,
                WebhookEvent::CacheMiss
            ]
        );
        assert!(!c.webhooks.wants(WebhookEvent::ClientEvent));
        let c = Config::from_str(&format!(
            "{text}events = [\"client_event\", \"member_added\"]\n"
        ))
        .unwrap();
        c.validate().unwrap();
        assert!(c.webhooks.wants(WebhookEvent::ClientEvent));
        assert!(!c.webhooks.wants(WebhookEvent::ChannelOccupied));
        // websocket:check shows the effective set, and what it prints parses back the same.
        let shown = Config::from_str(&text).unwrap().describe();
        assert!(shown.contains("format = \"pusher\"\n"), "{shown}");
        assert!(
            shown.contains(
                "events = [\"channel_occupied\", \"channel_vacated\", \"member_added\", \"member_removed\", \"cache_miss\"]"
            ),
            "{shown}"
        );
        let back = Config::from_str(&shown).unwrap();
        assert_eq!(back.webhooks.events(), c.webhooks.format.default_events());
    }

    #[test]
    fn pusher_format_errors_name_the_key() {
        let hook = "[webhooks]\nurl = \"http://127.0.0.1:9/x\"\n";
        for (text, key, says) in [
            // Without [pusher] there is nothing to sign with.
            (
                format!("{hook}format = \"pusher\"\n"),
                "webhooks.format",
                "[pusher]",
            ),
            // Names of the other format, either way, even while webhooks are off.
            (
                format!("{PUSHER}{hook}format = \"pusher\"\nevents = [\"connect\"]\n"),
                "webhooks.events",
                "`connect` is a rakit event",
            ),
            (
                format!("{HOOK}events = [\"subscribe\", \"channel_occupied\"]\n"),
                "webhooks.events",
                "channel_occupied",
            ),
            (
                "[webhooks]\nevents = [\"member_added\"]\n".to_owned(),
                "webhooks.events",
                "connect, disconnect, subscribe, unsubscribe, message",
            ),
            // The Rakit secret would sign nothing.
            (
                format!("{PUSHER}{hook}format = \"pusher\"\nsecret = \"s\"\n"),
                "webhooks.secret",
                "pusher.secret",
            ),
            (
                format!("{PUSHER}{hook}format = \"pusher\"\nevents = []\n"),
                "webhooks.events",
                "at least one",
            ),
        ] {
            let e = Config::from_str(&text).unwrap().validate().unwrap_err();
            assert_eq!(e.key(), Some(key), "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
        let e = Config::from_str("[webhooks]\nformat = \"soketi\"\n").unwrap_err();
        assert_eq!(e.key(), Some("webhooks.format"), "{e}");
        // Old configs keep working: the Rakit format is the default.
        Config::from_str(HOOK).unwrap().validate().unwrap();
    }
}
