//! `kill -HUP`: the configuration file read again while the daemon runs (SPEC section 18).
//!
//! ```text
//! SIGHUP --loop--> Reloader::request --bounded queue (1)--> rakit-reload thread:
//!     read the file whole (twice, until two reads agree), parse, apply the flags, validate,
//!     load the TLS files, plan()  --bounded queue + the loop's one Waker-->
//! loop: EventLoop::apply_reload swaps the config and what is derived from it, logs the plan
//! ```
//!
//! The loop never reads a file: it only asks and, later, swaps. A HUP while a reload is queued
//! is the same request (the queue holds one), so a storm of signals costs at most one reload in
//! progress and one after it, which reads the file as it is after the last signal.
//!
//! [`plan`] is the one place that decides what a reload changes: [`apply_now`] copies the
//! reloadable parts of the new file into the running configuration; every other key that
//! differs keeps its running value and is reported as needing a restart (by its dotted name,
//! never its value: some are secrets). A new key is therefore restart-only until someone adds
//! it to [`apply_now`] and has the loop re-derive what it feeds (docs/ARCHITECTURE.md,
//! "Reloading the configuration").

mod read;
mod worker;

use crate::config::{Config, ConfigError, NamespaceConfig};

pub use self::worker::{Outcome, Reloaded, Reloader};

/// Where a reload reads the configuration, and the command-line values that win over it (as
/// they did at start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// The `--config` file; `None`: `config/websocket.toml` if it exists, else the defaults
    /// (the rules of start-up).
    pub file: Option<std::path::PathBuf>,
    /// `--host`, which the file cannot change while it is given.
    pub host: Option<String>,
    /// `--port`, likewise.
    pub port: Option<u16>,
}

impl Source {
    /// What log lines call the file.
    pub fn describe(&self) -> String {
        match &self.file {
            Some(path) => path.display().to_string(),
            None => crate::config::DEFAULT_PATH.to_owned(),
        }
    }

    /// Reads, parses and validates the configuration as start-up would (the flags applied), or
    /// says why not in one line. A file that is empty, or that changes between two reads, is
    /// refused: that is a file being written, not the operator's configuration.
    pub fn load(&self) -> Result<Config, String> {
        let text = read::settled(self.file.as_deref())?;
        let mut config = match text {
            Some(text) => Config::from_str(&text).map_err(|e| self.name(&e))?,
            None => Config::default(),
        };
        crate::cli::apply_overrides(&mut config, self.host.clone(), self.port);
        config.validate().map_err(|e| self.name(&e))?;
        Ok(config)
    }

    fn name(&self, e: &ConfigError) -> String {
        format!("{}: {e}", self.describe())
    }
}

/// What a reload does: the configuration to run with from now on, and what changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The running configuration with the reloadable parts of the file.
    pub config: Config,
    /// Dotted keys whose new values apply now.
    pub applied: Vec<String>,
    /// Dotted keys that differ in the file but need a restart; they keep their running values.
    pub restart: Vec<String>,
}

/// Splits `fresh` (a validated file) against `running`. `Err` when the result would not be a
/// valid configuration (a reloadable key that depends on a restart-only one, such as
/// `[webhooks] format = "pusher"` in a file that also adds the `[pusher]` table).
pub fn plan(running: &Config, fresh: &Config) -> Result<Plan, ConfigError> {
    let mut config = running.clone();
    apply_now(&mut config, fresh);
    config.validate()?;
    let mut restart = differences(&config, fresh);
    if let Some(i) = restart.iter().position(|k| k == "namespaces") {
        restart.splice(
            i..=i,
            namespace_restarts(&config.namespaces, &fresh.namespaces),
        );
    }
    Ok(Plan {
        applied: differences(running, &config),
        restart,
        config,
    })
}

/// The reloadable parts (SPEC section 18, and what is as harmless to change for new
/// connections). Each line copies one part of the new file into the running configuration;
/// the loop then re-derives what it feeds (`EventLoop::apply_reload`). Making a key reloadable
/// is one line here and, if the loop keeps a copy of it elsewhere, one line there.
fn apply_now(running: &mut Config, fresh: &Config) {
    // Handshakes: `accept::decide` reads these for every new connection.
    running.allowed_origins.clone_from(&fresh.allowed_origins);
    running.allowed_hosts.clone_from(&fresh.allowed_hosts);
    running.origin_required = fresh.origin_required;
    running
        .supported_protocols
        .clone_from(&fresh.supported_protocols);
    running.session.clone_from(&fresh.session);
    // Messages: the router's command policy.
    running.command_policy = fresh.command_policy;
    // The HTTP side: keys are hashed again, `/` and `/metrics` answer by the new values.
    running.api.clone_from(&fresh.api);
    running.metrics.clone_from(&fresh.metrics);
    running.demo_page = fresh.demo_page;
    // Logging: the level only (where lines go is fixed at start).
    running.logging_level = fresh.logging_level;
    // Webhooks: a new worker takes over after the old one had its chance to deliver.
    running.webhooks.clone_from(&fresh.webhooks);
    // Abuse limits (SPEC 17): the router's buckets and broadcast policy, the per-address and
    // per-user limits and the trusted proxies, for new connections and messages.
    running.limits.clone_from(&fresh.limits);
    // Channel rules (SPEC 15), not their history (SPEC 18) nor their presence (see below).
    running.namespaces = namespace_rules(&running.namespaces, &fresh.namespaces);
    // TLS files, read again on every reload; turning TLS on or off changes what the port
    // speaks, and needs a restart.
    if running.tls.files().is_some() && fresh.tls.files().is_some() {
        running.tls.clone_from(&fresh.tls);
    }
}

/// The new file's namespaces with the running `history_size`, `history_ttl` and `presence` of
/// the entry with the same prefix (none for a new prefix). Who may subscribe and publish changes
/// at once; what a channel stores and whose membership it tracks needs a restart: a stream's
/// offsets and epoch, and a channel's member list, are built from its first subscriber and
/// publication on, and turning them on halfway would answer with a partial list or history.
fn namespace_rules(running: &[NamespaceConfig], fresh: &[NamespaceConfig]) -> Vec<NamespaceConfig> {
    fresh
        .iter()
        .map(|entry| {
            let old = running.iter().find(|r| r.prefix == entry.prefix);
            NamespaceConfig {
                history_size: old.map_or(0, |o| o.history_size),
                history_ttl: old.map_or(0, |o| o.history_ttl),
                presence: old.is_some_and(|o| o.presence),
                ..entry.clone()
            }
        })
        .collect()
}

/// What a reload leaves as it was in the namespaces, by name (`namespaces[order.].history_size`):
/// the `namespaces` key alone would not say which part of the array needs the restart.
fn namespace_restarts(kept: &[NamespaceConfig], fresh: &[NamespaceConfig]) -> Vec<String> {
    let mut out = Vec::new();
    for (kept, fresh) in kept.iter().zip(fresh) {
        let name = |key: &str| format!("namespaces[{:?}].{key}", fresh.prefix);
        if kept.history_size != fresh.history_size {
            out.push(name("history_size"));
        }
        if kept.history_ttl != fresh.history_ttl {
            out.push(name("history_ttl"));
        }
        if kept.presence != fresh.presence {
            out.push(name("presence"));
        }
    }
    out
}

/// The dotted keys whose values differ between `a` and `b` (a table's key is named in full,
/// `webhooks.url`; an array of tables as a whole).
pub fn differences(a: &Config, b: &Config) -> Vec<String> {
    let (Ok(a), Ok(b)) = (toml::Table::try_from(a), toml::Table::try_from(b)) else {
        // Cannot happen (the config serialises for `websocket:check`); if it did, saying that
        // something changed is the safe answer.
        return vec!["(configuration)".to_owned()];
    };
    let mut out = Vec::new();
    diff_tables("", &a, &b, &mut out);
    out
}

fn diff_tables(prefix: &str, a: &toml::Table, b: &toml::Table, out: &mut Vec<String>) {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let name = format!("{prefix}{key}");
        match (a.get(key), b.get(key)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                diff_tables(&format!("{name}."), x, y, out);
            }
            (x, y) if x != y => out.push(name),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
