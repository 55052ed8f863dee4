//! New maps (after a reboot, or an upgrade that changed their layout) get
//! the desired state back from the journal: the operator's blocks and
//! allows with their reasons, time added and wall-clock expiry, the
//! decisions in force and the offenders' strikes. What has expired stays
//! gone; what remains keeps counting down in wall-clock time.

use std::net::IpAddr;

use serde::Serialize;

use crate::{
    clock,
    detect::decide,
    edit::Op,
    error::{Error, Result},
    journal::Journal,
    store::{
        Store, Writer,
        decisions::{DecisionTarget, addr_key},
    },
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Restored {
    pub blocks: usize,
    pub allows: usize,
    pub decisions: usize,
    pub offenders: usize,
    /// Entries whose time ran out while the maps were gone.
    pub expired: usize,
    /// Entries that could not be put back (each logged with why).
    pub failed: usize,
}

fn intern(w: &Writer, reasons: &mut crate::store::Reasons, text: Option<&str>) -> Result<u32> {
    match text {
        None => Ok(0),
        Some(t) => w.intern_reason(reasons, t, || w.reason_ids_in_use()),
    }
}

/// Writes the journal's desired state into the (new, empty) maps.
pub fn restore(store: &Store, journal: &Journal) -> Result<Restored> {
    let mut done = Restored::default();
    let w = store.write()?;
    let mut reasons = w.reasons()?;
    let (mut blocks, mut allows) = (Vec::new(), Vec::new());
    for row in journal.list_rows()? {
        let target = row.target.parse().map_err(Error::Target)?;
        if row.block {
            let expires_at_ns = match row.block_expires_ms {
                None => Some(0),
                Some(ms) => clock::mono_of_wall_ms(ms),
            };
            match expires_at_ns {
                Some(expires_at_ns) => {
                    let reason_id = intern(&w, &mut reasons, row.reason.as_deref())?;
                    blocks.push((
                        target,
                        Op::Block {
                            expires_at_ns,
                            reason_id,
                            now_secs: row.added_secs,
                        },
                    ));
                }
                None => done.expired += 1,
            }
        }
        if row.allow {
            allows.push((
                target,
                Op::Allow {
                    from_config: false,
                    now_secs: row.added_secs,
                },
            ));
        }
    }
    w.edit(&blocks)?;
    w.edit(&allows)?;
    (done.blocks, done.allows) = (blocks.len(), allows.len());
    for row in journal.decision_rows()? {
        let storefront_id = intern(&w, &mut reasons, row.storefront.as_deref())?;
        let Some(record) = row.to_record(storefront_id) else {
            done.expired += 1;
            continue;
        };
        let put = row
            .target
            .parse::<DecisionTarget>()
            .map_err(|why| Error::NotListed(why, "decision targets"))
            .and_then(|t| decide::restore(&w, &t.0, &record));
        match put {
            Ok(()) => done.decisions += 1,
            Err(e) => {
                done.failed += 1;
                tracing::error!(target = %row.target, error = %e, "could not restore a decision");
            }
        }
    }
    for row in journal.offender_rows()? {
        match row.addr.parse::<IpAddr>() {
            Ok(addr) => {
                w.set_offender(&addr_key(addr), &row.offender())?;
                done.offenders += 1;
            }
            Err(_) => {
                done.failed += 1;
                tracing::error!(addr = %row.addr, "the journal holds an offender that is not an address");
            }
        }
    }
    Ok(done)
}
