//! Real receivers of the agent's notices, in the storefront's namespace
//! (where the agent runs), on loopback: a webhook receiver that checks
//! signatures, Debian's Alertmanager, and an SMTP server with STARTTLS
//! (aiosmtpd, a certificate made by openssl). Each stops when dropped.

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use crate::{lab::Lab, wait::eventually};

/// Debian's Python, where python3-aiosmtpd is installed.
const PYTHON: &str = "/usr/bin/python3";

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn listening(lab: &Lab, port: u16) -> Result<()> {
    eventually(Duration::from_secs(20), "a receiver to listen", || {
        let out = lab.storefront.ns.cmd("ss").args(["-Hltn"]).output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .contains(&format!("127.0.0.1:{port} "))
            .then_some(()))
    })
}

pub struct Webhook {
    pub url: String,
    pub secret_file: PathBuf,
    out: PathBuf,
    down: PathBuf,
    _process: Process,
}

impl Webhook {
    pub fn start(lab: &Lab, port: u16) -> Result<Self> {
        let dir = lab.workdir.join(format!("webhook-{port}"));
        std::fs::create_dir_all(&dir)?;
        let secret_file = dir.join("secret");
        std::fs::write(&secret_file, "a shared secret of the test\n")?;
        let (out, down) = (dir.join("received.jsonl"), dir.join("down"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("receivers/webhook.py");
        let child = lab
            .storefront
            .ns
            .cmd(PYTHON)
            .arg(script)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--secret-file")
            .arg(&secret_file)
            .arg("--out")
            .arg(&out)
            .arg("--down")
            .arg(&down)
            .stdout(Stdio::null())
            .spawn()
            .context("starting the webhook receiver")?;
        let process = Process(child);
        listening(lab, port)?;
        Ok(Webhook {
            url: format!("http://127.0.0.1:{port}"),
            secret_file,
            out,
            down,
            _process: process,
        })
    }

    /// Answers 503 from now on (`false`: answers again).
    pub fn set_down(&self, down: bool) -> Result<()> {
        if down {
            std::fs::write(&self.down, "")?;
        } else if self.down.exists() {
            std::fs::remove_file(&self.down)?;
        }
        Ok(())
    }

    /// What it received, in order: path, idempotency key, whether the
    /// signature held, the body.
    pub fn received(&self) -> Result<Vec<Value>> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
    }
}

pub struct Alertmanager {
    pub url: String,
    lab_ns: String,
    _process: Process,
}

impl Alertmanager {
    pub fn start(lab: &Lab, port: u16) -> Result<Self> {
        let dir = lab.workdir.join("alertmanager");
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: none\n  group_wait: 1s\nreceivers:\n  - name: none\n",
        )?;
        let child = lab
            .storefront
            .ns
            .cmd("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting Alertmanager")?;
        let process = Process(child);
        listening(lab, port)?;
        Ok(Alertmanager {
            url: format!("http://127.0.0.1:{port}"),
            lab_ns: lab.storefront.ns.name.clone(),
            _process: process,
        })
    }

    /// The alerts its API v2 holds (firing ones, unless `active` is false).
    pub fn alerts(&self, active: bool) -> Result<Vec<Value>> {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.lab_ns,
                "curl",
                "-sf",
                "--max-time",
                "5",
            ])
            .arg(format!(
                "{}/api/v2/alerts?active={active}&silenced=true&inhibited=true",
                self.url
            ))
            .output()?;
        ensure!(out.status.success(), "Alertmanager's API did not answer");
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

pub struct Smtp {
    pub port: u16,
    pub ca_file: PathBuf,
    maildir: PathBuf,
    _process: Process,
}

impl Smtp {
    /// An SMTP server that requires STARTTLS, with a certificate for
    /// `localhost` that `ca_file` trusts.
    pub fn start(lab: &Lab, port: u16) -> Result<Self> {
        let dir = lab.workdir.join("smtp");
        std::fs::create_dir_all(&dir)?;
        // A CA of the test, and the server's certificate for `localhost`
        // signed by it (rustls takes no CA certificate as a server's).
        let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
        let (cert, key, csr) = (
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("server.csr"),
        );
        let ext = dir.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )?;
        let openssl = |args: &[&std::ffi::OsStr]| -> Result<()> {
            let ok = std::process::Command::new("openssl")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?
                .success();
            ensure!(ok, "openssl {args:?} failed");
            Ok(())
        };
        let s = |t: &'static str| std::ffi::OsStr::new(t);
        openssl(&[
            s("req"),
            s("-x509"),
            s("-newkey"),
            s("rsa:2048"),
            s("-nodes"),
            s("-days"),
            s("1"),
            s("-subj"),
            s("/CN=ensuresec lab CA"),
            s("-keyout"),
            ca_key.as_os_str(),
            s("-out"),
            ca.as_os_str(),
        ])?;
        openssl(&[
            s("req"),
            s("-newkey"),
            s("rsa:2048"),
            s("-nodes"),
            s("-subj"),
            s("/CN=localhost"),
            s("-keyout"),
            key.as_os_str(),
            s("-out"),
            csr.as_os_str(),
        ])?;
        openssl(&[
            s("x509"),
            s("-req"),
            s("-in"),
            csr.as_os_str(),
            s("-CA"),
            ca.as_os_str(),
            s("-CAkey"),
            ca_key.as_os_str(),
            s("-CAcreateserial"),
            s("-days"),
            s("1"),
            s("-extfile"),
            ext.as_os_str(),
            s("-out"),
            cert.as_os_str(),
        ])?;
        let maildir = dir.join("maildir");
        let child = lab
            .storefront
            .ns
            .cmd(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .arg("--tlscert")
            .arg(&cert)
            .arg("--tlskey")
            .arg(&key)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting aiosmtpd")?;
        let process = Process(child);
        listening(lab, port)?;
        Ok(Smtp {
            port,
            ca_file: ca,
            maildir,
            _process: process,
        })
    }

    /// The messages received, as text.
    pub fn messages(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else {
                continue;
            };
            for e in entries {
                out.push(std::fs::read_to_string(e?.path())?);
            }
        }
        Ok(out)
    }
}
