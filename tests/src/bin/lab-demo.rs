//! `cargo xtask demo`: a storefront, a shopper and an attacker in network
//! namespaces; ensuresec blocks the attacker's range while the shopper keeps
//! shopping. Everything is removed at the end, also on Ctrl-C.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Result, bail};
use ensuresec_tests::lab::{Host, Lab, STOREFRONT_IFACE};

const PAGES: &[&str] = &["/", "/product/1", "/cart", "/checkout"];

struct Demo {
    lab: Lab,
    stop: Arc<AtomicBool>,
}

impl Demo {
    fn step(&self, title: &str) -> Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        println!("\n== {title}");
        Ok(())
    }

    fn shop(&self, who: &str, host: &Host) {
        for (family, base) in [("IPv4", self.lab.url4("")), ("IPv6", self.lab.url6(""))] {
            let codes: Vec<String> = PAGES
                .iter()
                .take_while(|_| !self.stop.load(Ordering::SeqCst))
                .map(|p| match host.http_status(&format!("{base}{p}"), None) {
                    0 => format!("{p} -> no answer"),
                    code => format!("{p} -> {code}"),
                })
                .collect();
            println!("  {who:<8} {family}: {}", codes.join(", "));
        }
    }

    fn ensuresec(&self, args: &[&str]) -> Result<()> {
        println!("  $ ensuresec {}", args.join(" "));
        for line in self.lab.ensuresec(args)?.lines() {
            println!("    {line}");
        }
        Ok(())
    }

    fn run(&self) -> Result<()> {
        let lab = &self.lab;
        self.step("lab")?;
        println!(
            "  storefront {} / {} (nginx), shopper {} / {}, attacker {} / {}",
            lab.storefront.v4,
            lab.storefront.v6,
            lab.shopper.v4,
            lab.shopper.v6,
            lab.attacker.v4,
            lab.attacker.v6
        );
        println!(
            "  joined by a bridge; no namespace has a route out of 10.77.0.0/16 and fd77::/64"
        );

        self.step("start the agent on the storefront (it attaches XDP to eth0)")?;
        let config = lab.agent_config("")?;
        let mut agent = lab.start_agent(&config)?;
        self.ensuresec(&["status"])?;

        self.step("before: everyone is served")?;
        self.shop("shopper", &lab.shopper);
        self.shop("attacker", &lab.attacker);

        self.step("block the attacker's ranges")?;
        self.ensuresec(&[
            "block",
            "add",
            "10.77.66.0/24",
            "--ttl",
            "4h",
            "--reason",
            "demo: attacker range",
        ])?;
        self.ensuresec(&[
            "block",
            "add",
            "fd77::66:0/112",
            "--ttl",
            "4h",
            "--reason",
            "demo: attacker range",
        ])?;
        self.ensuresec(&["block", "list"])?;

        self.step("after: the attacker is dropped in the kernel, the shopper still gets 200s")?;
        self.shop("shopper", &lab.shopper);
        self.shop("attacker", &lab.attacker);

        self.step("ensuresec status")?;
        std::thread::sleep(Duration::from_millis(700));
        self.ensuresec(&["status"])?;

        self.step("metrics (http://127.0.0.1:9968/metrics on the storefront)")?;
        for line in lab.metrics()?.lines() {
            let relevant = line.starts_with("ensuresec_packets_total")
                || line.starts_with("ensuresec_blocklist_entries")
                || line.starts_with("ensuresec_attached_interfaces");
            if relevant && !line.ends_with(" 0") {
                println!("  {line}");
            }
        }

        self.step("stop the agent (SIGTERM): the filter stays, then detach and clean up")?;
        agent.stop(libc::SIGTERM)?;
        println!(
            "  attacker after the agent stopped: {}",
            match lab.attacker.http_status(&lab.url4("/"), None) {
                0 => "still dropped".to_string(),
                code => format!("HTTP {code}"),
            }
        );
        self.ensuresec(&["detach", "--iface", STOREFRONT_IFACE])?;
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.to_string().starts_with("interrupted") => {
            eprintln!("interrupted");
            std::process::ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
    println!("ensuresec lab demo");
    let demo = Demo {
        lab: Lab::new()?,
        stop,
    };
    let result = demo.run();
    // Dropping the lab removes the namespaces, nginx and the pins.
    drop(demo);
    println!("\nlab removed");
    result
}
