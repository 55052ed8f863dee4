//! Chaos: a million-address import and a small one, a loop of prefix edits
//! (trie flips) and an agent banning a flood, all at once, with the agent
//! killed (SIGKILL) during the large import, during the ban and with a third
//! import killed part-way. Afterwards every listed entry gives its verdict in
//! the kernel and nothing unlisted is dropped, the imports that finished are
//! whole, and an address blocked before it all began never got a packet
//! through.

use std::{
    collections::HashSet,
    net::Ipv4Addr,
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
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

/// Where the imports' addresses start (10.N.0.0), and how many.
const FIRST: (u8, u32) = (100, 1_000_000);
const SECOND: (u8, u32) = (120, 20_000);
const KILLED: u8 = 122;

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

    // A million-address import, a small one, and one to be killed; with
    // the two blocks they fill the default exact table to 99.6 %.
    let first = list(&lab, "first.txt", FIRST.0, FIRST.1)?;
    let second = list(&lab, "second.txt", SECOND.0, SECOND.1)?;
    let killed = list(&lab, "killed.txt", KILLED, 24_000)?;
    let mut imports = [import(&lab, &first)?, import(&lab, &second)?];

    // Prefix edits: every add and remove rebuilds and flips the IPv4 trie.
    let stop = Arc::new(AtomicBool::new(false));
    let edits_done = Arc::new(AtomicU32::new(0));
    let flips = {
        let (stop, edits_done) = (stop.clone(), edits_done.clone());
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
                    edits_done.store(done, Ordering::Relaxed);
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
    // The agent killed while the million-address import writes...
    let a = imports[0].id();
    eventually(
        Duration::from_secs(60),
        "the large import to hold the lock",
        || Ok(holds_flock(a).then_some(())),
    )?;
    agent.stop(libc::SIGKILL)?;
    // It starts once the import lets go of the lock (seconds for a million
    // entries; longer in a debug build on a busy machine).
    agent = lab.start_agent_within(&config, Duration::from_secs(120))?;
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
    // The edits wait for the imports' lock; let a few more run once it is
    // free, with the last agent up.
    eventually(Duration::from_secs(30), "20 prefix edits", || {
        Ok((edits_done.load(Ordering::Relaxed) >= 20).then_some(()))
    })?;
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
    let before = lab.metric("ensuresec_sweeps_total")?;
    eventually(Duration::from_secs(10), "another sweep", || {
        Ok((lab.metric("ensuresec_sweeps_total")? > before).then_some(()))
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
    ensure!(flipped >= 20, "only {flipped} prefix edits ran");

    // Every listed entry gives its verdict in the kernel; the finished
    // imports are whole. The write lock keeps the agent from editing while
    // the lists, the control record and the verdicts are read.
    let k = Kernel::on(&lab.pins.pins)?;
    let _quiet = k.store.write()?;
    let entries = k.store.entries()?;
    let control = k.store.control()?;
    let now = ensuresec_agent::clock::mono_ns();
    let blocks =
        |e: &ensuresec_common::maps::ListEntry| e.flags & FLAG_ALLOW == 0 && e.blocks_at(now);
    let mut exact = HashSet::new();
    for l in &entries {
        match l.target {
            Target::V4(a) => {
                exact.insert(a);
                if blocks(&l.entry) {
                    ensure!(
                        k.run("ensuresec", &frame_from(a))? == XDP_DROP,
                        "{a} is listed but passes"
                    );
                }
            }
            Target::Net4(n) => {
                let inside = Ipv4Addr::from(u32::from(n.network()) + 1);
                let want = if blocks(&l.entry) { XDP_DROP } else { XDP_PASS };
                ensure!(
                    k.run("ensuresec", &frame_from(inside))? == want,
                    "{} gives the wrong verdict",
                    l.target
                );
            }
            _ => {}
        }
    }
    for (name, (second, n)) in [("first", FIRST), ("second", SECOND)] {
        let missing = (0..n)
            .map(|i| Ipv4Addr::from(u32::from_be_bytes([10, second, 0, 0]) + i))
            .filter(|a| !exact.contains(a))
            .count();
        ensure!(
            missing == 0,
            "{missing} addresses of the {name} import are missing"
        );
    }
    // Unlisted addresses pass: what the killed import did not write, the
    // rest of its /16 and beyond, other protected hosts, the prefixes the
    // edits removed.
    let mut unlisted = 0;
    for i in (0..200_000u32).step_by(331) {
        let a = Ipv4Addr::from(u32::from_be_bytes([10, KILLED, 0, 0]) + i);
        if exact.contains(&a) {
            continue;
        }
        unlisted += 1;
        let (v, reason) = verdict(&k, a)?;
        ensure!(
            v == XDP_PASS,
            "{a} is not listed but dropped ({reason}); its entry: {:?}",
            k.store.entries_for(&Target::V4(a))?
        );
    }
    let prefixes: Vec<_> = entries
        .iter()
        .filter_map(|l| match l.target {
            Target::Net4(n) => Some(n),
            _ => None,
        })
        .collect();
    let edited = (64..128u8).map(|second| Ipv4Addr::new(100, second, 7, 1));
    for a in ["10.140.0.1", "10.77.1.10"]
        .map(|a| a.parse::<Ipv4Addr>().unwrap())
        .into_iter()
        .chain(edited)
    {
        if exact.contains(&a) || prefixes.iter().any(|n| n.contains(&a)) {
            continue;
        }
        unlisted += 1;
        let (v, reason) = verdict(&k, a)?;
        ensure!(v == XDP_PASS, "{a} is not listed but dropped ({reason})");
    }
    ensure!(unlisted > 250, "only {unlisted} unlisted addresses tried");
    // The control record's count of exact keys is right after the sweep.
    ensure!(
        control.x4_used as usize == exact.len(),
        "{} exact IPv4 keys counted, {} listed",
        control.x4_used,
        exact.len()
    );
    Ok(())
}
