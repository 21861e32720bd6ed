//! Command-line parsing (SPEC section 1), hand-written: three subcommands and a dozen flags do not
//! justify a parser dependency, and every error must be one line that names the culprit.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};

/// Default lifetime of a token printed by `websocket:token`, in seconds.
pub const DEFAULT_TOKEN_TTL: u64 = 3600;

/// Printed for `help`, `--help`, `-h` or no arguments.
pub const USAGE: &str = "\
rakit: a WebSocket messaging daemon

Usage:
  rakit websocket:run [--host=H] [--port=P] [--config=PATH] [--echo]
  rakit websocket:check [--config=PATH]
  rakit websocket:token --secret S --sub ID --name N [--email E] [--admin] [--ttl SECS]
  rakit websocket:token --secret S --channel C (--sub ID | --client ID) [--ttl SECS]
  rakit help | --help | -h
  rakit --version | -V

Commands:
  websocket:run     Start the daemon (default 127.0.0.1:6001). Flags override the config file.
  websocket:check   Validate the config and print the effective values.
  websocket:token   Print an HS256 session token (default --ttl 3600 seconds); with --channel,
                    a channel token for user --sub or connection --client (its client_id).

Options:
  --config=PATH     Config file; without it config/websocket.toml is read if it exists.
  --host=H          Listen address (an IP address or localhost).
  --port=P          Listen port; 0 picks a free one.
  --echo            Echo every message back unchanged (conformance testing).

Both --flag=value and --flag value are accepted.
";

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run {
        config: Option<PathBuf>,
        host: Option<String>,
        port: Option<u16>,
        echo: bool,
    },
    Check {
        config: Option<PathBuf>,
    },
    Token {
        secret: String,
        sub: String,
        name: String,
        email: Option<String>,
        admin: bool,
        /// Seconds from now until `exp`; 0 makes an already expired token (useful in tests).
        ttl: u64,
    },
    /// A channel token (SPEC section 15) for a user (`--sub`) or one connection (`--client`).
    ChannelToken {
        secret: String,
        channel: String,
        holder: TokenHolder,
        ttl: u64,
    },
    Help,
    Version,
}

/// Who a channel token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenHolder {
    /// `--sub ID`: every connection of this session user.
    User(String),
    /// `--client ID`: the one connection with this client id.
    Client(String),
}

/// A command-line mistake; `Display` is one line naming the argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    UnknownCommand(String),
    UnknownFlag { command: String, flag: String },
    MissingValue(String),
    UnexpectedValue(String),
    InvalidValue { flag: String, message: String },
    MissingFlag { command: String, flag: String },
    DuplicateFlag(String),
    UnexpectedArgument(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::UnknownCommand(c) => {
                write!(f, "unknown command `{c}` (try `rakit --help`)")
            }
            CliError::UnknownFlag { command, flag } => {
                write!(f, "unknown flag `{flag}` for {command}")
            }
            CliError::MissingValue(flag) => write!(f, "{flag}: missing value"),
            CliError::UnexpectedValue(flag) => write!(f, "{flag}: takes no value"),
            CliError::InvalidValue { flag, message } => write!(f, "{flag}: {message}"),
            CliError::MissingFlag { command, flag } => {
                write!(f, "{command}: missing required flag {flag}")
            }
            CliError::DuplicateFlag(flag) => write!(f, "{flag}: given more than once"),
            CliError::UnexpectedArgument(a) => write!(f, "unexpected argument `{a}`"),
        }
    }
}

impl std::error::Error for CliError {}

/// Whether a flag takes a value, per subcommand.
const RUN_FLAGS: &[(&str, bool)] = &[
    ("--config", true),
    ("--host", true),
    ("--port", true),
    ("--echo", false),
];
const CHECK_FLAGS: &[(&str, bool)] = &[("--config", true)];
const TOKEN_FLAGS: &[(&str, bool)] = &[
    ("--secret", true),
    ("--sub", true),
    ("--name", true),
    ("--email", true),
    ("--admin", false),
    ("--ttl", true),
    ("--channel", true),
    ("--client", true),
];

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, CliError> {
    let args: Vec<String> = args.into_iter().collect();
    let Some((command, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    // Help anywhere wins, so `rakit websocket:run --help` shows usage instead of an error.
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Command::Help);
    }
    match command.as_str() {
        "help" | "--help" | "-h" => expect_empty(rest).map(|()| Command::Help),
        "--version" | "-V" => expect_empty(rest).map(|()| Command::Version),
        "websocket:run" => {
            let flags = Flags::parse(command, rest, RUN_FLAGS)?;
            let port = match flags.get("--port") {
                Some(value) => Some(parse_port(value)?),
                None => None,
            };
            Ok(Command::Run {
                config: flags.get("--config").map(PathBuf::from),
                host: flags.get("--host").map(str::to_owned),
                port,
                echo: flags.has("--echo"),
            })
        }
        "websocket:check" => {
            let flags = Flags::parse(command, rest, CHECK_FLAGS)?;
            Ok(Command::Check {
                config: flags.get("--config").map(PathBuf::from),
            })
        }
        "websocket:token" => {
            let flags = Flags::parse(command, rest, TOKEN_FLAGS)?;
            let required = |flag: &str| {
                flags
                    .get(flag)
                    .map(str::to_owned)
                    .ok_or_else(|| CliError::MissingFlag {
                        command: command.clone(),
                        flag: flag.to_owned(),
                    })
            };
            let secret = required("--secret")?;
            if secret.is_empty() {
                return Err(invalid_value("--secret", "must not be empty"));
            }
            let ttl = match flags.get("--ttl") {
                Some(value) => value.parse().map_err(|_| {
                    invalid_value("--ttl", &format!("`{value}` is not a number of seconds"))
                })?,
                None => DEFAULT_TOKEN_TTL,
            };
            if let Some(channel) = flags.get("--channel") {
                return channel_token(&flags, secret, channel, ttl);
            }
            if flags.has("--client") {
                return Err(invalid_value("--client", "only with --channel"));
            }
            let sub = required("--sub")?;
            if sub.is_empty() {
                return Err(invalid_value("--sub", "must not be empty"));
            }
            let name = required("--name")?;
            Ok(Command::Token {
                secret,
                sub,
                name,
                email: flags.get("--email").map(str::to_owned),
                admin: flags.has("--admin"),
                ttl,
            })
        }
        other if other.starts_with('-') => Err(CliError::UnknownFlag {
            command: "rakit".to_owned(),
            flag: other.to_owned(),
        }),
        other => Err(CliError::UnknownCommand(other.to_owned())),
    }
}

/// `websocket:token --channel C (--sub ID | --client ID)`: exactly one holder, and none of the
/// session token's own flags.
fn channel_token(
    flags: &Flags,
    secret: String,
    channel: &str,
    ttl: u64,
) -> Result<Command, CliError> {
    if !crate::router::is_plausible_channel(channel) {
        return Err(invalid_value(
            "--channel",
            "channel names are 1 to 200 bytes without control characters",
        ));
    }
    if let Some(flag) = ["--name", "--email", "--admin"]
        .into_iter()
        .find(|f| flags.has(f))
    {
        return Err(invalid_value(flag, "not for a channel token (--channel)"));
    }
    let holder = match (flags.get("--sub"), flags.get("--client")) {
        (Some(sub), None) => TokenHolder::User(sub.to_owned()),
        (None, Some(client)) => TokenHolder::Client(client.to_owned()),
        (Some(_), Some(_)) => {
            return Err(invalid_value(
                "--client",
                "give --sub or --client, not both",
            ))
        }
        (None, None) => {
            return Err(CliError::MissingFlag {
                command: "websocket:token --channel".to_owned(),
                flag: "--sub or --client".to_owned(),
            })
        }
    };
    Ok(Command::ChannelToken {
        secret,
        channel: channel.to_owned(),
        holder,
        ttl,
    })
}

fn expect_empty(rest: &[String]) -> Result<(), CliError> {
    match rest.first() {
        Some(extra) => Err(CliError::UnexpectedArgument(extra.clone())),
        None => Ok(()),
    }
}

fn invalid_value(flag: &str, message: &str) -> CliError {
    CliError::InvalidValue {
        flag: flag.to_owned(),
        message: message.to_owned(),
    }
}

fn parse_port(value: &str) -> Result<u16, CliError> {
    value.parse().map_err(|_| {
        invalid_value(
            "--port",
            &format!("`{value}` is not a port number (0 to 65535)"),
        )
    })
}

/// The flags of one subcommand: `(name, value)`, where boolean flags have no value.
struct Flags(Vec<(&'static str, Option<String>)>);

impl Flags {
    fn parse(
        command: &str,
        args: &[String],
        known: &[(&'static str, bool)],
    ) -> Result<Flags, CliError> {
        let mut found: Vec<(&'static str, Option<String>)> = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if !arg.starts_with('-') {
                return Err(CliError::UnexpectedArgument(arg.clone()));
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (arg.as_str(), None),
            };
            let Some(&(name, takes_value)) = known.iter().find(|(k, _)| *k == name) else {
                return Err(CliError::UnknownFlag {
                    command: command.to_owned(),
                    flag: name.to_owned(),
                });
            };
            if found.iter().any(|(k, _)| *k == name) {
                return Err(CliError::DuplicateFlag(name.to_owned()));
            }
            let value = match (takes_value, inline) {
                (false, None) => None,
                (false, Some(_)) => return Err(CliError::UnexpectedValue(name.to_owned())),
                (true, Some(value)) => Some(value),
                // A following `--flag` means the value was forgotten; `--secret=--x` still works.
                (true, None) => match args.next() {
                    Some(value) if !value.starts_with("--") => Some(value.clone()),
                    _ => return Err(CliError::MissingValue(name.to_owned())),
                },
            };
            if matches!(&value, Some(v) if v.is_empty() && name != "--secret" && name != "--name") {
                return Err(CliError::MissingValue(name.to_owned()));
            }
            found.push((name, value));
        }
        Ok(Flags(found))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| *k == name)
    }
}

/// Command-line values win over the file (SPEC section 1).
pub fn apply_overrides(config: &mut Config, host: Option<String>, port: Option<u16>) {
    if let Some(host) = host {
        config.host = host;
    }
    if let Some(port) = port {
        config.port = port;
    }
}

/// Loads `path` (which must exist) or, without one, `config/websocket.toml` if it exists, else the
/// defaults; then validates. Apply overrides and validate again when flags change values.
pub fn load_config(path: Option<&Path>) -> Result<Config, ConfigError> {
    let config = match path {
        Some(path) => Config::load(path)?,
        None => Config::load_default()?,
    };
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn ok(args: &[&str]) -> Command {
        parse(args.iter().map(|s| s.to_string())).unwrap()
    }

    #[track_caller]
    fn err(args: &[&str]) -> String {
        let e = parse(args.iter().map(|s| s.to_string())).unwrap_err();
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        line
    }

    #[test]
    fn help_and_version() {
        for args in [
            &[][..],
            &["help"],
            &["--help"],
            &["-h"],
            &["websocket:run", "--help"],
        ] {
            assert_eq!(ok(args), Command::Help, "{args:?}");
        }
        assert_eq!(ok(&["--version"]), Command::Version);
        assert_eq!(ok(&["-V"]), Command::Version);
        assert!(USAGE.contains("websocket:token"));
        assert_eq!(err(&["--version", "x"]), "unexpected argument `x`");
    }

    #[test]
    fn run_defaults_and_both_flag_forms() {
        assert_eq!(
            ok(&["websocket:run"]),
            Command::Run {
                config: None,
                host: None,
                port: None,
                echo: false
            }
        );
        let expected = Command::Run {
            config: Some(PathBuf::from("a/b.toml")),
            host: Some("0.0.0.0".into()),
            port: Some(0),
            echo: true,
        };
        let forms: [&[&str]; 3] = [
            &[
                "websocket:run",
                "--host=0.0.0.0",
                "--port=0",
                "--config=a/b.toml",
                "--echo",
            ],
            &[
                "websocket:run",
                "--echo",
                "--host",
                "0.0.0.0",
                "--port",
                "0",
                "--config",
                "a/b.toml",
            ],
            &[
                "websocket:run",
                "--host",
                "0.0.0.0",
                "--echo",
                "--port=0",
                "--config",
                "a/b.toml",
            ],
        ];
        for args in forms {
            assert_eq!(ok(args), expected, "{args:?}");
        }
    }

    #[test]
    fn check_and_token() {
        assert_eq!(ok(&["websocket:check"]), Command::Check { config: None });
        assert_eq!(
            ok(&["websocket:check", "--config", "x.toml"]),
            Command::Check {
                config: Some("x.toml".into())
            }
        );
        assert_eq!(
            ok(&[
                "websocket:token",
                "--secret",
                "s",
                "--sub=1",
                "--name",
                "Ann Lee"
            ]),
            Command::Token {
                secret: "s".into(),
                sub: "1".into(),
                name: "Ann Lee".into(),
                email: None,
                admin: false,
                ttl: 3600,
            }
        );
        assert_eq!(
            ok(&[
                "websocket:token",
                "--admin",
                "--email=a@b.c",
                "--ttl",
                "60",
                "--secret=--s=x",
                "--sub",
                "u",
                "--name=",
            ]),
            Command::Token {
                secret: "--s=x".into(),
                sub: "u".into(),
                name: "".into(),
                email: Some("a@b.c".into()),
                admin: true,
                ttl: 60,
            }
        );
    }

    #[test]
    fn errors_name_the_argument() {
        assert_eq!(
            err(&["websocket:serve"]),
            "unknown command `websocket:serve` (try `rakit --help`)"
        );
        assert_eq!(err(&["--verbose"]), "unknown flag `--verbose` for rakit");
        assert_eq!(
            err(&["websocket:run", "--hots=1"]),
            "unknown flag `--hots` for websocket:run"
        );
        assert_eq!(
            err(&["websocket:check", "--port=1"]),
            "unknown flag `--port` for websocket:check"
        );
        assert_eq!(err(&["websocket:run", "--port"]), "--port: missing value");
        assert_eq!(
            err(&["websocket:run", "--host", "--echo"]),
            "--host: missing value"
        );
        assert_eq!(
            err(&["websocket:run", "--config="]),
            "--config: missing value"
        );
        assert_eq!(
            err(&["websocket:run", "--echo=yes"]),
            "--echo: takes no value"
        );
        assert_eq!(
            err(&["websocket:run", "--port=1", "--port=2"]),
            "--port: given more than once"
        );
        assert_eq!(
            err(&["websocket:run", "extra"]),
            "unexpected argument `extra`"
        );
        for port in ["abc", "65536", "-1", " 1"] {
            let line = err(&["websocket:run", &format!("--port={port}")]);
            assert!(line.starts_with("--port: `"), "{line}");
        }
        assert_eq!(
            err(&["websocket:token", "--sub", "1", "--name", "n"]),
            "websocket:token: missing required flag --secret"
        );
        assert_eq!(
            err(&["websocket:token", "--secret", "s", "--name", "n"]),
            "websocket:token: missing required flag --sub"
        );
        assert_eq!(
            err(&["websocket:token", "--secret", "s", "--sub", "1"]),
            "websocket:token: missing required flag --name"
        );
        assert_eq!(
            err(&["websocket:token", "--secret=", "--sub", "1", "--name", "n"]),
            "--secret: must not be empty"
        );
        let line = err(&[
            "websocket:token",
            "--secret=s",
            "--sub=1",
            "--name=n",
            "--ttl=soon",
        ]);
        assert!(line.starts_with("--ttl: "), "{line}");
    }

    #[test]
    fn channel_tokens() {
        assert_eq!(
            ok(&[
                "websocket:token",
                "--secret=s",
                "--channel",
                "order.42",
                "--sub=42",
                "--ttl=60"
            ]),
            Command::ChannelToken {
                secret: "s".into(),
                channel: "order.42".into(),
                holder: TokenHolder::User("42".into()),
                ttl: 60,
            }
        );
        assert_eq!(
            ok(&[
                "websocket:token",
                "--channel=room.1",
                "--client",
                "Ab3dEf9h",
                "--secret",
                "s"
            ]),
            Command::ChannelToken {
                secret: "s".into(),
                channel: "room.1".into(),
                holder: TokenHolder::Client("Ab3dEf9h".into()),
                ttl: 3600,
            }
        );
        let base = ["websocket:token", "--secret=s", "--channel=c"];
        let with = |extra: &[&str]| err(&[&base[..], extra].concat());
        assert!(with(&[]).contains("--sub or --client"));
        assert!(with(&["--sub=1", "--client=x"]).starts_with("--client: "));
        assert!(with(&["--sub=1", "--name=n"]).starts_with("--name: "));
        assert!(with(&["--sub=1", "--admin"]).starts_with("--admin: "));
        let line = err(&["websocket:token", "--secret=s", "--channel=a	b", "--sub=1"]);
        assert!(line.starts_with("--channel: "), "{line}");
        let line = err(&[
            "websocket:token",
            "--secret=s",
            "--client=x",
            "--sub=1",
            "--name=n",
        ]);
        assert!(line.starts_with("--client: "), "{line}");
        assert_eq!(
            err(&["websocket:token", "--channel=c", "--sub=1"]),
            "websocket:token: missing required flag --secret"
        );
    }

    #[test]
    fn overrides_win() {
        let mut c = Config::default();
        apply_overrides(&mut c, None, None);
        assert_eq!(c, Config::default());
        apply_overrides(&mut c, Some("0.0.0.0".into()), Some(0));
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 0));
    }

    #[test]
    fn load_config_requires_an_existing_file_and_validates() {
        let e = load_config(Some(Path::new("/nonexistent/rakit.toml"))).unwrap_err();
        assert!(matches!(e, ConfigError::Io { .. }));
        let dir = std::env::temp_dir().join(format!("rakit-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "max_connections = 0\n").unwrap();
        let e = load_config(Some(&file)).unwrap_err();
        assert_eq!(e.key(), Some("max_connections"));
        std::fs::write(&file, "port = 7001\n").unwrap();
        assert_eq!(load_config(Some(&file)).unwrap().port, 7001);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
