//! Following one log file: read what was appended, line by line; keep a
//! partial last line until its newline arrives; after a rotation by rename,
//! go on with the new file while the old one is finished (the server writes
//! to it until it reopens its logs); after a copytruncate, start over at the
//! top. Memory is bounded by `max_line` whatever the file holds.

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::positions::{Draining, FileId, Positions, Saved, find_renamed};
use crate::app::{
    pipeline::Pipeline,
    settings::{LogInput, StartAt},
};

const CHUNK: usize = 64 * 1024;

/// A rotated-away file is let go once nothing was appended to it for this
/// long (servers reopen their logs right after a rotation).
const DRAIN_QUIET: Duration = Duration::from_secs(5);

/// One open file and the line being assembled from it.
struct Open {
    file: File,
    id: FileId,
    /// Next byte to read.
    read_to: u64,
    /// Where the line being read (or the partial one) starts.
    line_start: u64,
    /// Bytes of a line whose newline has not arrived.
    partial: Vec<u8>,
    /// Inside a line longer than `max_line`: skip to its newline.
    skipping: bool,
    last_growth: Instant,
}

impl Open {
    /// The end of the last whole line read (also inside a too-long line
    /// being skipped: a restart skips it again from its start).
    fn whole_lines_end(&self) -> u64 {
        self.line_start
    }

    fn new(file: File, id: FileId, read_to: u64) -> Self {
        Self {
            file,
            id,
            read_to,
            line_start: read_to,
            partial: Vec::new(),
            skipping: false,
            last_growth: Instant::now(),
        }
    }
}

pub struct Follower {
    pub input: LogInput,
    open: Option<Open>,
    /// Rotated-away files still being finished.
    draining: Vec<Open>,
    max_line: usize,
    /// Where a log never seen starts (only for the first open).
    start_at: StartAt,
    first_open: bool,
    buf: Vec<u8>,
}

/// What a read pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub bytes: u64,
    pub lines: u64,
}

impl Follower {
    pub fn new(input: LogInput, max_line: usize, start_at: StartAt) -> Self {
        Self {
            input,
            open: None,
            draining: Vec::new(),
            max_line,
            start_at,
            first_open: true,
            buf: vec![0; CHUNK],
        }
    }

    pub fn path(&self) -> &Path {
        &self.input.path
    }

    /// Bytes written to the log (and the files still draining) not read
    /// yet; none while the log is not open (missing).
    pub fn unread(&self) -> Option<u64> {
        let behind = |o: &Open| {
            o.file
                .metadata()
                .map_or(0, |m| m.len().saturating_sub(o.read_to))
        };
        let open = self.open.as_ref()?;
        Some(behind(open) + self.draining.iter().map(behind).sum::<u64>())
    }

    /// The directory to watch for this log's changes.
    pub fn dir(&self) -> PathBuf {
        self.input
            .path
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf()
    }

    /// The position to save: the end of the last whole line of the current
    /// file, and of the files still draining after a rotation (found again
    /// by identity after a restart, see `open_current`).
    pub fn saved(&self) -> Option<Saved> {
        self.open.as_ref().map(|o| Saved {
            id: o.id,
            offset: o.whole_lines_end(),
            draining: self
                .draining
                .iter()
                .map(|d| Draining {
                    id: d.id,
                    offset: d.whole_lines_end(),
                })
                .collect(),
        })
    }

    fn open_current(&mut self, positions: &Positions) {
        let Ok(file) = File::open(&self.input.path) else {
            return;
        };
        let Ok(meta) = file.metadata() else {
            return;
        };
        let id = FileId::of(&meta);
        let first = std::mem::replace(&mut self.first_open, false);
        let saved = positions.get(&self.input.path).filter(|_| first).cloned();
        // Rotated files that were still being finished when we stopped.
        for d in saved.iter().flat_map(|s| &s.draining) {
            if d.id != id
                && let Some(old) = find_renamed(&self.dir(), d.id).and_then(|p| File::open(p).ok())
            {
                self.draining.push(Open::new(old, d.id, d.offset));
            }
        }
        let read_to = if !first {
            // Created after we started (a rotation): all of it is new.
            0
        } else {
            match saved {
                // Shorter than where we were: truncated while we were down.
                Some(saved) if saved.id == id => {
                    if saved.offset <= meta.len() {
                        saved.offset
                    } else {
                        0
                    }
                }
                Some(saved) => {
                    // Rotated while we were down: finish the old file too.
                    if let Some(old) =
                        find_renamed(&self.dir(), saved.id).and_then(|p| File::open(p).ok())
                    {
                        self.draining.push(Open::new(old, saved.id, saved.offset));
                    }
                    0
                }
                None => match self.start_at {
                    StartAt::End => meta.len(),
                    StartAt::Beginning => 0,
                },
            }
        };
        self.open = Some(Open::new(file, id, read_to));
    }

    /// Reads what is new, up to about `budget` bytes; the rest waits for the
    /// next pass (other logs get their turn).
    pub fn pass(&mut self, pipeline: &mut Pipeline, positions: &Positions, budget: u64) -> Pass {
        let mut done = Pass::default();
        let mut draining = std::mem::take(&mut self.draining);
        for old in &mut draining {
            self.read(old, pipeline, budget, &mut done);
        }
        for mut old in draining {
            if old.last_growth.elapsed() < DRAIN_QUIET {
                self.draining.push(old);
            } else {
                // Nothing will be appended any more: a last line without
                // its newline is whole.
                self.flush(&mut old, pipeline, &mut done);
            }
        }
        if self.open.is_none() {
            self.open_current(positions);
        }
        let Some(mut open) = self.open.take() else {
            return done;
        };
        // Copytruncate: the file is now shorter than what we read.
        if open.file.metadata().is_ok_and(|m| m.len() < open.read_to) {
            tracing::info!(log = %self.input.path.display(), "log truncated; reading it from the top");
            open.read_to = 0;
            open.line_start = 0;
            open.partial.clear();
            open.skipping = false;
        }
        self.read(
            &mut open,
            pipeline,
            budget.saturating_sub(done.bytes),
            &mut done,
        );
        let now_there = std::fs::metadata(&self.input.path)
            .map(|m| FileId::of(&m))
            .ok();
        if now_there != Some(open.id) {
            // Renamed away or deleted: finish it while reading its successor.
            self.draining.push(open);
            self.open_current(positions);
            if let Some(mut new) = self.open.take() {
                self.read(
                    &mut new,
                    pipeline,
                    budget.saturating_sub(done.bytes),
                    &mut done,
                );
                self.open = Some(new);
            }
            return done;
        }
        self.open = Some(open);
        done
    }

    fn read(&mut self, open: &mut Open, pipeline: &mut Pipeline, budget: u64, done: &mut Pass) {
        let start = done.bytes;
        while done.bytes - start < budget {
            let n = match open.file.read_at(&mut self.buf, open.read_to) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(log = %self.input.path.display(), error = %e, "reading the log failed");
                    break;
                }
            };
            let at = open.read_to;
            open.read_to += n as u64;
            open.last_growth = Instant::now();
            done.bytes += n as u64;
            let data = std::mem::take(&mut self.buf);
            self.split(open, at, &data[..n], pipeline, done);
            self.buf = data;
        }
    }

    /// Splits `data`, read from byte `at` of the file, into lines.
    fn split(
        &self,
        open: &mut Open,
        mut at: u64,
        mut data: &[u8],
        pipeline: &mut Pipeline,
        done: &mut Pass,
    ) {
        while let Some(nl) = memchr::memchr(b'\n', data) {
            let (line, rest) = (&data[..nl], &data[nl + 1..]);
            data = rest;
            at += nl as u64 + 1;
            let start = std::mem::replace(&mut open.line_start, at);
            done.lines += 1;
            if std::mem::take(&mut open.skipping) {
                continue;
            }
            if open.partial.len() + line.len() > self.max_line {
                pipeline.too_long(&self.input);
                open.partial.clear();
            } else if open.partial.is_empty() {
                pipeline.line(&self.input, line, open.id.ino, start);
            } else {
                open.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut open.partial);
                pipeline.line(&self.input, &whole, open.id.ino, start);
            }
        }
        if open.skipping {
            return;
        }
        if open.partial.len() + data.len() > self.max_line {
            // Too long to keep: counted once, skipped up to its newline.
            pipeline.too_long(&self.input);
            open.partial = Vec::new();
            open.skipping = true;
            return;
        }
        open.partial.extend_from_slice(data);
    }

    fn flush(&self, open: &mut Open, pipeline: &mut Pipeline, done: &mut Pass) {
        if !open.partial.is_empty() && !open.skipping {
            let whole = std::mem::take(&mut open.partial);
            pipeline.line(&self.input, &whole, open.id.ino, open.line_start);
            done.lines += 1;
        }
    }
}
