//! Reading the lists: every entry, one target's entry, what allows an
//! address.

use std::{
    collections::HashSet,
    net::{Ipv4Addr, Ipv6Addr},
};

use ensuresec_common::{
    entry::Target,
    maps::{FLAG_ALLOW, FLAG_EXACT_ALLOW_INSIDE, ListEntry, TrieRule, TrieRule6},
};
use ipnet::{Ipv4Net, Ipv6Net};

use super::{Listed, Store};
use crate::error::{Error, Result};

fn key4(a: &Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

/// A prefix rule's entry as the operator set it, without the flag the trie
/// build derives.
pub(super) fn without_derived(mut entry: ListEntry) -> ListEntry {
    entry.flags &= !FLAG_EXACT_ALLOW_INSIDE;
    entry
}

impl Store {
    /// Every entry of every list, in no particular order.
    pub fn entries(&self) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        for (k, entry) in self.exact_v4.dump()? {
            let target = Target::V4(Ipv4Addr::from(k.to_ne_bytes()));
            out.push(Listed { target, entry });
        }
        for (k, entry) in self.exact_v6.dump()? {
            let target = Target::V6(Ipv6Addr::from(k));
            out.push(Listed { target, entry });
        }
        out.extend(self.prefix_entries()?);
        Ok(out)
    }

    /// The allowlist entry (exact or prefix) that covers `addr`, if any.
    pub fn allowlisted_by(&self, addr: std::net::IpAddr) -> Result<Option<Listed>> {
        let addr = ensuresec_common::entry::normalize_addr(addr);
        let exact = match addr {
            std::net::IpAddr::V4(a) => self.exact_v4.get(&key4(&a))?.map(|entry| Listed {
                target: Target::V4(a),
                entry,
            }),
            std::net::IpAddr::V6(a) => self.exact_v6.get(&a.into())?.map(|entry| Listed {
                target: Target::V6(a),
                entry,
            }),
        };
        let allows = |l: &Listed| l.entry.flags & FLAG_ALLOW != 0;
        if let Some(l) = exact.filter(allows) {
            return Ok(Some(l));
        }
        let prefixes = self.prefix_entries()?;
        Ok(prefixes
            .into_iter()
            .find(|l| allows(l) && l.target.contains(addr)))
    }

    /// The entry of one target, if any.
    pub fn entries_for(&self, target: &Target) -> Result<Option<ListEntry>> {
        Ok(match target {
            Target::V4(a) => self.exact_v4.get(&key4(a))?,
            Target::V6(a) => self.exact_v6.get(&(*a).into())?,
            _ => self
                .prefix_entries()?
                .into_iter()
                .find(|l| l.target == *target)
                .map(|l| l.entry),
        })
    }

    /// Every IPv4 and IPv6 prefix entry.
    pub fn prefix_entries(&self) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        for r in self.trie_rules::<TrieRule>()? {
            let net = Ipv4Net::new(r.addr.into(), r.prefix_len as u8)
                .map_err(|e| Error::map(self.trie4.rules.name, e))?;
            out.push(Listed {
                target: Target::Net4(net),
                entry: without_derived(r.entry),
            });
        }
        for r in self.trie_rules::<TrieRule6>()? {
            let net = Ipv6Net::new(r.addr.into(), r.prefix_len as u8)
                .map_err(|e| Error::map(self.trie6.rules.name, e))?;
            out.push(Listed {
                target: Target::Net6(net),
                entry: without_derived(r.entry),
            });
        }
        Ok(out)
    }

    /// Reason ids any entry, or any decision (its storefront), still uses.
    pub fn reason_ids_in_use(&self) -> Result<HashSet<u32>> {
        let mut ids: HashSet<u32> = self.entries()?.iter().map(|l| l.entry.reason_id).collect();
        ids.extend(self.decisions()?.iter().map(|(_, r)| r.storefront_id));
        Ok(ids)
    }
}
