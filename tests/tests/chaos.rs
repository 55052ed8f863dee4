//! Chaos: two imports, a loop of prefix edits (trie flips) and an agent
//! banning a flood, all at once, with the agent killed (SIGKILL) and
//! restarted several times and one import killed part-way. Afterwards every
//! listed entry gives its verdict in the kernel and nothing unlisted is
//! dropped, the imports that finished are whole, and an address blocked
//! before it all began never got a packet through.

use std::{
    net::Ipv4Addr,
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Result, ensure};
use ensuresec_common::{entry::Target, maps::FLAG_ALLOW};
use ensuresec_tests::{
    kernel::{Kernel, XDP_DROP, XDP_PASS},
    lab::Lab,
    locks::holds_flock,
    packet::*,
    wait::eventually,
};

const PROTECT: &str = "[[protect]]\nprefix = \"10.77.0.0/16\"\n";

/// A list of `n` addresses in 10.`second`.0.0/16 and up.
fn list(lab: &Lab, name: &str, second: u8, n: u32) -> Result<String> {
    let path = lab.workdir.join(name);
    let text: String = (0..n)
        .map(|i| {
            let a = Ipv4Addr::from(u32::from_be_bytes([10, second, 0, 0]) + i);
            format!("{a}\n")
        })
        .collect();
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

fn import(lab: &Lab, path: &str) -> Result<Child> {
    Ok(lab
        .ensuresec_cmd(&["block", "import", path, "--format", "plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

/// The verdict of a frame from `src`, and the reason whose counter moved.
fn verdict(k: &Kernel, src: Ipv4Addr) -> Result<(u32, &'static str)> {
    let before = k.counters()?;
    let v = k.run("ensuresec", &frame_from(src))?;
    let after = k.counters()?;
    let reason = ensuresec_common::reason::Reason::ALL
        .iter()
        .zip(before.iter().zip(&after))
        .find(|(_, (b, a))| b != a)
        .map_or("none", |(r, _)| r.name());
    Ok((v, reason))
}

fn frame_from(src: Ipv4Addr) -> Vec<u8> {
    let l4 = L4::Tcp {
        sport: 40000,
        dport: 80,
        flags: TCP_SYN,
    };
    frame(
        &[],
        ipv4(src, "10.77.0.1".parse().unwrap(), &V4Opts::default(), &l4),
    )
}

#[test]
fn writers_and_killed_agents_leave_the_lists_and_the_kernel_in_agreement() -> Result<()> {
    let lab = Lab::new()?;
    let config = lab.agent_config(&format!("[detect]\nspoof_safe = false\n{PROTECT}"))?;
    let mut agent = lab.start_agent(&config)?;
    let attacker = lab.attacker.v4.to_string();
    lab.ensuresec(&["block", "add", &attacker, "--reason", "before the chaos"])?;
    // The blocked attacker knocks 200 times a second throughout; hping3
    // prints a line for every answer, i.e. every SYN that got through.
    let watcher = lab
        .attacker
        .ns
        .cmd("hping3")
        .args(["-S", "-p", "80", "-i", "u5000", "-c", "6000"])
        .arg(lab.storefront.v4.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let flooder = lab.add_host("flood", "10.77.66.7".parse()?, "fd77::66:7".parse()?)?;

    let first = list(&lab, "first.txt", 100, 100_000)?;
    let second = list(&lab, "second.txt", 101, 100_000)?;
    let killed = list(&lab, "killed.txt", 102, 100_000)?;
    let mut imports = [import(&lab, &first)?, import(&lab, &second)?];

    // Prefix edits: every add and remove rebuilds and flips the IPv4 trie.
    let stop = Arc::new(AtomicBool::new(false));
    let flips = {
        let stop = stop.clone();
        let cmd = |args: &[&str]| lab.ensuresec_cmd(args);
        let commands: Vec<std::process::Command> = (0..64u32)
            .flat_map(|i| {
                let net = format!("100.{}.0.0/16", 64 + i);
                [cmd(&["block", "add", &net]), cmd(&["block", "rm", &net])]
            })
            .collect();
        std::thread::spawn(move || -> u32 {
            let mut done = 0;
            for mut c in commands {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if c.output().is_ok_and(|o| o.status.success()) {
                    done += 1;
                }
            }
            done
        })
    };
    // A flood for the agent to ban, and the agent killed three times.
    let mut flood = flooder
        .ns
        .cmd("hping3")
        .args(["-S", "-p", "80", "-i", "u500", "-c", "20000", "-q"])
        .arg(lab.storefront.v4.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // The agent killed while an import writes...
    let (a, b) = (imports[0].id(), imports[1].id());
    eventually(
        Duration::from_secs(30),
        "an import to hold the lock",
        || Ok((holds_flock(a) || holds_flock(b)).then_some(())),
    )?;
    agent.stop(libc::SIGKILL)?;
    agent = lab.start_agent(&config)?;
    // ...while it bans the flood...
    let flooder_addr = flooder.v4.to_string();
    eventually(Duration::from_secs(30), "the flood to be banned", || {
        Ok(lab
            .decisions()?
            .iter()
            .any(|d| d["target"] == flooder_addr.as_str())
            .then_some(()))
    })?;
    agent.stop(libc::SIGKILL)?;
    agent = lab.start_agent(&config)?;
    // ...and, with it, an import in the middle of its write.
    let mut victim = import(&lab, &killed)?;
    let v = victim.id();
    eventually(
        Duration::from_secs(30),
        "the victim import to hold the lock",
        || Ok(holds_flock(v).then_some(())),
    )?;
    let _ = victim.kill();
    agent.stop(libc::SIGKILL)?;
    let _ = victim.wait();
    let _agent = lab.start_agent(&config)?;
    for i in imports.iter_mut() {
        let out = i.wait()?;
        ensure!(out.success(), "an import failed");
    }
    stop.store(true, Ordering::Relaxed);
    let flipped = flips.join().expect("prefix edits");
    let _ = flood.kill();
    let _ = flood.wait();
    // SAFETY: kill(2) on our child; SIGINT makes hping3 print its summary.
    unsafe { libc::kill(watcher.id() as i32, libc::SIGINT) };
    let knocks = watcher.wait_with_output()?;
    let replies = String::from_utf8_lossy(&knocks.stdout);
    let summary = String::from_utf8_lossy(&knocks.stderr);
    let answered = replies.lines().filter(|l| l.contains("flags=")).count();
    let asked: u64 = summary
        .lines()
        .find_map(|l| {
            l.split(" packets transmitted")
                .next()
                .filter(|_| l.contains("packets transmitted"))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    // Let the agent sweep once more (it recounts the tables the killed
    // import left).
    let sweeps = |page: &str| -> u64 {
        page.lines()
            .find_map(|l| l.strip_prefix("ensuresec_sweeps_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = sweeps(&lab.metrics()?);
    eventually(Duration::from_secs(10), "another sweep", || {
        Ok((sweeps(&lab.metrics()?) > before).then_some(()))
    })?;

    // Nothing of the blocked attacker got through.
    ensure!(
        asked > 500,
        "the attacker only knocked {asked} times: {summary}"
    );
    ensure!(
        answered == 0,
        "{answered} of {asked} SYNs of a blocked address were answered: {replies}"
    );
    ensure!(flipped > 10, "only {flipped} prefix edits ran");

    // Every listed entry gives its verdict in the kernel; the finished
    // imports are whole.
    let k = Kernel::on(&lab.pins.pins)?;
    let entries = k.store.entries()?;
    let mut exact = 0;
    for l in &entries {
        let Target::V4(a) = l.target else {
            if let Target::Net4(n) = l.target {
                let inside = Ipv4Addr::from(u32::from(n.network()) + 1);
                let want = if l.entry.flags & FLAG_ALLOW != 0
                    || !l.entry.blocks_at(ensuresec_agent::clock::mono_ns())
                {
                    XDP_PASS
                } else {
                    XDP_DROP
                };
                ensure!(
                    k.run("ensuresec", &frame_from(inside))? == want,
                    "{}",
                    l.target
                );
            }
            continue;
        };
        exact += 1;
        if l.entry.flags & FLAG_ALLOW == 0 && l.entry.blocks_at(ensuresec_agent::clock::mono_ns()) {
            ensure!(
                k.run("ensuresec", &frame_from(a))? == XDP_DROP,
                "{a} is listed but passes"
            );
        }
    }
    for (name, second) in [("first", 100u8), ("second", 101u8)] {
        for i in (0..100_000u32).step_by(997) {
            let a = Ipv4Addr::from(u32::from_be_bytes([10, second, 0, 0]) + i);
            ensure!(
                entries.iter().any(|l| l.target == Target::V4(a)),
                "{a} of the {name} import is missing"
            );
        }
    }
    // Unlisted addresses pass.
    for a in ["10.120.0.1", "10.77.1.10", "100.200.0.1"] {
        let a: Ipv4Addr = a.parse()?;
        let (v, reason) = verdict(&k, a)?;
        ensure!(
            v == XDP_PASS,
            "{a} is not listed but dropped ({reason}); its entry: {:?}; listed: {}",
            k.store.entries_for(&Target::V4(a))?,
            entries.iter().any(|l| l.target == Target::V4(a))
        );
    }
    // The control record's count of exact keys is right after the sweep.
    let control = k.store.control()?;
    ensure!(
        control.x4_used as usize == exact,
        "{} exact IPv4 keys counted, {exact} listed",
        control.x4_used
    );
    Ok(())
}
