//! The kernel's trip events, read by a thread of their own into a bounded
//! queue that keeps one event per subject. The ring buffer is emptied as
//! fast as it fills, whatever the detectors cost, so the kernel drops an
//! event only when this thread cannot copy them out; events about a subject
//! already queued replace its event (the detectors read the subject's
//! counters from the maps anyway), and new subjects beyond the bound are
//! shed. Both are counted.

use std::{
    collections::HashMap,
    os::fd::{AsRawFd, RawFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use ensuresec_common::features::{AddrKey, Event};
use prometheus::IntCounter;

use super::wake::EventFd;
use crate::error::Result;

/// Subjects queued at most; more are shed until the detection thread takes.
/// As many as the per-source table has slots on a CPU: more subjects than
/// that cannot all be tripping sources.
pub const MAX_PENDING: usize = 65_536;

/// Events the detection thread takes per turn, so that one turn's work
/// stays bounded (the application inbox and the upkeep wait for it).
pub const TAKE_PER_TURN: usize = 4096;

/// How soon the reader looks again after reading events: the default ring
/// buffer holds about 22,800 events, 23 ms of a million events a second.
const BUSY_LOOK_AGAIN: Duration = Duration::from_micros(200);

/// Events copied out of the ring buffer before they are queued in one go:
/// one lock per batch, and a batch that stays in the CPU's cache.
const READ_BATCH: usize = 1024;

/// What an event is about. The peer is part of it: a source's event is
/// judged by the detectors of the prefix its packet went to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Subject {
    kind: u32,
    addr: AddrKey,
    peer: AddrKey,
    port: u16,
    proto: u8,
    scale: u8,
}

impl Subject {
    fn of(e: &Event) -> Self {
        Self {
            kind: e.kind,
            addr: e.addr,
            peer: e.peer,
            port: e.port,
            proto: e.proto,
            scale: e.scale,
        }
    }
}

#[derive(Default)]
struct Pending {
    /// Index of each queued subject's event in `events`.
    index: HashMap<Subject, usize>,
    events: Vec<Event>,
}

/// Counts of what the reader did with the events it read.
#[derive(Clone)]
pub struct ReaderMetrics {
    /// Read from the ring buffer.
    pub read: IntCounter,
    /// Merged into a queued event about the same subject.
    pub coalesced: IntCounter,
    /// Refused: `MAX_PENDING` subjects were queued already.
    pub shed: IntCounter,
}

/// The queue between the reader thread and the detection thread.
pub struct EventQueue {
    pending: Mutex<Pending>,
    wake: EventFd,
    bound: usize,
}

impl EventQueue {
    pub fn new(bound: usize) -> Result<Self> {
        Ok(Self {
            pending: Mutex::new(Pending::default()),
            wake: EventFd::new()?,
            bound,
        })
    }

    /// The descriptor to poll: readable once something is queued.
    pub fn fd(&self) -> RawFd {
        self.wake.fd()
    }

    /// The oldest `max` subjects' events; the rest stay queued (and the
    /// descriptor readable).
    pub fn take(&self, max: usize) -> Vec<Event> {
        self.wake.clear();
        let mut pending = self.pending.lock().expect("event queue poisoned");
        let Pending { index, events } = &mut *pending;
        if events.len() <= max {
            index.clear();
            return std::mem::take(events);
        }
        let rest = events.split_off(max);
        let taken = std::mem::replace(events, rest);
        index.clear();
        for (i, e) in events.iter().enumerate() {
            index.insert(Subject::of(e), i);
        }
        self.wake.signal();
        taken
    }

    /// Queues `batch`, counting what was read, merged and shed before the
    /// detection thread can see it (so that handled + merged + shed never
    /// passes read).
    fn put(&self, batch: &[Event], metrics: &ReaderMetrics) {
        let (mut coalesced, mut shed) = (0, 0);
        let mut pending = self.pending.lock().expect("event queue poisoned");
        let Pending { index, events } = &mut *pending;
        for e in batch {
            let key = Subject::of(e);
            if let Some(&i) = index.get(&key) {
                events[i] = *e;
                coalesced += 1;
            } else if events.len() < self.bound {
                index.insert(key, events.len());
                events.push(*e);
            } else {
                shed += 1;
            }
        }
        metrics.read.inc_by(batch.len() as u64);
        metrics.coalesced.inc_by(coalesced);
        metrics.shed.inc_by(shed);
        drop(pending);
        self.wake.signal();
    }
}

/// Reads `ring` into `queue` until `stop` is set.
pub fn spawn_reader(
    mut ring: RingBuf<MapData>,
    queue: Arc<EventQueue>,
    metrics: ReaderMetrics,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ensuresec-events".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(READ_BATCH);
            let mut busy = false;
            while !stop.load(Ordering::Relaxed) {
                // While events flow, look again shortly rather than wait for
                // the kernel's wake-up, which comes only once this reader
                // has caught up and may be held until the producing CPU's
                // next tick: a ring buffer filling meanwhile drops events.
                if busy {
                    std::thread::sleep(BUSY_LOOK_AGAIN);
                } else {
                    wait_readable(ring.as_raw_fd(), Duration::from_millis(50));
                }
                busy = false;
                // Checks `stop` too: a reader that events keep busy still ends.
                while !stop.load(Ordering::Relaxed) {
                    while batch.len() < READ_BATCH {
                        let Some(item) = ring.next() else { break };
                        if item.len() >= std::mem::size_of::<Event>() {
                            // SAFETY: the kernel wrote an `Event`.
                            batch.push(unsafe {
                                std::ptr::read_unaligned(item.as_ptr() as *const Event)
                            });
                        }
                    }
                    if batch.is_empty() {
                        break;
                    }
                    busy = true;
                    queue.put(&batch, &metrics);
                    batch.clear();
                }
            }
        })
}

fn wait_readable(fd: RawFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u32, last_byte: u8, packets: u32) -> Event {
        // SAFETY: `Event` is plain old data; all zeroes is a valid value.
        let mut e: Event = unsafe { std::mem::zeroed() };
        e.kind = kind;
        e.addr.0[15] = last_byte;
        e.window.packets = packets;
        e
    }

    fn metrics() -> ReaderMetrics {
        let counter = |name: &str| IntCounter::new(name, name).unwrap();
        ReaderMetrics {
            read: counter("read"),
            coalesced: counter("coalesced"),
            shed: counter("shed"),
        }
    }

    #[test]
    fn one_event_per_subject_the_latest_in_first_order_and_the_bound_holds() {
        let (q, m) = (EventQueue::new(2).unwrap(), metrics());
        let batch = [
            event(1, 1, 10),
            event(1, 2, 5),
            event(1, 1, 20),
            event(1, 3, 1),
        ];
        q.put(&batch, &m);
        assert_eq!((m.read.get(), m.coalesced.get(), m.shed.get()), (4, 1, 1));
        let taken = q.take(TAKE_PER_TURN);
        assert_eq!(taken.len(), 2);
        assert_eq!((taken[0].addr.0[15], taken[0].window.packets), (1, 20));
        assert_eq!(taken[1].addr.0[15], 2);
        // Another kind about the same address is another subject.
        q.put(&[event(1, 1, 1), event(2, 1, 1)], &m);
        assert_eq!(m.coalesced.get(), 1);
        assert_eq!(q.take(TAKE_PER_TURN).len(), 2);
        assert!(q.take(TAKE_PER_TURN).is_empty());
    }

    #[test]
    fn a_turn_takes_at_most_its_share_and_the_rest_still_merges() {
        let (q, m) = (EventQueue::new(10).unwrap(), metrics());
        q.put(&[event(1, 1, 1), event(1, 2, 1), event(1, 3, 1)], &m);
        let first = q.take(2);
        let addrs: Vec<u8> = first.iter().map(|e| e.addr.0[15]).collect();
        assert_eq!(addrs, [1, 2]);
        // The one left is still found by its subject.
        q.put(&[event(1, 3, 9)], &m);
        assert_eq!(m.coalesced.get(), 1);
        let rest = q.take(2);
        assert_eq!((rest.len(), rest[0].window.packets), (1, 9));
    }
}
