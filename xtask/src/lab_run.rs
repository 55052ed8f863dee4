//! Running one of the lab's binaries so that nothing of its lab outlives
//! it: Ctrl-C and SIGTERM are passed on to it, and once it has ended, for
//! whatever reason (finished, failed, killed), the network namespaces, pin
//! directories and work directories named after its pid are removed, with
//! every process still running inside those namespaces.

use std::{
    os::unix::process::CommandExt as _,
    path::Path,
    process::Command,
    sync::atomic::{AtomicI32, Ordering},
};

use anyhow::{Context as _, Result, bail};

use crate::run;

/// The running lab binary, for the signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn pass_on(signal: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // To the binary's whole process group: eval's replays too.
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(-pid, signal) };
    }
}

fn set_handlers(handler: libc::sighandler_t) {
    // SAFETY: installs a handler that only calls kill (or the default).
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Builds the agent and `bin` (and the binaries `bin` runs), runs it with
/// `args`, then sweeps its lab.
pub fn lab_bin(root: &Path, bin: &str, args: &[&str]) -> Result<()> {
    run::cargo(root, &["build", "--release", "-p", "ensuresec-agent"])?;
    let mut build = vec!["build", "--release", "-p", "ensuresec-tests", "--bin", bin];
    if bin == "eval" {
        build.extend(["--bin", "replay"]);
    }
    if bin == "lab-response" {
        // The lab shop it attacks.
        build.extend(["--bin", "lab-shop"]);
    }
    run::cargo(root, &build)?;
    let exe = root.join("target/release").join(bin);
    eprintln!("xtask: {} {}", exe.display(), args.join(" "));
    let owner = std::process::id();
    let mut child = Command::new(&exe)
        .args(args)
        .current_dir(root)
        // Names of everything its lab makes carry our pid (and its own).
        .env("ENSURESEC_LAB_OWNER", owner.to_string())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    CHILD.store(child.id() as i32, Ordering::Relaxed);
    set_handlers(pass_on as *const () as libc::sighandler_t);
    let status = child.wait();
    set_handlers(libc::SIG_DFL);
    CHILD.store(0, Ordering::Relaxed);
    let swept = sweep(owner) + sweep(child.id());
    if swept > 0 {
        eprintln!("xtask: removed {swept} namespaces and directories {bin} left behind");
    }
    let status = status?;
    if !status.success() {
        bail!("{bin} failed ({status})");
    }
    Ok(())
}

/// Whether `name` is one the lab code made for process `pid`
/// (`es-TAG-PID-N`, see `ensuresec_tests::kernel::unique`).
fn made_by(name: &str, pid: u32) -> bool {
    name.starts_with("es-") && name.contains(&format!("-{pid}-"))
}

/// Removes what process `pid`'s lab left: namespaces (and what runs in
/// them), pin directories, work directories. Returns how many.
pub fn sweep(pid: u32) -> usize {
    let mut removed = 0;
    let namespaces = run::output(Command::new("ip").args(["netns", "list"])).unwrap_or_default();
    for name in namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        if !made_by(name, pid) {
            continue;
        }
        let pids =
            run::output(Command::new("ip").args(["netns", "pids", name])).unwrap_or_default();
        for p in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            // SAFETY: signals a process inside the lab's own namespace.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        if Command::new("ip")
            .args(["netns", "del", name])
            .status()
            .is_ok_and(|s| s.success())
        {
            removed += 1;
        }
    }
    for dir in [Path::new("/sys/fs/bpf"), &std::env::temp_dir()] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            if made_by(&e.file_name().to_string_lossy(), pid)
                && std::fs::remove_dir_all(e.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A namespace with a process in it, a pin directory and a work
    /// directory named for a pid are all gone after the sweep; others stay.
    #[test]
    fn a_sweep_removes_what_a_pid_left_and_nothing_else() {
        // A pid no lab process has now.
        let gone = 4_000_000 + std::process::id();
        let ns = format!("es-sw-{gone}-0");
        let other = format!("es-sw-{}-0", gone + 1);
        for n in [&ns, &other] {
            run::status(Command::new("ip").args(["netns", "add", n])).unwrap();
        }
        let mut sleeper = Command::new("ip")
            .args(["netns", "exec", &ns, "sleep", "60"])
            .spawn()
            .unwrap();
        let work = std::env::temp_dir().join(format!("es-lab-{gone}-1"));
        std::fs::create_dir_all(work.join("app")).unwrap();
        let pins = Path::new("/sys/fs/bpf").join(format!("es-lab-{gone}-2"));
        std::fs::create_dir_all(&pins).unwrap();
        // The sleeper is inside before the sweep.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while run::output(Command::new("ip").args(["netns", "pids", &ns]))
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "sleeper never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(sweep(gone), 3);
        let left = run::output(Command::new("ip").args(["netns", "list"])).unwrap();
        assert!(!left.contains(&ns) && left.contains(&other), "{left}");
        assert!(!work.exists() && !pins.exists());
        assert!(!sleeper.wait().unwrap().success(), "killed");
        run::status(Command::new("ip").args(["netns", "del", &other])).unwrap();
    }
}
