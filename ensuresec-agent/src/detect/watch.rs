//! Sources and destinations that tripped a wire, looked at again until
//! their window ends: a count may reach a detector's threshold between two
//! trip levels. Bounded, and looked at in turn a bounded number per tick, so
//! that a flood of tripping sources sheds re-examinations (counted), never
//! the first look at a new trip.

use std::{
    collections::{HashMap, VecDeque},
    time::Instant,
};

use ensuresec_common::{
    decisions::{DecisionKey, SCOPE_DESTINATION, SCOPE_SOURCE},
    features::{AddrKey, EVENT_DEST_TRIP, Event},
};

/// What a trip event is about: (kind, address, port, protocol, scale).
type WatchKey = (u32, AddrKey, u16, u8, u8);

/// Sources and destinations watched at once, and looked at again per tick.
pub const MAX_WATCHED: usize = 4096;
pub const MAX_REVISITS_PER_TICK: usize = 256;

#[derive(Default)]
pub struct WatchList {
    watched: HashMap<WatchKey, (Event, Instant)>,
    /// Watched keys in the order they are looked at again.
    rota: VecDeque<WatchKey>,
}

impl WatchList {
    /// Watches what `e` is about until `until`; `false` when the list is
    /// full and it is not watched.
    pub fn watch(&mut self, e: &Event, until: Instant) -> bool {
        let key = (e.kind, e.addr, e.port, e.proto, e.scale);
        if let Some(w) = self.watched.get_mut(&key) {
            *w = (*e, until);
            true
        } else if self.watched.len() < MAX_WATCHED {
            self.watched.insert(key, (*e, until));
            self.rota.push_back(key);
            true
        } else {
            false
        }
    }

    /// Sources and destinations watched now.
    pub fn len(&self) -> usize {
        self.watched.len()
    }

    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }

    /// The events to look at again this tick, in turn, at most
    /// `MAX_REVISITS_PER_TICK`; forgets those whose window ended or that
    /// `covered` says a decision already covers. Returns them and how many
    /// were left for later.
    pub fn turn(
        &mut self,
        now: Instant,
        mut covered: impl FnMut(&DecisionKey) -> bool,
    ) -> (Vec<Event>, usize) {
        let turns = self.rota.len().min(MAX_REVISITS_PER_TICK);
        let shed = self.rota.len() - turns;
        let mut out = Vec::with_capacity(turns);
        for _ in 0..turns {
            let Some(key) = self.rota.pop_front() else {
                break;
            };
            let Some((e, until)) = self.watched.get(&key).copied() else {
                continue;
            };
            if until <= now || covered(&decision_key(&e)) {
                self.watched.remove(&key);
                continue;
            }
            self.rota.push_back(key);
            out.push(e);
        }
        (out, shed)
    }
}

/// The decision that would cover what event `e` is about.
pub fn decision_key(e: &Event) -> DecisionKey {
    let dest = e.kind == EVENT_DEST_TRIP;
    if dest {
        DecisionKey::new(e.addr, e.port, e.proto, SCOPE_DESTINATION)
    } else {
        DecisionKey::new(e.addr, 0, 0, SCOPE_SOURCE)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ensuresec_common::features::EVENT_SOURCE_TRIP;

    use super::*;

    fn event(i: u32) -> Event {
        let mut addr = [0u8; 16];
        addr[12..].copy_from_slice(&i.to_be_bytes());
        Event {
            kind: EVENT_SOURCE_TRIP,
            cpu: 0,
            time_ns: 0,
            addr: AddrKey(addr),
            peer: AddrKey::ZERO,
            port: 0,
            proto: 0,
            scale: 0,
            _pad2: 0,
            window: Default::default(),
        }
    }

    #[test]
    fn the_work_of_a_tick_is_bounded_and_everyone_gets_a_turn() {
        let mut list = WatchList::default();
        let until = Instant::now() + Duration::from_secs(60);
        let n = MAX_REVISITS_PER_TICK as u32 * 3;
        for i in 0..n {
            assert!(list.watch(&event(i), until));
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let (turn, shed) = list.turn(Instant::now(), |_| false);
            assert_eq!(turn.len(), MAX_REVISITS_PER_TICK);
            assert_eq!(shed, 2 * MAX_REVISITS_PER_TICK);
            seen.extend(turn.iter().map(|e| e.addr));
        }
        assert_eq!(seen.len(), n as usize, "every source was looked at");
    }

    #[test]
    fn a_full_list_refuses_and_covered_or_ended_entries_go() {
        let mut list = WatchList::default();
        let until = Instant::now() + Duration::from_secs(60);
        for i in 0..MAX_WATCHED as u32 {
            assert!(list.watch(&event(i), until));
        }
        assert!(!list.watch(&event(u32::MAX), until));
        let (turn, _) = list.turn(Instant::now(), |_| true);
        assert!(turn.is_empty(), "covered by decisions");
        assert!(list.watch(&event(u32::MAX), until), "room again");
        let mut short = WatchList::default();
        assert!(short.watch(&event(1), Instant::now()));
        let (turn, _) = short.turn(Instant::now() + Duration::from_secs(1), |_| false);
        assert!(turn.is_empty(), "its window ended");
        assert!(short.rota.is_empty() && short.watched.is_empty());
    }
}
