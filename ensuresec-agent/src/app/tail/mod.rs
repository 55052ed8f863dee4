//! The log inputs: one thread follows every `[[logs]]` file. It sleeps on
//! inotify (each log's directory, so that rotations and files created later
//! are seen) and wakes at once when a server appends a line; where inotify
//! is unavailable it polls. Positions are saved once a second and at stop.

pub mod follow;
pub mod positions;

use std::{
    collections::HashMap,
    os::fd::{AsFd, AsRawFd},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use inotify::{Inotify, WatchMask};

use self::{follow::Follower, positions::Positions};
use super::{
    pipeline::Pipeline,
    settings::{AppSettings, Follow},
};

/// Longest sleep without an inotify event (and the poll interval without
/// inotify).
const POLL: Duration = Duration::from_millis(100);
/// Bytes read from one log per pass, so that one busy log does not starve
/// the others.
const BUDGET: u64 = 4 << 20;
/// A log with unread bytes whose reading made no progress for this long is
/// stalled (a reader stuck on the pipeline, a file it cannot read).
const STALLED: Duration = Duration::from_secs(30);

pub struct Tailer {
    followers: Vec<Follower>,
    /// When each log last had nothing unread or made progress, and the
    /// bytes read from it since the last check.
    progress: Vec<(Instant, u64)>,
    positions: Positions,
    inotify: Option<Inotify>,
    watched: HashMap<PathBuf, inotify::WatchDescriptor>,
}

impl Tailer {
    pub fn new(settings: &AppSettings) -> Self {
        let followers = settings
            .logs
            .iter()
            .map(|l| {
                Follower::new(
                    l.clone(),
                    settings.section.max_line,
                    settings.section.start_at,
                )
            })
            .collect();
        let inotify = match settings.section.follow {
            Follow::Poll => None,
            Follow::Inotify => Inotify::init()
                .map_err(|e| tracing::warn!(error = %e, "inotify unavailable; polling the logs every 100 ms"))
                .ok(),
        };
        Self {
            progress: vec![(Instant::now(), 0); settings.logs.len()],
            followers,
            positions: Positions::load(settings.state_dir()),
            inotify,
            watched: HashMap::new(),
        }
    }

    /// Watches each log's directory (again, for one created later).
    fn watch(&mut self) {
        let Some(inotify) = &self.inotify else {
            return;
        };
        for f in &self.followers {
            let dir = f.dir();
            if self.watched.contains_key(&dir) {
                continue;
            }
            let mask = WatchMask::MODIFY
                | WatchMask::CREATE
                | WatchMask::MOVED_TO
                | WatchMask::MOVED_FROM
                | WatchMask::DELETE
                | WatchMask::CLOSE_WRITE;
            if let Ok(wd) = inotify.watches().add(&dir, mask) {
                self.watched.insert(dir, wd);
            }
        }
    }

    /// Sleeps until a watched directory changes, or `POLL`.
    fn wait(&mut self) {
        let Some(inotify) = &mut self.inotify else {
            std::thread::sleep(POLL);
            return;
        };
        let mut pfd = libc::pollfd {
            fd: inotify.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, POLL.as_millis() as i32) };
        let mut buf = [0u8; 4096];
        // Drain the events: every log is looked at after any of them.
        while let Ok(events) = inotify.read_events(&mut buf) {
            let mut any = false;
            for e in events {
                any = true;
                if e.mask.contains(inotify::EventMask::IGNORED) {
                    // The directory went away: watch it again when it is back.
                    self.watched.retain(|_, wd| *wd != e.wd);
                }
            }
            if !any {
                break;
            }
        }
    }

    /// Reads every log once; true if any had something new.
    pub fn pass(&mut self, pipeline: &Mutex<Pipeline>) -> bool {
        let mut any = false;
        let mut p = pipeline.lock().expect("pipeline lock");
        for (f, progress) in self.followers.iter_mut().zip(&mut self.progress) {
            let done = f.pass(&mut p, &self.positions, BUDGET);
            any |= done.bytes > 0;
            progress.1 += done.bytes;
            if let Some(saved) = f.saved() {
                self.positions.set(&f.input.path, saved);
            }
        }
        any
    }

    /// Sets each log's lag and stalled gauges.
    pub fn check_lag(&mut self, metrics: &crate::app::metrics::AppMetrics) {
        self.check_lag_at(metrics, Instant::now());
    }

    fn check_lag_at(&mut self, metrics: &crate::app::metrics::AppMetrics, now: Instant) {
        for (f, (since, read)) in self.followers.iter().zip(&mut self.progress) {
            let log = f.input.path.display().to_string();
            let unread = f.unread().unwrap_or(0);
            if unread == 0 || *read > 0 {
                *since = now;
            }
            *read = 0;
            metrics
                .log_lag
                .with_label_values(&[&log])
                .set(unread as i64);
            let stalled = unread > 0 && now.duration_since(*since) >= STALLED;
            metrics
                .log_stalled
                .with_label_values(&[&log])
                .set(stalled as i64);
        }
    }

    pub fn save(&mut self) {
        if let Err(e) = self.positions.save() {
            tracing::warn!(error = %e, "could not save the log positions");
        }
    }

    pub fn spawn(
        mut self,
        pipeline: Arc<Mutex<Pipeline>>,
        stop: Arc<AtomicBool>,
    ) -> JoinHandle<()> {
        std::thread::Builder::new()
            .name("ensuresec-logs".into())
            .spawn(move || {
                let mut last_tick = Instant::now();
                let metrics = pipeline.lock().expect("pipeline lock").metrics().clone();
                self.watch();
                while !stop.load(Ordering::Relaxed) {
                    // A log with more than a pass's budget goes on at once.
                    if !self.pass(&pipeline) {
                        self.wait();
                    }
                    if last_tick.elapsed() >= Duration::from_secs(1) {
                        last_tick = Instant::now();
                        self.watch();
                        self.save();
                        self.check_lag(&metrics);
                        pipeline.lock().expect("pipeline lock").tick();
                    }
                }
                self.pass(&pipeline);
                self.save();
            })
            .expect("spawning the log thread")
    }
}

#[cfg(test)]
mod tests;
