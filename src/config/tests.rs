//! Parsing, error messages that name the key, and validation bounds.

use super::*;

const EXAMPLE: &str = include_str!("../../config/websocket.example.toml");

#[track_caller]
fn parse_err(text: &str) -> ConfigError {
    Config::from_str(text).expect_err("should fail")
}

/// The key a validation error names, checking the error is one `key: message` line.
#[track_caller]
fn invalid_key(config: &Config) -> String {
    let e = config.validate().expect_err("should be invalid");
    let (key, line) = (e.key().expect("names a key").to_owned(), e.to_string());
    assert!(matches!(e, ConfigError::Invalid { .. }), "{e:?}");
    assert!(
        line.starts_with(&format!("{key}: ")) && !line.contains('\n'),
        "{line}"
    );
    key
}

#[test]
fn defaults_match_spec() {
    let c = Config::default();
    assert_eq!(c.host, "127.0.0.1");
    assert_eq!(c.port, 6001);
    assert_eq!(c.max_buffer_size, 65536);
    assert_eq!(c.max_handshake_size, 8192);
    assert_eq!(c.max_connections, 10000);
    assert_eq!(c.max_http_connections, 1024);
    assert_eq!(c.max_send_buffer, 1048576);
    assert_eq!(c.max_channels_per_client, 100);
    assert!(!c.origin_required);
    assert!(c.allowed_origins.is_empty());
    assert!(c.allowed_hosts.is_empty());
    assert!(c.supported_protocols.is_empty());
    assert_eq!(c.ping_interval, 25);
    assert_eq!(c.ping_timeout, 10);
    assert_eq!(c.handshake_timeout, 10);
    assert!(c.presence);
    assert_eq!(c.presence_interval_ms, 200);
    assert_eq!(c.presence_max_users, 100);
    assert_eq!(c.command_policy, CommandPolicy::Admin);
    assert!(c.logging_enabled);
    assert_eq!(c.logging_output, LogOutput::Stdout);
    assert_eq!(c.logging_file, PathBuf::from("storage/logs/websocket.log"));
    assert_eq!(c.logging_level, LogLevel::Info);
    assert_eq!(c.session.cookie, "rakit_ws_session");
    assert_eq!(c.session.secret, "");
    c.validate().unwrap();
    assert_eq!(Config::from_str("").unwrap(), c);
}

#[test]
fn example_file_is_the_defaults() {
    let c = Config::from_str(EXAMPLE).unwrap();
    assert_eq!(c, Config::default());
    c.validate().unwrap();
}

#[test]
fn describe_round_trips_and_masks_the_secret() {
    let mut c = Config {
        allowed_origins: vec!["https://a.example.com".into(), "*.b.org".into()],
        command_policy: CommandPolicy::Any,
        ..Config::default()
    };
    let text = c.describe();
    // `[webhooks] events` shows the effective set (unset: the format's default).
    let mut shown = c.clone();
    shown.webhooks.events = Some(c.webhooks.events().to_vec());
    assert_eq!(Config::from_str(&text).unwrap(), shown);
    assert!(text.contains("port = 6001\n"), "{text}");
    assert!(text.contains("command_policy = \"any\"\n"), "{text}");
    assert!(text.contains("secret = \"\"\n"), "{text}");
    c.session.secret = "hunter2".into();
    let text = c.describe();
    assert!(text.contains("secret = \"<set>\"\n"), "{text}");
    assert!(!text.contains("hunter2"));
}

#[test]
fn parses_every_enum_spelling() {
    for (s, p) in [
        ("any", CommandPolicy::Any),
        ("authenticated", CommandPolicy::Authenticated),
        ("admin", CommandPolicy::Admin),
        ("off", CommandPolicy::Off),
    ] {
        let c = Config::from_str(&format!("command_policy = \"{s}\"")).unwrap();
        assert_eq!(c.command_policy, p);
        assert_eq!(p.to_string(), s);
    }
    let c = Config::from_str("logging_output = \"file\"\nlogging_level = \"trace\"").unwrap();
    assert_eq!(c.logging_output, LogOutput::File);
    assert_eq!(c.logging_level.to_level_filter(), log::LevelFilter::Trace);
    assert_eq!(LogLevel::Warn.to_level_filter(), log::LevelFilter::Warn);
}

#[test]
fn unknown_top_level_key_is_named() {
    let e = parse_err("port = 1\nmaxbuffer = 5\n");
    assert_eq!(e.key(), Some("maxbuffer"));
    assert_eq!(e.to_string(), "unknown key `maxbuffer`");
    let e = e.with_path(Path::new("config/websocket.toml"));
    assert_eq!(
        e.to_string(),
        "config/websocket.toml: unknown key `maxbuffer`"
    );
}

#[test]
fn unknown_key_in_session_is_named() {
    let e = parse_err("port = 1\n[session]\ncookie = \"x\"\nsecrte = \"y\"\n");
    assert_eq!(e.key(), Some("session.secrte"));
    assert_eq!(e.to_string(), "unknown key `session.secrte`");
    let e = parse_err("session.secrte = \"y\"\n");
    assert_eq!(e.key(), Some("session.secrte"));
    let e = parse_err("[sesion]\nsecret = \"y\"\n");
    assert_eq!(e.to_string(), "unknown key `sesion`");
}

#[test]
fn unknown_table_after_session_is_named_from_the_root() {
    let cases = [
        ("[session]\nsecret=\"x\"\n[zzz]\na=1\n", "zzz"),
        ("port = 1\n[session]\n\n[ zzz ] # comment\n", "zzz"),
        ("[session]\nsecret=\"x\"\n[zzz.b]\na=1\n", "zzz"),
        ("[session]\nsecret=\"x\"\n[[zzz]]\na=1\n", "zzz"),
        ("[session]\n[session.zzz]\na=1\n", "session.zzz"),
        ("[session]\n[\"session\" . zzz]\na=1\n", "session.zzz"),
    ];
    for (text, key) in cases {
        let e = parse_err(text);
        assert!(
            matches!(e, ConfigError::UnknownKey { .. }),
            "{text:?}: {e:?}"
        );
        assert_eq!(e.key(), Some(key), "{text:?}: {e}");
        assert_eq!(e.to_string(), format!("unknown key `{key}`"));
    }
    // A table where a plain value belongs, after [session]: named from the root too.
    let e = parse_err("[session]\ncookie = \"c\"\n[host]\na = 1\n");
    assert_eq!(e.key(), Some("host"), "{e}");
    assert!(e.to_string().starts_with("host: invalid type: map"), "{e}");
    let e = parse_err("[host]\na = 1\n");
    assert_eq!(e.key(), Some("host"), "{e}");
}

#[test]
fn wrong_type_names_the_key() {
    let e = parse_err("host = \"0.0.0.0\"\nport = \"abc\"\n");
    assert_eq!(e.key(), Some("port"));
    let line = e.to_string();
    assert!(
        line.starts_with("port: invalid type: string \"abc\", expected u16"),
        "{line}"
    );
    assert!(!line.contains('\n'));

    let e = parse_err("port = 70000");
    assert_eq!(e.key(), Some("port"), "{e}");
    let e = parse_err("presence = 1");
    assert_eq!(e.key(), Some("presence"), "{e}");
    let e = parse_err("command_policy = \"everyone\"");
    assert_eq!(e.key(), Some("command_policy"), "{e}");
    let e = parse_err("allowed_origins = [\n  \"https://a\",\n  5,\n]\n");
    assert_eq!(e.key(), Some("allowed_origins"), "{e}");
    let e = parse_err("session = 5");
    assert_eq!(e.key(), Some("session"), "{e}");
}

#[test]
fn wrong_type_in_session_names_the_dotted_key() {
    let e = parse_err("port = 1\n\n[session]\ncookie = \"c\"\nsecret = 42 # comment\n");
    assert_eq!(e.key(), Some("session.secret"), "{e}");
    assert!(e
        .to_string()
        .starts_with("session.secret: invalid type: integer"));
    let e = parse_err("session.secret = 42\n");
    assert_eq!(e.key(), Some("session.secret"), "{e}");
}

#[test]
fn syntax_error_is_one_line_with_position() {
    let e = parse_err("port = 1\nhost = \n");
    let line = e.to_string();
    assert!(line.starts_with("line 2, column"), "{line}");
    assert!(!line.contains('\n'), "{line}");
}

#[test]
fn load_names_the_file() {
    let e = Config::load(Path::new("/nonexistent/rakit/websocket.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e
        .to_string()
        .starts_with("/nonexistent/rakit/websocket.toml: "));

    let dir = std::env::temp_dir().join(format!("rakit-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "port = \"x\"\n").unwrap();
    let e = Config::load(&file).unwrap_err();
    assert_eq!(e.to_string().split(": ").nth(1), Some("port"), "{e}");
    assert!(e.to_string().starts_with(&file.display().to_string()));
    std::fs::write(&file, "port = 7000\n").unwrap();
    assert_eq!(Config::load(&file).unwrap().port, 7000);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn validate_accepts_port_zero_and_hosts() {
    let mut c = Config {
        port: 0,
        ..Config::default()
    };
    c.validate().unwrap();
    for host in ["0.0.0.0", "::1", "::", "localhost", "10.1.2.3"] {
        c.host = host.into();
        c.validate().unwrap();
    }
    c.ping_interval = 0;
    c.ping_timeout = 0;
    c.validate().unwrap();
}

#[test]
fn validate_names_each_key() {
    let cases = [
        ("host = \"\"", "host"),
        ("host = \"example.com\"", "host"),
        ("max_buffer_size = 0", "max_buffer_size"),
        ("max_handshake_size = 255", "max_handshake_size"),
        ("max_connections = 0", "max_connections"),
        ("max_http_connections = 0", "max_http_connections"),
        ("max_send_buffer = 1023", "max_send_buffer"),
        ("max_channels_per_client = 0", "max_channels_per_client"),
        ("handshake_timeout = 0", "handshake_timeout"),
        ("ping_timeout = 0", "ping_timeout"),
        ("allowed_origins = [\"\"]", "allowed_origins"),
        ("allowed_hosts = [\" \"]", "allowed_hosts"),
        ("supported_protocols = [\"a,b\"]", "supported_protocols"),
        ("supported_protocols = [\"\"]", "supported_protocols"),
        (
            "logging_output = \"file\"\nlogging_file = \"\"",
            "logging_file",
        ),
    ];
    for (text, key) in cases {
        assert_eq!(invalid_key(&Config::from_str(text).unwrap()), key, "{text}");
    }
    for cookie in ["", "a b", "a;b", "a=b", "a,b", "a\tb"] {
        let mut c = Config::default();
        c.session.cookie = cookie.into();
        assert_eq!(invalid_key(&c), "session.cookie", "{cookie:?}");
    }
    let e = Config::from_str("max_buffer_size = 0").unwrap().validate();
    let e = e.unwrap_err();
    assert_eq!(e.to_string(), "max_buffer_size: must be at least 1");
    // The minimums themselves are accepted.
    Config {
        max_buffer_size: 1,
        max_handshake_size: 256,
        max_connections: 1,
        max_http_connections: 1,
        max_send_buffer: 1024,
        max_channels_per_client: 1,
        handshake_timeout: 1,
        ping_timeout: 1,
        ..Config::default()
    }
    .validate()
    .unwrap();
}

#[test]
fn values_too_large_to_mean_anything_are_refused() {
    // The crash this guards against: `now + ping_interval` overflowed Instant on the first
    // connection, after `websocket:check` had called the value fine.
    let e = Config::from_str("ping_interval = 9223372036854775807")
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ping_interval: must be at most 86400 seconds (one day)"
    );
    let cases = [
        ("max_buffer_size", max::BUFFER),
        ("max_handshake_size", max::HANDSHAKE),
        ("max_connections", max::CONNECTIONS),
        ("max_http_connections", max::CONNECTIONS),
        ("max_send_buffer", max::BUFFER),
        ("max_channels_per_client", max::CHANNELS_PER_CLIENT),
        ("ping_interval", max::SECONDS),
        ("ping_timeout", max::SECONDS),
        ("handshake_timeout", max::SECONDS),
        ("presence_interval_ms", max::PRESENCE_INTERVAL_MS),
        ("presence_max_users", max::CONNECTIONS),
    ];
    for (key, max) in cases {
        // The maximum itself is accepted; one more, or the largest TOML integer, is not.
        Config::from_str(&format!("{key} = {max}"))
            .unwrap()
            .validate()
            .unwrap_or_else(|e| panic!("{key} = {max}: {e}"));
        for value in [max + 1, i64::MAX as u64] {
            let text = format!("{key} = {value}");
            let config = Config::from_str(&text).unwrap();
            assert_eq!(invalid_key(&config), key, "{text}");
            let line = config.validate().unwrap_err().to_string();
            assert!(
                line.starts_with(&format!("{key}: must be at most {max}")),
                "{line}"
            );
        }
    }
    assert_eq!(max::SECONDS, 24 * 60 * 60);
    assert_eq!(max::PRESENCE_INTERVAL_MS, 60 * 60 * 1000);
}
