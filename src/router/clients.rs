//! The live clients, indexed by connection.
//!
//! `ConnId`s are the event loop's slab keys: small, dense, and bounded by the
//! number of sockets the loop holds. A vector indexed by them finds a client
//! with one bounds check, where a hash map would hash on every delivery of
//! every fan-out, and it costs less memory per client too.
//!
//! Finding a client by id (private messages, the disconnect command, new ids
//! checked for collisions) goes through an index that holds connections only,
//! 4 bytes each, and reads the ids from the clients themselves: a map from id
//! to connection held 16 bytes per client in buckets kept at most 7/8 full.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::ids::ClientId;
use super::{Client, ConnId};

/// Live clients by connection, and by id.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    slots: Vec<Option<Client>>,
    len: usize,
    /// The connection of every client, hashed by its id.
    by_id: HashTable<u32>,
    hasher: RandomState,
}

/// The id of the client at `conn`.
fn id_at(slots: &[Option<Client>], conn: u32) -> Option<&ClientId> {
    slots
        .get(conn as usize)
        .and_then(Option::as_ref)
        .map(|c| &c.id)
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

    /// The connection of the client with this id.
    pub(crate) fn find(&self, id: &ClientId) -> Option<ConnId> {
        let hash = self.hasher.hash_one(id);
        let slots = &self.slots;
        self.by_id
            .find(hash, |&conn| id_at(slots, conn) == Some(id))
            .map(|&conn| conn as usize)
    }

    /// Adds a client, replacing any previous one at `conn`.
    pub(crate) fn insert(&mut self, conn: ConnId, client: Client) {
        self.remove(&conn);
        // Slab keys are bounded by the sockets one process holds.
        let Ok(key) = u32::try_from(conn) else {
            return;
        };
        if self.slots.len() <= conn {
            self.slots.resize_with(conn + 1, || None);
        }
        let hash = self.hasher.hash_one(client.id);
        self.slots[conn] = Some(client);
        self.len += 1;
        let Clients {
            slots,
            by_id,
            hasher,
            ..
        } = self;
        by_id.insert_unique(hash, key, |&c| {
            id_at(slots, c).map_or(0, |id| hasher.hash_one(id))
        });
    }

    pub(crate) fn remove(&mut self, conn: &ConnId) -> Option<Client> {
        let client = self.slots.get_mut(*conn)?.take()?;
        self.len -= 1;
        let hash = self.hasher.hash_one(client.id);
        if let Ok(entry) = self.by_id.find_entry(hash, |&c| c as usize == *conn) {
            entry.remove();
        }
        Some(client)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every client, in slot order: for a message to everyone, where the order among the
    /// recipients is seen by none of them (each gets its own messages in order). One walk
    /// over a dense vector, no second table.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ConnId, &Client)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(conn, slot)| slot.as_ref().map(|c| (conn, c)))
    }

    /// Every client in connection order (presence lists, SPEC section 5), sorted when asked:
    /// a table kept in that order cost every idle connection a tree entry, for lists that
    /// are built at most once per presence interval.
    pub(crate) fn in_order(&self) -> Vec<&Client> {
        let mut all: Vec<&Client> = self.iter().map(|(_, c)| c).collect();
        all.sort_unstable_by_key(|c| c.seq);
        all
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

    #[test]
    fn found_by_id_while_connected() {
        let mut clients = Clients::default();
        let (a, b) = (client(1), client(2));
        let (id_a, id_b) = (a.id, b.id);
        clients.insert(4, a);
        clients.insert(9, b);
        assert_eq!(
            (clients.find(&id_a), clients.find(&id_b)),
            (Some(4), Some(9))
        );
        // Replaced: the old id is gone, the new one found.
        let c = client(3);
        let id_c = c.id;
        clients.insert(4, c);
        assert_eq!((clients.find(&id_a), clients.find(&id_c)), (None, Some(4)));
        clients.remove(&9);
        assert_eq!(clients.find(&id_b), None);
        // Many, through the index's growth.
        for conn in 10..5000 {
            clients.insert(conn, client(conn as u64 + 100));
        }
        for conn in 10..5000 {
            let id = clients.get(&conn).map(|c| c.id).unwrap();
            assert_eq!(clients.find(&id), Some(conn));
        }
        assert_eq!(clients.by_id.len(), clients.len());
    }

    #[test]
    fn in_order_is_connection_order_whatever_the_slots() {
        let mut clients = Clients::default();
        for (conn, seq) in [(5, 10), (1, 30), (9, 20), (3, 40)] {
            clients.insert(conn, client(seq));
        }
        clients.remove(&3);
        let seqs: Vec<u64> = clients.in_order().iter().map(|c| c.seq).collect();
        assert_eq!(seqs, [10, 20, 30]);
        let conns: Vec<ConnId> = clients.iter().map(|(conn, _)| conn).collect();
        assert_eq!(conns, [1, 5, 9]);
    }
}

#[cfg(test)]
mod size {
    /// Ten thousand idle connections each hold one (in a vector indexed by connection, so an
    /// empty slot costs as much) and 4 bytes in the id index: 56 bytes with SPEC 17's two
    /// buckets (8 bytes each) and the subscribe budget.
    #[test]
    fn an_idle_client_record_stays_small() {
        let size = std::mem::size_of::<Option<super::Client>>();
        eprintln!("router client record: {size} bytes");
        assert!(size <= 56, "{size} bytes");
    }
}
