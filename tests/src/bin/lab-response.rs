//! `cargo xtask response`: one attack on the lab shop, end to end: the
//! incidents it makes, the fail-safe profile, the notices as each real
//! receiver got them (a signed webhook, a Slack-format hook, Alertmanager,
//! an SMTP server with STARTTLS), `explain` of the attacker and of a
//! shopper, a rollback, and a simulated reboot with everything restored.
//! Everything is removed at the end, also on Ctrl-C or SIGTERM.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use ensuresec_tests::{
    lab::STOREFRONT_IFACE,
    receivers::{Alertmanager, Smtp, Webhook},
    shop::{STOREFRONT, ShopLab, curl},
    wait::eventually,
};
use serde_json::Value;

struct Walk {
    shop: ShopLab,
    stop: Arc<AtomicBool>,
}

impl Walk {
    fn step(&self, title: &str) -> Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        println!("\n== {title}");
        Ok(())
    }

    fn ensuresec(&self, args: &[&str]) -> Result<String> {
        println!("  $ ensuresec {}", args.join(" "));
        let out = self.shop.lab.ensuresec(args)?;
        for line in out.lines() {
            println!("    {line}");
        }
        Ok(out)
    }

    fn run(&self) -> Result<()> {
        let lab = &self.shop.lab;
        let hook = Webhook::start(lab, 9981)?;
        let am = Alertmanager::start(lab, 9982)?;
        let smtp = Smtp::start(lab, 9983)?;
        self.step("the lab shop, its receivers and the agent's config")?;
        let extra = format!(
            "[detect]\nspoof_safe = false\n\n[[protect]]\nprefix = \"10.77.0.0/16\"\n\n\
             [incidents]\nquiet = \"20s\"\n\n\
             [storefront.failsafe]\nnew_connections_per_second = 500\nlogin_failures = 4\n\n\
             [[notices.channel]]\nname = \"provider-oncall\"\nkind = \"webhook\"\nurl = \"{hook}/provider\"\nsecret_file = \"{secret}\"\n\n\
             [[notices.channel]]\nname = \"provider-alerts\"\nkind = \"alertmanager\"\nurl = \"{am}\"\n\n\
             [[notices.channel]]\nname = \"owner-chat\"\nkind = \"slack\"\nurl = \"{hook}/slack\"\nstorefronts = [\"{STOREFRONT}\"]\n\n\
             [[notices.channel]]\nname = \"owner-mail\"\nkind = \"email\"\nstorefronts = [\"{STOREFRONT}\"]\nsmtp = \"localhost:{port}\"\nca_file = \"{ca}\"\nfrom = \"ensuresec@provider.test\"\nto = [\"owner@lab-shop.test\"]\n",
            hook = hook.url,
            secret = hook.secret_file.display(),
            am = am.url,
            port = smtp.port,
            ca = smtp.ca_file.display(),
        );
        println!(
            "{}",
            extra
                .lines()
                .map(|l| format!("  | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let config = self.shop.agent_config(&extra)?;
        let mut agent = lab.start_agent(&config)?;
        self.ensuresec(&[
            "block",
            "add",
            "10.77.99.0/24",
            "--ttl",
            "4h",
            "--reason",
            "known bad range",
        ])?;

        self.step("the attack: a SYN flood, then credential stuffing from another host")?;
        let attacker = lab.attacker.v4.to_string();
        lab.syn_flood(3000)?;
        lab.wait_decision(&attacker, Duration::from_secs(5))?
            .context("the flood banned")?;
        let stuffer = lab.add_host("stuff", "10.77.9.9".parse()?, "fd77::9:9".parse()?)?;
        for n in 1..=8 {
            let status = curl(
                &stuffer,
                &self.shop.url("/login"),
                &["-d", &format!("user=customer{n}@lab.shop&pass=guess{n}")],
            );
            println!(
                "  stuffer login {n}: {}",
                if status == 0 {
                    "cut off".into()
                } else {
                    status.to_string()
                }
            );
            if status == 0 {
                break;
            }
        }
        lab.wait_decision("10.77.9.9", Duration::from_secs(5))?
            .context("the stuffer banned")?;

        self.step("incidents, the fail-safe profile, explain")?;
        std::thread::sleep(Duration::from_secs(1));
        self.ensuresec(&["incidents", "list"])?;
        let list: Vec<Value> =
            serde_json::from_str(&lab.ensuresec(&["incidents", "list", "-o", "json"])?)?;
        for i in &list {
            self.ensuresec(&["incidents", "show", &i["id"].to_string()])?;
        }
        self.ensuresec(&["status"])?;
        self.ensuresec(&["explain", &attacker])?;
        self.ensuresec(&["explain", &lab.shopper.v4.to_string()])?;
        println!(
            "  shopper: GET / -> {}",
            lab.shopper.http_status(&lab.url4("/"), None)
        );
        println!("  Alertmanager, firing:");
        for a in am.alerts(true)? {
            println!(
                "    {} {} {} {}",
                a["labels"]["incident"],
                a["labels"]["storefront"],
                a["labels"]["kind"],
                a["status"]["state"]
            );
        }

        self.step("the incidents resolve once quiet; the notices as received")?;
        eventually(Duration::from_secs(60), "the incidents resolved", || {
            let open: Vec<Value> =
                serde_json::from_str(&lab.ensuresec(&["incidents", "list", "-o", "json"])?)?;
            Ok(open.is_empty().then_some(()))
        })?;
        eventually(Duration::from_secs(20), "every notice delivered", || {
            let n: Vec<Value> =
                serde_json::from_str(&lab.ensuresec(&["notices", "list", "-o", "json"])?)?;
            Ok(n.iter().all(|n| n["state"] == "delivered").then_some(()))
        })?;
        self.ensuresec(&["notices", "list"])?;
        println!("  webhook receiver (signature checked):");
        for r in hook.received()? {
            let body = &r["body"];
            match body["subject"].as_str() {
                Some(subject) => println!(
                    "    {} valid={} key={} {subject}",
                    r["path"], r["valid"], r["key"]
                ),
                None => println!(
                    "    {} {}",
                    r["path"],
                    body["text"]
                        .as_str()
                        .unwrap_or_default()
                        .lines()
                        .next()
                        .unwrap_or_default()
                ),
            }
        }
        let first = hook
            .received()?
            .into_iter()
            .find(|r| r["path"] == "/provider")
            .context("a webhook")?;
        println!("  the first notice's text:");
        for line in first["body"]["text"].as_str().unwrap_or_default().lines() {
            println!("    | {line}");
        }
        println!("  Alertmanager, still firing: {}", am.alerts(true)?.len());
        println!("  email received: {}", smtp.messages()?.len());
        if let Some(mail) = smtp.messages()?.iter().find(|m| m.contains("credential")) {
            for line in mail.lines().filter(|l| !l.is_empty()).take(40) {
                println!("    | {line}");
            }
        }
        let stuffing = list
            .iter()
            .find(|i| i["kind"] == "credential_stuffing")
            .context("stuffing")?;
        let accounts = lab.workdir.join("accounts.txt");
        std::fs::write(
            &accounts,
            (1..=20)
                .map(|n| format!("customer{n}@lab.shop\n"))
                .collect::<String>(),
        )?;
        let key = self.shop.dir.join("state/app.key");
        self.ensuresec(&[
            "incidents",
            "affected",
            &stuffing["id"].to_string(),
            "--accounts",
            accounts.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])?;

        self.step("rollback: the credential stuffing detector's decisions")?;
        self.ensuresec(&[
            "rollback",
            "--detector",
            "credential_stuffing",
            "--since",
            "10m",
            "--dry-run",
        ])?;
        self.ensuresec(&[
            "rollback",
            "--detector",
            "credential_stuffing",
            "--since",
            "10m",
        ])?;
        self.ensuresec(&["decisions", "list"])?;

        self.step("a simulated reboot: the agent stops, the program, maps and pins go")?;
        agent.stop(libc::SIGTERM)?;
        self.ensuresec(&["detach", "--iface", STOREFRONT_IFACE])?;
        println!("  maps pinned: {}", lab.pins.pins.has_maps());
        let _agent = lab.start_agent(&config)?;
        self.ensuresec(&["block", "list"])?;
        self.ensuresec(&["decisions", "list"])?;
        self.ensuresec(&["explain", &attacker])?;
        println!(
            "  attacker after the reboot: {}",
            match lab.attacker.http_status(&lab.url4("/"), None) {
                0 => "still dropped".to_string(),
                code => format!("HTTP {code}"),
            }
        );
        self.ensuresec(&["journal", "--limit", "12"])?;
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
        eprintln!("{e}");
        return std::process::ExitCode::FAILURE;
    }
    let exe = std::env::current_exe().expect("this program's path");
    let result =
        ShopLab::new(exe.with_file_name("lab-shop").to_str().expect("a path")).and_then(|shop| {
            let walk = Walk { shop, stop };
            let result = walk.run();
            // Dropping the lab removes the namespaces, servers and pins.
            drop(walk);
            println!("\nlab removed");
            result
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.to_string().starts_with("interrupted") => std::process::ExitCode::from(130),
        Err(e) => {
            eprintln!("walkthrough failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
