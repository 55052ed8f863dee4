//! Where keys go in an exact table: an in-memory image of its key buckets that
//! a change edits before anything is written. Pure logic, tested on its own.

use std::collections::{HashMap, HashSet, VecDeque};

/// Where a key lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    pub bucket: u32,
    pub way: usize,
}

/// A key moved to its other bucket to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move<K> {
    pub key: K,
    pub from: Slot,
    pub to: Slot,
}

/// Longest chain of moves tried to make room for one key. Each step looks at
/// every key of a bucket, so this explores up to 2·4³ buckets: at the half
/// load the agent keeps, a chain longer than one move is already rare.
const MAX_PATH: usize = 3;

/// The buckets a change touches, read on first use: a change of a few keys
/// reads a few buckets, not the whole table.
pub struct Image<'a, K, const W: usize> {
    buckets: std::cell::RefCell<HashMap<u32, [K; W]>>,
    load: Box<dyn Fn(u32) -> [K; W] + 'a>,
    /// Buckets that changed and must be written.
    pub dirty: HashSet<u32>,
    /// Slots emptied by this change: not reused before the next one, so that a
    /// reader that saw the old key never finds another key's value there.
    freed: HashSet<Slot>,
}

impl<'a, K: Copy + Eq + Default, const W: usize> Image<'a, K, W> {
    pub fn new(load: impl Fn(u32) -> [K; W] + 'a) -> Self {
        Self {
            buckets: std::cell::RefCell::new(HashMap::new()),
            load: Box::new(load),
            dirty: HashSet::new(),
            freed: HashSet::new(),
        }
    }

    /// The current content of a bucket.
    pub fn bucket(&self, b: u32) -> [K; W] {
        *self
            .buckets
            .borrow_mut()
            .entry(b)
            .or_insert_with(|| (self.load)(b))
    }

    fn set(&mut self, slot: Slot, key: K) {
        let mut bucket = self.bucket(slot.bucket);
        bucket[slot.way] = key;
        self.buckets.get_mut().insert(slot.bucket, bucket);
        self.dirty.insert(slot.bucket);
    }

    fn used(&self, bucket: u32) -> usize {
        self.bucket(bucket)
            .iter()
            .filter(|k| **k != K::default())
            .count()
    }

    pub fn find(&self, key: &K, (a, b): (u32, u32)) -> Option<Slot> {
        [a, b].into_iter().find_map(|bucket| {
            self.bucket(bucket)
                .iter()
                .position(|k| k == key)
                .map(|way| Slot { bucket, way })
        })
    }

    pub fn remove(&mut self, key: &K, pair: (u32, u32)) -> Option<Slot> {
        let slot = self.find(key, pair)?;
        self.set(slot, K::default());
        self.freed.insert(slot);
        Some(slot)
    }

    /// Slots this change emptied (they stay empty until the next change).
    pub fn freed(&self) -> impl Iterator<Item = &Slot> {
        self.freed.iter()
    }

    fn free_in(&self, bucket: u32) -> Option<Slot> {
        let content = self.bucket(bucket);
        (0..W)
            .map(|way| Slot { bucket, way })
            .find(|s| content[s.way] == K::default() && !self.freed.contains(s))
    }

    /// Puts `key` (absent) in one of its buckets `pair`, the emptier first so
    /// that neither fills early. When both are full, finds the shortest chain
    /// of keys to move, each to its other bucket (`pair_of` gives any key's
    /// buckets), ending in a free slot. Returns the key's slot and the moves
    /// in the order they must be made: each into a slot that is free by then.
    /// `None` when no chain of at most `MAX_PATH` moves makes room.
    pub fn place(
        &mut self,
        key: K,
        (a, b): (u32, u32),
        pair_of: &dyn Fn(&K) -> (u32, u32),
    ) -> Option<(Slot, Vec<Move<K>>)> {
        let order = if self.used(b) < self.used(a) {
            [b, a]
        } else {
            [a, b]
        };
        if let Some(slot) = order.into_iter().find_map(|bucket| self.free_in(bucket)) {
            self.set(slot, key);
            return Some((slot, Vec::new()));
        }
        let moves = self.chain(order, pair_of)?;
        for m in &moves {
            self.set(m.to, m.key);
        }
        let slot = moves.last().expect("a chain has a move").from;
        self.set(slot, key);
        Some((slot, moves))
    }

    /// Breadth-first search from the full buckets `start` for a bucket with a
    /// free slot; the moves along the path, the last hop first.
    fn chain(&self, start: [u32; 2], pair_of: &dyn Fn(&K) -> (u32, u32)) -> Option<Vec<Move<K>>> {
        // Each node: (bucket, the move that led to it, its parent node).
        let mut nodes: Vec<(u32, Option<Move<K>>, usize)> = Vec::new();
        let mut queue = VecDeque::new();
        let mut seen: HashSet<u32> = HashSet::new();
        for bucket in start {
            if seen.insert(bucket) {
                nodes.push((bucket, None, usize::MAX));
                queue.push_back((nodes.len() - 1, 0));
            }
        }
        while let Some((node, depth)) = queue.pop_front() {
            if depth == MAX_PATH {
                continue;
            }
            let bucket = nodes[node].0;
            let content = self.bucket(bucket);
            for (way, victim) in content.iter().enumerate() {
                if *victim == K::default() {
                    // A slot this change freed: off limits, and nothing to move.
                    continue;
                }
                let from = Slot { bucket, way };
                let (x, y) = pair_of(victim);
                let other = if x == bucket { y } else { x };
                if let Some(to) = self.free_in(other) {
                    let mut path = vec![Move {
                        key: *victim,
                        from,
                        to,
                    }];
                    let mut at = node;
                    while let Some(mut m) = nodes[at].1 {
                        // It moves into the slot the move before it empties.
                        m.to = path.last().expect("not empty").from;
                        path.push(m);
                        at = nodes[at].2;
                    }
                    return Some(path);
                }
                if seen.insert(other) {
                    let m = Move {
                        key: *victim,
                        from,
                        to: Slot {
                            bucket: other,
                            way: usize::MAX,
                        },
                    };
                    nodes.push((other, Some(m), node));
                    queue.push_back((nodes.len() - 1, depth + 1));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(buckets: usize) -> Image<'static, u32, 2> {
        Image::new(move |b| {
            assert!((b as usize) < buckets);
            [0; 2]
        })
    }

    #[test]
    fn places_in_the_emptier_bucket() {
        let mut img = image(4);
        let pairs = |k: &u32| if *k < 10 { (0, 1) } else { (2, 3) };
        let (s1, m1) = img.place(1, pairs(&1), &pairs).unwrap();
        let (s2, _) = img.place(2, pairs(&2), &pairs).unwrap();
        assert!(m1.is_empty());
        assert_ne!(
            s1.bucket, s2.bucket,
            "the second key goes to the emptier bucket"
        );
        assert_eq!(img.find(&2, (0, 1)), Some(s2));
    }

    #[test]
    fn full_buckets_move_a_key_to_its_other_bucket() {
        let mut img = image(4);
        // Keys 1-4 live in buckets 0/1 but can also go to 2 or 3.
        let pairs = |k: &u32| match *k {
            1 | 2 => (0, 2),
            3 | 4 => (1, 3),
            _ => (0, 1),
        };
        for k in 1..=4 {
            img.place(k, (pairs(&k).0, pairs(&k).0), &pairs).unwrap();
        }
        assert_eq!(img.used(0) + img.used(1), 4);
        let (slot, moves) = img.place(9, pairs(&9), &pairs).expect("room made");
        assert_eq!(moves.len(), 1, "one move is enough");
        let m = moves[0];
        assert_eq!(m.from, slot, "the new key takes the moved key's slot");
        assert!(m.to.bucket == 2 || m.to.bucket == 3);
        for k in [1, 2, 3, 4, 9] {
            assert!(img.find(&k, pairs(&k)).is_some(), "{k} is still findable");
        }
    }

    #[test]
    fn chains_of_moves_make_room_when_one_move_cannot() {
        // Buckets 0 and 1 are full of keys whose other bucket is 2, which is
        // full of keys whose other bucket (3) has room.
        let mut img = image(4);
        let pairs = |k: &u32| match *k {
            1 | 2 => (0, 2),
            3 | 4 => (1, 2),
            5 | 6 => (2, 3),
            _ => (0, 1),
        };
        for (k, bucket) in [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (6, 2)] {
            img.place(k, (bucket, bucket), &pairs).unwrap();
        }
        let (slot, moves) = img.place(9, (0, 1), &pairs).expect("a chain makes room");
        assert_eq!(moves.len(), 2);
        // The last hop first: a key of bucket 2 goes to 3, then a key of 0 or
        // 1 takes its slot in 2, then 9 takes that key's slot.
        assert_eq!(moves[0].to.bucket, 3);
        assert_eq!(moves[1].to, moves[0].from);
        assert_eq!(moves[1].from, slot);
        for k in [1, 2, 3, 4, 5, 6, 9] {
            let found = img.find(&k, pairs(&k)).or_else(|| img.find(&k, (0, 1)));
            assert!(found.is_some(), "{k} is still findable");
        }
    }

    #[test]
    fn gives_up_when_no_chain_helps_and_never_reuses_freed_slots() {
        let mut img = image(2);
        let pairs = |_: &u32| (0, 1);
        for k in 1..=4 {
            img.place(k, (0, 1), &pairs).unwrap();
        }
        assert!(img.place(5, (0, 1), &pairs).is_none());
        let freed = img.remove(&2, (0, 1)).unwrap();
        assert!(
            img.place(5, (0, 1), &pairs).is_none(),
            "slot {freed:?} is off limits"
        );
        assert!(img.dirty.contains(&freed.bucket));
        assert_eq!(img.freed().copied().collect::<Vec<_>>(), [freed]);
    }
}
