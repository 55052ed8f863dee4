//! Destination steps: what each protected address received in its current
//! kernel window, from every source at once, read from the per-destination
//! table. The aggregate model scores these, and `cargo xtask dataset`
//! records them with the same code.
//!
//! The kernel keeps a window per destination port and protocol and per CPU;
//! a step merges an address's windows that began within the last window
//! length (with the default `[ml] step` equal to `[detect] window`, each
//! window is read about once). The port with the most packets is where an
//! alert on the address goes; each port's own window is kept for filters.

use std::collections::HashMap;

use ensuresec_common::features::{AddrKey, DestKey, Scale, Window};

use crate::{error::Result, store::Store};

/// One protected address over its current window.
#[derive(Clone, Debug, PartialEq)]
pub struct DestinationStep {
    pub addr: AddrKey,
    /// The address's windows merged (packets, classes, sketches, votes).
    pub window: Window,
    /// How long the merged window has lasted.
    pub secs: f64,
    /// The destination port and protocol that received the most packets.
    pub hot: DestKey,
    /// Each port and protocol's window (CPUs merged).
    pub ports: Vec<(DestKey, Window)>,
}

/// The steps of every address whose windows hold anything begun within
/// `window_ns` of `now_ns`.
pub fn read(store: &Store, now_ns: u64, window_ns: u64) -> Result<Vec<DestinationStep>> {
    let windows = store.dest_windows(Scale::Window, now_ns.saturating_sub(window_ns))?;
    Ok(merge(windows, now_ns))
}

/// Per-destination windows merged per address.
fn merge(windows: Vec<(DestKey, Window)>, now_ns: u64) -> Vec<DestinationStep> {
    let mut by_addr: HashMap<AddrKey, DestinationStep> = HashMap::new();
    for (key, w) in windows {
        let step = by_addr.entry(key.addr).or_insert(DestinationStep {
            addr: key.addr,
            window: Window::default(),
            secs: 0.0,
            hot: key,
            ports: Vec::new(),
        });
        if step.ports.iter().all(|(_, p)| w.packets > p.packets) {
            step.hot = key;
        }
        crate::store::add_window(&mut step.window, &w);
        step.ports.push((key, w));
    }
    let mut steps: Vec<DestinationStep> = by_addr.into_values().collect();
    for s in &mut steps {
        s.secs = now_ns.saturating_sub(s.window.start_ns) as f64 / 1e9;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(last: u8, port: u16, proto: u8) -> DestKey {
        let mut addr = [0u8; 16];
        addr[15] = last;
        DestKey::new(AddrKey(addr), port, proto)
    }

    fn window(start_ns: u64, packets: u32, udp: u32, fresh: u32, sources: u64) -> Window {
        Window {
            start_ns,
            packets,
            bytes: packets * 100,
            udp,
            fresh,
            dst_sketch: [sources, 0],
            distinct_dsts: sources.count_ones(),
            ..Window::default()
        }
    }

    #[test]
    fn an_address_is_its_ports_merged_and_decided_at_the_busiest() {
        let steps = merge(
            vec![
                (key(1, 443, 6), window(500_000_000, 40, 0, 2, 0b0011)),
                (key(1, 0, 17), window(700_000_000, 4000, 4000, 3990, 0b1110)),
                (key(2, 443, 6), window(900_000_000, 5, 0, 0, 0b1)),
            ],
            1_500_000_000,
        );
        assert_eq!(steps.len(), 2);
        let one = steps.iter().find(|s| s.addr == key(1, 0, 0).addr).unwrap();
        assert_eq!(one.window.packets, 4040);
        assert_eq!(one.window.fresh, 3992);
        assert_eq!(
            one.window.distinct_dsts, 4,
            "sources merge through the sketch"
        );
        assert_eq!(one.hot, key(1, 0, 17));
        assert_eq!(one.ports.len(), 2, "each port's own window is kept");
        assert!((one.secs - 1.0).abs() < 1e-9, "from the earliest window");
    }
}
