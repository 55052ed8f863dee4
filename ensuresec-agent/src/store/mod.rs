//! The pinned maps, opened by path: the state every command and the agent share.
//! Writers hold an exclusive `flock` on the pin directory for the whole change.

mod cidr6;
mod cuckoo;
pub mod decisions;
mod detect;
mod edit;
mod exact;
mod raw;
mod reasons;
mod trie4;

use std::fs::File;

use aya::maps::{MapData, PerCpuArray};
use ensuresec_common::{
    exact::{WAYS_V4, WAYS_V6, buckets_v4, buckets_v6},
    maps::{
        Control, Counter, IfaceRecord, LAYOUT_VERSION, MAP_CIDR_V6, MAP_CONTROL, MAP_COUNTERS,
        MAP_IFACES, MAP_PORTS, MAP_REASONS, MAP_TRIE4_NODES, MAP_TRIE4_ROOT, MAP_TRIE4_RULES,
        MAP_X4_KEYS, MAP_X4_VALS, MAP_X6_KEYS, MAP_X6_VALS, PortBitmap,
    },
};

pub use self::{
    detect::Summed,
    edit::{EditSummary, Listed},
    raw::RawMap,
    reasons::{Reasons, validate as validate_reason},
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
}

pub struct Store {
    pins: PinDir,
    pub(crate) exact_v4: exact::Table<u32, WAYS_V4>,
    pub(crate) exact_v6: exact::Table<[u8; 16], WAYS_V6>,
    pub(crate) cidr_v6: RawMap,
    pub(crate) trie_root: RawMap,
    pub(crate) trie_nodes: RawMap,
    pub(crate) trie_rules: RawMap,
    pub(crate) control: RawMap,
    pub(crate) ports: RawMap,
    pub(crate) counters: PerCpuArray<MapData, Counter>,
    pub(crate) reasons: RawMap,
    pub(crate) ifaces: RawMap,
    pub capacities: Capacities,
}

/// Held while changing lists; other writers (CLI commands, the agent) wait.
pub struct WriteLock {
    _file: File,
}

impl Store {
    /// Serialises writers: an exclusive `flock` on the pin directory until dropped.
    /// Every change to lists, reasons or policy happens under it.
    pub fn lock(&self) -> Result<WriteLock> {
        let root = self.pins.root();
        let file =
            File::open(root).map_err(|e| Error::io(format!("opening {}", root.display()), e))?;
        file.lock()
            .map_err(|e| Error::io(format!("locking {}", root.display()), e))?;
        Ok(WriteLock { _file: file })
    }

    /// Opens the pinned maps.
    pub fn open(pins: &PinDir) -> Result<Self> {
        if !pins.has_maps() {
            return Err(Error::NothingAttached(pins.root().to_path_buf()));
        }
        crate::ebpf::check_pinned_layout(pins)?;
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
            buckets: Box::new(move |k: &[u8; 16]| buckets_v6(k, seed6, mask6)),
        };
        let cidr_v6 = open(MAP_CIDR_V6)?;
        let (trie_root, trie_nodes, trie_rules) = (
            open(MAP_TRIE4_ROOT)?,
            open(MAP_TRIE4_NODES)?,
            open(MAP_TRIE4_RULES)?,
        );
        let capacities = Capacities {
            exact_v4: control.x4_capacity,
            exact_v6: control.x6_capacity,
            cidr_v4: trie_rules.capacity()? / 2,
            cidr_v6: cidr_v6.capacity()?,
            trie4_nodes: trie_nodes.capacity()? / 2,
        };
        let counters =
            PerCpuArray::try_from(aya::maps::Map::PerCpuArray(open(MAP_COUNTERS)?.into_data()))
                .map_err(|e| Error::map(MAP_COUNTERS, e))?;
        let store = Store {
            pins: pins.clone(),
            exact_v4,
            exact_v6,
            cidr_v6,
            trie_root,
            trie_nodes,
            trie_rules,
            control: control_map,
            ports: open(MAP_PORTS)?,
            counters,
            reasons: open(MAP_REASONS)?,
            ifaces: open(MAP_IFACES)?,
            capacities,
        };
        Ok(store)
    }

    pub fn pins(&self) -> &PinDir {
        &self.pins
    }

    pub fn control(&self) -> Result<Control> {
        self.control
            .get(&0u32)?
            .ok_or_else(|| Error::map(MAP_CONTROL, "entry 0 missing"))
    }

    pub(crate) fn set_control(&self, control: &Control) -> Result<()> {
        self.control.set(&0u32, control)
    }

    /// Packet and byte counters per reason, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<Counter>> {
        (0..ensuresec_common::reason::REASON_COUNT)
            .map(|i| {
                let per_cpu = self
                    .counters
                    .get(&i, 0)
                    .map_err(|e| Error::map(MAP_COUNTERS, e))?;
                Ok(per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                    packets: acc.packets + c.packets,
                    bytes: acc.bytes + c.bytes,
                }))
            })
            .collect()
    }

    /// Installs the port policy: bitmaps into the inactive copy, then one flip.
    pub fn set_port_policy(&self, enabled: bool, tcp: &PortBitmap, udp: &PortBitmap) -> Result<()> {
        let mut control = self.control()?;
        let next = 1 - (control.ports_copy & 1);
        self.ports.set(&(next * 2), tcp)?;
        self.ports.set(&(next * 2 + 1), udp)?;
        control.ports_copy = next;
        control.port_policy_enabled = enabled as u32;
        self.set_control(&control)
    }

    /// The live port policy: enabled flag and the TCP and UDP bitmaps.
    pub fn port_policy(&self) -> Result<(bool, PortBitmap, PortBitmap)> {
        let control = self.control()?;
        let copy = control.ports_copy & 1;
        let get = |i: u32| {
            self.ports
                .get::<u32, PortBitmap>(&i)?
                .ok_or_else(|| Error::map(MAP_PORTS, format!("entry {i} missing")))
        };
        Ok((
            control.port_policy_enabled != 0,
            get(copy * 2)?,
            get(copy * 2 + 1)?,
        ))
    }

    /// Attachment records by ifindex.
    pub fn iface_records(&self) -> Result<Vec<(u32, IfaceRecord)>> {
        self.ifaces.dump()
    }

    pub fn set_iface_record(&self, ifindex: u32, record: &IfaceRecord) -> Result<()> {
        self.ifaces.set(&ifindex, record)
    }

    pub fn remove_iface_record(&self, ifindex: u32) -> Result<bool> {
        self.ifaces.remove(&ifindex)
    }
}
