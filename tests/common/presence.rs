//! Waiting for presence (SPEC sections 5 and 11), with one timing rule: the presence message
//! that lists the expected clients must arrive before a deadline, and every read waits only for
//! what is left of it, so a bound given to these helpers is the bound checked.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{try_recv_json, Client};

/// The client ids of a presence message's `users`, in its order.
#[track_caller]
pub fn ids(presence: &Value) -> Vec<String> {
    presence["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users in {presence}"))
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Reads until a presence message lists exactly `expected` (in any order) and returns it; fails
/// if none has come within `within` of the call. Other messages are read past.
#[track_caller]
pub fn presence_is(ws: &mut Client, expected: &BTreeSet<String>, within: Duration) -> Value {
    presence_by(ws, expected, Instant::now() + within).0
}

/// [`presence_is`] with the deadline as an instant (one bound shared by several clients, or
/// counted from an event before the call). Also returns the id sets of the presence messages
/// that came before the matching one, for checks of what happened meanwhile (a client that
/// must never have been missing).
#[track_caller]
pub fn presence_by(
    ws: &mut Client,
    expected: &BTreeSet<String>,
    deadline: Instant,
) -> (Value, Vec<BTreeSet<String>>) {
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = (!left.is_zero())
            .then(|| try_recv_json(ws, left, |v| v["type"] != "presence"))
            .flatten();
        let Some(v) = got else {
            panic!("presence never listed {expected:?} by the deadline; it listed {before:?}");
        };
        let listed: BTreeSet<String> = ids(&v).into_iter().collect();
        if listed == *expected {
            return (v, before);
        }
        before.push(listed);
    }
}
