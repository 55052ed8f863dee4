//! The lab: a storefront running nginx, a shopper and an attacker, each in its
//! own network namespace, joined by a bridge in a fourth. Nothing in it has a
//! route outside the lab's own prefixes.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

pub use crate::clients::{KillOnDrop, ShopperLoad};

use crate::{
    kernel::{TestPins, unique},
    netns::{Netns, run, veth},
};

pub struct Host {
    pub ns: Netns,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

impl Host {
    fn new(tag: &str, switch: &Netns, port: &str, v4: Ipv4Addr, v6: Ipv6Addr) -> Result<Self> {
        let ns = Netns::new(tag)?;
        veth(&ns, "eth0", switch, port)?;
        switch.ip(&["link", "set", port, "master", "br0"])?;
        ns.ip(&["addr", "add", &format!("{v4}/16"), "dev", "eth0"])?;
        ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"])?;
        Ok(Host { ns, v4, v6 })
    }

    /// The MAC address of the host's interface.
    pub fn mac(&self) -> Result<String> {
        let out = run(self.ns.cmd("cat").arg("/sys/class/net/eth0/address"))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Adds another address on the host's interface (same lab prefixes).
    pub fn add_address(&self, addr: &str) -> Result<()> {
        let with_len = if addr.contains(':') {
            format!("{addr}/64")
        } else {
            format!("{addr}/16")
        };
        self.ns
            .ip(&["addr", "add", &with_len, "dev", "eth0", "nodad"])
    }

    /// HTTP status of a GET from this host (0 when it timed out or failed).
    pub fn http_status(&self, url: &str, source: Option<&str>) -> u16 {
        match source {
            Some(src) => self.curl(url, &["--interface", src]),
            None => self.curl(url, &[]),
        }
    }

    /// HTTP status of one curl request from this host with extra curl `args`
    /// (`-d`, `-H`, `-A`, ...); 0 when nothing answered within 2 s.
    pub fn curl(&self, url: &str, args: &[&str]) -> u16 {
        self.ns
            .cmd("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["--max-time", "2", "--connect-timeout", "2"])
            .args(args)
            .arg("-g")
            .arg(url)
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(0)
    }

    /// Retries a GET until it answers `want` or `within` passes; returns the
    /// last status. For checks right after a block is lifted: IPv6 neighbour
    /// discovery that the block dropped needs a moment to recover.
    pub fn http_status_within(&self, url: &str, want: u16, within: Duration) -> u16 {
        let deadline = Instant::now() + within;
        loop {
            let got = self.http_status(url, None);
            if got == want || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts nginx serving `root` on `listen` from this host, with its
    /// files under `workdir`, and waits until it answers.
    pub fn serve_http(&self, workdir: &Path, root: &Path, listen: &[&str]) -> Result<Child> {
        std::fs::create_dir_all(workdir.join("tmp"))?;
        let w = workdir.display();
        let listen: String = listen.iter().map(|l| format!("listen {l}; ")).collect();
        let conf = workdir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\nuser root;\npid {w}/nginx.pid;\nerror_log {w}/error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  default_type text/html;\n\
                   client_body_temp_path {w}/tmp; proxy_temp_path {w}/tmp;\n\
                   fastcgi_temp_path {w}/tmp; uwsgi_temp_path {w}/tmp; scgi_temp_path {w}/tmp;\n\
                   server {{ {listen}\n     root {}; index index.html; }}\n}}\n",
                root.display()
            ),
        )?;
        let child = self.spawn_nginx(&conf)?;
        let url = format!("http://{}/", self.v4);
        crate::wait::eventually(Duration::from_secs(10), "nginx to answer", || {
            Ok((self.http_status(&url, None) != 0).then_some(()))
        })
        .with_context(|| std::fs::read_to_string(workdir.join("error.log")).unwrap_or_default())?;
        Ok(child)
    }

    /// Starts nginx in the foreground with the config file `conf`.
    pub fn spawn_nginx(&self, conf: &Path) -> Result<Child> {
        self.ns
            .cmd("nginx")
            .args(["-c"])
            .arg(conf)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx (Debian package nginx-light)")
    }

    /// Starts dnsmasq answering `name` with `answer` on this host's IPv4
    /// address, port 53 (no upstream, no hosts file).
    pub fn serve_dns(&self, name: &str, answer: &str) -> Result<Child> {
        self.ns
            .cmd("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
                "--pid-file",
                "--port=53",
                "--cache-size=0",
            ])
            .arg(format!("--listen-address={}", self.v4))
            .arg(format!("--address=/{name}/{answer}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dnsmasq (Debian package dnsmasq-base)")
    }

    /// Whether `count` pings to `addr` all get answers (1 s deadline each).
    pub fn ping(&self, addr: &str, count: u32) -> bool {
        self.ns
            .cmd("ping")
            .args([
                "-n",
                "-q",
                "-c",
                &count.to_string(),
                "-W",
                "1",
                "-i",
                "0.2",
                addr,
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

pub struct Lab {
    pub storefront: Host,
    pub shopper: Host,
    pub attacker: Host,
    pub pins: TestPins,
    pub workdir: PathBuf,
    nginx: Option<Child>,
    // Dropped last: the bridge every host hangs off.
    _switch: Netns,
}

/// The storefront's interface ensuresec protects.
pub const STOREFRONT_IFACE: &str = "eth0";

/// Pages of the lab shop.
const PAGES: &[(&str, &str)] = &[
    (
        "index.html",
        "<h1>ensuresec lab shop</h1><a href=/product/1>Mug</a>",
    ),
    (
        "product/1",
        "<h1>Mug</h1><form action=/cart><button>Add to cart</button></form>",
    ),
    ("cart", "<h1>Cart</h1><a href=/checkout>Checkout</a>"),
    (
        "checkout",
        "<h1>Checkout</h1><p>Thank you for your order.</p>",
    ),
];

/// The `ensuresec` binary built next to the running executable.
pub fn ensuresec_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ENSURESEC_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current executable");
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join("ensuresec");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "no ensuresec binary near {}; build it (cargo build -p ensuresec-agent) or set ENSURESEC_BIN",
        exe.display()
    );
}

impl Lab {
    /// Another host on the lab's bridge (a crowd member, a second attacker).
    pub fn add_host(&self, tag: &str, v4: Ipv4Addr, v6: Ipv6Addr) -> Result<Host> {
        // Interface names hold 15 bytes; unique within the lab's switch.
        static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port: String = format!("p{n}-{tag}").chars().take(15).collect();
        Host::new(tag, &self._switch, &port, v4, v6)
    }

    pub fn new() -> Result<Self> {
        let switch = Netns::new("sw")?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let storefront = Host::new(
            "shop",
            &switch,
            "p-shop",
            Ipv4Addr::new(10, 77, 0, 1),
            "fd77::1".parse()?,
        )?;
        let shopper = Host::new(
            "buyer",
            &switch,
            "p-buyer",
            Ipv4Addr::new(10, 77, 1, 10),
            "fd77::1:10".parse()?,
        )?;
        let attacker = Host::new(
            "atk",
            &switch,
            "p-atk",
            Ipv4Addr::new(10, 77, 66, 6),
            "fd77::66:6".parse()?,
        )?;
        let workdir = std::env::temp_dir().join(unique("lab"));
        std::fs::create_dir_all(&workdir)?;
        let mut lab = Lab {
            storefront,
            shopper,
            attacker,
            pins: TestPins::new("lab"),
            workdir,
            nginx: None,
            _switch: switch,
        };
        lab.start_storefront()?;
        Ok(lab)
    }

    fn start_storefront(&mut self) -> Result<()> {
        let root = self.workdir.join("www");
        for (path, body) in PAGES {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().expect("page has a parent"))?;
            std::fs::write(&file, format!("<!doctype html>{body}\n"))?;
        }
        // A catalogue for visitors who download (the dataset's benign mix).
        std::fs::create_dir_all(root.join("static"))?;
        std::fs::write(root.join("static/catalog.bin"), vec![b'c'; 1 << 20])?;
        let child = self.storefront.serve_http(
            &self.workdir.join("shop"),
            &root,
            // 7001: a port behind a load balancer that speaks the PROXY
            // protocol; nginx hangs up on anything else, so a service scan
            // there tries one protocol after another.
            &["80", "[::]:80", "8080", "[::]:8080", "7001 proxy_protocol"],
        )?;
        self.nginx = Some(child);
        Ok(())
    }

    pub fn url4(&self, path: &str) -> String {
        format!("http://{}{path}", self.storefront.v4)
    }

    pub fn url6(&self, path: &str) -> String {
        format!("http://[{}]{path}", self.storefront.v6)
    }

    /// The agent's state directory (its journal) in this lab.
    pub fn state_dir(&self) -> PathBuf {
        self.workdir.join("state")
    }

    /// `ensuresec ARGS` on the storefront, against the lab's pin directory
    /// and journal.
    pub fn ensuresec_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self
            .storefront
            .ns
            .nsenter(&ensuresec_bin().display().to_string());
        cmd.args(args)
            .env("ENSURESEC_PIN_DIR", self.pins.pins.root())
            .env("ENSURESEC_STATE_DIR", self.state_dir());
        cmd
    }

    /// `ensuresec ARGS`, which must succeed; returns its stdout.
    pub fn ensuresec(&self, args: &[&str]) -> Result<String> {
        let out = run(&mut self.ensuresec_cmd(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ensuresec ARGS` whatever its outcome.
    pub fn ensuresec_raw(&self, args: &[&str]) -> Result<Output> {
        Ok(self.ensuresec_cmd(args).output()?)
    }

    /// Writes an agent config for the storefront; `extra` is appended TOML.
    pub fn agent_config(&self, extra: &str) -> Result<PathBuf> {
        let path = self.workdir.join(format!("{}.toml", unique("agent")));
        std::fs::write(
            &path,
            format!(
                "[[interface]]\nname = \"{STOREFRONT_IFACE}\"\n\n[agent]\nsweep_interval = \"500ms\"\nstate_dir = \"{}\"\n\n{extra}",
                self.state_dir().display()
            ),
        )?;
        Ok(path)
    }

    /// Starts `ensuresec run` on the storefront and waits for its metrics endpoint.
    pub fn start_agent(&self, config: &Path) -> Result<Agent> {
        self.start_agent_within(config, Duration::from_secs(20))
    }

    /// The same, for an agent that may first wait for another writer (a
    /// large import) to release the lists' lock.
    pub fn start_agent_within(&self, config: &Path, within: Duration) -> Result<Agent> {
        let log = self.workdir.join(format!("{}.log", unique("agent")));
        let child = self
            .ensuresec_cmd(&["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting the agent")?;
        let agent = Agent { child, log };
        let deadline = Instant::now() + within;
        loop {
            if self.metrics().is_ok() {
                return Ok(agent);
            }
            if Instant::now() > deadline {
                bail!("the agent did not come up: {}", agent.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The agent's metrics page, scraped from inside the storefront.
    pub fn metrics(&self) -> Result<String> {
        agent_metrics(&self.storefront.ns)
    }
}

/// The metrics page of the agent running in `ns`, on its default listener.
pub fn agent_metrics(ns: &Netns) -> Result<String> {
    let out =
        run(ns
            .cmd("curl")
            .args(["-sf", "--max-time", "2", "http://127.0.0.1:9968/metrics"]))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut nginx) = self.nginx.take() {
            let _ = nginx.kill();
            let _ = nginx.wait();
        }
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// A running agent; killed (SIGKILL) when dropped if still running.
pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
}

impl Agent {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Sends `signal` and waits up to 10 s for the agent to exit.
    pub fn stop(&mut self, signal: i32) -> Result<std::process::ExitStatus> {
        self.signal(signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("the agent ignored signal {signal}: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One namespace with a veth pair (`v0`, `v1`): enough for CLI tests that need
/// ensuresec attached but no traffic.
pub struct Solo {
    pub ns: Netns,
    pub pins: TestPins,
    pub workdir: PathBuf,
}

impl Solo {
    pub fn new() -> Result<Self> {
        let ns = Netns::new("solo")?;
        ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"])?;
        ns.ip(&["link", "set", "v0", "up"])?;
        ns.ip(&["link", "set", "v1", "up"])?;
        let workdir = std::env::temp_dir().join(unique("solo"));
        std::fs::create_dir_all(&workdir)?;
        Ok(Solo {
            ns,
            pins: TestPins::new("solo"),
            workdir,
        })
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.ns.nsenter(&ensuresec_bin().display().to_string());
        cmd.args(args)
            .env("ENSURESEC_PIN_DIR", self.pins.pins.root())
            .env("ENSURESEC_STATE_DIR", self.workdir.join("state"));
        cmd
    }

    /// Runs `ensuresec ARGS`: (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let out = self.cmd(args).output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Writes `content` to a file in the work directory and returns its path.
    pub fn file(&self, name: &str, content: &str) -> Result<String> {
        let path = self.workdir.join(name);
        std::fs::write(&path, content)?;
        Ok(path.display().to_string())
    }
}

impl Drop for Solo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

impl Lab {
    /// The agent's decisions as JSON rows.
    pub fn decisions(&self) -> Result<Vec<serde_json::Value>> {
        let out = self.ensuresec(&["decisions", "list", "-o", "json"])?;
        Ok(serde_json::from_str::<serde_json::Value>(&out)?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits up to `within` for a decision on `target`.
    pub fn wait_decision(
        &self,
        target: &str,
        within: Duration,
    ) -> Result<Option<serde_json::Value>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(d) = self
                .decisions()?
                .into_iter()
                .find(|d| d["target"] == target)
            {
                return Ok(Some(d));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A SYN flood of `packets` from the attacker at 5,000 a second, at the
    /// storefront only; returns when hping3 is done (its exit status says
    /// whether replies came, which a ban prevents, so it is not checked).
    pub fn syn_flood(&self, packets: u32) -> Result<()> {
        self.attacker
            .ns
            .cmd("hping3")
            .args([
                "-S",
                "-p",
                "80",
                "-i",
                "u200",
                "-c",
                &packets.to_string(),
                "-q",
                &self.storefront.v4.to_string(),
            ])
            .output()?;
        Ok(())
    }

    /// The value of an unlabelled metric on the agent's page (0 if absent).
    pub fn metric(&self, name: &str) -> Result<f64> {
        let page = self.metrics()?;
        Ok(page
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0))
    }

    /// Waits until the agent has read every trip event the kernel sent it
    /// (or counted it lost) and no tripped source or destination is still
    /// watched; returns how many events there were. Then whatever the agent
    /// would decide on what happened so far, it has decided.
    pub fn agent_caught_up(&self) -> Result<u64> {
        crate::wait::eventually(
            Duration::from_secs(15),
            "the agent to read the events and end its watches",
            || {
                let status: serde_json::Value =
                    serde_json::from_str(&self.ensuresec(&["status", "-o", "json"])?)?;
                let sent = status["events_sent"].as_u64().unwrap_or(0);
                // Every event sent was handled, or merged into one handled
                // after it, or shed (the reader counts those as it reads).
                let accounted = ["events", "coalesced", "shed"]
                    .iter()
                    .map(|m| self.metric(&format!("ensuresec_ringbuf_{m}_total")))
                    .sum::<Result<f64>>()? as u64;
                let watched = self.metric("ensuresec_watched")?;
                Ok((accounted >= sent && watched == 0.0).then_some(sent))
            },
        )
    }

    /// Packets the kernel counted for `reason`.
    pub fn counter(&self, reason: &str) -> Result<u64> {
        let status: serde_json::Value =
            serde_json::from_str(&self.ensuresec(&["status", "-o", "json"])?)?;
        Ok(status["counters"]
            .as_array()
            .and_then(|c| c.iter().find(|r| r["reason"] == reason))
            .and_then(|r| r["packets"].as_u64())
            .unwrap_or(0))
    }
}
