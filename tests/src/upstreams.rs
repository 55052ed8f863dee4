//! The storefront's own outbound traffic, as a real shop host has it: calls
//! to a payment API, downloads from a package mirror at any speed, and DNS
//! lookups, over IPv4 and IPv6, to an upstream host on the lab's bridge
//! (nginx and dnsmasq). Their answers reach the storefront's XDP program
//! like any other traffic: the dataset runs this beside the visitors, so
//! that the anomaly models learn that answers to the host's own connections
//! (big segments from port 80 to ephemeral ports, DNS answers) are normal.

use std::{
    process::{Child, Command},
    time::Duration,
};

use anyhow::Result;

use crate::{
    lab::{Host, Lab},
    visitors::{Running, repeat},
};

/// The upstream's addresses (role `upstream` in the datasets).
pub const UPSTREAM_V4: &str = "10.77.5.5";
pub const UPSTREAM_V6: &str = "fd77::5:5";

/// The upstream host, its servers and the storefront's loops calling them;
/// dropping it stops them all.
pub struct Upstream {
    servers: Vec<Child>,
    loops: Vec<Running>,
    // Dropped last: the namespace the servers run in.
    _host: Host,
}

/// A few queries for one name on one connected socket, as the C library's
/// resolver sends them; answers are read and dropped.
const DNS_QUERIES: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], 53))
s.settimeout(0.5)
name = b"".join(bytes([len(p)]) + p for p in b"api.pay.test".split(b".")) + b"\0"
for i in range(int(sys.argv[2])):
    s.send(struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1))
    try:
        s.recv(512)
    except socket.timeout:
        pass
"#;

/// Starts the upstream (an API answer and a 4 MiB mirror file behind nginx,
/// dnsmasq) and the storefront's three habits of calling it.
pub fn start(lab: &Lab) -> Result<Upstream> {
    let host = lab.add_host("up", UPSTREAM_V4.parse()?, UPSTREAM_V6.parse()?)?;
    let www = lab.workdir.join("upstream-www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("api.json"), "{\"status\":\"authorised\"}\n")?;
    std::fs::write(www.join("mirror.bin"), vec![b'm'; 4 << 20])?;
    let mut servers =
        vec![host.serve_http(&lab.workdir.join("upstream"), &www, &["80", "[::]:80"])?];
    servers.push(host.serve_dns("api.pay.test", UPSTREAM_V4)?);

    let ns = lab.storefront.ns.name.clone();
    let cmd = move |program: &str| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns, program]);
        c
    };
    let curl = {
        let cmd = cmd.clone();
        move || {
            let mut c = cmd("curl");
            c.args(["-s", "-o", "/dev/null", "--max-time", "20", "-g"]);
            c
        }
    };
    let url = |path: &str| {
        // One call in four over IPv6.
        if fastrand::u32(0..4) == 0 {
            format!("http://[{UPSTREAM_V6}]{path}")
        } else {
            format!("http://{UPSTREAM_V4}{path}")
        }
    };
    let pause = |lo: f64, hi: f64| Duration::from_secs_f64(lo + fastrand::f64() * (hi - lo));
    let api = {
        let curl = curl.clone();
        repeat(move || {
            // One to four calls on one connection (a payment's steps).
            let mut c = curl();
            for _ in 0..1 + fastrand::u32(0..4) {
                c.args(["-o", "/dev/null"]).arg(url("/api.json"));
            }
            (vec![c], pause(0.2, 2.0))
        })
    };
    let mirror = repeat(move || {
        let mut c = curl();
        // Two downloads in three at a rate limit, the rest at full speed.
        if fastrand::u32(0..3) > 0 {
            let rate = 200 + fastrand::u32(0..20_000);
            c.args(["--limit-rate", &format!("{rate}k")]);
        }
        c.arg(url("/mirror.bin"));
        (vec![c], pause(2.0, 10.0))
    });
    let dns = repeat(move || {
        let mut c = cmd("/usr/bin/python3");
        c.arg("-c")
            .arg(DNS_QUERIES)
            .arg(UPSTREAM_V4)
            .arg((1 + fastrand::u32(0..20)).to_string());
        (vec![c], pause(0.5, 3.0))
    });
    Ok(Upstream {
        servers,
        loops: vec![api, mirror, dns],
        _host: host,
    })
}

impl Drop for Upstream {
    /// Stops the loops (each ends its current call), then the servers, also
    /// when a run fails half-way.
    fn drop(&mut self) {
        crate::visitors::stop(std::mem::take(&mut self.loops));
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}
