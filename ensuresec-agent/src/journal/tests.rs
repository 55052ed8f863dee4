//! The journal on its own: written and read back, found by address, kept
//! within its retention, and a bad file named.

use serde_json::json;

use super::{
    AGENT, Entry, Journal, Kind, StateChange,
    query::Filter,
    retention::Retention,
    state::{DecisionRow, ListRow, OffenderRow},
};

fn dir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("es-journal-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn block(target: &str, expires_ms: Option<u64>) -> ListRow {
    ListRow {
        target: target.into(),
        allow: false,
        block: true,
        block_expires_ms: expires_ms,
        reason: Some("abuse".into()),
        added_secs: 1,
        operation: None,
    }
}

#[test]
fn entries_come_back_in_order_and_by_address() {
    let d = dir();
    let mut j = Journal::open(&d).unwrap();
    let entries = [
        Entry::now(Kind::Block, "alice").target("198.51.100.0/24"),
        Entry::now(Kind::Decision, AGENT)
            .target("198.51.100.7")
            .detail(json!({"does": "drops everything"})),
        Entry::now(Kind::Decision, AGENT).target("10.77.0.1:80/tcp"),
        Entry::now(Kind::Allow, "bob").target("2001:db8::/32"),
        Entry::now(Kind::AgentStart, AGENT),
    ];
    j.write(&entries, &[]).unwrap();
    let all = j.entries(&Filter::default()).unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].entry.kind, Kind::Block);
    assert_eq!(all[1].entry.detail["does"], "drops everything");
    let about = |a: &str| {
        j.entries(&Filter {
            address: Some(a.into()),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.entry.target.unwrap())
        .collect::<Vec<_>>()
    };
    assert_eq!(about("198.51.100.7"), ["198.51.100.0/24", "198.51.100.7"]);
    assert_eq!(about("198.51.100.8"), ["198.51.100.0/24"]);
    assert_eq!(about("10.77.0.1"), ["10.77.0.1:80/tcp"]);
    assert_eq!(about("2001:db8:5::1"), ["2001:db8::/32"]);
    assert!(about("192.0.2.1").is_empty());
    let latest = j
        .entries(&Filter {
            limit: Some(2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        latest[1].entry.kind,
        Kind::AgentStart,
        "the newest, in order"
    );
    assert!(
        j.entries(&Filter {
            address: Some("not-an-address".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string()
        .contains("not-an-address")
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn the_desired_state_follows_its_changes() {
    let d = dir();
    let mut j = Journal::open(&d).unwrap();
    let decision = DecisionRow {
        target: "192.0.2.9".into(),
        detector: 1,
        action: 1,
        strikes: 2,
        rate: 0,
        limit_classes: 0,
        drop_classes: 0,
        created_secs: 5,
        first_seen_ms: 6,
        decided_ms: 7,
        expires_ms: u64::MAX >> 2,
        evidence: [u64::MAX, 1, 2, 3],
        storefront: Some("shop".into()),
    };
    j.write(
        &[],
        &[
            StateChange::List(block("192.0.2.1", None)),
            StateChange::List(block("192.0.2.2", Some(99))),
            StateChange::Decision(decision.clone()),
            StateChange::Offender(OffenderRow {
                addr: "192.0.2.9".into(),
                strikes: 2,
                last_secs: 8,
            }),
        ],
    )
    .unwrap();
    assert_eq!(j.list_rows().unwrap().len(), 2);
    assert_eq!(
        j.decision_rows().unwrap(),
        std::slice::from_ref(&decision),
        "u64 evidence survives"
    );
    let mut gone = block("192.0.2.1", None);
    gone.block = false;
    j.write(
        &[],
        &[
            StateChange::List(gone),
            StateChange::DecisionGone("192.0.2.9".into()),
            StateChange::OffenderGone("192.0.2.9".into()),
        ],
    )
    .unwrap();
    assert_eq!(j.list_rows().unwrap(), [block("192.0.2.2", Some(99))]);
    assert!(j.decision_rows().unwrap().is_empty());
    assert!(j.offender_rows().unwrap().is_empty());
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn retention_removes_old_entries_expired_state_and_keeps_the_size() {
    let d = dir();
    let mut j = Journal::open(&d).unwrap();
    let mut old = Entry::now(Kind::Block, "alice").target("192.0.2.1");
    old.at_ms -= 3_600_000;
    let new = Entry::now(Kind::Block, "alice").target("192.0.2.2");
    j.write(
        &[old, new],
        &[
            StateChange::List(block("192.0.2.1", Some(1))),
            StateChange::List(block("192.0.2.2", None)),
        ],
    )
    .unwrap();
    let hour = Retention {
        max_age: std::time::Duration::from_secs(1800),
        max_bytes: 1 << 30,
    };
    assert_eq!(j.prune(hour).unwrap(), 1);
    assert_eq!(j.count().unwrap(), 1);
    assert_eq!(j.list_rows().unwrap(), [block("192.0.2.2", None)]);
    // Over size: the oldest go until it fits.
    let many: Vec<Entry> = (0..30_000)
        .map(|i| {
            Entry::now(Kind::Decision, AGENT)
                .target(format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
                .detail(json!({"evidence": "x".repeat(100)}))
        })
        .collect();
    j.write(&many, &[]).unwrap();
    let small = Retention {
        max_age: std::time::Duration::from_secs(86_400),
        max_bytes: 1 << 20,
    };
    let removed = j.prune(small).unwrap();
    assert!(removed >= 10_000, "{removed}");
    let av: i64 = j
        .conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    let db = std::fs::metadata(d.join(super::FILE)).unwrap().len();
    assert!(
        j.size_bytes() <= 3 << 20,
        "{} bytes, db {db}, auto_vacuum {av}",
        j.size_bytes()
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_corrupt_journal_is_named_and_moved_aside() {
    let d = dir();
    std::fs::write(d.join(super::FILE), vec![0x5au8; 8192]).unwrap();
    let err = Journal::open(&d).err().expect("garbage is no journal");
    assert!(err.to_string().contains("journal.db"), "{err}");
    let (mut fresh, corrupt) = Journal::open_checked(&d).unwrap();
    let corrupt = corrupt.expect("reported");
    assert!(corrupt.moved_to.exists());
    assert!(corrupt.moved_to.to_string_lossy().contains("corrupt"));
    fresh
        .write(&[Entry::now(Kind::AgentStart, AGENT)], &[])
        .unwrap();
    assert_eq!(fresh.count().unwrap(), 1);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_journal_of_a_later_schema_is_refused_by_version() {
    let d = dir();
    drop(Journal::open(&d).unwrap());
    let conn = rusqlite::Connection::open(d.join(super::FILE)).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Journal::open(&d).err().unwrap().to_string();
    assert!(err.contains("99") && err.contains("version"), "{err}");
    std::fs::remove_dir_all(d).unwrap();
}
