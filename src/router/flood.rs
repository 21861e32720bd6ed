//! SPEC section 17 where client text enters the router: every message of either dialect costs
//! a token of its sender's message bucket, and a client broadcast `{"message":M}` (each reaches
//! every client) one of its broadcast bucket as well; `broadcast_policy` says who may broadcast
//! at all. The rules, the rate-limited error at most once a second and the close after
//! sustained flooding are `src/limits/flood.rs`; the buckets are 8 bytes each in [`Client`].
//!
//! A refused message is dropped before anything else happens to it: it is not routed, fires no
//! `receive` event (so no webhook), and costs no allocation (the error frame is encoded once).

use std::time::Instant;

use super::wire::{ErrorCode, Incoming, Out, Outgoing, Reject};
use super::CommandPolicy;
use super::{Client, ConnId, Dialect, Outbox, Router, MIN_SUBSCRIBE_BURST};
use crate::budget::Rate;
use crate::limits::{Counts, FloodRules, Kind, Verdict};

/// The router's part of `[limits]` (SPEC section 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterLimits {
    pub flood: FloodRules,
    /// Who may send `{"message":M}` (`broadcast_policy`).
    pub broadcast_policy: CommandPolicy,
}

impl RouterLimits {
    /// No limit: anyone may broadcast as fast as it likes (benchmarks, tests of other things).
    pub const OFF: RouterLimits = RouterLimits {
        flood: FloodRules::OFF,
        broadcast_policy: CommandPolicy::Any,
    };
}

impl Default for RouterLimits {
    /// SPEC section 17's defaults.
    fn default() -> RouterLimits {
        RouterLimits {
            flood: FloodRules::default(),
            broadcast_policy: CommandPolicy::Any,
        }
    }
}

/// The `rate_limited` error, encoded once for every refusal.
pub(super) fn error_frame() -> Option<Outgoing> {
    Outgoing::encode(&Out::Error {
        code: ErrorCode::RateLimited.as_str(),
        channel: None,
        message: "too many messages: slow down (further refusals go unanswered for a second)",
    })
}

/// Whether routing takes `msg` for a client broadcast: a `message` key, and none of the keys
/// that come before it (SPEC section 5's precedence).
fn is_broadcast(msg: &Incoming<'_>) -> bool {
    msg.message.is_some() && msg.command.is_none() && msg.event.is_none() && msg.to.is_none()
}

impl Router {
    /// Charges one message of `conn` (any dialect) to its message bucket. On
    /// [`Verdict::Close`] the client is already gone, closed with its dialect's code (4029, or
    /// Pusher's 4301); on [`Verdict::Refuse`] the caller drops the message and, if `notify`,
    /// answers with its dialect's rate-limit error. An unknown connection passes (the caller
    /// ignores it anyway).
    pub fn admit(&mut self, conn: ConnId, now: Instant, out: &mut impl Outbox) -> Verdict {
        let rules = self.config.limits.flood;
        self.charge(conn, Kind::Message, now, out, |c| {
            (&mut c.messages, rules.messages)
        })
    }

    /// Refusals so far, by kind (`message` and `broadcast`; the loop counts the rest).
    pub fn rate_limited(&self) -> Counts {
        self.rate_limited
    }

    /// The message bucket for a Rakit client: false when the message is dropped (answered
    /// with `rate_limited` at most once a second, or the client closed).
    pub(super) fn message_ok(&mut self, conn: ConnId, now: Instant, out: &mut impl Outbox) -> bool {
        let verdict = self.admit(conn, now, out);
        self.answer(conn, verdict, out)
    }

    /// The rest of SPEC section 17 for a Rakit text message, once parsed (`None`: it does not
    /// parse): the message bucket for a client that `may_command` (its commands are free; the
    /// others were charged before parsing), then the broadcast bucket for a broadcast.
    pub(super) fn text_ok(
        &mut self,
        conn: ConnId,
        msg: Option<&Incoming<'_>>,
        may_command: bool,
        now: Instant,
        out: &mut impl Outbox,
    ) -> bool {
        let command = msg.is_some_and(|m| m.command.is_some());
        if may_command && !command && !self.message_ok(conn, now, out) {
            return false;
        }
        msg.map_or(true, |msg| self.broadcast_ok(conn, msg, now, out))
    }

    /// The broadcast bucket, when `msg` is a broadcast that `broadcast_policy` lets `conn`
    /// send (one it does not is refused as `forbidden` by routing, and costs nothing here).
    fn broadcast_ok(
        &mut self,
        conn: ConnId,
        msg: &Incoming<'_>,
        now: Instant,
        out: &mut impl Outbox,
    ) -> bool {
        if !is_broadcast(msg) || self.may_broadcast(conn).is_err() {
            return true;
        }
        let rules = self.config.limits.flood;
        let verdict = self.charge(conn, Kind::Broadcast, now, out, |c| {
            (&mut c.broadcasts, rules.broadcasts)
        });
        self.answer(conn, verdict, out)
    }

    /// `broadcast_policy`: may `conn` send `{"message":M}`?
    pub(super) fn may_broadcast(&self, conn: ConnId) -> Result<(), Reject> {
        let user = self.clients.get(&conn).and_then(|c| c.user.as_deref());
        if self.config.limits.broadcast_policy.allows(user) {
            Ok(())
        } else {
            Err(Reject::new(
                ErrorCode::Forbidden,
                "broadcast_policy does not let this connection broadcast",
            ))
        }
    }

    /// Spends a token of the bucket `pick` chooses, counts a refusal, closes a flooder.
    fn charge(
        &mut self,
        conn: ConnId,
        kind: Kind,
        now: Instant,
        out: &mut impl Outbox,
        pick: impl FnOnce(&mut Client) -> (&mut crate::budget::Budget, Option<crate::budget::Rate>),
    ) -> Verdict {
        let max_refusals = self.config.limits.flood.max_refusals;
        let Some(client) = self.clients.get_mut(&conn) else {
            return Verdict::Pass;
        };
        let (bucket, rate) = pick(client);
        let verdict = self.offenders.spend(conn, bucket, rate, max_refusals, now);
        if verdict != Verdict::Pass {
            self.rate_limited.incr(kind);
        }
        if verdict == Verdict::Close {
            if let Some(client) = self.clients.get(&conn) {
                log::info!(
                    "client {}: more than {max_refusals} messages refused within {:?}; closing it",
                    client.id.as_str(),
                    crate::limits::flood::WINDOW
                );
            }
            self.close_client(conn, Dialect::rate_limited, now, out);
        }
        verdict
    }

    /// A Rakit client's side of a verdict: the error frame when due; true to route the message.
    fn answer(&mut self, conn: ConnId, verdict: Verdict, out: &mut impl Outbox) -> bool {
        match verdict {
            Verdict::Pass => true,
            Verdict::Refuse { notify } => {
                if let Some(error) = self.rate_limited_error.take() {
                    if notify {
                        self.deliver(&error, [conn], out);
                    }
                    self.rate_limited_error = Some(error);
                }
                false
            }
            Verdict::Close => false,
        }
    }
}

/// What a subscribe costs (SPEC section 17, docs/limits.md).
impl Router {
    /// A Rakit `subscribe` costs a token of the sender's budget (docs/limits.md): every new
    /// subscription is a write to Redis, a message to every node and maybe a webhook, so a
    /// client may not churn them faster than [`crate::budget::REFILL_PER_SECOND`] a second
    /// once its burst ([`Router::subscribe_burst`]) is spent. Refused as `too_many_channels`,
    /// the closest code of SPEC section 5.
    pub(super) fn spend_subscribe(&mut self, conn: ConnId, now: Instant) -> Result<(), Reject> {
        self.spend_subscribes(conn, 1, now)
    }

    /// [`Router::spend_subscribe`] for `cost` tokens (a subscribe whose answer and announcement
    /// grow with a channel's members).
    pub(super) fn spend_subscribes(
        &mut self,
        conn: ConnId,
        cost: usize,
        now: Instant,
    ) -> Result<(), Reject> {
        if cost == 0 {
            return Ok(());
        }
        let burst = self.subscribe_burst();
        let cost = u64::try_from(cost).unwrap_or(u64::MAX);
        let client = self.clients.get_mut(&conn);
        if client.is_some_and(|c| !c.budget.spend(cost, Rate::subscribes(burst), now)) {
            return Err(Reject::new(
                ErrorCode::TooManyChannels,
                "too many subscribes in a short time: slow down",
            ));
        }
        Ok(())
    }

    /// The rest of a subscribe's cost, its first token spent: at most what is left of a full
    /// bucket, so that a full bucket pays for a channel of any size (charged in full, the rest
    /// alone would ask for a full bucket after one token was gone, and be refused for ever).
    pub(super) fn spend_more_subscribes(
        &mut self,
        conn: ConnId,
        extra: usize,
        now: Instant,
    ) -> Result<(), Reject> {
        let most = usize::try_from(self.subscribe_burst() - 1).unwrap_or(usize::MAX);
        self.spend_subscribes(conn, extra.min(most), now)
    }

    /// A connection's burst of subscribes: twice `max_channels_per_client` (a reconnecting
    /// client rejoins all its channels at once, and may leave and rejoin them all), and no
    /// fewer than [`MIN_SUBSCRIBE_BURST`].
    pub(super) fn subscribe_burst(&self) -> u64 {
        let twice = self.config.max_channels_per_client.saturating_mul(2);
        u64::try_from(twice)
            .unwrap_or(u64::MAX)
            .max(MIN_SUBSCRIBE_BURST)
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire;
    use super::*;

    #[test]
    fn broadcasts_are_told_by_the_routing_precedence() {
        fn parse(text: &str) -> Incoming<'_> {
            wire::parse(text).unwrap()
        }
        assert!(is_broadcast(&parse(r#"{"message":1}"#)));
        assert!(is_broadcast(&parse(r#"{"message":1,"ping":1}"#)));
        for not in [
            r#"{"to":"x","message":1}"#,
            r#"{"event":"message","message":1}"#,
            r#"{"command":"broadcast","message":1}"#,
            r#"{"ping":1}"#,
        ] {
            assert!(!is_broadcast(&parse(not)), "{not}");
        }
    }
}
