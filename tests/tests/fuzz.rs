//! The fuzzer at CI size: a million random and mutated frames, every
//! verdict and every reason's count as the reference says (`cargo xtask fuzz`
//! runs more).

#[test]
fn a_million_frames_agree_with_the_reference() {
    let seed = std::env::var("ENSURESEC_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let report = ensuresec_tests::fuzz::run(1_000_000, seed).expect("the fuzzer ran");
    assert!(
        report.clean(),
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    assert_eq!(report.packets, 1_000_000);
    // The frames reached every kind of outcome, not only the easy ones.
    for reason in [
        "passed",
        "blocked_exact",
        "blocked_cidr",
        "allowlisted",
        "port_policy",
        "port_unreadable",
        "orphan_fragment",
        "fragment",
        "truncated_tcp",
        "too_many_ipv6_ext",
    ] {
        assert!(
            report.reasons.get(reason).copied().unwrap_or(0) > 0,
            "no frame ended as {reason}: {:?}",
            report.reasons
        );
    }
}
