//! Following files through what servers and logrotate do to them. Each test
//! counts lines by result through the pipeline's own metric, so a line read
//! twice or lost shows as a wrong count.

use std::{
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use super::Tailer;
use crate::app::{
    metrics::AppMetrics,
    parse::Format,
    pipeline::{Pipeline, TimeBase},
    pseudonym::Hasher,
    settings::{
        AppSection, AppSettings, EventsConfig, Follow, LogConfig, StartAt, StorefrontConfig,
    },
};

struct Fixture {
    dir: PathBuf,
    log: PathBuf,
    settings: Arc<AppSettings>,
    metrics: AppMetrics,
    pipeline: Arc<Mutex<Pipeline>>,
    /// Where the lines that made findings start.
    decided_at: Arc<Mutex<Vec<u64>>>,
}

fn fixture(name: &str, start_at: StartAt, max_line: usize) -> Fixture {
    fixture_following(name, start_at, max_line, Follow::Inotify)
}

fn fixture_following(name: &str, start_at: StartAt, max_line: usize, follow: Follow) -> Fixture {
    let dir = std::env::temp_dir().join(format!("es-tail-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let section = AppSection {
        state_dir: Some(dir.join("state")),
        start_at,
        max_line,
        follow,
        ..Default::default()
    };
    let settings = Arc::new(
        AppSettings::validate(
            &section,
            &[StorefrontConfig {
                name: "shop".into(),
                ..Default::default()
            }],
            &[LogConfig {
                path: log.clone(),
                format: Format::Combined,
                storefront: Some("shop".into()),
                json: None,
            }],
            &EventsConfig::default(),
        )
        .unwrap(),
    );
    let metrics = AppMetrics::new().unwrap();
    let decided_at = Arc::new(Mutex::new(Vec::new()));
    let sink = decided_at.clone();
    let pipeline = Arc::new(Mutex::new(Pipeline::new(
        settings.clone(),
        Hasher::with_key([1; 32]),
        metrics.clone(),
        TimeBase::Log,
        Box::new(move |f| {
            let line = f.origin.line.expect("a log line decided");
            sink.lock().unwrap().push(line.offset);
        }),
    )));
    Fixture {
        dir,
        log,
        settings,
        metrics,
        pipeline,
        decided_at,
    }
}

impl Fixture {
    fn count(&self, result: &str) -> u64 {
        self.metrics
            .lines
            .with_label_values(&[&self.log.display().to_string(), result])
            .get()
    }

    fn tailer(&self) -> Tailer {
        Tailer::new(&self.settings)
    }

    /// Reads until nothing is new.
    fn drain(&self, t: &mut Tailer) {
        while t.pass(&self.pipeline) {}
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn line(n: usize) -> String {
    format!("10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET /{n} HTTP/1.1\" 200 1 \"-\" \"ua\"\n")
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn lines(range: std::ops::Range<usize>) -> String {
    range.map(line).collect()
}

#[test]
fn a_partial_line_waits_for_its_newline() {
    let f = fixture("partial", StartAt::Beginning, 4096);
    let mut t = f.tailer();
    let whole = line(1);
    append(&f.log, &whole[..20]);
    f.drain(&mut t);
    assert_eq!(f.count("ok") + f.count("malformed"), 0);
    append(&f.log, &whole[20..]);
    f.drain(&mut t);
    assert_eq!((f.count("ok"), f.count("malformed")), (1, 0));
}

/// A finding names where its deciding line starts, also when the line came
/// in pieces, after a restart and after the file was truncated.
#[test]
fn findings_name_the_byte_offset_of_their_line() {
    let f = fixture("offset", StartAt::Beginning, 4096);
    // A tool's user agent decides at once; one client per finding.
    let tool = |client: u8| {
        format!(
            "10.0.0.{client} - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1 \"-\" \"sqlmap/1.7\"\n"
        )
    };
    let before = lines(0..3);
    append(&f.log, &before);
    append(&f.log, &tool(9)[..30]);
    let mut t = f.tailer();
    f.drain(&mut t);
    append(&f.log, &tool(9)[30..]);
    f.drain(&mut t);
    t.save();
    drop(t);
    let second = (before.len() + tool(9).len() + line(3).len()) as u64;
    append(&f.log, &(line(3) + &tool(10)));
    let mut t = f.tailer();
    f.drain(&mut t);
    std::fs::write(&f.log, line(4) + &tool(11)).unwrap();
    f.drain(&mut t);
    let expected = vec![before.len() as u64, second, line(4).len() as u64];
    assert_eq!(*f.decided_at.lock().unwrap(), expected);
}

/// Waits up to 10 s for `check`.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "waited for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Polling (`follow = "poll"`, as where inotify is missing): the follower
/// thread finds every line by looking, through a rename rotation too.
#[test]
fn polling_follows_writes_and_rotations() {
    let f = fixture_following("poll", StartAt::Beginning, 4096, Follow::Poll);
    let t = f.tailer();
    assert!(t.inotify.is_none());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let thread = t.spawn(f.pipeline.clone(), stop.clone());
    append(&f.log, &lines(0..3));
    eventually("three lines", || f.count("ok") == 3);
    std::fs::rename(&f.log, f.dir.join("access.log.1")).unwrap();
    append(&f.log, &lines(3..5));
    eventually("five lines", || f.count("ok") == 5);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    thread.join().unwrap();
    assert_eq!(f.count("malformed"), 0);
}

#[test]
fn rotation_by_rename_loses_nothing_the_server_still_writes() {
    let f = fixture("rename", StartAt::Beginning, 4096);
    let mut t = f.tailer();
    append(&f.log, &lines(0..3));
    f.drain(&mut t);
    let rotated = f.dir.join("access.log.1");
    std::fs::rename(&f.log, &rotated).unwrap();
    // The server writes to the old file until it reopens its logs.
    append(&rotated, &lines(3..4));
    append(&f.log, &lines(4..6));
    f.drain(&mut t);
    append(&rotated, &lines(6..7));
    append(&f.log, &lines(7..9));
    f.drain(&mut t);
    assert_eq!((f.count("ok"), f.count("malformed")), (9, 0));
}

#[test]
fn copytruncate_starts_again_at_the_top() {
    let f = fixture("truncate", StartAt::Beginning, 4096);
    let mut t = f.tailer();
    append(&f.log, &lines(0..3));
    f.drain(&mut t);
    OpenOptions::new()
        .write(true)
        .open(&f.log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&f.log, &lines(3..5));
    f.drain(&mut t);
    assert_eq!((f.count("ok"), f.count("malformed")), (5, 0));
}

#[test]
fn a_restart_resumes_where_the_last_agent_stopped() {
    let f = fixture("resume", StartAt::End, 4096);
    append(&f.log, &lines(0..3));
    let mut first = f.tailer();
    f.drain(&mut first);
    assert_eq!(f.count("ok"), 0, "a log never seen starts at its end");
    append(&f.log, &lines(3..5));
    f.drain(&mut first);
    first.save();
    drop(first);
    // Written while no agent ran.
    append(&f.log, &lines(5..8));
    let mut second = f.tailer();
    f.drain(&mut second);
    assert_eq!((f.count("ok"), f.count("malformed")), (5, 0));
}

#[test]
fn a_rotation_while_stopped_is_finished_then_followed() {
    let f = fixture("down-rotate", StartAt::Beginning, 4096);
    let mut first = f.tailer();
    append(&f.log, &lines(0..2));
    f.drain(&mut first);
    first.save();
    drop(first);
    append(&f.log, &lines(2..3));
    std::fs::rename(&f.log, f.dir.join("access.log.1")).unwrap();
    append(&f.log, &lines(3..5));
    let mut second = f.tailer();
    f.drain(&mut second);
    assert_eq!((f.count("ok"), f.count("malformed")), (5, 0));
}

/// A restart while a rotated file is still being finished (the server
/// writes to it until it reopens its logs) resumes both files.
#[test]
fn a_restart_while_a_rotated_file_drains_loses_nothing() {
    let f = fixture("drain-restart", StartAt::Beginning, 4096);
    let mut first = f.tailer();
    append(&f.log, &lines(0..2));
    f.drain(&mut first);
    let rotated = f.dir.join("access.log.1");
    std::fs::rename(&f.log, &rotated).unwrap();
    append(&rotated, &lines(2..3));
    append(&f.log, &lines(3..5));
    f.drain(&mut first);
    first.save();
    drop(first);
    // Written while no agent ran: the old file's last lines, the new one's.
    append(&rotated, &lines(5..7));
    append(&f.log, &lines(7..8));
    let mut second = f.tailer();
    f.drain(&mut second);
    assert_eq!((f.count("ok"), f.count("malformed")), (8, 0));
}

#[test]
fn a_huge_line_is_skipped_counted_and_bounded() {
    let f = fixture("huge", StartAt::Beginning, 4096);
    let mut t = f.tailer();
    let mut huge = vec![b'x'; 10 << 20];
    huge.push(b'\n');
    append(&f.log, &String::from_utf8(huge).unwrap());
    append(&f.log, &lines(0..1));
    append(&f.log, "\u{1}\u{2} binary garbage\n");
    f.drain(&mut t);
    assert_eq!(
        (f.count("too_long"), f.count("ok"), f.count("malformed")),
        (1, 1, 1)
    );
}

#[test]
fn a_log_deleted_and_recreated_is_followed() {
    let f = fixture("recreate", StartAt::End, 4096);
    let mut t = f.tailer();
    append(&f.log, "");
    f.drain(&mut t);
    append(&f.log, &lines(0..2));
    f.drain(&mut t);
    std::fs::remove_file(&f.log).unwrap();
    f.drain(&mut t);
    append(&f.log, &lines(2..5));
    f.drain(&mut t);
    assert_eq!(f.count("ok"), 5);
}

#[test]
fn a_log_left_unread_is_stalled_until_reading_goes_on() {
    let f = fixture("stall", StartAt::Beginning, 4096);
    let mut t = f.tailer();
    append(&f.log, &lines(0..3));
    f.drain(&mut t);
    let log = f.log.display().to_string();
    let gauges = |t: &mut Tailer, at| {
        t.check_lag_at(&f.metrics, at);
        (
            f.metrics.log_lag.with_label_values(&[&log]).get(),
            f.metrics.log_stalled.with_label_values(&[&log]).get(),
        )
    };
    let start = std::time::Instant::now();
    assert_eq!(gauges(&mut t, start), (0, 0), "all read");
    let more = lines(3..5);
    append(&f.log, &more);
    assert_eq!(
        gauges(&mut t, start),
        (more.len() as i64, 0),
        "behind, not stalled yet"
    );
    let later = start + super::STALLED + std::time::Duration::from_secs(1);
    assert_eq!(
        gauges(&mut t, later),
        (more.len() as i64, 1),
        "no progress: stalled"
    );
    f.drain(&mut t);
    assert_eq!(gauges(&mut t, later), (0, 0), "read again");
}
