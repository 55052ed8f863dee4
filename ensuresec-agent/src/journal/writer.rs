//! The agent's journal thread: what the agent and its engine record arrives
//! over a bounded channel and is written in batches, off the detection
//! path. A write that fails (a full disk) is counted and tried again; the
//! kernel keeps enforcing meanwhile, and what cannot wait is dropped and
//! counted, never blocking a decision.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use prometheus::{IntCounter, IntGauge, Registry};

use super::{Entry, Journal, JournalError, StateChange, retention::Retention};

/// Records waiting in the channel at most.
const CHANNEL: usize = 65_536;
/// Records per transaction at most.
const BATCH: usize = 20_000;
/// Records kept for another try after failed writes, at most.
const PENDING: usize = 200_000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct JournalMetrics {
    pub written: IntCounter,
    pub write_errors: IntCounter,
    pub dropped: IntCounter,
    pub pending: IntGauge,
    pub bytes: IntGauge,
    pub pruned: IntCounter,
}

impl JournalMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            written: IntCounter::new(
                "ensuresec_journal_records_written_total",
                "Journal entries and state changes written",
            )?,
            write_errors: IntCounter::new(
                "ensuresec_journal_write_errors_total",
                "Journal writes that failed (full disk, I/O error); retried",
            )?,
            dropped: IntCounter::new(
                "ensuresec_journal_dropped_total",
                "Journal records lost: the queue was full or failed writes piled up",
            )?,
            pending: IntGauge::new(
                "ensuresec_journal_pending",
                "Journal records waiting for a write that failed to succeed",
            )?,
            bytes: IntGauge::new(
                "ensuresec_journal_bytes",
                "Size of the journal database and its write-ahead log",
            )?,
            pruned: IntCounter::new(
                "ensuresec_journal_pruned_total",
                "Journal entries removed by retention (age or size)",
            )?,
        };
        registry.register(Box::new(m.written.clone()))?;
        registry.register(Box::new(m.write_errors.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.pending.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.pruned.clone()))?;
        Ok(m)
    }
}

enum Record {
    Entry(Entry),
    Change(StateChange),
    /// The engine's outcomes are turned into rows here, not on its thread.
    Outcome(Box<crate::detect::outcome::Outcome>),
}

/// Where the agent's parts send what they record. Never blocks.
#[derive(Clone)]
pub struct JournalSink {
    tx: SyncSender<Record>,
    dropped: IntCounter,
}

impl JournalSink {
    pub fn entry(&self, entry: Entry) {
        self.send(Record::Entry(entry));
    }

    pub fn change(&self, change: StateChange) {
        self.send(Record::Change(change));
    }

    pub fn outcome(&self, outcome: crate::detect::outcome::Outcome) {
        self.send(Record::Outcome(Box::new(outcome)));
    }

    fn send(&self, record: Record) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

/// Brings the journal's desired state in line with the maps (see
/// `recover::reconcile`); called every `sync_every`.
pub type Sync = Box<dyn FnMut(&Journal) -> Result<Vec<StateChange>, crate::error::Error> + Send>;

/// Work the thread does once, first (a reconciliation that reads the whole
/// maps and journal: off the agent's start).
pub type Initial =
    Box<dyn FnOnce(&Journal) -> Result<(Vec<Entry>, Vec<StateChange>), crate::error::Error> + Send>;

pub struct Writer {
    journal: Journal,
    rx: Receiver<Record>,
    metrics: JournalMetrics,
    retention: Retention,
    sync: Option<(Sync, Duration)>,
    initial: Option<Initial>,
}

/// The journal's thread and the sink that feeds it.
pub fn start(
    journal: Journal,
    metrics: JournalMetrics,
    retention: Retention,
) -> (Writer, JournalSink) {
    let (tx, rx) = sync_channel(CHANNEL);
    let sink = JournalSink {
        tx,
        dropped: metrics.dropped.clone(),
    };
    (
        Writer {
            journal,
            rx,
            metrics,
            retention,
            sync: None,
            initial: None,
        },
        sink,
    )
}

impl Writer {
    pub fn with_sync(mut self, sync: Sync, every: Duration) -> Self {
        self.sync = Some((sync, every));
        self
    }

    pub fn with_initial(mut self, initial: Initial) -> Self {
        self.initial = Some(initial);
        self
    }

    /// Runs until `stop` is set and the channel is empty (or every sender
    /// is gone).
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> JoinHandle<()> {
        std::thread::Builder::new()
            .name("ensuresec-journal".into())
            .spawn(move || self.run(&stop))
            .expect("spawning the journal thread")
    }

    fn run(&mut self, stop: &AtomicBool) {
        let mut entries = Vec::new();
        let mut changes = Vec::new();
        let mut retry_at = Instant::now();
        let mut backoff = Duration::from_millis(500);
        let mut last_prune = Instant::now();
        let mut last_sync = Instant::now();
        if let Some(initial) = self.initial.take() {
            match initial(&self.journal) {
                Ok((e, c)) => {
                    entries.extend(e);
                    changes.extend(c);
                }
                Err(e) => tracing::warn!(error = %e, "could not compare the journal with the maps"),
            }
        }
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            let gone = match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => {
                    push(r, &mut entries, &mut changes);
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            while entries.len() + changes.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(r) => push(r, &mut entries, &mut changes),
                    Err(_) => break,
                }
            }
            if let Some((sync, every)) = &mut self.sync
                && last_sync.elapsed() >= *every
            {
                last_sync = Instant::now();
                match sync(&self.journal) {
                    Ok(found) => changes.extend(found),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not compare the journal's state with the maps")
                    }
                }
            }
            let pending = entries.len() + changes.len();
            if pending > 0 && Instant::now() >= retry_at && !(stopping || gone) {
                match self.journal.write(&entries, &changes) {
                    Ok(()) => {
                        self.metrics.written.inc_by(pending as u64);
                        entries.clear();
                        changes.clear();
                        backoff = Duration::from_millis(500);
                    }
                    Err(e) => {
                        self.metrics.write_errors.inc();
                        tracing::error!(error = %e, pending, "journal write failed; enforcement goes on, retrying");
                        retry_at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        shed(&mut entries, &mut changes, &self.metrics);
                    }
                }
            }
            self.metrics
                .pending
                .set((entries.len() + changes.len()) as i64);
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = Instant::now();
                self.prune();
            }
            if stopping || gone {
                self.finish(entries, changes);
                break;
            }
        }
    }

    /// The last write at shutdown: what cannot be written is counted lost.
    fn finish(&mut self, mut entries: Vec<Entry>, mut changes: Vec<StateChange>) {
        while let Ok(r) = self.rx.try_recv() {
            push(r, &mut entries, &mut changes);
        }
        let n = (entries.len() + changes.len()) as u64;
        if n == 0 {
            return;
        }
        match self.journal.write(&entries, &changes) {
            Ok(()) => self.metrics.written.inc_by(n),
            Err(e) => {
                self.metrics.write_errors.inc();
                self.metrics.dropped.inc_by(n);
                tracing::error!(error = %e, lost = n, "journal write failed at shutdown");
            }
        }
    }

    fn prune(&mut self) {
        match self.journal.prune(self.retention) {
            Ok(n) => self.metrics.pruned.inc_by(n),
            Err(e) => log_prune_error(&e),
        }
        self.metrics.bytes.set(self.journal.size_bytes() as i64);
    }
}

fn log_prune_error(e: &JournalError) {
    tracing::warn!(error = %e, "journal retention failed; tried again in a minute");
}

fn push(r: Record, entries: &mut Vec<Entry>, changes: &mut Vec<StateChange>) {
    match r {
        Record::Entry(e) => entries.push(e),
        Record::Change(c) => changes.push(c),
        Record::Outcome(o) => {
            let (entry, more) = super::outcomes::record(&o);
            entries.push(entry);
            changes.extend(more);
        }
    }
}

/// Keeps what waits for a retry bounded: the oldest entries go first (the
/// state changes matter more: they are what a reboot restores).
fn shed(entries: &mut Vec<Entry>, changes: &mut Vec<StateChange>, metrics: &JournalMetrics) {
    let over = (entries.len() + changes.len()).saturating_sub(PENDING);
    if over == 0 {
        return;
    }
    let from_entries = over.min(entries.len());
    entries.drain(..from_entries);
    let from_changes = (over - from_entries).min(changes.len());
    changes.drain(..from_changes);
    metrics.dropped.inc_by(over as u64);
}
