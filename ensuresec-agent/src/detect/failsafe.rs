//! Fail-safe protection per storefront: while one of its incidents is open
//! (the responder says so), the engine judges traffic to its addresses and
//! the application detectors judge its clients by a tighter profile, and
//! the engine budgets its new connections. One switch per storefront, shared
//! by the engine and the application pipeline.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use ensuresec_common::{decisions::Detector, entry::Target};

use super::detector::Detectors;
use crate::app::{
    detect::config::AppDetectors,
    settings::{AppSettings, FailsafeConfig},
};

/// A storefront's validated `[storefront.failsafe]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Incident kinds that turn it on; all when empty.
    pub on: Vec<String>,
    pub per_source_scale: f64,
    pub new_connections: Option<u32>,
    pub ports: Vec<u16>,
    pub login_failures: Option<u32>,
    pub max_on: std::time::Duration,
}

impl Profile {
    pub fn validate(storefront: &str, c: &FailsafeConfig) -> Result<Self, String> {
        let what = |field: &str| format!("storefront {storefront}: failsafe.{field}");
        if !(c.per_source_scale > 0.0 && c.per_source_scale <= 1.0) {
            return Err(format!(
                "{} = {} must be above 0 and at most 1",
                what("per_source_scale"),
                c.per_source_scale
            ));
        }
        for kind in &c.on {
            kind.parse::<crate::respond::incidents::IncidentKind>()
                .map_err(|e| format!("{}: {e}", what("on")))?;
        }
        if c.new_connections_per_second == Some(0) {
            return Err(format!(
                "{} must be at least 1",
                what("new_connections_per_second")
            ));
        }
        if c.login_failures == Some(0) {
            return Err(format!("{} must be at least 1", what("login_failures")));
        }
        if c.new_connections_per_second.is_some() && (c.ports.is_empty() || c.ports.contains(&0)) {
            return Err(format!("{} must list ports 1-65535", what("ports")));
        }
        Ok(Profile {
            on: c.on.clone(),
            per_source_scale: c.per_source_scale,
            new_connections: c.new_connections_per_second,
            ports: c.ports.clone(),
            login_failures: c.login_failures,
            max_on: c.max_on,
        })
    }

    fn scaled(&self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        ((n as f64 * self.per_source_scale).round() as u32).clamp(1, n)
    }

    /// The network detectors for its addresses while on.
    pub fn network(&self, base: &Detectors) -> Detectors {
        let mut d = *base;
        for detector in Detector::ALL {
            let c = d.get_mut(detector);
            c.per_source = self.scaled(c.per_source);
        }
        d
    }

    /// Its application detectors while on.
    pub fn app(&self, base: &AppDetectors) -> AppDetectors {
        let mut d = *base;
        for detector in Detector::APP {
            let mut c = *d.get(detector);
            c.per_source = self.scaled(c.per_source);
            c.distinct = self.scaled(c.distinct).max(c.distinct.min(2));
            if detector == Detector::CredentialStuffing
                && let Some(n) = self.login_failures
            {
                c.per_source = n;
                c.distinct = c.distinct.min(n);
            }
            d.set(detector, c);
        }
        d
    }
}

struct Front {
    name: Arc<str>,
    profile: Option<Profile>,
    on: Arc<AtomicBool>,
}

pub struct Failsafe {
    fronts: Vec<Front>,
    /// Each storefront's addresses and prefixes (index into `fronts`).
    addresses: Vec<(Target, usize)>,
}

impl Failsafe {
    pub fn new(app: &AppSettings) -> Arc<Self> {
        Arc::new(Failsafe {
            fronts: app
                .storefronts
                .iter()
                .zip(&app.failsafe)
                .map(|((name, _), profile)| Front {
                    name: name.clone(),
                    profile: profile.clone(),
                    on: Arc::new(AtomicBool::new(false)),
                })
                .collect(),
            addresses: app.addresses.clone(),
        })
    }

    /// How many storefronts there are.
    pub fn len(&self) -> usize {
        self.fronts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fronts.is_empty()
    }

    pub fn index(&self, storefront: &str) -> Option<usize> {
        self.fronts.iter().position(|f| *f.name == *storefront)
    }

    pub fn name(&self, i: usize) -> &str {
        &self.fronts[i].name
    }

    pub fn profile(&self, i: usize) -> Option<&Profile> {
        self.fronts.get(i)?.profile.as_ref()
    }

    pub fn is_on(&self, i: usize) -> bool {
        self.fronts
            .get(i)
            .is_some_and(|f| f.on.load(Ordering::Relaxed))
    }

    /// Turns storefront `i`'s profile on or off; whether that changed it.
    pub fn set(&self, i: usize, on: bool) -> bool {
        self.fronts
            .get(i)
            .filter(|f| f.profile.is_some())
            .is_some_and(|f| f.on.swap(on, Ordering::Relaxed) != on)
    }

    /// The switch of storefront `i`, for the application detectors.
    pub fn switch(&self, i: usize) -> Option<(Arc<AtomicBool>, &Profile)> {
        let f = self.fronts.get(i)?;
        Some((f.on.clone(), f.profile.as_ref()?))
    }

    /// The addresses and prefixes storefront `i` is served on, as written.
    pub fn targets_of(&self, i: usize) -> Vec<String> {
        self.addresses
            .iter()
            .filter(|(_, f)| *f == i)
            .map(|(t, _)| t.to_string())
            .collect()
    }

    /// The exact addresses storefront `i` is served on (budgets are kept
    /// per address).
    pub fn exact_addresses(&self, i: usize) -> impl Iterator<Item = IpAddr> + '_ {
        self.addresses
            .iter()
            .filter(move |(t, f)| *f == i && !t.is_prefix())
            .filter_map(|(t, _)| t.addr())
    }

    /// The detectors for traffic to `dst`: the profile's, when `dst` is a
    /// storefront's whose fail-safe is on.
    pub fn network(&self, dst: IpAddr, base: &Detectors) -> Option<Detectors> {
        let (_, i) = self
            .addresses
            .iter()
            .filter(|(t, _)| t.contains(dst))
            .max_by_key(|(t, _)| t.prefix_len())?;
        self.is_on(*i)
            .then(|| self.fronts[*i].profile.as_ref())
            .flatten()
            .map(|p| p.network(base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> FailsafeConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_profile_scales_per_source_thresholds_and_sets_login_failures() {
        let p =
            Profile::validate("s", &config("login_failures = 3\nper_source_scale = 0.25")).unwrap();
        let net = p.network(&Detectors::default());
        let base = Detectors::default();
        assert_eq!(net.get(Detector::SynFlood).per_source, 50);
        assert_eq!(
            net.get(Detector::SynFlood).aggregate,
            base.get(Detector::SynFlood).aggregate,
            "aggregates stay"
        );
        assert_eq!(net.get(Detector::Ml).per_source, 0, "off stays off");
        let app = p.app(&AppDetectors::default());
        let stuffing = app.get(Detector::CredentialStuffing);
        assert_eq!((stuffing.per_source, stuffing.distinct), (3, 2));
        assert_eq!(
            app.get(Detector::AccountTakeover).per_source,
            1,
            "never below one"
        );
    }

    #[test]
    fn a_bad_profile_is_named() {
        for (text, names) in [
            ("per_source_scale = 0.0", "per_source_scale"),
            ("per_source_scale = 1.5", "per_source_scale"),
            (
                "on = [\"earthquake\"]",
                "`earthquake` is not an incident kind",
            ),
            ("login_failures = 0", "login_failures"),
            (
                "new_connections_per_second = 0",
                "new_connections_per_second",
            ),
            ("new_connections_per_second = 9\nports = []", "ports"),
        ] {
            let e = Profile::validate("shop-a", &config(text)).unwrap_err();
            assert!(
                e.contains("storefront shop-a: failsafe") && e.contains(names),
                "{text}: {e}"
            );
        }
    }
}
