//! Operators' changes in the journal, with who made them, and the
//! blocklist exported and imported back with its reasons and expiries.

use anyhow::{Context as _, Result};
use ensuresec_tests::lab::Solo;
use serde_json::Value;

fn attached() -> Result<Solo> {
    let solo = Solo::new()?;
    let (ok, _, err) = solo.run(&["attach", "--iface", "v0"])?;
    assert!(ok, "{err}");
    Ok(solo)
}

fn run_as(solo: &Solo, user: &str, args: &[&str]) -> Result<String> {
    let out = solo.cmd(args).env("SUDO_USER", user).output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {err}");
    assert!(!err.contains("warning"), "{args:?}: {err}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// alice blocks 198.51.100.0/24 for two hours, for ticket 7.
fn block_for_a_ticket(solo: &Solo) -> Result<String> {
    run_as(
        solo,
        "alice",
        &[
            "block",
            "add",
            "198.51.100.0/24",
            "--ttl",
            "2h",
            "--reason",
            "ticket 7",
        ],
    )
}

fn rows(text: &str) -> Result<Vec<Value>> {
    Ok(serde_json::from_str::<Value>(text)
        .with_context(|| text.to_string())?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

#[test]
fn operators_changes_are_journaled_with_who_made_them() -> Result<()> {
    let solo = attached()?;
    block_for_a_ticket(&solo)?;
    run_as(&solo, "bob", &["allow", "add", "198.51.100.9"])?;
    run_as(&solo, "carol", &["block", "rm", "198.51.100.0/24"])?;
    let list = solo.file("drop.txt", "203.0.113.0/24\n203.0.113.77\n")?;
    run_as(
        &solo,
        "dave",
        &["block", "import", &list, "--format", "plain"],
    )?;
    let about = |a: &str| -> Result<Vec<(String, String)>> {
        Ok(rows(&run_as(
            &solo,
            "x",
            &["journal", "--address", a, "-o", "json"],
        )?)?
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect())
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        about("198.51.100.9")?,
        pairs(&[("block", "alice"), ("allow", "bob"), ("unblock", "carol")])
    );
    let all = rows(&run_as(&solo, "x", &["journal", "-o", "json"])?)?;
    let import = all
        .iter()
        .find(|e| e["kind"] == "import")
        .context("the import")?;
    assert_eq!(import["actor"], "dave");
    assert_eq!(import["detail"]["entries"], 2);
    assert!(
        import["operation"].as_i64().is_some(),
        "an operation to undo later"
    );
    let table = run_as(&solo, "x", &["journal", "--since", "1h"])?;
    assert!(
        table.contains("alice") && table.contains("ticket 7"),
        "{table}"
    );
    let (ok, _, err) = solo.run(&["journal", "--since", "yesterday-ish"])?;
    assert!(!ok && err.contains("yesterday-ish"), "{err}");
    Ok(())
}

#[test]
fn export_and_import_round_trip_reasons_and_expiries() -> Result<()> {
    let solo = attached()?;
    block_for_a_ticket(&solo)?;
    run_as(
        &solo,
        "alice",
        &[
            "block",
            "add",
            "2001:db8::66",
            "--reason",
            "forever, with a comma",
        ],
    )?;
    run_as(&solo, "alice", &["block", "add", "203.0.113.5"])?;
    let exported = run_as(&solo, "x", &["block", "export", "-o", "json"])?;
    let before = rows(&exported)?;
    assert_eq!(before.len(), 3);
    // Into another host's empty lists.
    let other = attached()?;
    let file = other.file("export.json", &exported)?;
    run_as(
        &other,
        "bob",
        &["block", "import", &file, "--format", "json"],
    )?;
    let after = rows(&run_as(&other, "x", &["block", "export"])?)?;
    assert_eq!(after, before, "reasons, times added and expiries kept");
    let listed = rows(&run_as(&other, "x", &["block", "list", "-o", "json"])?)?;
    let ticket = listed
        .iter()
        .find(|r| r["entry"] == "198.51.100.0/24")
        .unwrap();
    let left = ticket["seconds_left"].as_u64().unwrap();
    assert!((7100..=7200).contains(&left), "{left}");
    // A bad file changes nothing and says where it is wrong.
    let bad = other.file("bad.json", r#"[{"entry": "10.0.0.1/8", "reason": null, "added_at": "2026-01-01T00:00:00Z", "expires_at": null}]"#)?;
    let (ok, _, err) = other.run(&["block", "import", &bad, "--format", "json"])?;
    assert!(
        !ok && err.contains("entry 1") && err.contains("host bits"),
        "{err}"
    );
    assert_eq!(rows(&run_as(&other, "x", &["block", "export"])?)?, before);
    Ok(())
}

#[test]
fn rollback_of_an_import_removes_what_it_added_and_puts_back_what_it_replaced() -> Result<()> {
    let solo = attached()?;
    run_as(
        &solo,
        "alice",
        &[
            "block",
            "add",
            "203.0.113.5",
            "--ttl",
            "2h",
            "--reason",
            "before",
        ],
    )?;
    let list = solo.file("feed.txt", "203.0.113.5\n203.0.113.6\n198.51.100.0/24\n")?;
    run_as(
        &solo,
        "bob",
        &[
            "block", "import", &list, "--format", "plain", "--reason", "feed",
        ],
    )?;
    // Changed by hand after the import: the later change wins.
    run_as(
        &solo,
        "carol",
        &["block", "add", "203.0.113.6", "--reason", "by hand"],
    )?;
    let all = rows(&run_as(&solo, "x", &["journal", "-o", "json"])?)?;
    let op = all
        .iter()
        .find(|e| e["kind"] == "import")
        .and_then(|e| e["operation"].as_i64())
        .context("the import's operation")?
        .to_string();
    let dry = run_as(&solo, "x", &["rollback", "--operation", &op, "--dry-run"])?;
    assert!(
        dry.contains("1 blocks it added to remove, 1 it replaced to put back"),
        "{dry}"
    );
    let blocks = |solo: &Solo| -> Result<Vec<(String, String)>> {
        Ok(rows(&run_as(solo, "x", &["block", "list", "-o", "json"])?)?
            .iter()
            .map(|r| {
                (
                    r["entry"].as_str().unwrap().to_string(),
                    r["reason"].as_str().unwrap_or("-").to_string(),
                )
            })
            .collect())
    };
    assert_eq!(blocks(&solo)?.len(), 3, "a dry run changes nothing");
    run_as(&solo, "dave", &["rollback", "--operation", &op])?;
    let after = blocks(&solo)?;
    assert_eq!(
        after,
        [
            ("203.0.113.5".to_string(), "before".to_string()),
            ("203.0.113.6".to_string(), "by hand".to_string()),
        ]
    );
    let listed = rows(&run_as(&solo, "x", &["block", "list", "-o", "json"])?)?;
    let left = listed[0]["seconds_left"].as_u64().unwrap();
    assert!((7100..=7200).contains(&left), "its own expiry back: {left}");
    let again = run_as(&solo, "x", &["rollback", "--operation", &op])?;
    assert!(
        again.contains("0 blocks it added to remove, 0 it replaced"),
        "{again}"
    );
    let (ok, _, err) = solo.run(&["rollback", "--operation", "999"])?;
    assert!(!ok && err.contains("no operation 999"), "{err}");
    let (ok, _, err) = solo.run(&["rollback", "--detector", "syn_flood"])?;
    assert!(!ok && err.contains("--since"), "{err}");
    Ok(())
}
