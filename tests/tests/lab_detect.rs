//! Detection and mitigation with real attack tools in the lab: the attack is
//! detected, the attacker dropped, the shopper served, and nothing benign
//! (a flash crowd, the host's own connections) is ever mitigated.

use std::time::Duration;

use anyhow::Result;
use ensuresec_tests::{
    lab::{Lab, ShopperLoad},
    wait::eventually,
};

const PROTECT: &str =
    "[[protect]]\nprefix = \"10.77.0.0/16\"\n[[protect]]\nprefix = \"fd77::/64\"\n";

/// A SYN flood is evidence anyone can forge: the source's SYNs are held to
/// the detector's threshold (the flood is dropped), the rest of its traffic
/// is not touched.
#[test]
fn syn_flood_is_held_to_its_threshold_while_the_shopper_is_served() -> Result<()> {
    let lab = Lab::new()?;
    let _agent = lab.start_agent(&lab.agent_config(PROTECT)?)?;
    let load = ShopperLoad::start(&lab.shopper.ns.name, &lab.url4("/product/1"));
    lab.syn_flood(4000)?;
    let decision = lab
        .wait_decision(&lab.attacker.v4.to_string(), Duration::from_secs(3))?
        .expect("the SYN flood is detected");
    assert_eq!(decision["detector"], "syn_flood");
    assert_eq!(decision["action"], "throttle");
    assert_eq!(decision["does"], "limits syn to 200/s", "{decision}");
    assert!(decision["observed"].as_u64() >= decision["threshold"].as_u64());
    assert!(
        decision["time_to_mitigate_ms"].as_f64().unwrap() < 1000.0,
        "{decision}"
    );
    assert!(
        lab.counter("throttled")? > 1000,
        "the rest of the flood was dropped"
    );
    assert_eq!(lab.counter("blocked_exact")?, 0, "nothing was banned");
    // Its other traffic, and new connections at a normal rate, go through.
    assert_eq!(
        lab.attacker
            .http_status_within(&lab.url4("/"), 200, Duration::from_secs(3)),
        200
    );
    let (ok, total) = load.finish();
    assert!(total > 0 && ok * 100 >= total * 99, "shopper: {ok}/{total}");
    // No benign source was touched.
    assert_eq!(lab.decisions()?.len(), 1);
    Ok(())
}

/// A port scan is dropped where it probes ports the storefront does not
/// serve; what it serves stays open to the address (which a scan with
/// decoys may have forged).
#[test]
fn port_scan_is_blinded() -> Result<()> {
    let lab = Lab::new()?;
    let _agent = lab.start_agent(&lab.agent_config(PROTECT)?)?;
    lab.attacker
        .ns
        .cmd("nmap")
        .args([
            "-sS",
            "-n",
            "-Pn",
            "-p",
            "1-300",
            "--max-retries",
            "0",
            "-T4",
        ])
        .arg(lab.storefront.v4.to_string())
        .output()?;
    let decision = lab
        .wait_decision(&lab.attacker.v4.to_string(), Duration::from_secs(3))?
        .expect("the scan is detected");
    assert_eq!(decision["detector"], "port_scan");
    // (A fast scan is many SYNs too: those may be limited as well.)
    assert!(
        decision["does"]
            .as_str()
            .unwrap()
            .starts_with("drops probe_unserved_port"),
        "{decision}"
    );
    // 8080 is open but not a served (tracked) port: a probe of it is dropped.
    let unserved = format!("http://{}:8080/", lab.storefront.v4);
    assert_eq!(lab.attacker.http_status(&unserved, None), 0);
    assert_eq!(lab.attacker.http_status(&lab.url4("/"), None), 200);
    assert_eq!(lab.shopper.http_status(&unserved, None), 200);
    Ok(())
}

/// The probe that found the defect: UDP "from" port 53 at 200/s forged with
/// a shopper's address got the shopper banned for ten minutes. The shopper
/// keeps shopping; the same flood from the attacker's own address is still
/// dropped.
#[test]
fn a_forged_flood_cannot_cut_a_shopper_off() -> Result<()> {
    let lab = Lab::new()?;
    let _agent = lab.start_agent(&lab.agent_config(PROTECT)?)?;
    let shopper = lab.shopper.v4.to_string();
    let load = ShopperLoad::start(&lab.shopper.ns.name, &lab.url4("/product/1"));
    let flood = |source: Option<&str>| -> Result<()> {
        let mut cmd = lab.attacker.ns.cmd("hping3");
        cmd.args([
            "-2", "-s", "53", "-k", "-p", "40000", "-i", "u5000", "-c", "400",
        ]);
        if let Some(s) = source {
            cmd.args(["-a", s]);
        }
        cmd.arg("-q").arg(lab.storefront.v4.to_string()).output()?;
        Ok(())
    };
    flood(Some(&shopper))?;
    flood(None)?;
    let (ok, total) = load.finish();
    let decisions = lab.decisions()?;
    let forged = decisions.iter().find(|d| d["target"] == shopper.as_str());
    let real = decisions
        .iter()
        .find(|d| d["target"] == lab.attacker.v4.to_string().as_str())
        .expect("the attacker's own flood is detected");
    assert_eq!(real["detector"], "reflection");
    assert_eq!(real["does"], "drops reflected_udp", "{real}");
    assert!(lab.counter("throttled")? > 100, "the floods were dropped");
    // The shopper's address was forged: at most its reflected UDP is dropped.
    if let Some(d) = forged {
        assert_eq!(d["does"], "drops reflected_udp", "{d}");
    }
    assert!(
        total > 20 && ok * 100 >= total * 99,
        "shopper: {ok}/{total}"
    );
    assert_eq!(lab.counter("blocked_exact")?, 0, "no address was banned");
    Ok(())
}

#[test]
fn flash_crowd_is_never_mitigated() -> Result<()> {
    let lab = Lab::new()?;
    let _agent = lab.start_agent(&lab.agent_config(PROTECT)?)?;
    // Many new shoppers at once: wrk opens 100 connections and fetches as fast
    // as it can for 3 s, from the shopper and from several more addresses.
    let mut crowd = Vec::new();
    for (i, host) in [&lab.shopper, &lab.attacker].into_iter().enumerate() {
        for j in 0..3 {
            let addr = format!("10.77.{}.{}", 20 + i, 10 + j);
            host.add_address(&addr)?;
        }
        crowd.push(
            host.ns
                .cmd("wrk")
                .args(["-t", "2", "-c", "50", "-d", "3s"])
                .arg(lab.url4("/"))
                .stdout(std::process::Stdio::null())
                .spawn()?,
        );
    }
    for mut c in crowd {
        c.wait()?;
    }
    // The crowd tripped the storefront's wires; the agent looked and decided
    // nothing.
    let events = lab.agent_caught_up()?;
    assert!(events > 0, "the crowd's traffic reached the detectors");
    assert!(lab.decisions()?.is_empty(), "{:?}", lab.decisions()?);
    assert_eq!(lab.shopper.http_status(&lab.url4("/"), None), 200);
    Ok(())
}

/// Replies to connections the storefront itself opened are never evidence:
/// a pool of 120 connections to an upstream (a payment API) answers with
/// SYN-ACKs to 120 ephemeral ports, and a busy resolver answers hundreds of
/// queries a second from port 53. Neither is a scan, a reflection or a
/// half-open flood, and the upstream is never mitigated.
#[test]
fn the_hosts_own_connections_never_get_their_peers_mitigated() -> Result<()> {
    let lab = Lab::new()?;
    let upstream = lab.add_host("up", "10.77.5.5".parse()?, "fd77::5:5".parse()?)?;
    let www = lab.workdir.join("upstream-www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), "{\"ok\":true}\n")?;
    let mut api = upstream.serve_http(&lab.workdir.join("upstream"), &www, &["80"])?;
    let mut dns = upstream.serve_dns("api.pay.test", "10.77.5.5")?;
    let _agent = lab.start_agent(&lab.agent_config(PROTECT)?)?;

    // The pool: 120 connections held open for 3 s, requests on each.
    let pool = lab
        .storefront
        .ns
        .cmd("wrk")
        .args(["-t", "2", "-c", "120", "-d", "3s", "http://10.77.5.5/"])
        .output()?;
    let report = String::from_utf8_lossy(&pool.stdout);
    let requests: u64 = report
        .lines()
        .find_map(|l| {
            l.trim().strip_suffix(" requests in").or_else(|| {
                l.split(" requests in")
                    .next()
                    .filter(|_| l.contains(" requests in"))
            })
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(requests > 1000, "the pool was served: {report}");

    // The resolver: up to 300 queries a second for 3 s on one connected
    // socket (fewer on a busy machine): every one answered.
    let answers = lab
        .storefront
        .ns
        .cmd("/usr/bin/python3")
        .arg("-c")
        .arg(DNS_CLIENT)
        .arg("10.77.5.5")
        .output()?;
    let counts: Vec<u32> = String::from_utf8_lossy(&answers.stdout)
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let (sent, answered) = match counts[..] {
        [sent, answered] => (sent, answered),
        _ => (0, 0),
    };
    eprintln!("the resolver answered {answered} of {sent} queries");
    assert!(
        sent >= 300 && answered * 100 >= sent * 95,
        "the resolver answered {answered} of {sent} queries: {}",
        String::from_utf8_lossy(&answers.stderr)
    );
    // The half-open detector read the socket table every second of the six
    // the pool and the resolver ran; every event the replies tripped is read.
    lab.agent_caught_up()?;
    let decisions = lab.decisions()?;
    let _ = (api.kill(), dns.kill(), api.wait(), dns.wait());
    assert!(decisions.is_empty(), "{decisions:?}");
    Ok(())
}

/// Sends DNS queries for api.pay.test at about 300 a second for 3 s from one
/// connected UDP socket (as the C library's resolver does); prints answers.
const DNS_CLIENT: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], 53))
s.settimeout(0.002)
name = b"".join(bytes([len(p)]) + p for p in b"api.pay.test".split(b".")) + b"\0"
answers, sent, end = 0, 0, time.time() + 3
def drain():
    global answers
    try:
        while True:
            s.recv(512)
            answers += 1
    except (socket.timeout, BlockingIOError):
        pass
while time.time() < end:
    sent += 1
    s.send(struct.pack(">HHHHHH", sent & 0xffff, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1))
    drain()
    time.sleep(0.0013)
# The answers still on their way.
s.settimeout(0.5)
drain()
print(sent, answers)
"#;

/// A flood from very many forged sources cannot blind detection: while
/// hping3 --rand-source floods the storefront, a real attacker's own flood is
/// still mitigated within a second of its first packet, and the agent's count
/// of lost events is the kernel's own.
#[test]
fn a_many_source_flood_does_not_blind_detection() -> Result<()> {
    let lab = Lab::new()?;
    let _agent = lab.start_agent(&lab.agent_config(PROTECT)?)?;
    let spoofer = lab.add_host("spoof", "10.77.70.7".parse()?, "fd77::70:7".parse()?)?;
    let mut spoofed = spoofer
        .ns
        .cmd("hping3")
        .args([
            "-S",
            "-p",
            "80",
            "--rand-source",
            "-i",
            "u50",
            "-c",
            "100000",
            "-q",
        ])
        .arg(lab.storefront.v4.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Under way: its packets trip the storefront's wires.
    eventually(Duration::from_secs(10), "the forged flood to trip", || {
        let status: serde_json::Value =
            serde_json::from_str(&lab.ensuresec(&["status", "-o", "json"])?)?;
        Ok((status["events_sent"].as_u64().unwrap_or(0) > 0).then_some(()))
    })?;
    lab.syn_flood(4000)?;
    let attacker = lab.attacker.v4.to_string();
    let decision = lab
        .wait_decision(&attacker, Duration::from_secs(3))?
        .expect("the real attacker is detected");
    assert_eq!(decision["detector"], "syn_flood");
    assert!(
        decision["time_to_mitigate_ms"].as_f64().unwrap() < 1000.0,
        "{decision}"
    );
    let _ = spoofed.kill();
    let _ = spoofed.wait();
    lab.agent_caught_up()?;
    let status: serde_json::Value =
        serde_json::from_str(&lab.ensuresec(&["status", "-o", "json"])?)?;
    // The agent reads the kernel's count once a second.
    let kernel = status["events_dropped"].as_u64().unwrap_or(0) as f64;
    let dropped = lab.metric("ensuresec_ringbuf_dropped_total")?;
    eventually(
        Duration::from_secs(3),
        "the dropped-event count to match",
        || Ok((lab.metric("ensuresec_ringbuf_dropped_total")? == kernel).then_some(())),
    )
    .map_err(|e| anyhow::anyhow!("{e}: the agent says {dropped}, the kernel {kernel}"))?;
    // No forged source was mitigated on its own: at most the storefront's
    // port got a budget.
    for d in lab.decisions()? {
        let target = d["target"].as_str().unwrap_or_default();
        assert!(
            target == attacker || target.contains(":80/tcp"),
            "a forged source was decided on: {d}"
        );
    }
    Ok(())
}
