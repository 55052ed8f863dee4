//! The anomaly models in the agent, in the lab: a UDP flood under every
//! threshold detector's rate is flagged by the per-source model alone, with
//! its evidence, while the shopper is left alone; a TCP Xmas flood (FIN, PSH
//! and URG) from random one-packet sources, which no source's vector holds,
//! is flagged at the storefront by the aggregate model at its own threshold;
//! a broken model file is reported and the threshold detectors keep
//! working; a good file copied over it is picked up live.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use ensuresec_tests::{
    lab::{Lab, ShopperLoad},
    wait::eventually,
};

const PROTECT: &str =
    "[[protect]]\nprefix = \"10.77.0.0/16\"\n[[protect]]\nprefix = \"fd77::/64\"\n";

fn committed_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/ensuresec-ae.onnx")
}

fn committed_aggregate_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/ensuresec-aggregate-ae.onnx")
}

fn ml_config(model: &Path) -> String {
    format!("{PROTECT}\n[ml]\nmodel = \"{}\"\n", model.display())
}

/// The per-source model's threshold set by an operator who knows their
/// traffic: the model's own is raised for benign kinds it never saw, far
/// above any flood here (see the model card's margin). This one is well
/// above the 0.999 quantile of the lab's benign validation windows (about
/// 0.4, the unraised threshold in `models/MODEL_CARD.md`'s margin section),
/// which a browsing shopper stays under.
const OPERATOR_THRESHOLD: &str = "threshold = 1.0\n";

fn status(lab: &Lab) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(
        &lab.ensuresec(&["status", "-o", "json"])?,
    )?)
}

/// Waits until `check` holds on the agent's status, or fails with the last one.
fn wait_status(
    lab: &Lab,
    within: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + within;
    loop {
        let s = status(lab)?;
        if check(&s) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!(
                "status never matched: {} {}",
                s["anomaly_model"],
                s["aggregate_model"]
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The shopper browsing the storefront until `finish`.
fn browse(lab: &Lab) -> ShopperLoad {
    ShopperLoad::browse(
        &lab.shopper.ns.name,
        None,
        ["/", "/product/1", "/cart", "/checkout"]
            .iter()
            .map(|p| lab.url4(p))
            .collect(),
    )
}

/// About 2,000 FIN+PSH+URG packets a second for up to 6 s at the storefront,
/// each from a random address.
fn xmas_flood(lab: &Lab) -> Result<std::process::Child> {
    let mut cmd = lab.attacker.ns.cmd("hping3");
    cmd.args([
        "-F",
        "-P",
        "-U",
        "-p",
        "80",
        "-i",
        "u500",
        "-c",
        "12000",
        "-q",
        "--rand-source",
    ]);
    Ok(cmd
        .arg(lab.storefront.v4.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?)
}

/// UDP from one source at about 2,000 packets a second, to a closed port:
/// under `udp_flood`'s 5,000, and decided by no threshold detector (the
/// test asserts the decision is the model's).
fn udp_stream(lab: &Lab) -> Result<std::process::Child> {
    Ok(lab
        .attacker
        .ns
        .cmd("hping3")
        .args(["--udp", "-p", "9999", "-i", "u500", "-c", "12000", "-q"])
        .arg(lab.storefront.v4.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?)
}

#[test]
fn a_flood_no_threshold_detector_decides_is_flagged_by_the_per_source_model() -> Result<()> {
    let lab = Lab::new()?;
    let config = format!("{}{OPERATOR_THRESHOLD}", ml_config(&committed_model()));
    let agent = lab.start_agent(&lab.agent_config(&config)?)?;
    wait_status(&lab, Duration::from_secs(10), |s| {
        s["anomaly_model"]["state"] == "loaded"
    })?;
    let shopper = lab.shopper.v4.to_string();
    let load = browse(&lab);
    // The model scores the shoppers' steps before the attack begins.
    wait_status(&lab, Duration::from_secs(10), |s| {
        s["anomaly_model"]["scored"].as_u64().unwrap_or(0) >= 2
    })?;
    let mut flood = udp_stream(&lab)?;
    let attacker = lab.attacker.v4.to_string();
    let decision = lab.wait_decision(&attacker, Duration::from_secs(8))?;
    let _ = flood.kill();
    let _ = flood.wait();
    let (ok, total) = load.finish();
    let decision = decision.unwrap_or_else(|| {
        panic!(
            "the UDP flood was not flagged; decisions {:?}\n{}",
            lab.decisions(),
            agent.log_text()
        )
    });
    assert_eq!(decision["detector"], "ml", "{decision}");
    // The default action: alert only, nothing enforced.
    assert_eq!(decision["action"], "alert", "{decision}");
    let evidence = decision["evidence"].as_str().unwrap_or_default();
    assert!(evidence.starts_with("score "), "{evidence}");
    assert!(
        evidence.contains("> 1.0000"),
        "the operator's threshold: {evidence}"
    );
    assert!(evidence.contains('%'), "top features named: {evidence}");
    assert!(
        lab.decisions()?
            .iter()
            .all(|d| d["target"] != shopper.as_str()),
        "the shopper was flagged: {:?}",
        lab.decisions()
    );
    assert!(total > 0 && ok * 100 >= total * 99, "shopper: {ok}/{total}");
    let metrics = lab.metrics()?;
    assert!(metrics.contains("ensuresec_ml_scores_count"), "{metrics}");
    assert!(metrics.contains("ensuresec_ml_model_info{"), "{metrics}");
    let s = status(&lab)?;
    assert!(s["anomaly_model"]["flagged"].as_u64() >= Some(1), "{s}");
    Ok(())
}

#[test]
fn a_flood_of_one_packet_sources_is_flagged_by_the_aggregate_model() -> Result<()> {
    let lab = Lab::new()?;
    // The model's own threshold, raised for benign mixes it never saw (see
    // the model card): one keep-alive shopper beside the visitors is such a
    // mix, and a flood of one-packet sources is far beyond it.
    let config = format!(
        "{PROTECT}\n[ml]\naggregate_model = \"{}\"\n",
        committed_aggregate_model().display()
    );
    let agent = lab.start_agent(&lab.agent_config(&config)?)?;
    wait_status(&lab, Duration::from_secs(10), |s| {
        s["aggregate_model"]["state"] == "loaded" && s["anomaly_model"].is_null()
    })?;
    // A shopper and the lab's visitors of six habits.
    let visitors = ensuresec_tests::visitors::start(&lab)?;
    let load = browse(&lab);
    // The storefront's benign windows are scored, and not flagged.
    wait_status(&lab, Duration::from_secs(10), |s| {
        s["aggregate_model"]["scored"].as_u64().unwrap_or(0) >= 3
    })?;
    assert!(lab.decisions()?.is_empty(), "{:?}", lab.decisions());
    // Each packet from a random address: below every threshold of a
    // destination, and one packet per source.
    let mut flood = xmas_flood(&lab)?;
    let storefront = format!("{}:", lab.storefront.v4);
    let found = eventually(
        Duration::from_secs(8),
        "an ml_aggregate decision on the storefront",
        || {
            Ok(lab.decisions()?.into_iter().find(|d| {
                d["detector"] == "ml_aggregate"
                    && d["target"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with(&storefront)
            }))
        },
    );
    let _ = flood.kill();
    let _ = flood.wait();
    let (ok, total) = load.finish();
    ensuresec_tests::visitors::stop(visitors);
    let decision = found.unwrap_or_else(|e| {
        panic!(
            "{e:#}; decisions {:?}\n{}",
            lab.decisions(),
            agent.log_text()
        )
    });
    assert_eq!(decision["action"], "alert", "{decision}");
    let evidence = decision["evidence"].as_str().unwrap_or_default();
    eprintln!("the flood at the storefront: {evidence}");
    assert!(evidence.starts_with("score "), "{evidence}");
    assert!(
        evidence.contains("fresh_share"),
        "first-time sources named: {evidence}"
    );
    assert!(
        lab.decisions()?
            .iter()
            .all(|d| d["detector"] == "ml_aggregate"),
        "only the model decided: {:?}",
        lab.decisions()
    );
    assert!(total > 0 && ok * 100 >= total * 99, "shopper: {ok}/{total}");
    assert!(
        lab.metrics()?
            .contains("ensuresec_ml_model_loaded{model=\"aggregate\"} 1")
    );
    Ok(())
}

#[test]
fn a_broken_model_is_reported_and_a_good_one_is_picked_up_live() -> Result<()> {
    let lab = Lab::new()?;
    let path = lab.workdir.join("model.onnx");
    std::fs::write(&path, "this is not an ONNX model\n")?;
    let _agent = lab.start_agent(&lab.agent_config(&ml_config(&path))?)?;
    let s = wait_status(&lab, Duration::from_secs(10), |s| {
        s["anomaly_model"]["state"] == "error"
    })?;
    let error = s["anomaly_model"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("not a usable ONNX model"), "{error}");
    assert!(error.contains("model.onnx"), "{error}");
    let metrics = lab.metrics()?;
    assert!(
        metrics.contains("ensuresec_ml_model_errors_total{kind=\"not_onnx\",model=\"source\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ensuresec_ml_model_loaded{model=\"source\"} 0"),
        "{metrics}"
    );
    // The agent's health says so, in status and metrics.
    let refused = |s: &serde_json::Value| {
        s["health"]["issues"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["what"] == "model_refused"))
    };
    wait_status(&lab, Duration::from_secs(10), refused)?;
    assert!(
        lab.ensuresec(&["status"])?
            .contains("health: model_refused: anomaly model")
    );

    // The threshold detectors go on: a SYN flood is banned.
    lab.syn_flood(4000)?;
    let d = lab
        .wait_decision(&lab.attacker.v4.to_string(), Duration::from_secs(3))?
        .expect("the SYN flood is detected without the model");
    assert_eq!(d["detector"], "syn_flood");

    // A good model replaces the file (as a deploy would: write, then rename).
    let tmp = lab.workdir.join("model.onnx.new");
    std::fs::copy(committed_model(), &tmp)?;
    std::fs::rename(&tmp, &path)?;
    let s = wait_status(&lab, Duration::from_secs(10), |s| {
        s["anomaly_model"]["state"] == "loaded" && !refused(s) && s["health"].is_object()
    })?;
    assert!(
        s["anomaly_model"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("ae15-")),
        "{s}"
    );
    assert!(
        lab.metrics()?
            .contains("ensuresec_ml_model_loaded{model=\"source\"} 1")
    );
    Ok(())
}
