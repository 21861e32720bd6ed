//! The hooks of the Pusher dialect (`src/pusher/`): which upgrades speak it, where its text
//! goes, its presence cleanup when a connection leaves, and its close codes.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::delivery::Deliver;
use super::EventLoop;
use crate::pusher::{close, Pusher};
use crate::router::{Dialect, Outbox, Router};
use crate::session::{self, User};

impl EventLoop {
    /// [`EventLoop::deliver`] with the Pusher dialect beside it (`None` when it is off).
    pub(super) fn deliver_pusher(&mut self) -> Option<(&mut Router, Deliver<'_>, &mut Pusher)> {
        let parts = self.parts();
        let pusher = parts.pusher?;
        Some((parts.router, parts.out, pusher))
    }

    /// An upgraded connection on `/app/...` with the dialect on: greeted (or refused) by it.
    /// False when the request is not Pusher's, and the router greets it.
    pub(super) fn pusher_open(
        &mut self,
        key: usize,
        req: &rakit_protocol::Request,
        user: &mut Option<User>,
    ) -> bool {
        if self.pusher.is_none() || !Pusher::wants(&req.path) {
            return false;
        }
        let now = self.now;
        let Some((router, mut out, pusher)) = self.deliver_pusher() else {
            return false;
        };
        let user = user.take();
        let guarded = catch_unwind(AssertUnwindSafe(|| {
            pusher.open(
                router,
                key,
                &req.path,
                req.query.as_deref(),
                user,
                session::now_unix(),
                now,
                &mut out,
            );
        }));
        if guarded.is_err() {
            self.fail_client(key);
        }
        self.after_router();
        true
    }

    /// Routes a text message of a Pusher connection; false when `key` speaks Rakit.
    pub(super) fn pusher_text(&mut self, key: usize, text: &str) -> bool {
        if !self.pusher.as_ref().is_some_and(|p| p.is_session(key)) {
            return false;
        }
        let now = self.now;
        let Some((router, mut out, pusher)) = self.deliver_pusher() else {
            return false;
        };
        let guarded = catch_unwind(AssertUnwindSafe(|| {
            pusher.handle_text(router, key, text, now, &mut out);
        }));
        if guarded.is_err() {
            self.fail_client(key);
        }
        self.after_router();
        true
    }

    /// A connection left: its Pusher session ends (the router's disconnect ends its channels
    /// and presence memberships).
    pub(super) fn pusher_left(&mut self, key: usize) {
        if let Some(pusher) = self.pusher.as_mut() {
            pusher.closed(key);
        }
    }

    /// The close code `key` gets for `rakit_code` (SPEC section 13: pusher-js reads 4000-4099
    /// as "do not reconnect" and 4000 as "TLS only").
    pub(super) fn close_code(&self, key: usize, rakit_code: u16) -> u16 {
        if self.router.dialect(key) != Some(Dialect::Pusher) {
            return rakit_code;
        }
        match rakit_code {
            rakit_protocol::CloseCode::GOING_AWAY => close::SHUTDOWN,
            rakit_protocol::CloseCode::SEND_BUFFER_EXCEEDED => close::SLOW,
            crate::router::DISCONNECT_CODE => close::KICK,
            other => other,
        }
    }

    /// Closes `key` with a close frame, through the router's outbox.
    pub(super) fn close_with(&mut self, key: usize, code: u16, reason: &str) {
        let code = self.close_code(key, code);
        let (_, mut out) = self.deliver();
        out.close(key, code, reason);
        self.after_router();
    }
}

/// The missed-pong close code for a dialect (Rakit drops the TCP connection instead).
pub(super) fn missed_pong(dialect: Option<Dialect>) -> Option<u16> {
    (dialect == Some(Dialect::Pusher)).then_some(close::MISSED_PONG)
}
