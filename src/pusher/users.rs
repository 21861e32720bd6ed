//! The connections signed in as each user (`pusher:signin`), so that `terminate_connections`
//! (given here, or heard from another node, up to thousands a batch) costs the connections it
//! closes, not a scan of every session per user.

use std::collections::HashMap;

use crate::router::ConnId;

/// User id -> its signed-in connections (a user has few: a vector).
#[derive(Debug, Default)]
pub(super) struct SignedIn {
    by_user: HashMap<String, Vec<ConnId>>,
}

impl SignedIn {
    /// `conn` was signed in as `old` (if any) and is now `new` (if any).
    pub(super) fn replace(&mut self, old: Option<&str>, new: Option<&str>, conn: ConnId) {
        if old == new {
            return;
        }
        self.remove(old, conn);
        if let Some(user) = new {
            self.by_user.entry(user.to_owned()).or_default().push(conn);
        }
    }

    /// `conn`, signed in as `user` (if any), is gone.
    pub(super) fn remove(&mut self, user: Option<&str>, conn: ConnId) {
        let Some(user) = user else {
            return;
        };
        if let Some(conns) = self.by_user.get_mut(user) {
            conns.retain(|c| *c != conn);
            if conns.is_empty() {
                self.by_user.remove(user);
            }
        }
    }

    /// The connections signed in as `user`.
    pub(super) fn conns(&self, user: &str) -> impl Iterator<Item = ConnId> + '_ {
        self.by_user.get(user).into_iter().flatten().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns(s: &SignedIn, user: &str) -> Vec<ConnId> {
        s.conns(user).collect()
    }

    #[test]
    fn follows_signins_and_closes() {
        let mut s = SignedIn::default();
        s.replace(None, Some("u1"), 1);
        s.replace(None, Some("u1"), 2);
        s.replace(None, Some("u2"), 3);
        assert_eq!(conns(&s, "u1"), [1, 2]);
        // Signing in again as the same user changes nothing; as another moves it.
        s.replace(Some("u1"), Some("u1"), 1);
        s.replace(Some("u1"), Some("u2"), 2);
        assert_eq!(conns(&s, "u1"), [1]);
        assert_eq!(conns(&s, "u2"), [3, 2]);
        // A signin without a user id, and a close, remove it.
        s.replace(Some("u2"), None, 3);
        s.remove(Some("u1"), 1);
        s.remove(None, 9);
        assert!(conns(&s, "u1").is_empty());
        assert_eq!(conns(&s, "u2"), [2]);
        s.remove(Some("u2"), 2);
        assert!(s.by_user.is_empty(), "no empty entries left behind");
    }
}
