//! `cargo xtask replay --log`: recorded logs from any network through the
//! agent's pipeline, detectors and decision plan, by the logs' own time.
//! The logs are generated here, with benign clients around the attackers, so
//! that a detection of the wrong client or a missed one shows.

use std::{collections::BTreeSet, path::Path, process::Command};

use anyhow::{Result, ensure};
use serde_json::Value;

/// 2026-12-01T09:00:00Z; every generated line is within that hour.
const START: u64 = 1_796_115_600;

fn clf_time(t: f64) -> String {
    let since = t as u64 - START;
    format!("01/Dec/2026:09:{:02}:{:02} +0000", since / 60, since % 60)
}

fn replay(log: &Path, format: &str) -> Result<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_replay-log"))
        .args(["--log"])
        .arg(log)
        .args(["--format", format])
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn targets(report: &Value, key: &str) -> BTreeSet<(String, String)> {
    report[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["target"].as_str().unwrap_or("").to_string(),
                d["detector"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("es-replay-log-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn an_access_log_replays_to_the_attackers_and_only_them() -> Result<()> {
    let d = dir("access");
    let mut lines: Vec<(f64, String)> = Vec::new();
    let mut benign = BTreeSet::new();
    // Fifty shoppers over ten minutes, from private and loopback addresses too.
    for i in 0..2000u64 {
        let t = START as f64 + i as f64 * 0.3;
        let ip = match i % 50 {
            0 => "127.0.0.1".to_string(),
            n => format!("10.20.{}.{}", n % 7, n),
        };
        benign.insert(ip.clone());
        let path = ["/", "/product/3", "/static/a.css", "/cart"][(i % 4) as usize];
        lines.push((
            t,
            format!(
                "{ip} - - [{}] \"GET {path} HTTP/1.1\" 200 512 \"-\" \"Mozilla/5.0\"",
                clf_time(t)
            ),
        ));
    }
    // A guesser, a probe for secrets, an IPv6 host rotating within its /64.
    for i in 0..20 {
        let t = START as f64 + 100.0 + i as f64 * 1.5;
        lines.push((
            t,
            format!(
                "203.0.113.9 - - [{}] \"POST /login HTTP/1.1\" 401 20 \"-\" \"Mozilla/5.0\"",
                clf_time(t)
            ),
        ));
    }
    let t = START as f64 + 200.0;
    lines.push((
        t,
        format!(
            "198.51.100.7 - - [{}] \"GET /.env HTTP/1.1\" 404 20 \"-\" \"curl/8\"",
            clf_time(t)
        ),
    ));
    for i in 0..3 {
        let t = START as f64 + 300.0 + i as f64;
        lines.push((t, format!("2001:db8:5:6::{} - - [{}] \"GET /x?id=1%20union%20select%201 HTTP/1.1\" 200 20 \"-\" \"Mozilla/5.0\"", i + 1, clf_time(t))));
    }
    lines.push((START as f64 + 400.0, "garbage \u{1} line".into()));
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    let log = d.join("access.log");
    std::fs::write(
        &log,
        lines
            .iter()
            .map(|(_, l)| format!("{l}\n"))
            .collect::<String>(),
    )?;
    let r = replay(&log, "combined")?;
    assert_eq!(r["lines_read"], 2025);
    assert_eq!(r["lines_malformed"], 1);
    assert_eq!(r["sources"], benign.len() + 1 + 1 + 3, "{r}");
    let want: BTreeSet<(String, String)> = [
        ("203.0.113.9", "credential_stuffing"),
        ("198.51.100.7", "scanner"),
        ("2001:db8:5:6::/64", "scanner"),
    ]
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .into();
    assert_eq!(targets(&r, "detections"), want, "{r}");
    assert_eq!(targets(&r, "decisions"), want, "{r}");
    for d in r["decisions"].as_array().unwrap() {
        assert_eq!(
            (d["action"].as_str(), d["ttl_seconds"].as_u64()),
            (Some("ban"), Some(600))
        );
    }
    let stuffing = &r["detections"].as_array().unwrap()[0];
    let after = stuffing["seconds_after_start"].as_f64().unwrap();
    assert!(
        (100.0..=130.0).contains(&after),
        "by the log's own time: {stuffing}"
    );
    std::fs::remove_dir_all(d)?;
    Ok(())
}

#[test]
fn event_and_error_logs_replay_too() -> Result<()> {
    let d = dir("events");
    let events: String = (0..6)
        .map(|n| {
            format!(
                "{{\"time\":\"2026-12-01T10:00:{n:02}Z\",\"type\":\"payment_declined\",\"ip\":\"127.0.0.2\",\"card\":\"c{n}\",\"amount\":1}}\n"
            )
        })
        .chain(["{\"time\":\"2026-12-01T10:00:09Z\",\"type\":\"payment_ok\",\"ip\":\"10.0.0.5\",\"card\":\"x\",\"amount\":80}\n".to_string(), "{\"type\":\"login_ok\"}\n".to_string()])
        .collect();
    let log = d.join("events.jsonl");
    std::fs::write(&log, events)?;
    let r = replay(&log, "events")?;
    assert_eq!(
        (r["lines_read"].as_u64(), r["lines_malformed"].as_u64()),
        (Some(8), Some(1))
    );
    assert_eq!(
        targets(&r, "decisions"),
        [("127.0.0.2".to_string(), "card_testing".to_string())].into()
    );
    let errors: String = (0..12)
        .map(|n| format!("2026/12/01 10:00:{n:02} [error] 7#7: *{n} user \"admin\": password mismatch, client: 10.9.8.7, server: shop, request: \"GET /admin HTTP/1.1\", host: \"shop.example\"\n"))
        .collect();
    let log = d.join("error.log");
    std::fs::write(&log, errors)?;
    let r = replay(&log, "nginx_error")?;
    assert_eq!(
        targets(&r, "decisions"),
        [("10.9.8.7".to_string(), "credential_stuffing".to_string())].into()
    );
    std::fs::remove_dir_all(d)?;
    Ok(())
}
