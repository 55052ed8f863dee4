//! Answers nobody asked for: reflected UDP from a service port or from a
//! port on no list, SYN-ACKs to our spoofed address, and spoofed SYNs to a
//! port the storefront does not serve.

use super::catalogue::{Attack, Scenario, base, hping, n};

pub(super) fn scenarios(fast: bool) -> Vec<Scenario> {
    let n = |full: u32| n(fast, full);
    let base = |name, about, attack| base(fast, name, about, attack);
    vec![
        base(
            "reflection",
            "UDP from port 123 as amplified NTP replies arrive",
            hping(
                "reflection",
                &[
                    "--udp",
                    "-s",
                    "123",
                    "-k",
                    "-p",
                    "40000",
                    "-i",
                    "u1000",
                    "-c",
                    &n(8_000),
                ],
            ),
        ),
        base(
            "reflection-burst",
            "UDP from source port 27015 (on no list) out of random spoofed sources, one packet each, to a closed port: a burst under half a second, answered by a filter on the storefront",
            Some(Attack {
                decision_on: Some("{target}:*/udp"),
                ..hping(
                    "reflection",
                    &[
                        "--udp",
                        "-s",
                        "27015",
                        "-k",
                        "-p",
                        "41000",
                        "-d",
                        "400",
                        "--rand-source",
                        "-i",
                        "u100",
                        "-c",
                        &n(8_000),
                    ],
                )
                .expect("an attack")
            }),
        ),
        base(
            "spoofed-syn-unserved",
            "hping3 SYNs from random spoofed sources at about 330/s, far below the aggregate threshold, to a port the storefront does not serve: a filter of probes to unserved ports",
            Some(Attack {
                decision_on: Some("{target}:*/tcp"),
                ..hping(
                    "syn_flood",
                    &[
                        "-S",
                        "-p",
                        "30120",
                        "--rand-source",
                        "-i",
                        "u3000",
                        "-c",
                        &n(4_000),
                    ],
                )
                .expect("an attack")
            }),
        ),
        base(
            "synack-reflection",
            "unsolicited SYN-ACKs: our address spoofed in someone else's SYN flood",
            hping(
                "synack_reflection",
                &["-S", "-A", "-p", "80", "-i", "u1000", "-c", &n(8_000)],
            ),
        ),
    ]
}
