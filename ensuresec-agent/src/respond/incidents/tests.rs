use ensuresec_common::decisions::Detector;

use super::*;

fn seen(
    storefront: &str,
    detector: Detector,
    source: &str,
    enforced: bool,
    at_ms: u64,
) -> Observation {
    Observation {
        storefront: storefront.into(),
        kind: IncidentKind::of(detector).unwrap(),
        detector,
        source: Some(source.into()),
        enforced,
        accounts: Vec::new(),
        destinations: Vec::new(),
        evidence: format!("{} from {source}", detector.name()),
        at_ms,
    }
}

#[test]
fn decisions_group_by_storefront_and_kind_and_resolve_when_quiet() {
    let mut t = Tracker::new(60_000, Vec::new());
    let (c, i) = t.observe(&seen(
        "shop-a",
        Detector::SynFlood,
        "192.0.2.1",
        false,
        1000,
    ));
    assert_eq!((c, i.state), (Change::Opened, State::Open));
    let (c, i) = t.observe(&seen("shop-a", Detector::UdpFlood, "192.0.2.2", true, 2000));
    assert_eq!(
        (c, i.state),
        (Change::Mitigating, State::Mitigating),
        "one flood incident"
    );
    assert_eq!(i.sources_total, 2);
    assert_eq!(i.detectors.len(), 2);
    let (c, _) = t.observe(&seen("shop-a", Detector::PortScan, "192.0.2.3", true, 3000));
    assert_eq!(c, Change::Opened, "a scan is another incident");
    let (c, _) = t.observe(&seen("shop-b", Detector::SynFlood, "192.0.2.1", true, 3000));
    assert_eq!(c, Change::Opened, "another storefront's");
    assert_eq!(t.open().count(), 3);
    assert!(t.tick(61_000).is_empty(), "the flood was seen at 2 s");
    let resolved = t.tick(62_000);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].kind, IncidentKind::Flood);
    assert_eq!(resolved[0].resolved_ms, Some(62_000));
    let (c, i) = t.observe(&seen(
        "shop-a",
        Detector::SynFlood,
        "192.0.2.9",
        false,
        70_000,
    ));
    assert_eq!(
        (c, i.sources_total),
        (Change::Opened, 1),
        "after it resolved, a new one"
    );
}

#[test]
fn accounts_and_sources_are_kept_bounded_and_counted() {
    let mut t = Tracker::new(60_000, Vec::new());
    for n in 0..(model_max() + 10) {
        let mut o = seen(
            "shop",
            Detector::CredentialStuffing,
            &format!("10.0.{}.{}", n / 256, n % 256),
            true,
            1,
        );
        o.accounts = vec![format!("acct-{n}")];
        t.observe(&o);
    }
    let mut o = seen("shop", Detector::AccountTakeover, "10.9.9.9", true, 2);
    o.accounts = vec!["acct-victim".into()];
    let (_, i) = t.observe(&o);
    assert_eq!(i.kind, IncidentKind::CredentialStuffing);
    assert_eq!(i.sources_total as usize, model_max() + 11);
    assert_eq!(i.sources.len(), model_max());
    assert_eq!(i.accounts_tried.len(), model_max());
    assert!(i.accounts_taken_over.contains("acct-victim"));
}

fn model_max() -> usize {
    super::model::MAX_LISTED
}

#[test]
fn incidents_left_open_are_resumed() {
    let mut open = Incident::new("shop".into(), IncidentKind::Scan, 5);
    open.id = 7;
    let mut done = Incident::new("shop".into(), IncidentKind::Flood, 5);
    done.state = State::Resolved;
    let mut t = Tracker::new(60_000, vec![open, done]);
    let (c, i) = t.observe(&seen("shop", Detector::PortScan, "192.0.2.1", true, 10));
    assert_eq!((c, i.id), (Change::Mitigating, 7));
    let (c, _) = t.observe(&seen("shop", Detector::SynFlood, "192.0.2.1", true, 10));
    assert_eq!(c, Change::Opened);
}
