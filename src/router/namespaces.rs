//! Channel namespaces (SPEC section 15): a channel's rules come from the namespace with the
//! longest `prefix` its name starts with; a name that matches none belongs to the default
//! namespace (public, anyone publishes, no presence, no history: section 5 unchanged), unless
//! an entry with `prefix = ""` sets other defaults.
//!
//! The lookup is a byte trie of the prefixes: one step per byte of the channel name, each step a
//! binary search among at most 256 children, remembering the last node that ends a prefix. So a
//! lookup costs O(name length) whatever the number of namespaces (at most 1,000), and the router
//! does it once per channel: a channel's record keeps its namespace's [`NamespaceId`]
//! (`channels.rs`), so delivering a channel message never looks it up.
//!
//! The configuration parses and validates the entries (`src/config/namespaces.rs`); this file only
//! holds them, so the router needs nothing of the configuration. `Namespaces` is immutable and
//! shared (`Rc`): a reload builds a new one and hands it to [`super::Router::set_namespaces`].

use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Router;

/// Who may subscribe to a namespace's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscribePolicy {
    /// Anyone, guests included.
    #[default]
    Public,
    /// Connections with a session user (SPEC section 4).
    Authenticated,
    /// Only the user whose id is the rest of the name after the prefix (`user.42`: user `42`).
    User,
    /// A subscribe carrying a channel token signed by the backend.
    Token,
}

/// Who may publish to a namespace's channels with `{"event":"message",...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishPolicy {
    /// Anyone, guests included (section 5).
    #[default]
    Any,
    /// The channel's current subscribers.
    Subscribers,
    /// Connections with a session user.
    Authenticated,
    /// No client: only commands and the HTTP API.
    Backend,
}

/// One namespace's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The channels whose name starts with it (the longest matching prefix wins).
    pub prefix: String,
    pub subscribe: SubscribePolicy,
    pub publish: PublishPolicy,
    /// Channel presence: join/leave and the member list (SPEC section 15.3).
    pub presence: bool,
    /// Publications kept per channel (SPEC section 16); 0: no history.
    pub history_size: usize,
    /// How long a publication is kept; zero when `history_size` is 0.
    pub history_ttl: Duration,
}

impl Namespace {
    /// The built-in default namespace: section 5's behaviour.
    pub fn default_rules() -> Namespace {
        Namespace {
            prefix: String::new(),
            subscribe: SubscribePolicy::Public,
            publish: PublishPolicy::Any,
            presence: false,
            history_size: 0,
            history_ttl: Duration::ZERO,
        }
    }

    /// Whether the namespace keeps history (a size and a time to live).
    pub fn has_history(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }
}

impl Default for Namespace {
    fn default() -> Namespace {
        Namespace::default_rules()
    }
}

/// Which namespace a channel belongs to: an index into [`Namespaces`], small enough to keep in
/// every channel's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NamespaceId(u16);

impl NamespaceId {
    /// The default namespace (the built-in one, or the `prefix = ""` entry).
    pub const DEFAULT: NamespaceId = NamespaceId(0);
}

/// The most namespaces a configuration may have (SPEC section 15).
pub const MAX_NAMESPACES: usize = 1000;

/// One trie node: its children by next byte (sorted), and the namespace whose prefix ends here.
#[derive(Debug, Default)]
struct Node {
    children: Vec<(u8, u32)>,
    namespace: Option<NamespaceId>,
}

/// Every namespace and the trie that finds a channel's (see the module docs).
pub struct Namespaces {
    /// Index 0 is the default namespace.
    list: Vec<Namespace>,
    /// Node 0 is the root (the empty prefix, i.e. the default namespace).
    nodes: Vec<Node>,
    /// Whether any namespace restricts publishing (else a client's channel message needs no
    /// look at its channel's rules).
    restricts_publish: bool,
}

impl Namespaces {
    /// The namespaces of `entries` (validated by the configuration: at most [`MAX_NAMESPACES`],
    /// distinct prefixes). An entry with an empty prefix replaces the built-in default; of two
    /// entries with one prefix the first counts; entries beyond the maximum are ignored.
    pub fn new(entries: impl IntoIterator<Item = Namespace>) -> Namespaces {
        let mut list = vec![Namespace::default_rules()];
        let mut nodes = vec![Node {
            children: Vec::new(),
            namespace: Some(NamespaceId::DEFAULT),
        }];
        let mut default_set = false;
        for entry in entries {
            if entry.prefix.is_empty() {
                if !default_set {
                    default_set = true;
                    list[0] = entry;
                }
                continue;
            }
            if list.len() > MAX_NAMESPACES {
                break;
            }
            let node = insert_path(&mut nodes, entry.prefix.as_bytes());
            if nodes[node].namespace.is_some() {
                continue;
            }
            let Ok(id) = u16::try_from(list.len()) else {
                break;
            };
            nodes[node].namespace = Some(NamespaceId(id));
            list.push(entry);
        }
        let restricts_publish = list.iter().any(|n| n.publish != PublishPolicy::Any);
        Namespaces {
            list,
            nodes,
            restricts_publish,
        }
    }

    /// Whether some namespace's `publish` is not `any`.
    pub fn restricts_publish(&self) -> bool {
        self.restricts_publish
    }

    /// The namespace of channel `name`: the one with the longest prefix of it, else the default.
    /// O(name length): one trie step per byte.
    pub fn lookup(&self, name: &str) -> NamespaceId {
        let mut found = NamespaceId::DEFAULT;
        let mut node = 0usize;
        for &byte in name.as_bytes() {
            let children = &self.nodes[node].children;
            match children.binary_search_by_key(&byte, |&(b, _)| b) {
                Ok(i) => node = children[i].1 as usize,
                Err(_) => break,
            }
            if let Some(id) = self.nodes[node].namespace {
                found = id;
            }
        }
        found
    }

    /// The rules of namespace `id` (the default for an id of another table).
    pub fn get(&self, id: NamespaceId) -> &Namespace {
        self.list.get(usize::from(id.0)).unwrap_or(&self.list[0])
    }

    /// The rules of channel `name`.
    pub fn of(&self, name: &str) -> &Namespace {
        self.get(self.lookup(name))
    }

    /// The default namespace's rules.
    pub fn default_namespace(&self) -> &Namespace {
        &self.list[0]
    }

    /// Every namespace, the default first.
    pub fn iter(&self) -> impl Iterator<Item = &Namespace> + '_ {
        self.list.iter()
    }

    /// How many namespaces there are, the default included.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Never true: the default namespace is always there.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl Default for Namespaces {
    /// The default namespace alone: section 5's behaviour for every channel.
    fn default() -> Namespaces {
        Namespaces::new([])
    }
}

impl fmt::Debug for Namespaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespaces")
            .field("count", &self.list.len())
            .field("default", &self.list[0])
            .finish_non_exhaustive()
    }
}

impl Router {
    /// The namespace of `channel`: the one its record keeps while it has subscribers here,
    /// else looked up (O(name length)). For what depends on a channel's rules (authorization,
    /// presence, history).
    pub fn namespace_id(&self, channel: &str) -> NamespaceId {
        self.channels
            .namespace(channel)
            .unwrap_or_else(|| self.config.namespaces.lookup(channel))
    }

    /// The rules of `channel` (see [`Router::namespace_id`]).
    pub fn namespace_of(&self, channel: &str) -> &Namespace {
        self.config.namespaces.get(self.namespace_id(channel))
    }

    /// The rules in force.
    pub fn namespaces(&self) -> &Rc<Namespaces> {
        &self.config.namespaces
    }

    /// Replaces the rules (a configuration reload): every channel's namespace is resolved again.
    /// Existing subscriptions stay; the new rules apply to what clients send from now on.
    pub fn set_namespaces(&mut self, namespaces: Rc<Namespaces>) {
        self.channels.resolve_namespaces(&namespaces);
        self.config.namespaces = namespaces;
    }
}

/// The node at the end of `path`, created with the nodes before it as needed.
fn insert_path(nodes: &mut Vec<Node>, path: &[u8]) -> usize {
    let mut node = 0usize;
    for &byte in path {
        let next = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
        node = match nodes[node]
            .children
            .binary_search_by_key(&byte, |&(b, _)| b)
        {
            Ok(i) => nodes[node].children[i].1 as usize,
            Err(i) => {
                nodes[node].children.insert(i, (byte, next));
                nodes.push(Node::default());
                next as usize
            }
        };
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(prefix: &str, subscribe: SubscribePolicy) -> Namespace {
        Namespace {
            prefix: prefix.into(),
            subscribe,
            ..Namespace::default_rules()
        }
    }

    fn prefix_of(n: &Namespaces, channel: &str) -> String {
        n.of(channel).prefix.clone()
    }

    #[test]
    fn longest_prefix_wins_and_the_rest_is_default() {
        let n = Namespaces::new([
            ns("order.", SubscribePolicy::Token),
            ns("order.vip.", SubscribePolicy::User),
            ns("user", SubscribePolicy::User),
            ns("o", SubscribePolicy::Authenticated),
        ]);
        assert_eq!(n.len(), 5);
        assert_eq!(prefix_of(&n, "order.42"), "order.");
        assert_eq!(prefix_of(&n, "order.vip.7"), "order.vip.");
        assert_eq!(prefix_of(&n, "order.vip"), "order.");
        assert_eq!(prefix_of(&n, "order."), "order.");
        assert_eq!(prefix_of(&n, "order"), "o");
        assert_eq!(prefix_of(&n, "ox"), "o");
        assert_eq!(prefix_of(&n, "user.42"), "user");
        assert_eq!(prefix_of(&n, "users"), "user");
        assert_eq!(prefix_of(&n, "use"), "");
        assert_eq!(prefix_of(&n, "chat"), "");
        assert_eq!(n.of("chat"), &Namespace::default_rules());
        assert_eq!(n.lookup("chat"), NamespaceId::DEFAULT);
        assert!(!n.restricts_publish());
        assert!(!Namespaces::default().restricts_publish());
        let backend = Namespace {
            prefix: "b.".into(),
            publish: PublishPolicy::Backend,
            ..Namespace::default_rules()
        };
        assert!(Namespaces::new([backend]).restricts_publish());
        // Bytes, not characters: a prefix may end inside a UTF-8 sequence.
        let n = Namespaces::new([ns("é", SubscribePolicy::Token)]);
        assert_eq!(prefix_of(&n, "éa"), "é");
        assert_eq!(prefix_of(&n, "e"), "");
    }

    #[test]
    fn an_empty_prefix_replaces_the_default() {
        let n = Namespaces::new([
            ns("public.", SubscribePolicy::Public),
            ns("", SubscribePolicy::Authenticated),
        ]);
        assert_eq!(n.len(), 2);
        assert_eq!(n.of("chat").subscribe, SubscribePolicy::Authenticated);
        assert_eq!(n.of("public.x").subscribe, SubscribePolicy::Public);
        assert_eq!(
            n.default_namespace().subscribe,
            SubscribePolicy::Authenticated
        );
        // Without one, the built-in default.
        let n = Namespaces::default();
        assert_eq!(n.len(), 1);
        assert_eq!(n.of("anything"), &Namespace::default_rules());
        assert!(!n.of("anything").has_history());
    }

    #[test]
    fn duplicates_keep_the_first_and_ids_of_other_tables_fall_back() {
        let n = Namespaces::new([
            ns("a.", SubscribePolicy::Token),
            ns("a.", SubscribePolicy::User),
        ]);
        assert_eq!(n.len(), 2);
        assert_eq!(n.of("a.1").subscribe, SubscribePolicy::Token);
        assert_eq!(n.get(NamespaceId(999)), n.default_namespace());
    }

    #[test]
    fn a_thousand_namespaces_of_every_length() {
        // Prefixes of 1 to 1,000 bytes sharing their beginnings, and 1,000 of one length.
        let long: Vec<Namespace> = (1..=MAX_NAMESPACES)
            .map(|len| ns(&"a".repeat(len), SubscribePolicy::Token))
            .collect();
        let n = Namespaces::new(long);
        assert_eq!(n.len(), MAX_NAMESPACES + 1);
        assert_eq!(prefix_of(&n, &"a".repeat(77)).len(), 77);
        assert_eq!(prefix_of(&n, &format!("{}b", "a".repeat(5))).len(), 5);
        let wide: Vec<Namespace> = (0..MAX_NAMESPACES)
            .map(|i| ns(&format!("ns{i:04}."), SubscribePolicy::User))
            .collect();
        let n = Namespaces::new(wide);
        for i in [0, 1, 500, 999] {
            assert_eq!(prefix_of(&n, &format!("ns{i:04}.x")), format!("ns{i:04}."));
        }
        assert_eq!(prefix_of(&n, "ns1000.x"), "");
        // Entries beyond the maximum are not kept.
        let many = (0..MAX_NAMESPACES + 5).map(|i| ns(&format!("{i}."), SubscribePolicy::User));
        assert_eq!(Namespaces::new(many).len(), MAX_NAMESPACES + 1);
    }
}
