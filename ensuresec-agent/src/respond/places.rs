//! Which storefront a decision's attack was aimed at: the one an
//! application detector named; else the storefront served on the attacked
//! address; else the protected prefix that holds it; else the host.

use std::{net::IpAddr, sync::Arc};

use ensuresec_common::entry::Target;

use crate::{config::Validated, detect::outcome::Place};

/// The name of incidents no storefront or prefix claims.
pub const HOST: &str = "host";

#[derive(Clone, Debug, Default)]
pub struct Places {
    names: Vec<Arc<str>>,
    /// Each storefront's addresses and prefixes (index into `names`).
    served: Vec<(Target, usize)>,
    protected: Vec<Target>,
}

impl Places {
    pub fn new(config: &Validated) -> Self {
        Places {
            names: config
                .app
                .storefronts
                .iter()
                .map(|(n, _)| n.clone())
                .collect(),
            served: config.app.addresses.clone(),
            protected: config.detect.protect.iter().map(|(t, _)| *t).collect(),
        }
    }

    pub fn storefront(&self, place: &Place) -> String {
        match place {
            Place::App(app) => app.storefront.to_string(),
            Place::Address(addr) => self.of_addr(*addr),
            Place::Unknown => HOST.to_string(),
        }
    }

    /// The addresses an attack at `place` was aimed at: the address, or
    /// the exact addresses the named storefront is served on.
    pub fn destinations(&self, place: &Place) -> Vec<IpAddr> {
        match place {
            Place::Address(addr) => vec![*addr],
            Place::App(app) => {
                let Some(i) = self.names.iter().position(|n| *n == app.storefront) else {
                    return Vec::new();
                };
                self.served
                    .iter()
                    .filter(|(t, f)| *f == i && !t.is_prefix())
                    .filter_map(|(t, _)| t.addr())
                    .collect()
            }
            Place::Unknown => Vec::new(),
        }
    }

    fn of_addr(&self, addr: IpAddr) -> String {
        if let Some((_, i)) = narrowest(self.served.iter().map(|(t, i)| (t, i)), addr) {
            return self.names[*i].to_string();
        }
        narrowest(self.protected.iter().map(|t| (t, &())), addr)
            .map_or_else(|| HOST.to_string(), |(t, _)| t.to_string())
    }
}

fn narrowest<'a, T>(
    targets: impl Iterator<Item = (&'a Target, &'a T)>,
    addr: IpAddr,
) -> Option<(&'a Target, &'a T)> {
    targets
        .filter(|(t, _)| t.contains(addr))
        .max_by_key(|(t, _)| t.prefix_len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        s.parse().unwrap()
    }

    #[test]
    fn the_narrowest_storefront_then_the_protected_prefix_then_the_host() {
        let places = Places {
            names: vec!["wide".into(), "narrow".into()],
            served: vec![(t("192.0.2.0/24"), 0), (t("192.0.2.8/29"), 1)],
            protected: vec![t("198.51.100.0/24"), t("198.51.0.0/16")],
        };
        let at = |a: &str| places.storefront(&Place::Address(a.parse().unwrap()));
        assert_eq!(at("192.0.2.9"), "narrow");
        assert_eq!(at("192.0.2.1"), "wide");
        assert_eq!(at("::ffff:192.0.2.9"), "narrow");
        assert_eq!(at("198.51.100.7"), "198.51.100.0/24");
        assert_eq!(at("198.51.7.7"), "198.51.0.0/16");
        assert_eq!(at("203.0.113.1"), HOST);
        assert_eq!(places.storefront(&Place::Unknown), HOST);
    }
}
