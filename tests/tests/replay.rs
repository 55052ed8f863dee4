//! `replay` on captures nobody tuned for: a pcapng mixing VLAN and QinQ tags,
//! IPv4 fragments and IPv6, a Linux cooked capture, and real tcpdump captures
//! of a flood and of a service scan (both sides), each replayed into a fresh
//! lab with ensuresec running.

use std::{
    borrow::Cow,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result};
use ensuresec_tests::{capture, kernel::unique, lab::Lab, packet::*, wait::eventually};
use pcap_file::{
    DataLink,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketBlock, interface_description::InterfaceDescriptionBlock,
        },
    },
};

fn replay_bin() -> &'static str {
    env!("CARGO_BIN_EXE_replay")
}

/// Runs the replay binary; returns its JSON report.
fn replay(capture: &Path, speed: &str) -> Result<serde_json::Value> {
    let out = Command::new(replay_bin())
        .arg("--pcap")
        .arg(capture)
        .args(["--speed", speed])
        .output()
        .context("running replay (build it: cargo build -p ensuresec-tests)")?;
    anyhow::ensure!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn detected(report: &serde_json::Value, detector: &str, target: &str) -> bool {
    report["detections"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["detector"] == detector && d["target"] == target)
}

fn syn(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    ipv4(
        src,
        "198.51.100.80".parse().unwrap(),
        &V4Opts::default(),
        &L4::Tcp {
            sport,
            dport: 80,
            flags: TCP_SYN,
        },
    )
}

/// The ACK that completes the handshake `syn` opened.
fn handshake_ack(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    let mut b = L4::Tcp {
        sport,
        dport: 80,
        flags: TCP_ACK,
    }
    .bytes();
    b[4..8].copy_from_slice(&2u32.to_be_bytes());
    let l4 = L4::Raw { proto: 6, bytes: b };
    ipv4(
        src,
        "198.51.100.80".parse().unwrap(),
        &V4Opts::default(),
        &l4,
    )
}

/// A pcapng with a SYN flood behind a VLAN tag, a fragment flood behind QinQ,
/// an ICMPv6 flood and a trickle of ordinary web traffic, over 0.6 s.
fn mixed_pcapng(path: &Path) -> Result<()> {
    let mut w = PcapNgWriter::new(std::fs::File::create(path)?)?;
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0xffff,
        options: vec![],
    })?;
    let flooder: Ipv4Addr = "203.0.113.7".parse()?;
    let fragger: Ipv4Addr = "203.0.113.8".parse()?;
    let pinger: Ipv6Addr = "2001:db8:66::9".parse()?;
    for i in 0..3000u32 {
        // From ever-changing ports: a flood, not one service's answers.
        let udp = L4::Udp {
            sport: 5000 + (i % 1000) as u16,
            dport: 9999,
            payload: vec![0; 8],
        };
        let t = Duration::from_micros(1_000_000_000 + i as u64 * 200);
        let mut frames = vec![frame(
            &[(ETH_P_8021Q, 42)],
            syn(flooder, 1024 + (i % 60000) as u16),
        )];
        let frag = V4Opts {
            frag: if i % 2 == 0 { 0x2000 } else { 3 },
            ..Default::default()
        };
        frames.push(frame(
            &[(ETH_P_8021AD, 100), (ETH_P_8021Q, 7)],
            ipv4(fragger, "198.51.100.80".parse()?, &frag, &udp),
        ));
        if i % 4 == 0 {
            frames.push(frame(
                &[],
                ipv6(pinger, "2001:db8::80".parse()?, &[], &L4::Icmpv6Echo),
            ));
        }
        if i % 100 == 0 {
            // Each connection completed: its SYN (sequence number 1), then
            // the handshake's ACK.
            let client = "192.0.2.50".parse()?;
            let sport = 40000 + i as u16 / 100;
            frames.push(frame(&[], syn(client, sport)));
            frames.push(frame(&[], handshake_ack(client, sport)));
        }
        for f in frames {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: t,
                original_len: f.len() as u32,
                data: Cow::Owned(f),
                options: vec![],
            })?;
        }
    }
    Ok(())
}

#[test]
fn pcapng_with_vlans_fragments_and_ipv6() -> Result<()> {
    let dir = std::env::temp_dir().join(unique("cap"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("mixed.pcapng");
    mixed_pcapng(&path)?;
    let r = replay(&path, "max")?;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(r["sources"], 4, "{r}");
    assert!(r["packets_replayed"].as_u64().unwrap() >= 6000, "{r}");
    assert!(
        detected(&r, "syn_flood", "203.0.113.7"),
        "SYN flood behind a VLAN tag: {r}"
    );
    assert!(
        detected(&r, "fragment_flood", "203.0.113.8"),
        "fragments behind QinQ: {r}"
    );
    assert!(
        detected(&r, "icmp_flood", "2001:db8:66::9"),
        "ICMPv6 flood: {r}"
    );
    assert!(
        !r["detections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["target"] == "192.0.2.50"),
        "a normal client: {r}"
    );
    let decisions = r["decisions"].as_array().unwrap();
    assert!(
        decisions
            .iter()
            .all(|d| d["ttl_seconds"].as_u64().unwrap() > 0)
    );
    Ok(())
}

#[test]
fn linux_cooked_capture_at_recorded_timing() -> Result<()> {
    let dir = std::env::temp_dir().join(unique("cap"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("cooked.pcap");
    let header = PcapHeader {
        datalink: DataLink::LINUX_SLL,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(&path)?, header)?;
    let scanner: Ipv4Addr = "203.0.113.99".parse()?;
    // A port scan over 0.5 s, recorded as a `tcpdump -i any` would.
    for port in 1..=400u16 {
        let ip = ipv4(
            scanner,
            "198.51.100.80".parse()?,
            &V4Opts::default(),
            &L4::Tcp {
                sport: 50000,
                dport: port,
                flags: TCP_SYN,
            },
        );
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
        sll.extend(0x0800u16.to_be_bytes());
        sll.extend(&ip);
        let t = Duration::from_micros(1_700_000_000_000_000 + port as u64 * 1250);
        w.write_packet(&PcapPacket::new(t, sll.len() as u32, &sll))?;
    }
    drop(w);
    let r = replay(&path, "recorded")?;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(r["packets_replayed"], 400, "{r}");
    assert!(detected(&r, "port_scan", "203.0.113.99"), "{r}");
    let after = r["detections"][0]["seconds_after_start"].as_f64().unwrap();
    assert!(after < 5.0, "detected while the scan played: {r}");
    Ok(())
}

/// Records what the storefront's interface sees of `filter` (whole packets)
/// while `run` runs, until the file `holds` what was sent; returns its path.
fn record(
    lab: &Lab,
    name: &str,
    filter: &str,
    run: impl FnOnce() -> Result<()>,
    holds: impl Fn(&[u8]) -> bool,
) -> Result<PathBuf> {
    let path = lab.workdir.join(name);
    let mut dump = lab
        .storefront
        .ns
        .cmd("tcpdump")
        .args(["-i", "eth0", "-w"])
        .arg(&path)
        .args(["-U", "--immediate-mode", "-s", "0", filter])
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // tcpdump writes the file's header once it captures.
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    eventually(Duration::from_secs(10), "tcpdump to start", || {
        Ok((size(&path) >= 24).then_some(()))
    })?;
    let ran = run().and_then(|()| {
        // Packet-buffered (-U): the file grows until the last packets are in.
        eventually(
            Duration::from_secs(10),
            "the capture to hold it all",
            || Ok(std::fs::read(&path).is_ok_and(|b| holds(&b)).then_some(())),
        )
    });
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(dump.id() as i32, libc::SIGINT) };
    dump.wait()?;
    ran.map(|()| path)
}

#[test]
fn a_real_tcpdump_capture_of_an_attack() -> Result<()> {
    // Record hping3 in one lab, replay the recording into another.
    let lab = Lab::new()?;
    let path = record(
        &lab,
        "real.pcap",
        "udp",
        || {
            lab.attacker
                .ns
                .cmd("hping3")
                .args(["--udp", "-p", "9999", "-i", "u10", "-c", "8000", "-q"])
                .arg(lab.storefront.v4.to_string())
                .output()?;
            Ok(())
        },
        |bytes| bytes.len() > 4000 * 60,
    )?;
    // hping3's pace depends on the machine (2,000 to 20,000 packets a
    // second here); ten times its recorded pace is a flood on any of them.
    let r = replay(&path, "10")?;
    assert!(r["packets_replayed"].as_u64().unwrap() > 4000, "{r}");
    assert!(
        detected(&r, "udp_flood", &lab.attacker.v4.to_string()),
        "{r}"
    );
    Ok(())
}

/// A service scan of a web server captured with both sides: replayed, only
/// the scanner's side is sent (the storefront answers for itself), and its
/// HTTP requests reach the application layer through the access log the
/// agent follows, which names the tool. At the packet level the scan looks
/// like a browser's few connections.
#[test]
fn a_captured_service_scan_reaches_the_application_layer() -> Result<()> {
    let lab = Lab::new()?;
    let scanner = lab.attacker.v4.to_string();
    let path = record(
        &lab,
        "scan.pcap",
        "tcp port 80",
        || {
            lab.attacker
                .ns
                .cmd("timeout")
                .args(["60", "nmap", "-sV", "-n", "-Pn", "-p", "80"])
                .arg(lab.storefront.v4.to_string())
                .output()?;
            Ok(())
        },
        // The scan's last requests name the tool.
        |bytes| memchr::memmem::find(bytes, b"Nmap Scripting Engine").is_some(),
    )?;
    let frames = capture::read(&path)?;
    let from_storefront = frames
        .iter()
        .filter_map(capture::to_ethernet)
        .filter_map(|f| capture::locate(&f))
        .filter(|at| at.src == std::net::IpAddr::V4(lab.storefront.v4))
        .count();
    assert!(from_storefront > 0, "the capture holds the server's side");
    let r = replay(&path, "recorded")?;
    assert_eq!(
        r["answers_left_out"].as_u64(),
        Some(from_storefront as u64),
        "every frame of the server's side is left out: {r}"
    );
    assert!(r["requests_logged"].as_u64().unwrap() > 0, "{r}");
    assert!(
        detected(&r, "attack_tool", &scanner) || detected(&r, "scanner", &scanner),
        "{r}"
    );
    Ok(())
}

#[test]
fn bad_captures_are_refused_with_a_reason() -> Result<()> {
    let dir = std::env::temp_dir().join(unique("cap"));
    std::fs::create_dir_all(&dir)?;
    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture")?;
    let out = Command::new(replay_bin())
        .arg("--pcap")
        .arg(&junk)
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap"));
    let out = Command::new(replay_bin())
        .args(["--pcap", "/nonexistent.pcap"])
        .output()?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.pcap"));
    let out = Command::new(replay_bin())
        .arg("--pcap")
        .arg(&junk)
        .args(["--speed", "fast"])
        .output()?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("`fast`"));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
