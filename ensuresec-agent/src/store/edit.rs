//! Applying a batch of list edits all-or-nothing: every entry's new value and
//! every capacity is checked first, then the maps are written, and a failure
//! part-way undoes what was already written.

use std::{collections::HashMap, hash::Hash, net::Ipv4Addr};

use ensuresec_common::{
    entry::Target,
    features::AddrKey,
    maps::{FLAG_ALLOW, FLAG_EXACT_ALLOW_INSIDE, ListEntry, TrieRule},
};

use super::{
    Writer,
    cidr6::Prefix6,
    exact::{Key, Plan, Table},
};
use crate::{
    edit::{Op, apply},
    error::{Error, Result},
};

/// One list entry as an operator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    pub target: Target,
    pub entry: ListEntry,
}

/// How many entries a batch created, changed and removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EditSummary {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
}

impl EditSummary {
    fn count<K: Eq + Hash>(
        &mut self,
        before: &HashMap<K, ListEntry>,
        after: &HashMap<K, Option<ListEntry>>,
    ) {
        for (k, new) in after {
            match (before.get(k), new) {
                (None, Some(_)) => self.added += 1,
                (Some(old), Some(new)) if old != new => self.changed += 1,
                (Some(_), None) => self.removed += 1,
                _ => {}
            }
        }
    }
}

const V4_LIST: &str = "the IPv4 address list";
const V6_LIST: &str = "the IPv6 address list";

fn key4(a: &Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

/// One edit of a batch: its place in the batch, target, map key and op.
type Keyed<K> = (usize, Target, K, Op);

/// An edit that cannot apply, and its place in the batch.
type Refusal = (usize, Error);

/// Runs the edits for one kind of target over its current values.
fn replay<K: Copy + Eq + Hash>(
    edits: &[Keyed<K>],
    current: &HashMap<K, ListEntry>,
) -> std::result::Result<HashMap<K, Option<ListEntry>>, Refusal> {
    let mut working: HashMap<K, Option<ListEntry>> = HashMap::new();
    for (at, target, key, op) in edits {
        let now = match working.get(key) {
            Some(v) => *v,
            None => current.get(key).copied(),
        };
        working.insert(*key, apply(target, now, *op).map_err(|e| (*at, e))?);
    }
    Ok(working)
}

/// The refusal of the edit that comes first in the batch.
fn first_refusal(refusals: impl IntoIterator<Item = Option<Refusal>>) -> Option<Error> {
    refusals
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
        .map(|(_, e)| e)
}

/// Sets each key to its new value, removing those that have none.
fn merge<K: Eq + Hash>(rules: &mut HashMap<K, ListEntry>, after: HashMap<K, Option<ListEntry>>) {
    for (k, v) in after {
        match v {
            Some(v) => rules.insert(k, v),
            None => rules.remove(&k),
        };
    }
}

fn exact_plan<K: Copy + Eq + Hash>(
    prior: HashMap<K, ListEntry>,
    after: &HashMap<K, Option<ListEntry>>,
) -> Plan<K> {
    let mut plan = Plan {
        upserts: Vec::new(),
        deletes: Vec::new(),
        prior,
    };
    for (k, v) in after {
        match v {
            Some(v) if plan.prior.get(k) != Some(v) => plan.upserts.push((*k, *v)),
            None if plan.prior.contains_key(k) => plan.deletes.push(*k),
            _ => {}
        }
    }
    plan
}

/// Refuses a plan that would take `table` past its capacity, given the keys
/// it holds now (`used`, kept in the control record).
fn check_exact<K: Key, const W: usize>(
    table: &Table<K, W>,
    used: u32,
    plan: &Plan<K>,
    what: &'static str,
    setting: &'static str,
) -> Result<()> {
    if plan.growth() <= 0 {
        return Ok(());
    }
    let mut need = (used as isize + plan.growth()).max(0) as usize;
    if need > table.capacity as usize {
        // The kept count may be off (a writer killed part-way, with no agent
        // to sweep since): count before refusing.
        need = (table.count()? as isize + plan.growth()).max(0) as usize;
    }
    if need > table.capacity as usize {
        return Err(Error::Capacity {
            what,
            need,
            capacity: table.capacity,
            setting,
        });
    }
    Ok(())
}

impl Writer<'_> {
    /// Applies `edits` in order, all or nothing.
    pub fn edit(&self, edits: &[(Target, Op)]) -> Result<EditSummary> {
        let (mut e4, mut e6, mut n4, mut n6) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (at, (target, op)) in edits.iter().enumerate() {
            match target {
                Target::V4(a) => e4.push((at, *target, key4(a), *op)),
                Target::V6(a) => e6.push((at, *target, AddrKey::from(*a), *op)),
                Target::Net4(n) => {
                    n4.push((at, *target, (u32::from(n.network()), n.prefix_len()), *op))
                }
                Target::Net6(n) => {
                    n6.push((at, *target, (u128::from(n.network()), n.prefix_len()), *op))
                }
            }
        }
        let mut summary = EditSummary::default();
        let control = self.control()?;

        // Work out every new value first: a batch with an edit that cannot
        // apply is refused for the first such edit, in the batch's order.
        let keys4: Vec<u32> = e4.iter().map(|e| e.2).collect();
        let prior4 = self.exact_v4.current(&keys4)?;
        let keys6: Vec<AddrKey> = e6.iter().map(|e| e.2).collect();
        let prior6 = self.exact_v6.current(&keys6)?;
        let rules4 = if n4.is_empty() {
            None
        } else {
            Some(self.current_rules4()?)
        };
        let prior_cidr6 = if n6.is_empty() {
            None
        } else {
            Some(self.cidr6_values()?)
        };
        let own6 = prior_cidr6.as_ref().map(|prior| {
            prior
                .iter()
                .map(|(k, v)| (*k, v.own))
                .collect::<HashMap<Prefix6, ListEntry>>()
        });
        let replayed = (
            replay(&e4, &prior4),
            replay(&e6, &prior6),
            rules4.as_ref().map(|r| replay(&n4, r)).transpose(),
            own6.as_ref().map(|r| replay(&n6, r)).transpose(),
        );
        let (after4, after6, after_n4, after_n6) = match replayed {
            (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
            (a, b, c, d) => {
                return Err(first_refusal([a.err(), b.err(), c.err(), d.err()])
                    .expect("one of the replays refused"));
            }
        };

        // Then check every capacity before writing.
        summary.count(&prior4, &after4);
        let plan4 = exact_plan(prior4, &after4);
        check_exact(
            &self.exact_v4,
            control.x4_used,
            &plan4,
            V4_LIST,
            "maps.exact_v4",
        )?;
        summary.count(&prior6, &after6);
        let plan6 = exact_plan(prior6, &after6);
        check_exact(
            &self.exact_v6,
            control.x6_used,
            &plan6,
            V6_LIST,
            "maps.exact_v6",
        )?;

        // Prefix rules record whether exact allows lie inside them, so the trie
        // is rebuilt when either changes.
        let allow_changed = after4.iter().any(|(k, new)| {
            let was = plan4
                .prior
                .get(k)
                .is_some_and(|e| e.flags & FLAG_ALLOW != 0);
            was != new.is_some_and(|e| e.flags & FLAG_ALLOW != 0)
        });
        let trie = if n4.is_empty() && !allow_changed {
            None
        } else {
            let mut rules = match rules4 {
                Some(r) => r,
                None => self.current_rules4()?,
            };
            if let Some(after) = after_n4 {
                summary.count(&rules, &after);
                merge(&mut rules, after);
            }
            let rules: Vec<TrieRule> = rules
                .into_iter()
                .map(|((addr, len), entry)| TrieRule {
                    entry,
                    addr,
                    prefix_len: len as u32,
                })
                .collect();
            let mut allows: HashMap<u32, bool> = self
                .exact_v4
                .dump()?
                .into_iter()
                .map(|(k, e)| (k, e.flags & FLAG_ALLOW != 0))
                .collect();
            for (k, v) in &after4 {
                allows.insert(*k, v.is_some_and(|e| e.flags & FLAG_ALLOW != 0));
            }
            let allows: Vec<u32> = allows
                .into_iter()
                .filter(|(_, allowed)| *allowed)
                .map(|(k, _)| u32::from_be_bytes(k.to_ne_bytes()))
                .collect();
            Some(self.plan_trie4(&rules, &allows)?)
        };

        let cidr6 = match (prior_cidr6, own6, after_n6) {
            (Some(prior), Some(mut rules), Some(after)) => {
                summary.count(&rules, &after);
                merge(&mut rules, after);
                if rules.len() > self.capacities.cidr_v6 as usize {
                    return Err(Error::Capacity {
                        what: "the IPv6 prefix list",
                        need: rules.len(),
                        capacity: self.capacities.cidr_v6,
                        setting: "maps.cidr_v6",
                    });
                }
                Some((prior, rules))
            }
            _ => None,
        };

        // Write; undo what was written if a later step fails.
        let flip = trie.as_ref().map(|t| self.install_trie4(t)).transpose()?;
        let undo_flip = |s: &Writer| {
            if let Some(f) = &flip {
                s.undo_trie4(f);
            }
        };
        if let Err(e) = self.exact_v4.apply(&plan4, V4_LIST) {
            undo_flip(self);
            return Err(e);
        }
        if let Err(e) = self.exact_v6.apply(&plan6, V6_LIST) {
            self.exact_v4.undo(&plan4);
            undo_flip(self);
            return Err(e);
        }
        if let Some((prior, rules)) = cidr6
            && let Err(e) = self.write_cidr6(prior, &rules)
        {
            self.exact_v6.undo(&plan6);
            self.exact_v4.undo(&plan4);
            undo_flip(self);
            return Err(e);
        }
        self.count_change(plan4.growth(), plan6.growth());
        Ok(summary)
    }

    /// The IPv4 prefix rules in force, by (network, length), without the
    /// flag the trie build derives.
    fn current_rules4(&self) -> Result<HashMap<(u32, u8), ListEntry>> {
        Ok(self
            .trie4_rules()?
            .into_iter()
            .map(|r| {
                let mut entry = r.entry;
                entry.flags &= !FLAG_EXACT_ALLOW_INSIDE;
                ((r.addr, r.prefix_len as u8), entry)
            })
            .collect())
    }

    /// Records a committed change in the control record: a new generation,
    /// and the exact tables' new key counts. The change is in force already,
    /// so a failure here is logged, not returned (the sweep recounts).
    fn count_change(&self, growth4: isize, growth6: isize) {
        let result = self.control().and_then(|mut c| {
            c.generation = c.generation.wrapping_add(1);
            c.x4_used = (c.x4_used as isize + growth4).max(0) as u32;
            c.x6_used = (c.x6_used as isize + growth6).max(0) as u32;
            self.set_control(&c)
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not record a list change in the control record");
        }
    }

    /// Sets the exact tables' key counts to what a full read found; returns
    /// whether they had drifted (a writer killed part-way).
    pub fn recount_exact(&self, v4: usize, v6: usize) -> Result<bool> {
        let mut c = self.control()?;
        if (c.x4_used as usize, c.x6_used as usize) == (v4, v6) {
            return Ok(false);
        }
        c.x4_used = v4 as u32;
        c.x6_used = v6 as u32;
        self.set_control(&c)?;
        Ok(true)
    }
}
