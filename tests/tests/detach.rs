//! `detach`, the agent's lock and writers racing a detach: the maps an
//! operator writes to are always the ones the kernel enforces.

use std::{
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::Result;
use ensuresec_agent::{attach, store::Store};
use ensuresec_tests::{lab::Solo, locks::waits_for_flock, wait::eventually};

fn attached() -> Result<Solo> {
    let solo = Solo::new()?;
    let (ok, _, err) = solo.run(&["attach", "--iface", "v0"])?;
    assert!(ok, "{err}");
    Ok(solo)
}

fn status(solo: &Solo) -> Result<serde_json::Value> {
    let (ok, out, err) = solo.run(&["status", "-o", "json"])?;
    assert!(ok, "{err}");
    Ok(serde_json::from_str(&out)?)
}

/// Starts `ensuresec run` on `v0` in the Solo namespace.
fn agent(solo: &Solo) -> Result<Child> {
    agent_with(solo, "")
}

/// `agent`, with more config.
fn agent_with(solo: &Solo, extra: &str) -> Result<Child> {
    let config = solo.file(
        &format!("agent-{}.toml", fastrand::u32(..)),
        &format!("[[interface]]\nname = \"v0\"\n{extra}"),
    )?;
    Ok(solo
        .cmd(&["run", "--config", &config])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?)
}

fn kill(mut child: Child) -> String {
    let _ = child.kill();
    let out = child.wait_with_output().ok();
    out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default()
}

/// With an agent running, `detach` of its interface refuses and names the
/// agent: the agent would keep its handles to removed maps (and re-attach a
/// program bound to them), so new blocks would be listed but not enforced.
#[test]
fn detach_refuses_while_the_agent_runs() -> Result<()> {
    let solo = attached()?;
    let child = agent(&solo)?;
    let pid = child.id();
    eventually(Duration::from_secs(20), "the agent to start", || {
        Ok(status(&solo)?["agent_pid"].as_u64().map(|_| ()))
    })?;
    let link_before = status(&solo)?["interfaces"][0]["link_id"].clone();
    let (ok, _, err) = solo.run(&["detach", "--iface", "v0"])?;
    let log = kill(child);
    assert!(
        !ok,
        "detach succeeded under a running agent; agent log: {log}"
    );
    assert!(
        err.contains("agent") && err.contains(&pid.to_string()),
        "{err}"
    );
    let after = status(&solo)?;
    assert_eq!(after["interfaces"][0]["link_id"], link_before);
    assert!(solo.pins.pins.has_maps());
    Ok(())
}

/// Agents started at the same time for one pin directory: exactly one runs.
#[test]
fn agents_started_together_one_runs() -> Result<()> {
    let solo = attached()?;
    let mut children: Vec<Child> = (0..6).map(|_| agent(&solo)).collect::<Result<_>>()?;
    let running = eventually(Duration::from_secs(20), "all but one to give up", || {
        let mut alive = 0;
        for c in children.iter_mut() {
            if matches!(c.try_wait(), Ok(None)) {
                alive += 1;
            }
        }
        Ok((alive <= 1).then_some(alive))
    })?;
    let mut refusals = 0;
    for c in children {
        let log = kill(c);
        if log.contains("already running") {
            refusals += 1;
        }
    }
    assert_eq!(running, 1, "one agent keeps running");
    assert_eq!(refusals, 5, "the others say an agent is running");
    Ok(())
}

/// `detach` waits for writers: while one holds the lock, the maps stay.
#[test]
fn detach_waits_for_the_write_lock() -> Result<()> {
    let solo = attached()?;
    let store = Store::open(&solo.pins.pins)?;
    let writer = store.write()?;
    let mut detach = solo
        .cmd(&["detach", "--iface", "v0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let waited = eventually(
        Duration::from_secs(10),
        "detach to wait for the lock",
        || {
            if let Some(status) = detach.try_wait()? {
                return Ok(Some(Err(status)));
            }
            Ok(waits_for_flock(detach.id()).then_some(Ok(())))
        },
    )?;
    assert!(
        waited.is_ok(),
        "detach finished without waiting: {waited:?}"
    );
    assert!(
        solo.pins.pins.has_maps() && solo.pins.pins.link("v0").exists(),
        "the link or maps went while a writer held the lock"
    );
    drop(writer);
    let out = detach.wait_with_output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!solo.pins.pins.has_maps());
    Ok(())
}

/// An import that opened the maps and then waited for the lock while a
/// detach removed them fails, naming why, instead of reporting success for
/// entries written into maps nothing enforces.
#[test]
fn an_import_that_waited_out_a_detach_fails() -> Result<()> {
    let solo = attached()?;
    let list = solo.file("list.txt", "192.0.2.1\n192.0.2.2\n")?;
    let store = Store::open(&solo.pins.pins)?;
    let writer = store.write()?;
    let import = solo
        .cmd(&["block", "import", &list, "--format", "plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    eventually(
        Duration::from_secs(10),
        "the import to wait for the lock",
        || Ok(waits_for_flock(import.id()).then_some(())),
    )?;
    // The detach runs under the lock the import waits for.
    attach::detach_locked(&writer, "v0", false)?;
    drop(writer);
    let out = import.wait_with_output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "the import succeeded: {stdout}");
    assert!(!stdout.contains("imported"), "{stdout}");
    assert!(stderr.contains("removed or replaced"), "{stderr}");
    Ok(())
}

/// An interface name is a name, not a path: `../maps/ES_X4_KEYS` would
/// reach outside the links directory and unpin a map.
#[test]
fn detach_refuses_names_that_are_paths() -> Result<()> {
    let solo = attached()?;
    let (ok, _, _) = solo.run(&["block", "add", "192.0.2.7"])?;
    assert!(ok);
    for name in [
        "../maps/ES_X4_KEYS",
        "..",
        "a/b",
        "",
        "averyveryverylongname",
    ] {
        let (ok, _, err) = solo.run(&["detach", "--iface", name])?;
        assert!(!ok, "{name:?} was accepted");
        assert!(err.contains("interface name"), "{name:?}: {err}");
    }
    let (ok, out, err) = solo.run(&["block", "list"])?;
    assert!(ok && out.contains("192.0.2.7"), "{out}{err}");
    Ok(())
}

/// `status` says what the running agent protects, and says so when features
/// are counted in the kernel but no agent is left to decide on them.
#[test]
fn status_tells_what_the_running_agent_detects() -> Result<()> {
    let solo = attached()?;
    let child = agent_with(&solo, "[[protect]]\nprefix = \"10.0.0.0/8\"\n")?;
    let line = |solo: &Solo| -> Result<String> {
        let (_, out, _) = solo.run(&["status"])?;
        Ok(out
            .lines()
            .find(|l| l.starts_with("detection:"))
            .unwrap_or_default()
            .to_string())
    };
    eventually(
        Duration::from_secs(20),
        "the agent to report detection",
        || Ok(line(&solo)?.contains("on for 10.0.0.0/8").then_some(())),
    )?;
    let json = status(&solo)?;
    assert_eq!(json["detecting"]["protect"][0], "10.0.0.0/8");
    kill(child);
    let after = line(&solo)?;
    assert!(after.contains("no agent runs to decide"), "{after}");
    Ok(())
}
