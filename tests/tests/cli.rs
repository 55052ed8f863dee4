//! The CLI against real pinned maps: imports, capacity, and every bad input
//! getting an error that names it while changing nothing.

use anyhow::Result;
use ensuresec_tests::lab::Solo;

fn attached(extra_config: Option<&str>) -> Result<Solo> {
    let solo = Solo::new()?;
    let mut args = vec!["attach", "--iface", "v0"];
    let config;
    if let Some(text) = extra_config {
        config = solo.file("sizes.toml", text)?;
        args.extend(["--config", &config]);
    }
    let (ok, out, err) = solo.run(&args)?;
    assert!(ok, "{err}");
    assert!(out.contains("attached to v0"), "{out}");
    Ok(solo)
}

fn block_list(solo: &Solo) -> Result<Vec<serde_json::Value>> {
    let (ok, out, err) = solo.run(&["block", "list", "-o", "json"])?;
    assert!(ok, "{err}");
    Ok(serde_json::from_str::<serde_json::Value>(&out)?
        .as_array()
        .unwrap()
        .clone())
}

#[test]
fn imports_every_format() -> Result<()> {
    let solo = attached(None)?;
    let plain = solo.file(
        "plain.txt",
        "# mine\n192.0.2.1\n192.0.2.1\n198.51.100.0/24 # dup below\n2001:db8::/32\n",
    )?;
    let (ok, out, err) = solo.run(&[
        "block",
        "import",
        &plain,
        "--format",
        "plain",
        "--ttl",
        "2h",
        "--reason",
        "manual list",
    ])?;
    assert!(ok, "{err}");
    assert!(
        out.contains("imported 3 entries") && out.contains("1 duplicate"),
        "{out}"
    );
    let netset = solo.file(
        "level1.netset",
        "#\n# firehol_level1\n#\n203.0.113.0/25\n192.0.2.1\n",
    )?;
    assert!(
        solo.run(&["block", "import", &netset, "--format", "netset"])?
            .0
    );
    let drop = solo.file("drop.txt", "; Spamhaus DROP List\n100.64.0.0/10 ; SBL123\n{\"cidr\":\"2001:db8:5::/48\",\"sblid\":\"SBL9\",\"rir\":\"ripencc\"}\n")?;
    assert!(
        solo.run(&["block", "import", &drop, "--format", "spamhaus"])?
            .0
    );

    let list = block_list(&solo)?;
    let by_entry = |e: &str| list.iter().find(|r| r["entry"] == e).unwrap().clone();
    assert_eq!(list.len(), 6, "{list:?}");
    assert_eq!(by_entry("198.51.100.0/24")["reason"], "manual list");
    assert!(
        by_entry("198.51.100.0/24")["seconds_left"]
            .as_u64()
            .unwrap()
            > 7000
    );
    // Imported again without a TTL by the netset: the later import wins.
    assert!(by_entry("192.0.2.1")["seconds_left"].is_null());
    assert_eq!(by_entry("100.64.0.0/10")["reason"], "spamhaus SBL123");
    assert_eq!(by_entry("2001:db8:5::/48")["reason"], "spamhaus SBL9");
    Ok(())
}

/// A Spamhaus label in another script is cut to the 63 bytes a reason holds,
/// on a character boundary, instead of refusing the list.
#[test]
fn long_labels_in_any_script_are_cut_to_fit() -> Result<()> {
    let solo = attached(None)?;
    let label = "Ж".repeat(40);
    let list = solo.file(
        "drop.json",
        &format!("{{\"cidr\":\"198.51.100.0/24\",\"sblid\":\"{label}\"}}\n"),
    )?;
    let (ok, _, err) = solo.run(&["block", "import", &list, "--format", "spamhaus"])?;
    assert!(ok, "{err}");
    let rows = block_list(&solo)?;
    let reason = rows[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("spamhaus ЖЖ") && reason.len() <= 63,
        "{reason}"
    );
    Ok(())
}

#[test]
fn a_bad_line_imports_nothing_and_names_file_line_and_text() -> Result<()> {
    let solo = attached(None)?;
    let file = solo.file("bad.txt", "192.0.2.1\n10.0.0.0/8\n10.1.2.3/8\n192.0.2.2\n")?;
    let (ok, _, err) = solo.run(&["block", "import", &file, "--format", "plain"])?;
    assert!(!ok);
    assert!(
        err.contains(&format!("{file}:3:"))
            && err.contains("10.1.2.3/8")
            && err.contains("host bits"),
        "{err}"
    );
    assert!(block_list(&solo)?.is_empty(), "nothing applied");
    let (ok, _, err) = solo.run(&["block", "import", "/nonexistent/list", "--format", "plain"])?;
    assert!(!ok && err.contains("/nonexistent/list"), "{err}");
    let (ok, _, err) = solo.run(&["block", "import", &file, "--format", "csv"])?;
    assert!(!ok && err.contains("csv"), "{err}");
    Ok(())
}

#[test]
fn overflow_is_refused_up_front() -> Result<()> {
    let solo = attached(Some("[maps]\nexact_v4 = 4\ncidr_v4 = 2\n"))?;
    let (ok, _, err) = solo.run(&["status"])?;
    assert!(ok, "{err}");
    let five = solo.file(
        "five.txt",
        "192.0.2.1\n192.0.2.2\n192.0.2.3\n192.0.2.4\n192.0.2.5\n",
    )?;
    let (ok, _, err) = solo.run(&["block", "import", &five, "--format", "plain"])?;
    assert!(!ok);
    assert!(
        err.contains("5 entries") && err.contains("capacity is 4") && err.contains("maps.exact_v4"),
        "{err}"
    );
    assert!(block_list(&solo)?.is_empty());

    // Prefixes: the third does not fit, and the exact addresses in the same file are not applied either.
    let mixed = solo.file(
        "mixed.txt",
        "192.0.2.1\n10.0.0.0/8\n11.0.0.0/8\n12.0.0.0/8\n",
    )?;
    let (ok, _, err) = solo.run(&["block", "import", &mixed, "--format", "plain"])?;
    assert!(!ok && err.contains("maps.cidr_v4"), "{err}");
    assert!(block_list(&solo)?.is_empty());

    for a in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"] {
        assert!(solo.run(&["block", "add", a])?.0);
    }
    let (ok, _, err) = solo.run(&["block", "add", "192.0.2.5"])?;
    assert!(!ok && err.contains("capacity"), "{err}");
    assert_eq!(block_list(&solo)?.len(), 4);
    // Updating an existing entry needs no room.
    assert!(solo.run(&["block", "add", "192.0.2.4", "--ttl", "5m"])?.0);
    Ok(())
}

#[test]
fn bad_input_is_named_and_changes_nothing() -> Result<()> {
    let solo = attached(None)?;
    let cases: &[(&[&str], &str)] = &[
        (
            &["block", "add", "192.0.2.300"],
            "`192.0.2.300` is not an IPv4/IPv6 address",
        ),
        (&["block", "add", "10.1.0.0/8"], "did you mean 10.0.0.0/8"),
        (&["block", "add", "0.0.0.0/0"], "/0"),
        (
            &["block", "add", "192.0.2.1", "--ttl", "soon"],
            "`soon` is not a duration",
        ),
        (&["block", "add", "192.0.2.1", "--ttl", "0s"], "zero"),
        (
            &["block", "add", "192.0.2.1", "--reason", &"x".repeat(80)],
            "80 bytes",
        ),
        (
            &["block", "rm", "192.0.2.9"],
            "192.0.2.9 is not on the blocklist",
        ),
        (
            &["allow", "rm", "2001:db8::9"],
            "2001:db8::9 is not on the allowlist",
        ),
        (
            &["block", "add", "192.0.2.1", "--frobnicate"],
            "--frobnicate",
        ),
        (
            &["attach", "--iface", "nope0"],
            "interface `nope0` does not exist",
        ),
        (&["detach", "--iface", "lo"], "not attached to `lo`"),
        (
            &["block", "import", "/dev/zero", "--format", "plain"],
            "/dev/zero:1: binary data",
        ),
        (&["attach", "--iface", "v0", "--mode", "turbo"], "turbo"),
    ];
    for (args, needle) in cases {
        let (ok, _, err) = solo.run(args)?;
        assert!(!ok, "{args:?} should fail");
        assert!(
            err.contains(needle),
            "{args:?}: `{err}` should contain `{needle}`"
        );
    }
    assert!(block_list(&solo)?.is_empty());

    let broken = solo.file(
        "broken.toml",
        "[[interface]]\nname = \"dum0\"\nmood = \"happy\"\n",
    )?;
    let (ok, _, err) = solo.run(&["run", "--config", &broken])?;
    assert!(
        !ok && err.contains("mood") && err.contains("broken.toml"),
        "{err}"
    );
    Ok(())
}

#[test]
fn commands_explain_missing_state_and_privilege() -> Result<()> {
    let solo = Solo::new()?;
    let (ok, _, err) = solo.run(&["block", "list"])?;
    assert!(!ok && err.contains("nothing is attached"), "{err}");
    let (ok, _, err) = solo.run(&["status"])?;
    assert!(!ok && err.contains("nothing is attached"), "{err}");
    // The same command as an unprivileged user.
    let bin = ensuresec_tests::lab::ensuresec_bin();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin)
        .args(["block", "list"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must run as root"));
    Ok(())
}

/// On a fresh machine bpffs is not mounted; the first ensuresec commands mount
/// it. Several started at once must not each mount one, which would hide the
/// pins the others made under a later mount. Runs in private mount and network
/// namespaces: the host's bpffs and interfaces are not touched.
#[test]
fn concurrent_first_commands_mount_bpffs_once() -> Result<()> {
    let bin = ensuresec_tests::lab::ensuresec_bin();
    let tag = ensuresec_tests::kernel::unique("race");
    let script = format!(
        "while mountpoint -q /sys/fs/bpf; do umount /sys/fs/bpf || exit 90; done
         pids=''
         for i in 1 2 3 4 5 6 7 8; do
           ip link add d$i type veth peer name e$i && ip link set d$i up && ip link set e$i up || exit 91
         done
         for i in 1 2 3 4 5 6 7 8; do
           ENSURESEC_PIN_DIR=/sys/fs/bpf/{tag}-$i {bin} attach --iface d$i --mode generic --config {cfg} >/dev/null 2>/tmp/{tag}-$i.err &
           pids=\"$pids $!\"
         done
         fails=0
         for pid in $pids; do wait $pid || fails=$((fails+1)); done
         mounts=$(grep -c ' /sys/fs/bpf bpf ' /proc/self/mounts)
         for i in 1 2 3 4 5 6 7 8; do
           ENSURESEC_PIN_DIR=/sys/fs/bpf/{tag}-$i {bin} status >/dev/null 2>>/tmp/{tag}-$i.err || fails=$((fails+1))
         done
         cat /tmp/{tag}-*.err; rm -f /tmp/{tag}-*.err
         echo \"fails=$fails mounts=$mounts\"",
        bin = bin.display(),
        cfg = small_maps_config(&tag)?,
    );
    let out = std::process::Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--net",
            "sh",
            "-c",
            &script,
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("fails=0 mounts=1"), "{text}");
    Ok(())
}

/// A config with small maps, so that eight attaches at once stay light.
fn small_maps_config(tag: &str) -> Result<String> {
    let path = std::env::temp_dir().join(format!("{tag}.toml"));
    std::fs::write(
        &path,
        "[maps]\nexact_v4 = 1024\nexact_v6 = 1024\ncidr_v4 = 64\ncidr_v6 = 64\n",
    )?;
    Ok(path.display().to_string())
}

/// A listing piped into a reader that stops early (`head`) ends quietly.
#[test]
fn output_into_a_closed_pipe_ends_quietly() -> Result<()> {
    let solo = attached(None)?;
    let list = solo.file(
        "many.txt",
        &(1..=3000)
            .map(|i| format!("10.9.{}.{}\n", i / 256, i % 256))
            .collect::<String>(),
    )?;
    assert!(
        solo.run(&["block", "import", &list, "--format", "plain"])?
            .0
    );
    let bin = ensuresec_tests::lab::ensuresec_bin();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} block list 2>/tmp/es-pipe-$$.err | head -c 10 >/dev/null; cat /tmp/es-pipe-$$.err; rm -f /tmp/es-pipe-$$.err",
            bin.display()
        ))
        .env("ENSURESEC_PIN_DIR", solo.pins.pins.root())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    Ok(())
}

/// `status -o json` rows of the maps' kernel memory, by map name.
fn map_memory(solo: &Solo) -> Result<std::collections::HashMap<String, serde_json::Value>> {
    let (ok, out, err) = solo.run(&["status", "-o", "json"])?;
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out)?;
    Ok(status["maps"]
        .as_array()
        .expect("maps in status")
        .iter()
        .map(|m| (m["map"].as_str().unwrap().to_string(), m.clone()))
        .collect())
}

#[test]
fn status_reports_each_maps_kernel_memory_as_the_kernel_charges_it() -> Result<()> {
    let solo = attached(None)?;
    let maps = map_memory(&solo)?;
    for contract in ensuresec_common::contract::PINNED_MAPS {
        let m = maps
            .get(contract.name)
            .unwrap_or_else(|| panic!("{} missing from {maps:?}", contract.name));
        let (bytes, entries, raw) = (
            m["kernel_bytes"].as_u64().unwrap(),
            m["max_entries"].as_u64().unwrap(),
            m["raw_bytes_per_entry"].as_u64().unwrap(),
        );
        // Every map is preallocated: it holds every entry from the start.
        assert!(bytes >= entries * raw, "{m}");
    }
    // The kernel's own figure: a smaller configured table charges less.
    let small = attached(Some("[maps]\nexact_v4 = 1024\n"))?;
    let x4 = |maps: &std::collections::HashMap<String, serde_json::Value>| {
        maps["ES_X4_KEYS"]["kernel_bytes"].as_u64().unwrap()
    };
    let small_maps = map_memory(&small)?;
    assert!(x4(&small_maps) * 16 < x4(&maps), "{small_maps:?}");
    Ok(())
}
