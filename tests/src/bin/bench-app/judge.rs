//! What each system did in a scenario: detected or not, the time from the
//! deciding line being written to the attacker cut off, the attacker's
//! requests answered after that line, benign clients banned.

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use ensuresec_tests::{
    fail2ban::Fail2ban,
    lab::Host,
    shop::{ShopLab, target_covers},
    wait::eventually,
};

use crate::watch::{Seen, Watch};

pub struct Outcome {
    pub detected: bool,
    pub ttm_ms: Option<f64>,
    pub after: Option<u64>,
    pub benign_banned: u64,
}

/// Whether a ban on one of `targets` (an address or a network) covers `host`.
fn covers(targets: &[String], host: &Host) -> bool {
    targets.iter().any(|t| target_covers(t, host.v4))
}

/// Targets ensuresec bans now.
fn ensuresec_bans(shop: &ShopLab) -> Result<Vec<String>> {
    Ok(shop
        .lab
        .decisions()?
        .into_iter()
        .filter(|d| d["action"] == "ban")
        .filter_map(|d| d["target"].as_str().map(String::from))
        .collect())
}

fn fail2ban_bans(f2b: &Fail2ban) -> Vec<String> {
    f2b.logged("Ban").into_iter().map(|b| b.addr).collect()
}

fn count_banned(benign: &[Host], bans: &[String]) -> u64 {
    benign.iter().filter(|h| covers(bans, h)).count() as u64
}

/// The attacker's requests answered after the deciding line appeared.
fn after_line(shop: &ShopLab, seen: &Seen, line: Option<(PathBuf, u64)>) -> Result<Option<u64>> {
    let Some(written) = line.and_then(|(log, offset)| seen.written(&log, offset)) else {
        return Ok(None);
    };
    let attacker = shop.lab.attacker.v4.to_string();
    Ok(Some(seen.requests_after(
        &shop.access_log,
        &attacker,
        written,
    )?))
}

/// The lab's attacker alone, with ensuresec: the deciding line is the one
/// its decision names.
pub fn by_ensuresec(shop: &ShopLab, watch: Watch, benign: &[Host]) -> Result<Outcome> {
    let attacker = shop.lab.attacker.v4.to_string();
    let decided = eventually(Duration::from_secs(5), "a decision", || {
        Ok(shop
            .lab
            .decisions()?
            .into_iter()
            .find(|d| d["target"] == attacker.as_str() && !d["details"].is_null()))
    })
    .ok();
    let seen = watch.finish(decided.is_some())?;
    let line = decided.as_ref().and_then(|d| {
        Some((
            PathBuf::from(d["line"]["log"].as_str()?),
            d["line"]["offset"].as_u64()?,
        ))
    });
    let ttm_ms = seen.line_to_cut(line.as_ref().and_then(|(l, o)| seen.written(l, *o)));
    Ok(Outcome {
        detected: decided.is_some(),
        ttm_ms,
        after: after_line(shop, &seen, line)?,
        benign_banned: count_banned(benign, &ensuresec_bans(shop)?),
    })
}

/// The lab's attacker alone, with fail2ban: the deciding line is the one
/// that brought its jail to `maxretry` matches.
pub fn by_fail2ban(
    shop: &ShopLab,
    f2b: &Fail2ban,
    watch: Watch,
    benign: &[Host],
) -> Result<Outcome> {
    let attacker = shop.lab.attacker.v4.to_string();
    let ban = eventually(Duration::from_secs(5), "a ban", || {
        Ok(f2b.logged("Ban").into_iter().find(|b| b.addr == attacker))
    })
    .ok();
    let seen = watch.finish(ban.is_some())?;
    let line = match &ban {
        Some(b) => f2b.deciding_line(b)?,
        None => None,
    };
    let ttm_ms = seen.line_to_cut(line.as_ref().and_then(|(l, o)| seen.written(l, *o)));
    Ok(Outcome {
        detected: ban.is_some(),
        ttm_ms,
        after: after_line(shop, &seen, line)?,
        benign_banned: count_banned(benign, &fail2ban_bans(f2b)),
    })
}

/// Many attacking hosts: detected when every one of them is banned (by its
/// address or a network holding it).
pub fn many_cut_off(shop: &ShopLab, f2b: Option<&Fail2ban>, hosts: &[Host]) -> Result<Outcome> {
    let bans = || -> Result<Vec<String>> {
        match f2b {
            Some(f2b) => Ok(fail2ban_bans(f2b)),
            None => ensuresec_bans(shop),
        }
    };
    let all = eventually(
        Duration::from_secs(10),
        "every attacking host banned",
        || {
            let bans = bans()?;
            Ok(hosts.iter().all(|h| covers(&bans, h)).then_some(()))
        },
    );
    Ok(Outcome {
        detected: all.is_ok(),
        ttm_ms: None,
        after: None,
        benign_banned: 0,
    })
}
