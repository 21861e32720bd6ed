//! The router's history state (SPEC section 16): where the streams are (this process's store,
//! or Redis), and in a cluster the reads waiting for Redis and the subscribers between their
//! subscribe and the live stream (see `history_cluster.rs` for what is done with them).

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use super::ids::ClientId;
use super::wire::Outgoing;
use super::{ApiError, ConnId, Frame, Namespace, Namespaces};
use crate::history::Store;

/// Where the router's streams are.
#[derive(Debug)]
pub(super) enum Mode {
    /// In this process (one node).
    Local(Store),
    /// In Redis, asked through the cluster module.
    Cluster(Reads),
}

/// The router's history (see the module docs).
#[derive(Debug)]
pub(crate) struct History {
    pub(super) mode: Mode,
    /// The namespaces as they were at the start, when some keeps history (else a publication
    /// does not even look).
    pub(super) namespaces: Option<Rc<Namespaces>>,
    /// A replay, or a `history` answer, over this many bytes is refused (`max_send_buffer`).
    pub(super) max_bytes: usize,
    /// The time of a publication (the router's calls that publish carry none).
    pub(super) clock: fn() -> Instant,
}

impl History {
    pub(crate) fn new(
        max_memory: usize,
        max_bytes: usize,
        seed: u64,
        namespaces: &Rc<Namespaces>,
    ) -> History {
        let any = namespaces.iter().any(Namespace::has_history);
        History {
            mode: Mode::Local(Store::new(max_memory, seed)),
            namespaces: any.then(|| Rc::clone(namespaces)),
            max_bytes,
            clock: Instant::now,
        }
    }

    /// In a cluster the streams are in Redis.
    pub(crate) fn use_redis(&mut self) {
        self.mode = Mode::Cluster(Reads::default());
    }

    pub(super) fn reads(&mut self) -> Option<&mut Reads> {
        match &mut self.mode {
            Mode::Cluster(reads) => Some(reads),
            Mode::Local(_) => None,
        }
    }

    pub(super) fn reads_ref(&self) -> Option<&Reads> {
        match &self.mode {
            Mode::Cluster(reads) => Some(reads),
            Mode::Local(_) => None,
        }
    }

    pub(super) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// When the store next expires something.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match &self.mode {
            Mode::Local(store) => store.next_deadline(),
            Mode::Cluster(_) => None,
        }
    }

    pub(super) fn sweep(&mut self, now: Instant) {
        if let Mode::Local(store) = &mut self.mode {
            store.sweep(now);
        }
    }

    /// The store, on one node (for tests and metrics).
    pub(crate) fn store(&self) -> Option<&Store> {
        match &self.mode {
            Mode::Local(store) => Some(store),
            Mode::Cluster(_) => None,
        }
    }
}

/// What became of a publication on a channel, for the fan-out.
pub(super) enum Published {
    /// Not a history channel (or Redis is down): deliver the section 5 frame.
    Plain,
    /// Stored here with its offset: deliver this frame.
    Stored(Option<Outgoing>),
    /// Sent to Redis, which gives it its offset; every node, this one included, delivers it
    /// when Redis publishes it (`history_cluster.rs`), so all deliver in offset order.
    Elsewhere,
}

/// Reads waiting for Redis at most, in all.
pub const MAX_READS: usize = 16 * 1024;
/// HTTP requests among them at most.
pub const MAX_API_READS: usize = 1024;
/// `history` requests of one connection waiting at most (its subscribes are bounded by its
/// subscribe budget): one client cannot take every read for itself.
pub const MAX_REQUESTS_PER_CONN: u16 = 16;

/// What a read is for.
#[derive(Debug)]
pub(super) enum Pending {
    /// A subscribe's position, or its recovery (`since`).
    Subscribe {
        conn: ConnId,
        client: ClientId,
        channel: Rc<str>,
        recover: bool,
    },
    /// A `history` request from a client.
    Request {
        conn: ConnId,
        client: ClientId,
        channel: Rc<str>,
    },
    /// `GET /api/channels/{name}/history`.
    Api { channel: Rc<str> },
}

/// A publication held for a subscriber: its offset and epoch (none while Redis is down) and
/// its frame.
pub(super) type Held = (Option<(u64, Rc<str>)>, Frame);

/// One subscriber between its subscribe and the live stream (see the module docs).
#[derive(Debug)]
pub(super) struct Seam {
    pub conn: ConnId,
    pub state: SeamState,
}

#[derive(Debug)]
pub(super) enum SeamState {
    /// Redis has not answered read `tag` yet: publications are held.
    Waiting {
        tag: u64,
        held: Vec<Held>,
        bytes: usize,
        /// More than `max_send_buffer` was held: dropped, and the newest offset among it.
        dropped: Option<Option<(u64, Rc<str>)>>,
    },
    /// Answered at `offset` of `epoch`: later copies of what it carried are skipped.
    Floor { epoch: Rc<str>, offset: u64 },
}

/// The router's reads of Redis (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Redis can be asked (the cluster module says so).
    pub(super) up: bool,
    pub(super) next_tag: u64,
    pub(super) pending: HashMap<u64, Pending>,
    pub(super) api_reads: usize,
    /// `history` requests waiting, by connection.
    pub(super) requests: HashMap<ConnId, u16>,
    pub(super) seams: HashMap<Rc<str>, Vec<Seam>>,
    pub(super) answers: Vec<(u64, Result<String, ApiError>)>,
}

impl Reads {
    pub(super) fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    pub(super) fn full(&self) -> bool {
        self.pending.len() >= MAX_READS
    }
}
