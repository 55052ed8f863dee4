//! Applying a batch of list edits all-or-nothing: every entry's new value and
//! every capacity is checked first, then the maps are written, and a failure
//! part-way undoes what was already written.

use std::{collections::HashMap, hash::Hash, net::Ipv4Addr};

use ensuresec_common::{
    entry::Target,
    features::AddrKey,
    maps::{FLAG_ALLOW, ListEntry, TrieRule, TrieRule6},
    trie_build::TrieLayout,
};

use super::{
    Writer,
    exact::{Key, Plan, Table},
    lists::without_derived,
    trie::{Family, Flip},
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

/// A prefix as its network aligned to the left of 128 bits (an IPv4 network
/// is the top 32) and its length: the tries' view of both families.
type Prefix = (u128, u8);

/// An exact IPv4 key (network order in memory) aligned to the left.
fn bits4(k: &u32) -> u128 {
    (u32::from_be_bytes(k.to_ne_bytes()) as u128) << 96
}

fn bits6(k: &AddrKey) -> u128 {
    u128::from_be_bytes(k.0)
}

/// Whether the batch makes some exact address an allow, or stops it being one.
fn allows_change<K: Eq + Hash>(plan: &Plan<K>, after: &HashMap<K, Option<ListEntry>>) -> bool {
    let allows = |e: Option<&ListEntry>| e.is_some_and(|e| e.flags & FLAG_ALLOW != 0);
    after
        .iter()
        .any(|(k, new)| allows(plan.prior.get(k)) != allows(new.as_ref()))
}

/// The exact allows once the batch applies, aligned to the left.
fn exact_allows<K: Copy + Eq + Hash>(
    current: Vec<(K, ListEntry)>,
    after: &HashMap<K, Option<ListEntry>>,
    bits: fn(&K) -> u128,
) -> Vec<u128> {
    let mut allows: HashMap<K, bool> = current
        .into_iter()
        .map(|(k, e)| (k, e.flags & FLAG_ALLOW != 0))
        .collect();
    for (k, v) in after {
        allows.insert(*k, v.is_some_and(|e| e.flags & FLAG_ALLOW != 0));
    }
    allows
        .into_iter()
        .filter(|(_, allowed)| *allowed)
        .map(|(k, _)| bits(&k))
        .collect()
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
                Target::Net4(n) => n4.push((
                    at,
                    *target,
                    ((u32::from(n.network()) as u128) << 96, n.prefix_len()),
                    *op,
                )),
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
        let rules4 = (!n4.is_empty())
            .then(|| self.current_rules::<TrieRule>())
            .transpose()?;
        let rules6 = (!n6.is_empty())
            .then(|| self.current_rules::<TrieRule6>())
            .transpose()?;
        let replayed = (
            replay(&e4, &prior4),
            replay(&e6, &prior6),
            rules4.as_ref().map(|r| replay(&n4, r)).transpose(),
            rules6.as_ref().map(|r| replay(&n6, r)).transpose(),
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

        // Prefix rules record whether exact allows lie inside them, so a
        // family's trie is rebuilt when either changes.
        let trie4 = self.plan_prefixes::<TrieRule>(
            rules4,
            after_n4,
            allows_change(&plan4, &after4),
            || Ok(exact_allows(self.exact_v4.dump()?, &after4, bits4)),
            &mut summary,
        )?;
        let trie6 = self.plan_prefixes::<TrieRule6>(
            rules6,
            after_n6,
            allows_change(&plan6, &after6),
            || Ok(exact_allows(self.exact_v6.dump()?, &after6, bits6)),
            &mut summary,
        )?;

        // Write; undo what was written if a later step fails, in reverse.
        let flip4 = trie4.as_ref().map(|t| self.install_trie(t)).transpose()?;
        let undo_flips = |s: &Writer, flips: &[&Option<Flip>]| {
            for flip in flips.iter().filter_map(|f| f.as_ref()) {
                s.undo_trie(flip);
            }
        };
        let flip6 = match trie6.as_ref().map(|t| self.install_trie(t)).transpose() {
            Ok(f) => f,
            Err(e) => {
                undo_flips(self, &[&flip4]);
                return Err(e);
            }
        };
        if let Err(e) = self.exact_v4.apply(&plan4, V4_LIST) {
            undo_flips(self, &[&flip6, &flip4]);
            return Err(e);
        }
        if let Err(e) = self.exact_v6.apply(&plan6, V6_LIST) {
            self.exact_v4.undo(&plan4);
            undo_flips(self, &[&flip6, &flip4]);
            return Err(e);
        }
        self.count_change(plan4.growth(), plan6.growth());
        Ok(summary)
    }

    /// A family's prefix rules in force, without the flag the trie build derives.
    fn current_rules<R: Family>(&self) -> Result<HashMap<Prefix, ListEntry>> {
        Ok(self
            .trie_rules::<R>()?
            .into_iter()
            .map(|r| {
                (
                    (r.bits(), r.prefix_bits() as u8),
                    without_derived(*r.entry()),
                )
            })
            .collect())
    }

    /// The family's new trie, when its rules or the exact allows inside them
    /// change; `rules` are the current rules when the batch has prefix edits.
    fn plan_prefixes<R: Family>(
        &self,
        rules: Option<HashMap<Prefix, ListEntry>>,
        after: Option<HashMap<Prefix, Option<ListEntry>>>,
        allows_changed: bool,
        allows: impl FnOnce() -> Result<Vec<u128>>,
        summary: &mut EditSummary,
    ) -> Result<Option<TrieLayout<R>>> {
        if after.is_none() && !allows_changed {
            return Ok(None);
        }
        let mut rules = match rules {
            Some(r) => r,
            None => self.current_rules::<R>()?,
        };
        if let Some(after) = after {
            summary.count(&rules, &after);
            merge(&mut rules, after);
        }
        let rules: Vec<R> = rules
            .into_iter()
            .map(|((bits, len), entry)| R::from_parts(bits, len as u32, entry))
            .collect();
        Ok(Some(self.plan_trie(&rules, &allows()?)?))
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
