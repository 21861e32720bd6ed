//! The live clients, indexed by connection.
//!
//! `ConnId`s are the event loop's slab keys: small, dense, and bounded by the
//! number of sockets the loop holds. A vector indexed by them finds a client
//! with one bounds check, where a hash map would hash on every delivery of
//! every fan-out, and it costs less memory per client too.

use super::{Client, ConnId};

/// Live clients by connection.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    slots: Vec<Option<Client>>,
    len: usize,
}

impl Clients {
    pub(crate) fn get(&self, conn: &ConnId) -> Option<&Client> {
        self.slots.get(*conn).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, conn: &ConnId) -> Option<&mut Client> {
        self.slots.get_mut(*conn).and_then(Option::as_mut)
    }

    pub(crate) fn contains_key(&self, conn: &ConnId) -> bool {
        self.get(conn).is_some()
    }

    /// Adds a client (the caller has removed any previous one).
    pub(crate) fn insert(&mut self, conn: ConnId, client: Client) {
        if self.slots.len() <= conn {
            self.slots.resize_with(conn + 1, || None);
        }
        if self.slots[conn].replace(client).is_none() {
            self.len += 1;
        }
    }

    pub(crate) fn remove(&mut self, conn: &ConnId) -> Option<Client> {
        let client = self.slots.get_mut(*conn)?.take()?;
        self.len -= 1;
        Some(client)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::ids::IdGenerator;

    fn client(seq: u64) -> Client {
        Client {
            id: IdGenerator::new(seq).generate(|_| false),
            user: None,
            connected_at: 0,
            seq,
            dialect: super::super::Dialect::Rakit,
            budget: crate::budget::Budget::full(std::time::Instant::now()),
            messages: Default::default(),
            broadcasts: Default::default(),
        }
    }

    #[test]
    fn insert_get_remove_keep_the_count() {
        let mut clients = Clients::default();
        assert!(clients.is_empty() && clients.get(&7).is_none());
        clients.insert(7, client(1));
        clients.insert(2, client(2));
        assert_eq!(clients.len(), 2);
        assert_eq!(clients.get(&7).map(|c| c.seq), Some(1));
        assert!(clients.contains_key(&2) && !clients.contains_key(&3));
        // Replacing does not count twice.
        clients.insert(2, client(3));
        assert_eq!(clients.len(), 2);
        assert_eq!(clients.remove(&2).map(|c| c.seq), Some(3));
        assert!(clients.remove(&2).is_none() && clients.remove(&1000).is_none());
        assert_eq!(clients.len(), 1);
    }
}

#[cfg(test)]
mod size {
    /// Ten thousand idle connections each hold one: SPEC 17's two buckets (8 bytes each) are
    /// the most a limit may add to it.
    #[test]
    fn an_idle_client_record_stays_small() {
        let size = std::mem::size_of::<super::Client>();
        eprintln!("router client record: {size} bytes");
        assert!(size <= 64, "{size} bytes");
    }
}
