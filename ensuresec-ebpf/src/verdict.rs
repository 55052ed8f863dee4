//! The verdict after the lists (see `lists`): the agent's throttles and
//! budgets, then the port policy; else pass.

use ensuresec_common::{
    maps::{Control, PORT_WORDS, port_slot},
    reason::Reason,
};

use crate::{
    frags,
    maps::{ES_CONTROL, ES_PORTS},
    mitigate,
    parse::{Parsed, Transport},
};

#[inline(always)]
fn port_allowed(control: &Control, udp: bool, port: u16) -> bool {
    let index = port_slot(control.ports_copy, udp);
    match ES_PORTS.get(index) {
        Some(bits) => bits[(port as usize / 64) & (PORT_WORDS - 1)] & (1u64 << (port % 64)) != 0,
        // A missing bitmap cannot happen with a loaded map; never drop because of it.
        None => true,
    }
}

/// The agent's throttles and new-connection budgets: the id of the reason
/// that drops the packet, or 0. Without any in force, no call is made (a
/// call costs about 12 ns here).
#[inline(always)]
pub fn mitigations(parsed: &Parsed, classes: u32, cpus: u32, now: u64) -> u32 {
    match ES_CONTROL.get(0) {
        Some(control) if control.throttles != 0 || control.budgets != 0 => {
            enforce_mitigations(control, parsed, classes, cpus, now)
        }
        _ => 0,
    }
}

/// `mitigations` with some in force. A subprogram of its own, so that the
/// keys and buckets it builds stay off its caller's frame (BPF gives a call
/// chain 512 bytes, and the caller's frame is stacked with every other
/// subprogram's).
#[inline(never)]
fn enforce_mitigations(
    control: &Control,
    parsed: &Parsed,
    classes: u32,
    cpus: u32,
    now: u64,
) -> u32 {
    if control.throttles != 0 && !mitigate::throttle_allows(parsed, classes, cpus, now) {
        return Reason::Throttled as u32;
    }
    if control.budgets != 0 && !mitigate::budget_allows(parsed, classes, cpus, now) {
        return Reason::DestBudget as u32;
    }
    0
}

/// What is left after the lists: parse outcome and port policy. With the
/// policy on, a packet whose destination port cannot be read is dropped: a
/// truncated transport header, a later fragment whose first fragment did not
/// pass. First fragments that pass are remembered (also while budgets or
/// throttles are in force: a budget counts a datagram once, and a throttled
/// source's later fragments go the way of their first).
#[inline(always)]
pub fn policy(parsed: &Parsed) -> Reason {
    let Some(control) = ES_CONTROL.get(0) else {
        return parsed.outcome;
    };
    let enabled = control.port_policy_enabled != 0;
    let verdict = if !enabled {
        parsed.outcome
    } else if parsed.is_later_fragment() {
        // The policy is about TCP and UDP ports: other protocols' fragments
        // (GRE, ESP) pass as their datagram's first fragment did.
        if !parsed.has_ports() || frags::datagram_passed(parsed) {
            Reason::Fragment
        } else {
            Reason::OrphanFragment
        }
    } else if parsed.outcome.hides_port() {
        Reason::PortUnreadable
    } else if parsed.outcome != Reason::Passed {
        parsed.outcome
    } else {
        ports(control, parsed)
    };
    let remembered = enabled || control.budgets != 0 || control.throttles != 0;
    if verdict == Reason::Passed && parsed.is_first_fragment() && remembered {
        frags::first_passed(parsed);
    }
    verdict
}

/// The port policy on a packet with readable ports.
#[inline(always)]
fn ports(control: &Control, parsed: &Parsed) -> Reason {
    let t = parsed.transport;
    let udp = match t.kind {
        Transport::TCP => false,
        Transport::UDP => true,
        _ => return Reason::Passed,
    };
    if port_allowed(control, udp, t.dport) {
        Reason::Passed
    } else {
        Reason::PortPolicy
    }
}
