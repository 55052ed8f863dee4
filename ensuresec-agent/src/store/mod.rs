//! The pinned maps, opened by path: the state every command and the agent share.
//! Writers hold an exclusive `flock` on the pin directory for the whole change.

mod cuckoo;
pub mod decisions;
mod detect;
mod edit;
mod exact;
mod layout;
mod lists;
mod memory;
mod raw;
mod reasons;
mod sums;
mod trie;
mod writer;

use ensuresec_common::{
    exact::{WAYS_V4, WAYS_V6, buckets_v4, buckets_v6},
    features::AddrKey,
    maps::{
        Control, Counter, IfaceRecord, LAYOUT_VERSION, MAP_BUDGET, MAP_CONTROL, MAP_COUNTERS,
        MAP_DECISIONS, MAP_DESTS, MAP_DETECT, MAP_DOOR, MAP_DROPS, MAP_DST_PORTS, MAP_EVENT_STATS,
        MAP_HORIZONS, MAP_IFACES, MAP_OFFENDERS, MAP_PORTS, MAP_REASONS, MAP_SOURCES, MAP_THROTTLE,
        MAP_TRIE4_NODES, MAP_TRIE4_ROOT, MAP_TRIE4_RULES, MAP_TRIE6_LEAVES, MAP_TRIE6_NODES,
        MAP_TRIE6_ROOT, MAP_TRIE6_RULES, MAP_X4_KEYS, MAP_X4_VALS, MAP_X6_KEYS, MAP_X6_VALS,
        PortBitmap, port_slot,
    },
};

pub use self::{
    edit::{EditSummary, Listed},
    layout::check_pinned_layout,
    memory::MapMemory,
    raw::RawMap,
    reasons::{Reasons, validate as validate_reason},
    sums::{Summed, add_window},
    writer::Writer,
};
use crate::{
    error::{Error, Result},
    pins::PinDir,
};

/// Capacities of the list maps, read from the kernel.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Capacities {
    pub exact_v4: u32,
    pub exact_v6: u32,
    pub cidr_v4: u32,
    pub cidr_v6: u32,
    /// Trie nodes per copy.
    pub trie4_nodes: u32,
    pub trie6_nodes: u32,
}

/// Every pinned map, opened once. Reads go through `Store`; changes go
/// through a `Writer` (`Store::write`), which holds the write lock.
pub struct Store {
    pins: PinDir,
    /// Possible CPUs: the number of values of a per-CPU map's entry.
    cpus: usize,
    pub(crate) exact_v4: exact::Table<u32, WAYS_V4>,
    pub(crate) exact_v6: exact::Table<AddrKey, WAYS_V6>,
    pub(crate) trie4: trie::TrieMaps,
    pub(crate) trie6: trie::TrieMaps,
    pub(crate) control: RawMap,
    pub(crate) ports: RawMap,
    pub(crate) counters: RawMap,
    pub(crate) reasons: RawMap,
    pub(crate) ifaces: RawMap,
    pub(crate) sources: RawMap,
    /// Per-source horizons, beside `sources`.
    pub(crate) horizons: RawMap,
    /// The doorkeeper in front of `sources`.
    pub(crate) door: RawMap,
    pub(crate) dests: RawMap,
    pub(crate) dst_ports: RawMap,
    pub(crate) detect: RawMap,
    pub(crate) event_stats: RawMap,
    pub(crate) throttles: RawMap,
    pub(crate) budgets: RawMap,
    pub(crate) decisions: RawMap,
    pub(crate) offenders: RawMap,
    pub(crate) drops: RawMap,
    pub capacities: Capacities,
}

impl Store {
    /// Opens the pinned maps.
    pub fn open(pins: &PinDir) -> Result<Self> {
        if !pins.has_maps() {
            return Err(Error::NothingAttached(pins.root().to_path_buf()));
        }
        check_pinned_layout(pins)?;
        let open = |name| RawMap::open(pins, name);
        let control_map = open(MAP_CONTROL)?;
        let control: Control = control_map
            .get(&0u32)?
            .ok_or_else(|| Error::map(MAP_CONTROL, "entry 0 missing"))?;
        if control.layout_version != LAYOUT_VERSION {
            return Err(Error::Layout {
                map: MAP_CONTROL.into(),
                what: format!(
                    "layout version {}, this build uses {LAYOUT_VERSION}",
                    control.layout_version
                ),
            });
        }
        let (seed4, mask4, seed6, mask6) = (
            control.x4_seed,
            control.x4_mask,
            control.x6_seed,
            control.x6_mask,
        );
        let exact_v4 = exact::Table {
            keys: open(MAP_X4_KEYS)?,
            vals: open(MAP_X4_VALS)?,
            capacity: control.x4_capacity,
            buckets: Box::new(move |k: &u32| buckets_v4(*k, seed4, mask4)),
        };
        let exact_v6 = exact::Table {
            keys: open(MAP_X6_KEYS)?,
            vals: open(MAP_X6_VALS)?,
            capacity: control.x6_capacity,
            buckets: Box::new(move |k: &AddrKey| buckets_v6(k, seed6, mask6)),
        };
        let trie4 = trie::TrieMaps::open(
            open(MAP_TRIE4_ROOT)?,
            open(MAP_TRIE4_NODES)?,
            open(MAP_TRIE4_RULES)?,
            None,
        )?;
        let trie6 = trie::TrieMaps::open(
            open(MAP_TRIE6_ROOT)?,
            open(MAP_TRIE6_NODES)?,
            open(MAP_TRIE6_RULES)?,
            Some(open(MAP_TRIE6_LEAVES)?),
        )?;
        // A source's horizon sits at its slot's index: the tables go together.
        let (sources, horizons) = (open(MAP_SOURCES)?, open(MAP_HORIZONS)?);
        let (slots, beside) = (sources.capacity()?, horizons.capacity()?);
        if slots != beside {
            return Err(Error::map(
                MAP_HORIZONS,
                format!("{beside} entries where {MAP_SOURCES} has {slots}"),
            ));
        }
        let capacities = Capacities {
            exact_v4: control.x4_capacity,
            exact_v6: control.x6_capacity,
            cidr_v4: trie4.rule_capacity,
            cidr_v6: trie6.rule_capacity,
            trie4_nodes: trie4.node_capacity,
            trie6_nodes: trie6.node_capacity,
        };
        let cpus = aya::util::nr_cpus()
            .map_err(|(what, e)| Error::io(format!("counting CPUs ({what})"), e))?;
        Ok(Store {
            pins: pins.clone(),
            cpus,
            exact_v4,
            exact_v6,
            trie4,
            trie6,
            control: control_map,
            ports: open(MAP_PORTS)?,
            counters: open(MAP_COUNTERS)?,
            reasons: open(MAP_REASONS)?,
            ifaces: open(MAP_IFACES)?,
            sources,
            horizons,
            door: open(MAP_DOOR)?,
            dests: open(MAP_DESTS)?,
            dst_ports: open(MAP_DST_PORTS)?,
            detect: open(MAP_DETECT)?,
            event_stats: open(MAP_EVENT_STATS)?,
            throttles: open(MAP_THROTTLE)?,
            budgets: open(MAP_BUDGET)?,
            decisions: open(MAP_DECISIONS)?,
            offenders: open(MAP_OFFENDERS)?,
            drops: open(MAP_DROPS)?,
            capacities,
        })
    }

    pub fn pins(&self) -> &PinDir {
        &self.pins
    }

    pub fn control(&self) -> Result<Control> {
        self.control
            .get(&0u32)?
            .ok_or_else(|| Error::map(MAP_CONTROL, "entry 0 missing"))
    }

    /// Packet and byte counters per reason, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<Counter>> {
        (0..ensuresec_common::reason::REASON_COUNT)
            .map(|i| {
                let per_cpu: Vec<Counter> = self
                    .counters
                    .get_per_cpu(&i, self.cpus)?
                    .ok_or_else(|| Error::map(MAP_COUNTERS, format!("entry {i} missing")))?;
                Ok(per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                    packets: acc.packets + c.packets,
                    bytes: acc.bytes + c.bytes,
                }))
            })
            .collect()
    }

    /// The live port policy: enabled flag and the TCP and UDP bitmaps.
    pub fn port_policy(&self) -> Result<(bool, PortBitmap, PortBitmap)> {
        let control = self.control()?;
        let get = |udp: bool| {
            let i = port_slot(control.ports_copy, udp);
            self.ports
                .get::<u32, PortBitmap>(&i)?
                .ok_or_else(|| Error::map(MAP_PORTS, format!("entry {i} missing")))
        };
        Ok((control.port_policy_enabled != 0, get(false)?, get(true)?))
    }

    /// Every pinned map's kernel memory against its raw entries.
    pub fn map_memory(&self) -> Result<Vec<MapMemory>> {
        memory::map_memory(&self.pins, self.cpus)
    }

    /// Attachment records by ifindex.
    pub fn iface_records(&self) -> Result<Vec<(u32, IfaceRecord)>> {
        self.ifaces.dump()
    }
}

impl Writer<'_> {
    pub(crate) fn set_control(&self, control: &Control) -> Result<()> {
        self.control.set(&0u32, control)
    }

    /// Installs the port policy: bitmaps into the inactive copy, then one flip.
    pub fn set_port_policy(&self, enabled: bool, tcp: &PortBitmap, udp: &PortBitmap) -> Result<()> {
        let mut control = self.control()?;
        let next = 1 - (control.ports_copy & 1);
        self.ports.set(&port_slot(next, false), tcp)?;
        self.ports.set(&port_slot(next, true), udp)?;
        control.ports_copy = next;
        control.port_policy_enabled = enabled as u32;
        self.set_control(&control)
    }

    pub fn set_iface_record(&self, ifindex: u32, record: &IfaceRecord) -> Result<()> {
        self.ifaces.set(&ifindex, record)
    }

    pub fn remove_iface_record(&self, ifindex: u32) -> Result<bool> {
        self.ifaces.remove(&ifindex)
    }
}
