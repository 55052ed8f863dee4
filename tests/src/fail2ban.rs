//! fail2ban (Debian's 1.0.2) run for real in the lab storefront's namespace,
//! as the reference the application benchmarks compare with: its shipped
//! nginx-botsearch and nginx-http-auth jails, plus a jail for the lab shop's
//! failed logins, banning with iptables.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{shop::ShopLab, wait::eventually};

/// The lab's failed-login jail: a POST to /login answered 401, in nginx's
/// `combined` format; ten in five minutes, as ensuresec's default.
const LOGIN_FILTER: &str = "[Definition]\nfailregex = ^<HOST> \\S+ \\S+ \\[\\] \"POST /login[^\"]*\" 401\ndatepattern = ^[^\\[]*\\[({DATE})\n";

pub struct Fail2ban {
    child: Child,
    dir: PathBuf,
    /// Each jail (named as its filter) and the log it reads.
    jails: Vec<(&'static str, PathBuf)>,
}

/// One line of fail2ban's own log about an address.
#[derive(Clone, Debug, PartialEq)]
pub struct Logged {
    pub jail: String,
    pub addr: String,
    /// Wall-clock seconds (fail2ban logs milliseconds).
    pub at: f64,
}

fn seconds(stamp: &str) -> Option<f64> {
    // "2026-12-01 05:30:01,123"
    let out = Command::new("date")
        .args(["-u", "-d", &stamp.replace(',', "."), "+%s.%N"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

impl Fail2ban {
    pub fn start(shop: &ShopLab) -> Result<Self> {
        let dir = shop.dir.join("fail2ban");
        crate::netns::run(Command::new("cp").args(["-r", "/etc/fail2ban"]).arg(&dir))?;
        // Debian's own jails (sshd) are not the lab's.
        let _ = std::fs::remove_dir_all(dir.join("jail.d"));
        std::fs::create_dir_all(dir.join("jail.d"))?;
        let d = dir.display();
        std::fs::write(
            dir.join("fail2ban.local"),
            format!(
                "[Definition]\nloglevel = INFO\nlogtarget = {d}/fail2ban.log\nsocket = {d}/fail2ban.sock\npidfile = {d}/fail2ban.pid\ndbfile = :memory:\n"
            ),
        )?;
        std::fs::write(dir.join("filter.d/lab-login.conf"), LOGIN_FILTER)?;
        let combined = shop.combined_log.display();
        std::fs::write(
            dir.join("jail.local"),
            format!(
                "[DEFAULT]\nbanaction = iptables-allports\nbackend = pyinotify\nfindtime = 300\nbantime = 600\n\n\
                 [lab-login]\nenabled = true\nfilter = lab-login\nlogpath = {combined}\nmaxretry = 10\n\n\
                 [nginx-botsearch]\nenabled = true\nlogpath = {combined}\n\n\
                 [nginx-http-auth]\nenabled = true\nlogpath = {}\n",
                shop.error_log.display()
            ),
        )?;
        let child = shop
            .lab
            .storefront
            .ns
            .cmd("fail2ban-server")
            .args(["-f", "-x", "-c"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting fail2ban-server (Debian package fail2ban)")?;
        let f2b = Fail2ban {
            child,
            dir,
            jails: vec![
                ("lab-login", shop.combined_log.clone()),
                ("nginx-botsearch", shop.combined_log.clone()),
                ("nginx-http-auth", shop.error_log.clone()),
            ],
        };
        eventually(Duration::from_secs(20), "fail2ban's three jails", || {
            let out = shop
                .lab
                .storefront
                .ns
                .cmd("fail2ban-client")
                .args(["-c"])
                .arg(&f2b.dir)
                .arg("status")
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            Ok(text.contains("Number of jail:\t3").then_some(()))
        })?;
        Ok(f2b)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("fail2ban.log")).unwrap_or_default()
    }

    /// The log's lines with `what` ("Ban", "Found") about an address.
    pub fn logged(&self, what: &str) -> Vec<Logged> {
        let marker = format!("] {what} ");
        self.log()
            .lines()
            .filter_map(|l| {
                // "2026-12-01 05:30:01,123 fail2ban.actions [12]: NOTICE  [lab-login] Ban 10.77.66.6"
                let end = l.find(&marker)?;
                let jail = &l[l[..end].rfind('[')? + 1..end];
                let addr = l[end + marker.len()..]
                    .split_whitespace()
                    .next()?
                    .to_string();
                Some(Logged {
                    jail: jail.to_string(),
                    addr,
                    at: seconds(l.get(..23)?)?,
                })
            })
            .collect()
    }

    /// The line that decided `ban`: the one that brought its jail's matches
    /// of the address to `maxretry` (the first moment the jail could ban),
    /// as the jail's own filter matches them (`fail2ban-regex`), in its
    /// log's order. Returns the log and the byte offset where the line
    /// starts.
    pub fn deciding_line(&self, ban: &Logged) -> Result<Option<(PathBuf, u64)>> {
        let Some((jail, log)) = self.jails.iter().find(|(j, _)| *j == ban.jail) else {
            return Ok(None);
        };
        let out = Command::new("fail2ban-client")
            .arg("-c")
            .arg(&self.dir)
            .args(["get", jail, "maxretry"])
            .output()
            .context("asking fail2ban for the jail's maxretry")?;
        let found: usize = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("fail2ban's maxretry")?;
        let filter = self.dir.join(format!("filter.d/{jail}.conf"));
        let out = Command::new("fail2ban-regex")
            .args(["--print-all-matched", "--print-no-missed"])
            .arg(log)
            .arg(&filter)
            .output()
            .context("running fail2ban-regex")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let matched: std::collections::HashSet<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("|- Matched line(s):"))
            .skip(1)
            .map_while(|l| l.strip_prefix("|  "))
            .collect();
        let content = std::fs::read_to_string(log)?;
        let mut offset = 0u64;
        let mut seen = 0;
        for line in content.split_inclusive('\n') {
            let body = line.trim_end_matches('\n');
            if matched.contains(body) && names(body, &ban.addr) {
                seen += 1;
                if seen == found {
                    return Ok(Some((log.clone(), offset)));
                }
            }
            offset += line.len() as u64;
        }
        Ok(None)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `line` names the address `addr` (not one it is a prefix of).
fn names(line: &str, addr: &str) -> bool {
    line.match_indices(addr).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + addr.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
    })
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_address_is_named_whole() {
        assert!(super::names("10.0.0.1 - - x", "10.0.0.1"));
        assert!(super::names("client: 10.0.0.1, server", "10.0.0.1"));
        assert!(!super::names("10.0.0.10 - - x", "10.0.0.1"));
        assert!(!super::names("110.0.0.1 - - x", "10.0.0.1"));
    }
}
