//! When a client is cut off, measured from outside the system that cuts it
//! off: `LineClock` stamps each line of a log when it appears in the file
//! (when the server wrote it, to within one poll), and `Prober` opens TCP
//! connections from the client's namespace every few milliseconds and keeps
//! the first of the final run of connections nobody answered. The two share
//! one clock, so "deciding line written → first packet dropped" is a
//! subtraction.

use std::{
    io::Read as _,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Result;

/// How often a log is looked at: the error of a line's stamp.
const LINE_POLL: Duration = Duration::from_micros(200);

/// Stamps every line of one log as it appears.
pub struct LineClock {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<(u64, Instant)>>>,
}

impl Drop for LineClock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Each line's start offset and when it appeared, in file order (the file
/// is not rotated or truncated while followed).
pub struct Stamps(Vec<(u64, Instant)>);

impl LineClock {
    pub fn follow(path: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let path = path.to_path_buf();
        let stopped = stop.clone();
        let thread = Some(std::thread::spawn(move || stamp_lines(&path, &stopped)));
        Self { stop, thread }
    }

    /// Stops following (after one more look) and hands over the stamps.
    pub fn finish(mut self) -> Stamps {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("finished once");
        Stamps(thread.join().unwrap_or_default())
    }
}

fn stamp_lines(path: &PathBuf, stop: &AtomicBool) -> Vec<(u64, Instant)> {
    let mut stamps = Vec::new();
    let mut file = None;
    let (mut line_start, mut offset) = (0u64, 0u64);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let last_look = stop.load(Ordering::Relaxed);
        if file.is_none() {
            file = std::fs::File::open(path).ok();
        }
        if let Some(f) = file.as_mut() {
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                for nl in memchr::memchr_iter(b'\n', &buf[..n]) {
                    stamps.push((line_start, now));
                    line_start = offset + nl as u64 + 1;
                }
                offset += n as u64;
            }
        }
        if last_look {
            return stamps;
        }
        std::thread::sleep(LINE_POLL);
    }
}

impl Stamps {
    /// When the line starting at `offset` appeared.
    pub fn at(&self, offset: u64) -> Option<Instant> {
        let i = self.0.binary_search_by_key(&offset, |(o, _)| *o).ok()?;
        Some(self.0[i].1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// TCP connections from inside a network namespace to a server.
pub struct Prober {
    stop: Arc<AtomicBool>,
    probed: Arc<Mutex<Probed>>,
    thread: Option<JoinHandle<Result<()>>>,
}

/// What the probes saw.
#[derive(Clone, Debug, Default)]
pub struct Probed {
    /// The first probe of the final run that got no answer (refused or
    /// timed out): when the client was cut off.
    pub cut_at: Option<Instant>,
    pub answered: u64,
    pub unanswered: u64,
}

impl Prober {
    /// Probes `server` from the namespace `netns` every `every`; a probe not
    /// answered within `timeout` counts as dropped.
    pub fn start(netns: &str, server: SocketAddr, every: Duration, timeout: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let probed = Arc::new(Mutex::new(Probed::default()));
        let (stopped, shared) = (stop.clone(), probed.clone());
        let netns = netns.to_string();
        let thread = std::thread::spawn(move || {
            crate::netns::enter(&netns)?;
            let mut next = Instant::now();
            while !stopped.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let answered = TcpStream::connect_timeout(&server, timeout).is_ok();
                let mut probed = shared.lock().unwrap_or_else(|e| e.into_inner());
                if answered {
                    probed.answered += 1;
                    probed.cut_at = None;
                } else {
                    probed.unanswered += 1;
                    probed.cut_at.get_or_insert(sent);
                }
                drop(probed);
                next += every;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Ok(())
        });
        Self {
            stop,
            probed,
            thread: Some(thread),
        }
    }

    /// When the current run of unanswered probes began, if one runs now.
    pub fn cut_at(&self) -> Option<Instant> {
        self.probed.lock().unwrap_or_else(|e| e.into_inner()).cut_at
    }

    pub fn finish(mut self) -> Result<Probed> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("finished once")
            .join()
            .map_err(|_| anyhow::anyhow!("the prober panicked"))??;
        Ok(self
            .probed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stamped_by_where_they_start() {
        let path = std::env::temp_dir().join(format!("es-lineclock-{}", std::process::id()));
        std::fs::write(&path, "one\ntw").unwrap();
        let clock = LineClock::follow(&path);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"o\nthree\n").unwrap();
        let stamps = clock.finish();
        let _ = std::fs::remove_file(&path);
        assert_eq!(stamps.len(), 3);
        assert!(stamps.at(0).is_some() && stamps.at(4).is_some() && stamps.at(8).is_some());
        assert!(stamps.at(4).unwrap() >= stamps.at(0).unwrap());
        assert_eq!(stamps.at(5), None);
    }
}
