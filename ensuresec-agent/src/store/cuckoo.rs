//! Where keys go in an exact table: an in-memory image of its key buckets that
//! a change edits before anything is written. Pure logic, tested on its own.

use std::collections::{HashMap, HashSet};

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

    fn free_in(&self, bucket: u32) -> Option<Slot> {
        let content = self.bucket(bucket);
        (0..W)
            .map(|way| Slot { bucket, way })
            .find(|s| content[s.way] == K::default() && !self.freed.contains(s))
    }

    /// Puts `key` (absent) in one of its buckets `pair`, the emptier first so
    /// that neither fills early. When both are full, moves one of their keys to
    /// its other bucket (`pair_of` gives any key's buckets). `None` when no
    /// single move makes room.
    pub fn place(
        &mut self,
        key: K,
        (a, b): (u32, u32),
        pair_of: &dyn Fn(&K) -> (u32, u32),
    ) -> Option<(Slot, Option<Move<K>>)> {
        let order = if self.used(b) < self.used(a) {
            [b, a]
        } else {
            [a, b]
        };
        let mut moved = None;
        let slot = match order.into_iter().find_map(|bucket| self.free_in(bucket)) {
            Some(slot) => slot,
            None => {
                let m = order.into_iter().find_map(|bucket| {
                    (0..W).find_map(|way| {
                        let victim = self.bucket(bucket)[way];
                        let (x, y) = pair_of(&victim);
                        let other = if x == bucket { y } else { x };
                        self.free_in(other).map(|to| Move {
                            key: victim,
                            from: Slot { bucket, way },
                            to,
                        })
                    })
                })?;
                self.set(m.to, m.key);
                moved = Some(m);
                m.from
            }
        };
        self.set(slot, key);
        Some((slot, moved))
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
        assert_eq!(m1, None);
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
        let (slot, moved) = img.place(9, pairs(&9), &pairs).expect("room made");
        let m = moved.expect("a key had to move");
        assert_eq!(m.from, slot, "the new key takes the moved key's slot");
        assert!(m.to.bucket == 2 || m.to.bucket == 3);
        for k in [1, 2, 3, 4, 9] {
            assert!(img.find(&k, pairs(&k)).is_some(), "{k} is still findable");
        }
    }

    #[test]
    fn gives_up_when_no_single_move_helps_and_never_reuses_freed_slots() {
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
    }
}
