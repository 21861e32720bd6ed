//! A dialect's own names for its connections (Pusher's `socket_id`), so that a message from
//! another node can skip the connection a name designates: Pusher's `POST /events` excludes
//! `socket_id`, which may be a connection of any node, so the name travels with the message
//! and each node looks it up here (SPEC sections 11 and 13).
//!
//! A name is unique among this node's live connections and goes with its connection (see
//! [`Router::disconnect`]). Names of different nodes are drawn independently; two that collide
//! (about one chance in 10^18 per pair for socket ids) would both be skipped by a message that
//! excludes one of them.

use std::collections::HashMap;
use std::rc::Rc;

use super::{ConnId, Router};

/// The longest name: Pusher's socket ids are two numbers of at most ten digits.
pub const MAX_ALIAS_LEN: usize = 64;

/// Names <-> connections (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Aliases {
    /// One allocation per name, shared by both maps (and by the dialect, which keeps it too).
    by_name: HashMap<Rc<str>, ConnId>,
    of_conn: HashMap<ConnId, Rc<str>>,
}

impl Aliases {
    pub(super) fn get(&self, name: &str) -> Option<ConnId> {
        self.by_name.get(name).copied()
    }

    /// `conn`'s name, if it has one.
    pub(super) fn name_of(&self, conn: ConnId) -> Option<&str> {
        self.of_conn.get(&conn).map(|name| &**name)
    }

    /// Forgets `conn`'s name, if it has one.
    pub(super) fn remove_conn(&mut self, conn: ConnId) {
        if let Some(name) = self.of_conn.remove(&conn) {
            self.by_name.remove(&name);
        }
    }
}

/// A name that can travel between nodes: 1 to [`MAX_ALIAS_LEN`] bytes, no control characters
/// (an envelope field ends at a newline).
pub fn is_valid_alias(name: &str) -> bool {
    (1..=MAX_ALIAS_LEN).contains(&name.len()) && !name.chars().any(char::is_control)
}

impl Router {
    /// Names connected client `conn` `name` in its dialect (replacing an earlier name). False,
    /// and nothing changes, when `conn` is not connected, the name is invalid
    /// ([`is_valid_alias`]) or another connection has it.
    pub fn set_alias(&mut self, conn: ConnId, name: impl Into<Rc<str>>) -> bool {
        let name: Rc<str> = name.into();
        if !self.clients.contains_key(&conn) || !is_valid_alias(&name) {
            return false;
        }
        match self.aliases.get(&name) {
            Some(owner) => owner == conn,
            None => {
                self.aliases.remove_conn(conn);
                self.aliases.by_name.insert(Rc::clone(&name), conn);
                self.aliases.of_conn.insert(conn, name);
                true
            }
        }
    }

    /// The local connection named `name`.
    pub fn conn_of_alias(&self, name: &str) -> Option<ConnId> {
        self.aliases.get(name)
    }
}
