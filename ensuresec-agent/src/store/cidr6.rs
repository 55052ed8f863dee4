//! IPv6 prefixes: LPM trie entries whose values carry the combined verdict of
//! every covering rule, rewritten where a change alters them.

use std::collections::HashMap;

use aya::maps::lpm_trie::Key;
use ensuresec_common::{
    maps::{Cidr6Value, ListEntry},
    rules6::{Rule6, effective_values},
};
use ipnet::Ipv6Net;

use super::{Store, Writer};
use crate::error::Result;

/// A prefix as (address bits, length).
pub type Prefix6 = (u128, u8);

fn key(p: Prefix6) -> Key<[u8; 16]> {
    Key::new(p.1 as u32, p.0.to_be_bytes())
}

/// Writes to undo a change.
pub struct Cidr6Undo {
    prior: HashMap<Prefix6, Cidr6Value>,
    touched: Vec<Prefix6>,
}

impl Store {
    /// Every IPv6 prefix rule with its full stored value.
    pub fn cidr6_values(&self) -> Result<HashMap<Prefix6, Cidr6Value>> {
        let all: Vec<(Key<[u8; 16]>, Cidr6Value)> = self.cidr_v6.dump_by_key()?;
        Ok(all
            .into_iter()
            .map(|(k, v)| ((u128::from_be_bytes(k.data()), k.prefix_len() as u8), v))
            .collect())
    }
}

impl Writer<'_> {
    /// Replaces the rule set with `rules` (whose size the caller checked),
    /// rewriting only entries whose value changes.
    pub(super) fn write_cidr6(
        &self,
        prior: HashMap<Prefix6, Cidr6Value>,
        rules: &HashMap<Prefix6, ListEntry>,
    ) -> Result<Cidr6Undo> {
        let list: Vec<Rule6> = rules
            .iter()
            .map(|(&(bits, len), own)| Rule6 {
                net: Ipv6Net::new(bits.into(), len).expect("prefix lengths are validated"),
                own: *own,
            })
            .collect();
        let values = effective_values(&list);
        let mut undo = Cidr6Undo {
            prior,
            touched: Vec::new(),
        };
        let result = (|| {
            // Add and change first so that no covered address loses its entry
            // between the two phases; removals last.
            for (rule, value) in list.iter().zip(&values) {
                let p = (u128::from(rule.net.network()), rule.net.prefix_len());
                if undo.prior.get(&p) != Some(value) {
                    undo.touched.push(p);
                    self.cidr_v6.set(&key(p), value)?;
                }
            }
            let gone: Vec<Prefix6> = undo
                .prior
                .keys()
                .filter(|p| !rules.contains_key(p))
                .copied()
                .collect();
            for p in gone {
                undo.touched.push(p);
                self.cidr_v6.remove(&key(p))?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(undo),
            Err(e) => {
                self.undo_cidr6(&undo);
                Err(e)
            }
        }
    }

    pub fn undo_cidr6(&self, undo: &Cidr6Undo) {
        for p in &undo.touched {
            let result = match undo.prior.get(p) {
                Some(v) => self.cidr_v6.set(&key(*p), v),
                None => self.cidr_v6.remove(&key(*p)).map(|_| ()),
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "could not undo a partial IPv6 prefix change");
            }
        }
    }
}
