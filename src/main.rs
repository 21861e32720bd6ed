//! The `rakit` binary: parse arguments, load the config, start logging, run.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use rakit::channel_token::{self, Holder};
use rakit::cli::{self, Command, TokenHolder};
use rakit::session::{self, User};
use rakit::{logging, Server};

/// Exit code for configuration and usage errors.
const EXIT_CONFIG: u8 = 2;
/// Exit code for runtime errors (a port in use, a crashed loop).
const EXIT_RUNTIME: u8 = 1;
/// How long exit waits for queued log lines to be written (the output may be
/// a pipe nobody reads: then they are lost).
const LOG_FLUSH_AT_EXIT: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    match command {
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("rakit-websocket {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { config } => match cli::load_config(config.as_deref()) {
            Ok(config) => {
                println!("# config is valid; effective values:");
                print!("{}", config.describe());
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_CONFIG, &e),
        },
        Command::Token {
            secret,
            sub,
            name,
            email,
            admin,
            ttl,
        } => {
            let user = User {
                id: sub,
                name,
                email,
                admin,
            };
            let exp = session::now_unix().saturating_add(ttl);
            println!("{}", session::issue(secret.as_bytes(), &user, exp));
            ExitCode::SUCCESS
        }
        Command::ChannelToken {
            secret,
            channel,
            holder,
            ttl,
        } => {
            let holder = match &holder {
                TokenHolder::User(id) => Holder::User(id),
                TokenHolder::Client(id) => Holder::Client(id),
            };
            let exp = session::now_unix().saturating_add(ttl);
            println!(
                "{}",
                channel_token::issue(secret.as_bytes(), &channel, holder, exp)
            );
            ExitCode::SUCCESS
        }
        Command::Run {
            config,
            host,
            port,
            echo,
        } => run(config, host, port, echo),
    }
}

fn run(
    config: Option<std::path::PathBuf>,
    host: Option<String>,
    port: Option<u16>,
    echo: bool,
) -> ExitCode {
    // SIGHUP reads the same file again, with the same flags winning (SPEC section 18).
    let source = rakit::reload::Source {
        file: config,
        host,
        port,
    };
    let mut config = match cli::load_config(source.file.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    cli::apply_overrides(&mut config, source.host.clone(), source.port);
    if let Err(e) = config.validate() {
        return fail(EXIT_CONFIG, &e);
    }
    // Held: what start-up logs is written after the listen line, which
    // comes first on stdout (SPEC section 1).
    if let Err(e) = logging::init_held(&config) {
        return fail(EXIT_CONFIG, &e);
    }
    // A panic is logged as one line; the loop turns it into a 1011 close
    // (in a handler) or a crash event and exit code 1 (in the loop).
    std::panic::set_hook(Box::new(|info| log::error!("panic: {info}")));
    raise_open_files_limit(config.max_connections);
    let tls = config.tls.files().is_some();
    let server = match Server::new(config)
        .echo(echo)
        .handle_signals(true)
        .reload_from(source)
        .bind()
    {
        Ok(s) => s,
        Err(e) => {
            logging::finish(LOG_FLUSH_AT_EXIT);
            return fail(EXIT_RUNTIME, &e);
        }
    };
    let mut stdout = std::io::stdout().lock();
    // Nobody may be reading stdout; the daemon serves all the same.
    let _ = writeln!(
        stdout,
        "rakit-websocket listening on {}://{}{}",
        if tls { "wss" } else { "ws" },
        server.local_addr(),
        if echo { " (echo mode)" } else { "" }
    )
    .and_then(|()| stdout.flush());
    drop(stdout);
    logging::release();
    // Under systemd's Type=notify, `systemctl start` returns now (docs/operations.md).
    if let Err(e) = rakit::notify::notify("READY=1") {
        log::warn!("could not tell systemd (NOTIFY_SOCKET) that the daemon is ready: {e}");
    }
    let result = server.run();
    logging::finish(LOG_FLUSH_AT_EXIT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_RUNTIME, &e),
    }
}

/// Raises the soft open-files limit to the hard one, as nginx and the Go
/// runtime do: the default soft limit (often 1024) would cap connections.
fn raise_open_files_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            // A few descriptors go to the listener, poll, signals and logs.
            let room = limit.saturating_sub(16);
            log::info!("open files limit: {limit} (room for about {room} connections)");
            if room < max_connections as u64 {
                log::warn!(
                    "max_connections = {max_connections} exceeds what the open files limit allows ({room})"
                );
            }
        }
        Err(e) => log::warn!("cannot raise the open files limit: {e}"),
    }
}

fn fail(code: u8, error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("rakit: {error}");
    ExitCode::from(code)
}
