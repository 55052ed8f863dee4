//! One pass over every list entry: which blocks have expired, and how many
//! live entries each list holds per family and kind (for the gauges).

use ensuresec_common::{
    entry::Target,
    maps::{FLAG_ALLOW, FLAGS_BLOCKING},
};

use crate::store::Listed;

/// Live entries per (list, family, kind).
pub type Counts = Vec<(&'static str, &'static str, &'static str, usize)>;

pub struct Census {
    pub expired: Vec<Target>,
    pub counts: Counts,
}

const LISTS: [&str; 2] = ["block", "allow"];
const FAMILIES: [&str; 2] = ["ipv4", "ipv6"];
const KINDS: [&str; 2] = ["exact", "cidr"];

pub fn take(entries: &[Listed], now_ns: u64) -> Census {
    let mut n = [[[0usize; 2]; 2]; 2];
    let mut expired = Vec::new();
    for l in entries {
        let family = usize::from(!l.target.is_v4());
        let kind = usize::from(l.target.is_prefix());
        if l.entry.flags & FLAGS_BLOCKING != 0 && l.entry.blocks_at(now_ns) {
            n[0][family][kind] += 1;
        }
        if l.entry.has_expired_part(now_ns) {
            expired.push(l.target);
        }
        if l.entry.flags & FLAG_ALLOW != 0 {
            n[1][family][kind] += 1;
        }
    }
    let mut counts = Vec::with_capacity(8);
    for (li, list) in LISTS.iter().enumerate() {
        for (fi, family) in FAMILIES.iter().enumerate() {
            for (ki, kind) in KINDS.iter().enumerate() {
                counts.push((*list, *family, *kind, n[li][fi][ki]));
            }
        }
    }
    Census { expired, counts }
}

#[cfg(test)]
mod tests {
    use ensuresec_common::maps::{FLAG_BAN, FLAG_BLOCK, ListEntry};

    use super::*;

    fn l(t: &str, flags: u32, expires_at_ns: u64) -> Listed {
        Listed {
            target: t.parse().unwrap(),
            entry: ListEntry {
                expires_at_ns,
                flags,
                ..Default::default()
            },
        }
    }

    #[test]
    fn counts_live_entries_and_finds_expired_blocks() {
        let entries = [
            l("192.0.2.1", FLAG_BLOCK, 0),
            l("192.0.2.2", FLAG_BLOCK, 10),
            l("192.0.2.3", FLAG_BLOCK | FLAG_ALLOW, 10),
            l("10.0.0.0/8", FLAG_ALLOW, 0),
            l("2001:db8::/32", FLAG_BLOCK, 100),
        ];
        // An operator's live block with an agent's expired ban: counted, and
        // swept for its expired part.
        let mut both = l("192.0.2.4", FLAG_BLOCK | FLAG_BAN, 0);
        both.entry.ban_expires_at_ns = 10;
        let entries: Vec<Listed> = entries.into_iter().chain([both]).collect();
        let c = take(&entries, 50);
        let mut expired: Vec<String> = c.expired.iter().map(|t| t.to_string()).collect();
        expired.sort();
        assert_eq!(expired, ["192.0.2.2", "192.0.2.3", "192.0.2.4"]);
        let get = |list, family, kind| {
            c.counts
                .iter()
                .find(|x| x.0 == list && x.1 == family && x.2 == kind)
                .unwrap()
                .3
        };
        assert_eq!(get("block", "ipv4", "exact"), 2);
        assert_eq!(get("allow", "ipv4", "exact"), 1);
        assert_eq!(get("allow", "ipv4", "cidr"), 1);
        assert_eq!(get("block", "ipv6", "cidr"), 1);
        assert_eq!(c.counts.len(), 8);
    }
}
