//! The application lab: the lab's storefront host runs the lab shop
//! application (`lab-shop`) behind nginx as a reverse proxy, which logs every
//! request (`vhost_combined` with X-Forwarded-For) and basic-auth and rate
//! limit refusals (its error log); the shop writes shop events. The agent
//! follows all three.

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::{
    lab::{Lab, ShopperLoad},
    wait::eventually,
};

/// The shop's customers and their passwords.
pub fn accounts() -> Vec<(String, String)> {
    (1..=20)
        .map(|n| {
            (
                format!("customer{n}@lab.shop"),
                format!("pw-{n}-correct-horse"),
            )
        })
        .collect()
}

/// Cards the fake processor accepts; any other is declined.
pub const GOOD_CARDS: &[&str] = &["4111111111111111", "5555555555554444"];

/// The port nginx serves the shop on, and the storefront's name.
pub const PORT: u16 = 8000;
pub const STOREFRONT: &str = "lab-shop";
/// Basic-auth protected admin area (user `admin`).
pub const ADMIN_PASSWORD: &str = "staff-only-secret";

pub struct ShopLab {
    pub lab: Lab,
    pub dir: PathBuf,
    pub access_log: PathBuf,
    /// The same requests in nginx's own `combined` format (fail2ban's filters
    /// read that one).
    pub combined_log: PathBuf,
    pub error_log: PathBuf,
    pub events_log: PathBuf,
    app: Option<Child>,
    nginx: Option<Child>,
}

impl ShopLab {
    /// A lab with the shop running; `shop_bin` is `env!("CARGO_BIN_EXE_lab-shop")`.
    pub fn new(shop_bin: &str) -> Result<Self> {
        let lab = Lab::new()?;
        let dir = lab.workdir.join("app");
        std::fs::create_dir_all(dir.join("tmp"))?;
        let events_log = dir.join("events.jsonl");
        let app = lab
            .storefront
            .ns
            .cmd(shop_bin)
            .args(["--listen", "127.0.0.1:8081", "--events"])
            .arg(&events_log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting lab-shop")?;
        let mut shop = ShopLab {
            access_log: dir.join("access.log"),
            combined_log: dir.join("combined.log"),
            error_log: dir.join("error.log"),
            events_log,
            dir,
            lab,
            app: Some(app),
            nginx: None,
        };
        shop.start_nginx()?;
        Ok(shop)
    }

    fn start_nginx(&mut self) -> Result<()> {
        let w = self.dir.display();
        // A basic-auth area, for the error log's authentication failures
        // (openssl-style apr1 hashes need a tool; nginx reads {PLAIN}).
        std::fs::write(
            self.dir.join("htpasswd"),
            format!("admin:{{PLAIN}}{ADMIN_PASSWORD}\n"),
        )?;
        let conf = self.dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\nuser root;\npid {w}/nginx.pid;\nerror_log {w}/error.log error;\n\
                 events {{ worker_connections 4096; }}\n\
                 http {{\n\
                   log_format vhost '$host $remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" \"$http_x_forwarded_for\"';\n\
                   access_log {w}/access.log vhost;\n\
                   access_log {w}/combined.log combined;\n\
                   client_body_temp_path {w}/tmp; proxy_temp_path {w}/tmp;\n\
                   fastcgi_temp_path {w}/tmp; uwsgi_temp_path {w}/tmp; scgi_temp_path {w}/tmp;\n\
                   server {{\n\
                     listen {PORT}; listen [::]:{PORT};\n\
                     location /staff/ {{ auth_basic staff; auth_basic_user_file {w}/htpasswd; proxy_pass http://127.0.0.1:8081; }}\n\
                     location / {{ proxy_pass http://127.0.0.1:8081; proxy_set_header X-Real-IP $remote_addr; proxy_set_header Host $host; }}\n\
                   }}\n\
                 }}\n"
            ),
        )?;
        let child = self.lab.storefront.spawn_nginx(&conf)?;
        self.nginx = Some(child);
        let url = self.url("/");
        eventually(
            Duration::from_secs(10),
            "the shop to answer through nginx",
            || Ok((self.lab.shopper.http_status(&url, None) == 200).then_some(())),
        )
        .with_context(|| std::fs::read_to_string(&self.error_log).unwrap_or_default())?;
        Ok(())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{PORT}{path}", self.lab.storefront.v4)
    }

    pub fn url6(&self, path: &str) -> String {
        format!("http://[{}]:{PORT}{path}", self.lab.storefront.v6)
    }

    /// An agent config following the shop's logs and events; `extra` is
    /// appended TOML.
    pub fn agent_config(&self, extra: &str) -> Result<PathBuf> {
        self.agent_config_with("", extra)
    }

    /// The same, with `app` lines added to the `[app]` table.
    pub fn agent_config_with(&self, app: &str, extra: &str) -> Result<PathBuf> {
        let state = self.dir.join("state");
        let v4 = self.lab.storefront.v4;
        let v6 = self.lab.storefront.v6;
        let log = |path: &Path, format: &str| {
            format!(
                "[[logs]]\npath = \"{}\"\nformat = \"{format}\"\nstorefront = \"{STOREFRONT}\"\n",
                path.display()
            )
        };
        self.lab.agent_config(&format!(
            "[app]\nstate_dir = \"{}\"\n{app}\n[[storefront]]\nname = \"{STOREFRONT}\"\nhosts = [\"{v4}\", \"{v6}\", \"shop.lab\"]\n\n{}\n{}\n{}\n{extra}",
            state.display(),
            log(&self.access_log, "vhost_combined"),
            log(&self.error_log, "nginx_error"),
            log(&self.events_log, "events"),
        ))
    }

    /// Lines the agent read from a log, by result.
    pub fn lines(&self, log: &Path, result: &str) -> Result<f64> {
        self.lab.metric(&format!(
            "ensuresec_log_lines_total{{log=\"{}\",result=\"{result}\"}}",
            log.display()
        ))
    }
}

impl Drop for ShopLab {
    fn drop(&mut self) {
        for child in [self.nginx.take(), self.app.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// nginx on another host as a reverse proxy in front of the shop (a CDN
/// edge, a load balancer): it appends the client to X-Forwarded-For.
pub struct ReverseProxy {
    nginx: Child,
    pub port: u16,
}

impl ReverseProxy {
    pub fn start(shop: &ShopLab, host: &crate::lab::Host) -> Result<Self> {
        let dir = shop.dir.join(format!("proxy-{}", host.v4));
        std::fs::create_dir_all(dir.join("tmp"))?;
        let w = dir.display();
        let port = 8080;
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\nuser root;\npid {w}/nginx.pid;\nerror_log {w}/error.log error;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n\
                   client_body_temp_path {w}/tmp; proxy_temp_path {w}/tmp;\n\
                   fastcgi_temp_path {w}/tmp; uwsgi_temp_path {w}/tmp; scgi_temp_path {w}/tmp;\n\
                   server {{\n    listen {port};\n\
                     location / {{ proxy_pass http://{}:{PORT}; proxy_set_header Host $host; \
                     proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }}\n  }}\n}}\n",
                shop.lab.storefront.v4
            ),
        )?;
        let proxy = Self {
            nginx: host.spawn_nginx(&conf)?,
            port,
        };
        let url = format!("http://{}:{port}/", host.v4);
        eventually(Duration::from_secs(10), "the proxy to answer", || {
            Ok((host.http_status(&url, None) == 200).then_some(()))
        })?;
        Ok(proxy)
    }
}

impl Drop for ReverseProxy {
    fn drop(&mut self) {
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
    }
}

/// A browser's user agent, for clients that are not tools.
pub const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// One request with curl from `host` with a browser's user agent (extra
/// curl `args`: `-d`, `-H`, ...); its status, or 0 when nothing answered
/// within 2 s.
pub fn curl(host: &crate::lab::Host, url: &str, args: &[&str]) -> u16 {
    let args: Vec<&str> = ["-A", BROWSER]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    host.curl(url, &args)
}

/// Requests from `addr` in a log (its lines that start with the vhost and
/// this client address).
pub fn logged_from(log: &Path, addr: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| is_from(l, addr))
        .count()
}

/// Whether a line of the shop's access log (vhost first, then the client)
/// is a request from `addr`.
pub fn is_from(line: &str, addr: &str) -> bool {
    line.split(' ').nth(1) == Some(addr)
}

/// The decision on `target` with its evidence (written just after it),
/// waited for.
pub fn decision(s: &ShopLab, target: &str) -> Result<Value> {
    decision_within(s, target, Duration::from_secs(10))
}

/// `decision`, for a tool that takes `within` to send what names it.
pub fn decision_within(s: &ShopLab, target: &str, within: Duration) -> Result<Value> {
    eventually(within, &format!("a decision on {target}"), || {
        Ok(s.lab
            .decisions()?
            .into_iter()
            .find(|d| d["target"] == target && !d["details"].is_null()))
    })
}

/// A decision made on application evidence: a ban naming the storefront,
/// and the attacker's packets dropped from then on.
pub fn assert_banned(s: &ShopLab, d: &Value, detectors: &[&str]) {
    assert!(
        detectors.contains(&d["detector"].as_str().unwrap_or("")),
        "{d}"
    );
    assert_eq!(d["action"], "ban", "{d}");
    assert_eq!(d["storefront"], STOREFRONT, "{d}");
    assert_eq!(
        curl(&s.lab.attacker, &s.url("/"), &[]),
        0,
        "the attacker is dropped"
    );
    assert_eq!(
        curl(&s.lab.shopper, &s.url("/"), &[]),
        200,
        "the shopper is served"
    );
}

/// Whether one of `decisions` (rows of `decisions list -o json`) is on
/// `addr`, by its address or a network holding it.
pub fn decided_on(decisions: &[Value], addr: std::net::Ipv4Addr) -> bool {
    decisions
        .iter()
        .any(|d| target_covers(d["target"].as_str().unwrap_or_default(), addr))
}

/// Whether a decision target (an address, or a network as `ADDR/LEN`)
/// covers `addr`.
pub fn target_covers(target: &str, addr: std::net::Ipv4Addr) -> bool {
    let addr = std::net::IpAddr::V4(addr);
    target
        .parse::<ipnet::IpNet>()
        .map(|n| n.contains(&addr))
        .unwrap_or_else(|_| target.parse::<std::net::IpAddr>().is_ok_and(|a| a == addr))
}

/// A shopper browsing product pages all through a scenario.
pub fn shopper_load(s: &ShopLab) -> ShopperLoad {
    let pages = (1..=5).map(|n| s.url(&format!("/product/{n}"))).collect();
    ShopperLoad::browse(&s.lab.shopper.ns.name, None, pages)
}

/// At least 99 % of the shopper's requests were answered, over at least
/// `MIN_SHOPPER_REQUESTS` of them (a short scenario waits for them).
pub fn assert_served(load: ShopperLoad) {
    let enough = eventually(Duration::from_secs(30), "the shopper's requests", || {
        Ok((load.made() >= MIN_SHOPPER_REQUESTS).then_some(()))
    });
    let (ok, total) = load.finish();
    assert!(enough.is_ok(), "the shopper made only {total} requests");
    assert!(ok * 100 >= total * 99, "shopper: {ok} of {total} served");
}

const MIN_SHOPPER_REQUESTS: u32 = 20;
