//! Every lab scenario, shortened: each attack (hping3, nmap, masscan, t50,
//! slowhttptest) is detected by its detector and its packets dropped, shoppers
//! keep at least 99 % success, and benign scenarios (browsing, a flash crowd)
//! lead to no decision at all.

use std::sync::Mutex;

use ensuresec_tests::scenarios;

/// One scenario at a time: a flood is judged by the rate a real tool
/// reaches, and two labs sharing a 2-core machine each get half of it.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn scenario(name: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = scenarios::find(name, true).expect("scenario exists");
    let report = scenarios::run(&s).expect("scenario ran");
    if let Err(e) = scenarios::check(&s, &report) {
        panic!(
            "{e:#}\n{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    }
}

macro_rules! scenario_tests {
    ($($test:ident => $name:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            scenario($name);
        }
    )*};
}

scenario_tests! {
    browsing => "browsing",
    flash_crowd => "flash-crowd",
    syn_flood => "syn-flood",
    udp_flood => "udp-flood",
    icmp_flood => "icmp-flood",
    ack_flood => "ack-flood",
    fragment_flood => "fragment-flood",
    reflection => "reflection",
    reflection_burst => "reflection-burst",
    synack_reflection => "synack-reflection",
    port_scan => "port-scan",
    masscan => "masscan",
    host_sweep => "host-sweep",
    service_scan => "service-scan",
    slow_syn => "slow-syn",
    slow_scan => "slow-scan",
    slowloris => "slowloris",
    t50_flood => "t50-flood",
    spoofed_syn_flood => "spoofed-syn-flood",
    spoofed_syn_unserved => "spoofed-syn-unserved",
    many_sources => "many-sources",
}

#[test]
fn every_scenario_has_a_test() {
    let names: Vec<&str> = scenarios::all(true).iter().map(|s| s.name).collect();
    let source = include_str!("lab_detectors.rs");
    for n in names {
        assert!(
            source.contains(&format!("=> \"{n}\"")),
            "scenario {n} has no test"
        );
    }
}
