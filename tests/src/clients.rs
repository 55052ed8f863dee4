//! Client processes a lab scenario runs beside its attack: a shopper whose
//! requests are counted, and scenario processes killed if a test ends early.

use std::{
    process::{Child, Command},
    time::Duration,
};

use anyhow::Result;

/// Processes a scenario started, killed if the test ends early.
pub struct KillOnDrop(pub Vec<Child>);

impl KillOnDrop {
    /// Waits for each to end by itself.
    pub fn wait(mut self) -> Result<()> {
        for c in &mut self.0 {
            c.wait()?;
        }
        Ok(())
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Requests a shopper makes while an attack runs: counted, one after another.
pub struct ShopperLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    made: std::sync::Arc<std::sync::atomic::AtomicU32>,
    handle: std::thread::JoinHandle<(u32, u32)>,
}

impl ShopperLoad {
    /// Starts GETs of `url` from the namespace `ns` until `finish`.
    pub fn start(ns_name: &str, url: &str) -> Self {
        Self::browse(ns_name, None, vec![url.to_string()])
    }

    /// Starts a shopper browsing `urls` in turn from the namespace `ns`, from
    /// its address `source` if given, until `finish`.
    pub fn browse(ns_name: &str, source: Option<&str>, urls: Vec<String>) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let made = std::sync::Arc::new(AtomicU32::new(0));
        let (flag, counter) = (stop.clone(), made.clone());
        let ns = ns_name.to_string();
        let source = source.map(str::to_string);
        let handle = std::thread::spawn(move || {
            let (mut ok, mut total) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                let url = &urls[total as usize % urls.len()];
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &ns, "curl", "-s", "-o", "/dev/null"])
                    .args(["-w", "%{http_code}", "--max-time", "3"]);
                if let Some(src) = &source {
                    cmd.args(["--interface", src]);
                }
                let out = cmd.arg("-g").arg(url).output();
                total += 1;
                counter.store(total, Ordering::Relaxed);
                if out.is_ok_and(|o| o.stdout == b"200") {
                    ok += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (ok, total)
        });
        Self { stop, made, handle }
    }

    /// Requests made so far.
    pub fn made(&self) -> u32 {
        self.made.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops and returns (succeeded, made).
    pub fn finish(self) -> (u32, u32) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap_or((0, 0))
    }
}
