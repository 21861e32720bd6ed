//! `[[namespaces]]` (SPEC section 15): per-prefix channel rules.
//!
//! ```toml
//! [[namespaces]]
//! prefix = "order."      # required
//! subscribe = "token"    # public | authenticated | user | token   (default public)
//! publish = "backend"    # any | subscribers | authenticated | backend (default any)
//! presence = false       # channel presence (section 15.3)
//! history_size = 0       # 0 to 10,000 publications kept (section 16)
//! history_ttl = 0        # seconds, 1 to 86,400 with a size; 0 without
//! ```
//!
//! Unknown keys and values are parse errors (serde); what is well-typed but wrong is refused by
//! [`validate`]. Every error names the entry: `namespaces[3].subscribe: ...` (0-based, the order
//! of the file). The router's own types hold the rules ([`crate::router::Namespaces`]).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, max, within, ConfigError};
use crate::router::{
    Namespace, Namespaces, PublishPolicy, SubscribePolicy, MAX_CHANNEL_LEN, MAX_NAMESPACES,
};

/// The most publications a namespace keeps per channel (SPEC section 16).
pub const MAX_HISTORY_SIZE: u64 = 10_000;

/// One `[[namespaces]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// The channels whose name starts with it; `""` sets the default namespace's rules.
    pub prefix: String,
    #[serde(default)]
    pub subscribe: SubscribePolicy,
    #[serde(default)]
    pub publish: PublishPolicy,
    #[serde(default)]
    pub presence: bool,
    /// Publications kept per channel; 0: no history.
    #[serde(default)]
    pub history_size: u64,
    /// Seconds a publication is kept; required (1 or more) with a size.
    #[serde(default)]
    pub history_ttl: u64,
}

impl NamespaceConfig {
    /// An entry with `prefix` and the default rules.
    pub fn new(prefix: impl Into<String>) -> NamespaceConfig {
        NamespaceConfig {
            prefix: prefix.into(),
            subscribe: SubscribePolicy::default(),
            publish: PublishPolicy::default(),
            presence: false,
            history_size: 0,
            history_ttl: 0,
        }
    }

    /// The router's form of the entry (after [`validate`]).
    pub fn rules(&self) -> Namespace {
        Namespace {
            prefix: self.prefix.clone(),
            subscribe: self.subscribe,
            publish: self.publish,
            presence: self.presence,
            history_size: usize::try_from(self.history_size).unwrap_or(usize::MAX),
            history_ttl: Duration::from_secs(self.history_ttl),
        }
    }
}

/// The router's namespaces for a validated list.
pub fn build(entries: &[NamespaceConfig]) -> Namespaces {
    Namespaces::new(entries.iter().map(NamespaceConfig::rules))
}

/// A warning for start-up: namespaces whose rule no connection can meet without sessions
/// (`[session] secret` empty: everyone is a guest, and no channel token verifies).
pub fn warning(entries: &[NamespaceConfig], secret: &str) -> Option<String> {
    if !secret.is_empty() {
        return None;
    }
    let closed: Vec<String> = entries
        .iter()
        .filter(|n| n.subscribe != SubscribePolicy::Public)
        .map(|n| format!("{:?}", n.prefix))
        .take(5)
        .collect();
    (!closed.is_empty()).then(|| {
        format!(
            "namespaces {} need sessions or channel tokens, but [session] secret is empty: \
             no client can subscribe to their channels",
            closed.join(", ")
        )
    })
}

/// At most [`MAX_NAMESPACES`] entries, distinct prefixes that some channel could start with, and
/// history settings within SPEC section 16's bounds.
pub(super) fn validate(entries: &[NamespaceConfig]) -> Result<(), ConfigError> {
    if entries.len() > MAX_NAMESPACES {
        return invalid(
            "namespaces",
            format!(
                "{} entries; at most {MAX_NAMESPACES} are allowed",
                entries.len()
            ),
        );
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let key = |field: &str| format!("namespaces[{i}].{field}");
        let prefix = &entry.prefix;
        if prefix.len() > MAX_CHANNEL_LEN {
            return invalid(
                &key("prefix"),
                format!("at most {MAX_CHANNEL_LEN} bytes (no channel name is longer)"),
            );
        }
        if prefix.chars().any(char::is_control) {
            return invalid(
                &key("prefix"),
                format!("{prefix:?} holds a control character, which no channel name has"),
            );
        }
        if let Some(first) = seen.insert(prefix, i) {
            return invalid(
                &key("prefix"),
                format!("{prefix:?} is already the prefix of namespaces[{first}]"),
            );
        }
        within(
            &key("history_size"),
            entry.history_size,
            0,
            MAX_HISTORY_SIZE,
            " publications",
        )?;
        within(
            &key("history_ttl"),
            entry.history_ttl,
            0,
            max::SECONDS,
            " seconds (one day)",
        )?;
        match (entry.history_size, entry.history_ttl) {
            (0, 0) => {}
            (0, _) => {
                return invalid(
                    &key("history_ttl"),
                    "is set but history_size is 0 (history is off): set both or neither",
                )
            }
            (_, 0) => {
                return invalid(
                    &key("history_ttl"),
                    "is required (1 to 86400 seconds) when history_size is set",
                )
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[track_caller]
    fn parse(text: &str) -> Config {
        let config = Config::from_str(text).expect("parses");
        config.validate().expect("valid");
        config
    }

    /// The one-line error for `text`, from parsing or validating.
    #[track_caller]
    fn error(text: &str) -> String {
        let e = match Config::from_str(text) {
            Ok(config) => config.validate().expect_err("should be refused"),
            Err(e) => e,
        };
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        line
    }

    #[test]
    fn entries_with_their_defaults() {
        let c = parse(
            r#"
            port = 7000
            [[namespaces]]
            prefix = "order."
            subscribe = "token"
            publish = "backend"
            [[namespaces]]
            prefix = "room."
            presence = true
            history_size = 100
            history_ttl = 300
            [[namespaces]]
            prefix = ""
            subscribe = "authenticated"
            "#,
        );
        assert_eq!(c.port, 7000);
        assert_eq!(c.namespaces.len(), 3);
        let order = &c.namespaces[0];
        assert_eq!(order.subscribe, SubscribePolicy::Token);
        assert_eq!(order.publish, PublishPolicy::Backend);
        assert!(!order.presence);
        let room = &c.namespaces[1];
        assert_eq!(
            (room.subscribe, room.publish, room.presence),
            (SubscribePolicy::Public, PublishPolicy::Any, true)
        );
        assert_eq!((room.history_size, room.history_ttl), (100, 300));
        let rules = build(&c.namespaces);
        assert_eq!(rules.of("order.1").publish, PublishPolicy::Backend);
        assert_eq!(rules.of("room.1").history_ttl, Duration::from_secs(300));
        assert!(rules.of("room.1").has_history());
        assert_eq!(rules.of("chat").subscribe, SubscribePolicy::Authenticated);
        // No entry: the default namespace alone.
        assert!(Config::default().namespaces.is_empty());
        assert_eq!(build(&[]).of("x"), &Namespace::default_rules());
    }

    #[test]
    fn every_spelling_parses() {
        for (text, subscribe) in [
            ("public", SubscribePolicy::Public),
            ("authenticated", SubscribePolicy::Authenticated),
            ("user", SubscribePolicy::User),
            ("token", SubscribePolicy::Token),
        ] {
            let c = parse(&format!(
                "[[namespaces]]\nprefix = \"a\"\nsubscribe = \"{text}\"\n"
            ));
            assert_eq!(c.namespaces[0].subscribe, subscribe);
        }
        for (text, publish) in [
            ("any", PublishPolicy::Any),
            ("subscribers", PublishPolicy::Subscribers),
            ("authenticated", PublishPolicy::Authenticated),
            ("backend", PublishPolicy::Backend),
        ] {
            let c = parse(&format!(
                "[[namespaces]]\nprefix = \"a\"\npublish = \"{text}\"\n"
            ));
            assert_eq!(c.namespaces[0].publish, publish);
        }
        // The inline form is the same array.
        let c = parse(r#"namespaces = [{ prefix = "a." }, { prefix = "b.", presence = true }]"#);
        assert!(c.namespaces[1].presence);
    }

    #[test]
    fn parse_errors_name_the_entry_and_key() {
        let two = "[[namespaces]]\nprefix = \"a.\"\n[[namespaces]]\nprefix = \"b.\"\n";
        for (tail, key) in [
            ("subscribe = \"everyone\"\n", "namespaces[2].subscribe"),
            ("publish = \"nobody\"\n", "namespaces[2].publish"),
            ("presence = \"yes\"\n", "namespaces[2].presence"),
            ("history_size = -1\n", "namespaces[2].history_size"),
            ("history_ttl = 1.5\n", "namespaces[2].history_ttl"),
            ("prefix = 5\n", "namespaces[2].prefix"),
        ] {
            let text = format!("{two}[[namespaces]]\nprefix = \"c.\"\n{tail}");
            let text = text.replace("prefix = \"c.\"\nprefix = 5", "prefix = 5");
            let line = error(&text);
            assert!(line.starts_with(&format!("{key}: ")), "{tail:?}: {line}");
        }
        let line = error(&format!(
            "{two}[[namespaces]]\nprefix = \"c.\"\nsubscribe_ = \"x\"\n"
        ));
        assert!(line.contains("`namespaces[2].subscribe_`"), "{line}");
        let line = error(&format!("{two}[[namespaces]]\nsubscribe = \"token\"\n"));
        assert!(
            line.starts_with("namespaces[2]") && line.contains("prefix"),
            "{line}"
        );
        // After another table, and before one.
        let line =
            error("[session]\nsecret = \"s\"\n[[namespaces]]\nprefix = \"a\"\nwho = 1\n[api]\n");
        assert!(line.contains("`namespaces[0].who`"), "{line}");
        let line = error("[[namespaces]]\nprefix = \"a\"\n[session]\nsecrte = \"s\"\n");
        assert!(line.contains("`session.secrte`"), "{line}");
        // Not an array of tables.
        assert!(error("namespaces = 5\n").starts_with("namespaces: "));
    }

    #[test]
    fn validation_names_the_entry_and_key() {
        let entry = |edit: fn(&mut NamespaceConfig)| {
            let mut n = NamespaceConfig::new("b.");
            edit(&mut n);
            let config = Config {
                namespaces: vec![NamespaceConfig::new("a."), n],
                ..Config::default()
            };
            config.validate().map_err(|e| e.to_string())
        };
        let refused = |edit: fn(&mut NamespaceConfig), key: &str| {
            let line = entry(edit).expect_err("refused");
            assert!(line.starts_with(&format!("{key}: ")), "{line}");
        };
        refused(|n| n.prefix = "a.".into(), "namespaces[1].prefix");
        refused(|n| n.prefix = "x".repeat(201), "namespaces[1].prefix");
        refused(|n| n.prefix = "a\nb".into(), "namespaces[1].prefix");
        refused(|n| n.history_size = 10_001, "namespaces[1].history_size");
        refused(
            |n| {
                n.history_size = 10;
                n.history_ttl = 86_401;
            },
            "namespaces[1].history_ttl",
        );
        refused(|n| n.history_size = 10, "namespaces[1].history_ttl");
        refused(|n| n.history_ttl = 10, "namespaces[1].history_ttl");
        entry(|n| n.prefix = "x".repeat(200)).unwrap();
        entry(|n| n.prefix = String::new()).unwrap();
        entry(|n| {
            n.history_size = 10_000;
            n.history_ttl = 86_400;
        })
        .unwrap();
        // A thousand entries, not one more.
        let mut config = Config {
            namespaces: (0..MAX_NAMESPACES)
                .map(|i| NamespaceConfig::new(format!("n{i}.")))
                .collect(),
            ..Config::default()
        };
        config.validate().unwrap();
        config.namespaces.push(NamespaceConfig::new("last."));
        let line = config.validate().unwrap_err().to_string();
        assert!(line.starts_with("namespaces: "), "{line}");
    }

    #[test]
    fn check_shows_them_and_reads_them_back() {
        let mut order = NamespaceConfig::new("order.");
        order.subscribe = SubscribePolicy::Token;
        order.history_size = 5;
        order.history_ttl = 60;
        let config = Config {
            namespaces: vec![order, NamespaceConfig::new("")],
            ..Config::default()
        };
        let text = config.describe();
        assert!(
            text.contains("[[namespaces]]\nprefix = \"order.\"\n"),
            "{text}"
        );
        assert!(text.contains("subscribe = \"token\"\n"), "{text}");
        assert_eq!(
            Config::from_str(&text).unwrap().namespaces,
            config.namespaces
        );
        // None configured: nothing shown.
        assert!(!Config::default().describe().contains("namespaces"));
    }
}
