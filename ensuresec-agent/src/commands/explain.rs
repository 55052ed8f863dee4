//! `ensuresec explain ADDR`: why an address is treated as it is, and how to
//! change it.

use std::net::IpAddr;

use anyhow::{Context as _, Result};

use crate::{
    cli::OutputFormat,
    journal::Journal,
    output,
    pins::PinDir,
    recover::explain::{Reason, explain},
    store::Store,
};

fn lines(r: &Reason) -> Vec<String> {
    let mut out = vec![format!("{} on {} ({})", r.kind, r.target, r.owner)];
    let mut field = |name: &str, value: Option<&str>| {
        if let Some(v) = value {
            out.push(format!("  {name:<6} {v}"));
        }
    };
    field("does", Some(&r.does));
    field("why", r.why.as_deref());
    field("by", r.by.as_deref());
    field("since", r.since.as_deref());
    let ends = match (&r.ends, r.seconds_left) {
        (Some(at), Some(left)) => Some(format!(
            "{at} ({} left)",
            ensuresec_common::ttl::format_remaining(std::time::Duration::from_secs(left))
        )),
        _ if r.kind == "port_policy" || r.kind == "strikes" => None,
        _ => Some("never (until lifted)".into()),
    };
    field("ends", ends.as_deref());
    field("lift", r.lift.as_deref());
    out
}

pub fn run(
    pins: &PinDir,
    state_dir: &std::path::Path,
    addr: &str,
    format: OutputFormat,
) -> Result<()> {
    let addr: IpAddr = addr
        .parse()
        .with_context(|| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
    let store = Store::open(pins)?;
    // Without a journal, the maps alone still say what applies.
    let journal = Journal::open_read_only(state_dir).ok().flatten();
    let e = explain(&store, journal.as_ref(), addr)?;
    if format == OutputFormat::Json {
        output::print(format, &e, Vec::new());
        return Ok(());
    }
    println!("{}: {}", e.address, e.verdict);
    if e.reasons.is_empty() {
        println!("no list entry, decision or policy applies to it");
    }
    for r in &e.reasons {
        println!();
        for line in lines(r) {
            println!("{line}");
        }
    }
    if journal.is_none() {
        println!(
            "\n(no journal in {}: who and why from the maps only)",
            state_dir.display()
        );
    }
    Ok(())
}
