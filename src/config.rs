//! Daemon configuration (SPEC section 2): `config/websocket.toml`.
//!
//! Parsing and validation are separate steps: [`Config::from_str`] / [`Config::load`] only turn TOML
//! into a [`Config`] (unknown keys and wrong types are errors that name the key), and
//! [`Config::validate`] checks the values, so command-line overrides can be applied in between.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod backend;
mod cluster;
mod history;
mod limits;
mod namespaces;
mod pusher;

pub use self::backend::{
    ApiConfig, MetricsConfig, WebhookEvent, WebhookFormat, WebhooksConfig, MIN_KEY_LEN,
};
pub use self::cluster::ClusterConfig;
pub use self::history::HistoryConfig;
pub use self::limits::{BroadcastPolicy, LimitsConfig};
pub use self::namespaces::{NamespaceConfig, MAX_HISTORY_SIZE};
pub use self::pusher::PusherConfig;

/// The file read when no `--config` is given; relative to the current directory.
pub const DEFAULT_PATH: &str = "config/websocket.toml";

/// Upper bounds that `validate` enforces. Larger values have no use and some would crash the
/// daemon (a deadline of `now + 2^63 s` overflows `Instant`), so they are config errors.
pub mod max {
    /// Timeouts and intervals in seconds (`ping_interval`, `ping_timeout`, `handshake_timeout`):
    /// one day.
    pub const SECONDS: u64 = 86_400;
    /// `presence_interval_ms`: one hour.
    pub const PRESENCE_INTERVAL_MS: u64 = 3_600_000;
    /// `max_buffer_size` and `max_send_buffer`: 1 GiB, per connection.
    pub const BUFFER: u64 = 1 << 30;
    /// `max_handshake_size`: 1 MiB, far above any real upgrade request (browsers send under 2 KiB).
    pub const HANDSHAKE: u64 = 1 << 20;
    /// `max_connections` and `presence_max_users`: ten million.
    pub const CONNECTIONS: u64 = 10_000_000;
    /// `max_channels_per_client`: one hundred thousand.
    pub const CHANNELS_PER_CLIENT: u64 = 100_000;
}

/// Who may send `{"command": ...}` messages (defined with the router, which enforces it).
pub use crate::router::CommandPolicy;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogOutput {
    /// Standard output (not stderr: stderr is kept for the one-line fatal errors).
    #[default]
    Stdout,
    /// Appended to `logging_file`.
    File,
}

/// The most verbose level that is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The `log` crate's filter for this level.
    pub fn to_level_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// The `[session]` table: how session tokens (SPEC section 4) are found and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Cookie carrying the token; deliberately not the web framework's own session cookie.
    pub cookie: String,
    /// HS256 key; empty disables sessions (everyone is a guest).
    pub secret: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            cookie: "rakit_ws_session".to_owned(),
            secret: String::new(),
        }
    }
}

/// Every key of SPEC section 2. Missing keys take their defaults, so an empty file is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub max_buffer_size: usize,
    pub max_handshake_size: usize,
    pub max_connections: usize,
    /// HTTP connections (API, metrics, health, demo page) held at once, apart from
    /// `max_connections`; beyond it a request gets 503.
    pub max_http_connections: usize,
    pub max_send_buffer: usize,
    pub max_channels_per_client: usize,
    pub origin_required: bool,
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub supported_protocols: Vec<String>,
    /// Seconds; 0 disables server pings.
    pub ping_interval: u64,
    /// Seconds.
    pub ping_timeout: u64,
    /// Seconds.
    pub handshake_timeout: u64,
    pub presence: bool,
    pub presence_interval_ms: u64,
    pub presence_max_users: usize,
    pub command_policy: CommandPolicy,
    pub logging_enabled: bool,
    pub logging_output: LogOutput,
    pub logging_file: PathBuf,
    pub logging_level: LogLevel,
    /// `GET /` without upgrade headers serves the demo chat page (SPEC section 14).
    pub demo_page: bool,
    /// permessage-deflate (RFC 7692) with clients that offer it (SPEC section 12).
    pub compression: bool,
    /// zlib level, 1 (fast) to 9.
    pub compression_level: u32,
    /// Messages shorter than this many bytes are sent uncompressed.
    pub compression_min_size: usize,
    /// Tables kept last: TOML requires them after plain keys, which matters for [`Config::describe`].
    pub session: SessionConfig,
    /// `[api]`: the backend HTTP API (SPEC section 8).
    pub api: ApiConfig,
    /// `[metrics]`: `GET /metrics` (SPEC section 9).
    pub metrics: MetricsConfig,
    /// `[webhooks]` (SPEC section 10).
    pub webhooks: WebhooksConfig,
    /// `[cluster]` (SPEC section 11).
    pub cluster: ClusterConfig,
    /// `[pusher]` (SPEC section 13).
    pub pusher: PusherConfig,
    /// `[history]` (SPEC section 16).
    pub history: HistoryConfig,
    /// `[tls]` (SPEC section 12).
    pub tls: TlsConfig,
    /// `[limits]` (SPEC section 17).
    pub limits: LimitsConfig,
    /// `[[namespaces]]` (SPEC section 15), in the order of the file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<NamespaceConfig>,
}

/// The `[tls]` table: PEM files, both or neither. When set, the port speaks TLS only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// The certificate and key files, when TLS is on.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert.as_deref()?, self.key.as_deref()?))
    }

    /// Both or neither, and files that load (a bad one is a config error at start).
    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert, &self.key) {
            (None, None) => Ok(()),
            (Some(_), None) => invalid("tls.key", "must be set when tls.cert is"),
            (None, Some(_)) => invalid("tls.cert", "must be set when tls.key is"),
            (Some(cert), Some(key)) => crate::transport::load(cert, key)
                .map(drop)
                .or_else(|e| invalid(e.key, e.message)),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".to_owned(),
            port: 6001,
            max_buffer_size: 65536,
            max_handshake_size: 8192,
            max_connections: 10000,
            max_http_connections: 1024,
            max_send_buffer: 1_048_576,
            max_channels_per_client: 100,
            origin_required: false,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            supported_protocols: Vec::new(),
            ping_interval: 25,
            ping_timeout: 10,
            handshake_timeout: 10,
            presence: true,
            presence_interval_ms: 200,
            presence_max_users: 100,
            command_policy: CommandPolicy::Admin,
            logging_enabled: true,
            logging_output: LogOutput::Stdout,
            logging_file: PathBuf::from("storage/logs/websocket.log"),
            logging_level: LogLevel::Info,
            demo_page: true,
            compression: false,
            compression_level: 1,
            compression_min_size: 256,
            session: SessionConfig::default(),
            api: ApiConfig::default(),
            metrics: MetricsConfig::default(),
            webhooks: WebhooksConfig::default(),
            cluster: ClusterConfig::default(),
            pusher: PusherConfig::default(),
            history: HistoryConfig::default(),
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
            namespaces: Vec::new(),
        }
    }
}

/// A configuration problem. Its `Display` is one line naming the key (or the file), because it is
/// printed as-is on stderr before exiting with code 2.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A key that the config does not have (dotted, e.g. `session.foo`).
    UnknownKey { path: Option<PathBuf>, key: String },
    /// Invalid TOML, or a value of the wrong type (`key` is then the dotted key when it is known).
    Parse {
        path: Option<PathBuf>,
        key: Option<String>,
        message: String,
    },
    /// A well-typed value that `validate` refuses.
    Invalid { key: String, message: String },
}

impl ConfigError {
    /// The dotted key this error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Parse { key, .. } => key.as_deref(),
        }
    }

    /// Attaches the file name, so the error says which file is wrong.
    fn with_path(self, file: &Path) -> Self {
        match self {
            ConfigError::UnknownKey { key, .. } => ConfigError::UnknownKey {
                path: Some(file.to_path_buf()),
                key,
            },
            ConfigError::Parse { key, message, .. } => ConfigError::Parse {
                path: Some(file.to_path_buf()),
                key,
                message,
            },
            other => other,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = |f: &mut fmt::Formatter<'_>, path: &Option<PathBuf>| match path {
            Some(path) => write!(f, "{}: ", path.display()),
            None => Ok(()),
        };
        match self {
            ConfigError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            ConfigError::UnknownKey { path, key } => {
                prefix(f, path)?;
                write!(f, "unknown key `{key}`")
            }
            ConfigError::Parse { path, key, message } => {
                prefix(f, path)?;
                match key {
                    Some(key) => write!(f, "{key}: {message}"),
                    None => f.write_str(message),
                }
            }
            ConfigError::Invalid { key, message } => write!(f, "{key}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl Config {
    /// Parses TOML text. Does not validate: see [`Config::validate`].
    #[allow(clippy::should_implement_trait)] // an inherent fn keeps the typed error without FromStr boilerplate
    pub fn from_str(text: &str) -> Result<Config, ConfigError> {
        // Syntax first: for a syntax error the position is what helps, and the nearest key could
        // mislead; only a well-formed document gets its type errors attributed to a key.
        if let Err(error) = text.parse::<toml::Table>() {
            return Err(syntax_error(text, &error));
        }
        toml::from_str(text).map_err(|error| toml_error(text, &error))
    }

    /// Reads and parses one file; errors name the file. Does not validate.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Config::from_str(&text).map_err(|e| e.with_path(path))
    }

    /// Reads [`DEFAULT_PATH`] if it exists, else returns the defaults: the daemon runs with zero
    /// configuration. Any other read error (a directory, no permission) is reported, not ignored.
    pub fn load_default() -> Result<Config, ConfigError> {
        let path = Path::new(DEFAULT_PATH);
        match std::fs::read_to_string(path) {
            Ok(text) => Config::from_str(&text).map_err(|e| e.with_path(path)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(error) => Err(ConfigError::Io {
                path: path.to_path_buf(),
                error,
            }),
        }
    }

    /// Checks values that have the right type but make no sense; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.host.is_empty() {
            return invalid("host", "must not be empty");
        }
        if self.host != "localhost" && self.host.parse::<IpAddr>().is_err() {
            return invalid(
                "host",
                format!("`{}` is not an IP address or `localhost`", self.host),
            );
        }
        let size = |n: usize| n as u64;
        const DAY: &str = " seconds (one day)";
        const GIB: &str = " bytes (1 GiB)";
        // (key, value, minimum, maximum, what the maximum is)
        let bounds = [
            (
                "max_buffer_size",
                size(self.max_buffer_size),
                1,
                max::BUFFER,
                GIB,
            ),
            // A request line plus the mandatory upgrade headers need a few hundred bytes.
            (
                "max_handshake_size",
                size(self.max_handshake_size),
                256,
                max::HANDSHAKE,
                " bytes (1 MiB)",
            ),
            (
                "max_connections",
                size(self.max_connections),
                1,
                max::CONNECTIONS,
                "",
            ),
            (
                "max_http_connections",
                size(self.max_http_connections),
                1,
                max::CONNECTIONS,
                "",
            ),
            // Smaller than one close frame plus a typical message would drop every client.
            (
                "max_send_buffer",
                size(self.max_send_buffer),
                1024,
                max::BUFFER,
                GIB,
            ),
            (
                "max_channels_per_client",
                size(self.max_channels_per_client),
                1,
                max::CHANNELS_PER_CLIENT,
                "",
            ),
            ("ping_interval", self.ping_interval, 0, max::SECONDS, DAY),
            ("ping_timeout", self.ping_timeout, 0, max::SECONDS, DAY),
            (
                "handshake_timeout",
                self.handshake_timeout,
                1,
                max::SECONDS,
                DAY,
            ),
            (
                "presence_interval_ms",
                self.presence_interval_ms,
                0,
                max::PRESENCE_INTERVAL_MS,
                " milliseconds (one hour)",
            ),
            (
                "presence_max_users",
                size(self.presence_max_users),
                0,
                max::CONNECTIONS,
                "",
            ),
            (
                "compression_level",
                u64::from(self.compression_level),
                1,
                9,
                "",
            ),
            (
                "compression_min_size",
                size(self.compression_min_size),
                0,
                max::BUFFER,
                GIB,
            ),
        ];
        for (key, value, min, max, unit) in bounds {
            within(key, value, min, max, unit)?;
        }
        if self.ping_interval > 0 && self.ping_timeout == 0 {
            return invalid(
                "ping_timeout",
                "must be at least 1 when ping_interval is set",
            );
        }
        if self.allowed_origins.iter().any(|o| o.trim().is_empty()) {
            return invalid("allowed_origins", "entries must not be empty");
        }
        if self.allowed_hosts.iter().any(|h| h.trim().is_empty()) {
            return invalid("allowed_hosts", "entries must not be empty");
        }
        // Protocols are HTTP tokens listed with commas; a comma or space inside one could never match.
        if let Some(p) = self
            .supported_protocols
            .iter()
            .find(|p| p.is_empty() || p.contains(|c: char| c == ',' || c.is_whitespace()))
        {
            return invalid(
                "supported_protocols",
                format!("`{p}` is not a protocol name (empty, comma or whitespace)"),
            );
        }
        if self.logging_enabled
            && self.logging_output == LogOutput::File
            && self.logging_file.as_os_str().is_empty()
        {
            return invalid(
                "logging_file",
                "must not be empty when logging_output is \"file\"",
            );
        }
        let cookie = &self.session.cookie;
        if cookie.is_empty() {
            return invalid("session.cookie", "must not be empty");
        }
        if cookie
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ';' | '=' | ','))
        {
            return invalid(
                "session.cookie",
                format!("`{cookie}` is not a valid cookie name (no whitespace, `;`, `=` or `,`)"),
            );
        }
        backend::validate(&self.api, &self.metrics, &self.webhooks)?;
        self.cluster.validate()?;
        self.pusher.validate()?;
        self.history.validate()?;
        if self.webhooks.needs_pusher() && !self.pusher.enabled() {
            return invalid(
                "webhooks.format",
                "\"pusher\" needs the [pusher] table (app_id, key, secret): its key and secret \
                 sign the POSTs",
            );
        }
        self.tls.validate()?;
        self.limits.validate()?;
        namespaces::validate(&self.namespaces)?;
        Ok(())
    }

    /// The channels' rules for the router (SPEC section 15).
    pub fn namespaces(&self) -> crate::router::Namespaces {
        namespaces::build(&self.namespaces)
    }

    /// What start-up warns about the namespaces, if anything.
    pub fn namespaces_warning(&self) -> Option<String> {
        namespaces::warning(&self.namespaces, &self.session.secret)
    }

    /// The effective values as TOML, one `key = value` per line, for `websocket:check`. The session
    /// secret, the API and metrics keys, the webhook secret and a password in the webhook url are
    /// shown as `<set>` (empty ones stay empty), so the output can be pasted into a bug report.
    pub fn describe(&self) -> String {
        let mut shown = self.clone();
        if !shown.session.secret.is_empty() {
            shown.session.secret = "<set>".to_owned();
        }
        backend::mask(&mut shown.api, &mut shown.metrics, &mut shown.webhooks);
        shown.cluster.mask();
        shown.pusher.mask();
        // TOML strings must be UTF-8; a lossy path is good enough for display.
        shown.logging_file = PathBuf::from(shown.logging_file.to_string_lossy().into_owned());
        toml::to_string(&shown)
            .unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"))
    }
}

fn invalid<T>(key: &str, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    })
}

/// `min <= value <= max`; `unit` follows the maximum in the message (`" seconds (one day)"`).
fn within(key: &str, value: u64, min: u64, max: u64, unit: &str) -> Result<(), ConfigError> {
    if value < min {
        return invalid(key, format!("must be at least {min}"));
    }
    if value > max {
        return invalid(key, format!("must be at most {max}{unit}"));
    }
    Ok(())
}

/// Turns toml's multi-line error into one line that names the key.
///
/// toml 0.8 does not expose the key path of an error, only a message and a byte span, so the key is
/// recovered from the source text: for an unknown field from the message, for a type error from the
/// `key =` line the span points into, prefixed by the enclosing `[table]`.
fn toml_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim().replace('\n', "; ");
    let span = error.span();
    let table = span.as_ref().and_then(|s| enclosing_table(text, s.start));
    // A dotted key (`session.secrte = 1`) names its table on the same line, before the span.
    let same_line = span.as_ref().and_then(|s| {
        let before = lines_back(text, s.start).next()?.trim_start();
        let bare = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        (before.ends_with('.') && before.chars().all(bare)).then(|| before.to_owned())
    });
    // A key named in a table header (`[zzz]`, `[session.zzz]`) is dotted from the root, whatever
    // table the lines above were in: the header's own path before the key is its prefix.
    let in_header = span.as_ref().and_then(|s| {
        let before = lines_back(text, s.start).next()?.trim_start();
        let path = before.strip_prefix('[')?.trim_start_matches('[');
        Some(
            path.chars()
                .filter(|c| !c.is_whitespace() && *c != '"')
                .collect::<String>(),
        )
    });
    let dotted = |key: &str| match (&in_header, &table, &same_line) {
        (Some(prefix), _, _) => format!("{prefix}{key}"),
        (None, _, Some(prefix)) => format!(
            "{}{prefix}{key}",
            table.as_ref().map_or(String::new(), |t| format!("{t}."))
        ),
        (None, Some(table), None) => format!("{table}.{key}"),
        (None, None, None) => key.to_owned(),
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((key, _)) = rest.split_once('`') {
            return ConfigError::UnknownKey {
                path: None,
                key: dotted(key),
            };
        }
    }
    // A table where a plain value belongs (`[host]`): the span is that whole table, header first,
    // and the header names the key from the root.
    let table_at_span = span.as_ref().and_then(|s| {
        let from = floor_char_boundary(text, s.start);
        table_header(text, text[from..].lines().next()?.trim_start())
    });
    if let Some(key) = table_at_span {
        return ConfigError::Parse {
            path: None,
            key: Some(key),
            message,
        };
    }
    match span.as_ref().and_then(|s| key_before(text, s.start)) {
        Some(key) => ConfigError::Parse {
            path: None,
            key: Some(dotted(&key)),
            message,
        },
        None => syntax_error(text, error),
    }
}

/// Invalid TOML: one line with the position.
fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim().replace('\n', "; ");
    let at = match error.span() {
        Some(s) => {
            let (line, column) = line_column(text, s.start);
            format!("line {line}, column {column}: ")
        }
        None => String::new(),
    };
    ConfigError::Parse {
        path: None,
        key: None,
        message: format!("{at}{message}"),
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The lines before `offset`, nearest first, with the line holding `offset` cut at it.
fn lines_back(text: &str, offset: usize) -> impl Iterator<Item = &str> {
    text[..floor_char_boundary(text, offset)].rsplit('\n')
}

/// The key of the nearest `key = value` line at or before `offset` (a multi-line array's element
/// sits on its own line, below its key). Stops at a table header: the key must be inside it.
fn key_before(text: &str, offset: usize) -> Option<String> {
    for line in lines_back(text, offset) {
        let line = line.trim_start();
        if line.starts_with('[') {
            // Either a table header (the value is the table itself) or an array element line.
            if let Some(name) = table_header(text, line) {
                return Some(name);
            }
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim().trim_matches('"');
            let bare = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
            if !key.is_empty() && key.chars().all(bare) {
                return Some(key.to_owned());
            }
        }
    }
    None
}

/// The `[table]` a byte offset lies in, if any.
fn enclosing_table(text: &str, offset: usize) -> Option<String> {
    let mut lines = lines_back(text, offset);
    // The line holding the offset can be the header itself (a wrong type for the whole table);
    // then the key found by `key_before` is already the table name.
    lines.next();
    lines.find_map(|line| table_header(text, line.trim_start()))
}

/// `session` for a `[session]` line, `namespaces[2]` for the third `[[namespaces]]` line
/// (comments allowed after either); None for anything else. `line` is a slice of `text`, which
/// the index of an array of tables is counted in.
fn table_header(text: &str, line: &str) -> Option<String> {
    if let Some(name) = array_header(line) {
        let start = (line.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        let index = text[..floor_char_boundary(text, start)]
            .lines()
            .filter(|l| array_header(l.trim_start()).as_deref() == Some(name.as_str()))
            .count();
        return Some(format!("{name}[{index}]"));
    }
    let inner = line.strip_prefix('[')?;
    header_name(inner, "]")
}

/// `namespaces` for a `[[namespaces]]` line.
fn array_header(line: &str) -> Option<String> {
    header_name(line.strip_prefix("[[")?, "]]")
}

/// The bare name before `close`, if only whitespace or a comment follows it.
fn header_name(inner: &str, close: &str) -> Option<String> {
    if inner.starts_with('[') {
        return None;
    }
    let (name, rest) = inner.split_once(close)?;
    let rest = rest.trim();
    if !(rest.is_empty() || rest.starts_with('#')) {
        return None;
    }
    let name = name.trim().trim_matches('"');
    let bare = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    (!name.is_empty() && name.chars().all(bare)).then(|| name.to_owned())
}

/// The key a config's validation error names (`None` when it is valid), for the tables' tests.
#[cfg(test)]
#[track_caller]
fn key_of(text: &str) -> Option<String> {
    let config = Config::from_str(text).expect("parses");
    config.validate().err().map(|e| e.key().unwrap().to_owned())
}

#[cfg(test)]
mod tests;
