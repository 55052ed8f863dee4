//! The detection maps: kernel trip wires, tracked destination ports, per-source
//! and per-destination features, and the throttles and budgets the agent sets.

use aya::maps::MapData;
use ensuresec_common::{
    features::{
        AddrKey, DestKey, DestSlot, DestStats, DetectConfig, FEATURE_WAYS, Horizon, Scale,
        SourceSlot, Throttle, Window, set_of,
    },
    maps::{
        DST_PORTS_TCP, DST_PORTS_UDP, DropCount, EVENT_STAT_DROPPED, EVENT_STAT_SENT, MAP_DESTS,
        MAP_EVENT_STATS, MAP_EVENTS, MAP_SOURCES, PortBitmap,
    },
};

use super::{
    RawMap, Store, Writer,
    sums::{SourceSum, Summed, add_horizon, add_source, add_window, earliest},
};
use crate::error::{Error, Result};

impl Store {
    /// Every CPU's value at `index`.
    fn per_cpu<V: aya::Pod>(&self, map: &RawMap, index: u32) -> Result<Vec<V>> {
        map.get_per_cpu(&index, self.cpus)?
            .ok_or_else(|| Error::map(map.name, format!("slot {index} missing")))
    }

    /// The values of `key` on every CPU: each CPU's copy of its set holds it in
    /// one way or not at all.
    fn per_cpu_ways<V: aya::Pod>(
        &self,
        map: &RawMap,
        first: u32,
        matches: impl Fn(&V) -> bool,
    ) -> Result<Vec<V>> {
        let mut out = Vec::new();
        for way in 0..FEATURE_WAYS {
            let values: Vec<V> = self.per_cpu(map, first + way)?;
            out.extend(values.iter().filter(|v| matches(v)).copied());
        }
        Ok(out)
    }

    pub fn detect_config(&self) -> Result<DetectConfig> {
        Ok(self.detect.get(&0u32)?.unwrap_or_default())
    }

    /// A source's features summed over CPUs; the window covers CPUs whose
    /// window began at or after `since_ns`, the horizon those whose horizon
    /// is not over. `cfg` gives the table's geometry
    /// (`detect_config`, which does not change while detection runs).
    pub fn source_stats(
        &self,
        cfg: &DetectConfig,
        key: &AddrKey,
        since_ns: u64,
    ) -> Result<Option<SourceSum>> {
        let first = set_of(key, 0, cfg.seed, cfg.source_mask);
        let mut out: Option<SourceSum> = None;
        // A CPU's horizon that began longer than a horizon ago is over: the
        // kernel starts the next one only with the source's next packet there.
        let horizon_since_ns = crate::clock::mono_ns().saturating_sub(cfg.horizon_ns);
        for index in first..first + FEATURE_WAYS {
            let slots: Vec<SourceSlot> = self.per_cpu(&self.sources, index)?;
            if !slots.iter().any(|s| s.key == *key) {
                continue;
            }
            let horizons: Vec<Horizon> = self.per_cpu(&self.horizons, index)?;
            for (slot, h) in slots.iter().zip(&horizons) {
                if slot.key != *key {
                    continue;
                }
                let (v, sum) = (&slot.stats, out.get_or_insert_with(SourceSum::default));
                add_source(&mut sum.total, v);
                if v.packets > 0 && v.window.start_ns >= since_ns {
                    add_window(&mut sum.window, &v.window);
                }
                // A horizon not begun holds a former occupant's counts.
                if v.first.horizon_begun() && h.start_ns >= horizon_since_ns {
                    add_horizon(&mut sum.horizon, h);
                }
            }
        }
        Ok(out)
    }

    /// Calls `f(cpu, slot)` on every occupied slot of the per-source table,
    /// on every CPU: a source appears once per CPU that saw it. Batched, a
    /// few thousand slots per syscall.
    pub fn for_each_source(&self, mut f: impl FnMut(usize, &SourceSlot)) -> Result<()> {
        crate::sys::scan_per_cpu_array::<SourceSlot>(
            self.sources.fd(),
            self.cpus,
            2048,
            |_, values| {
                for (cpu, v) in values.iter().enumerate() {
                    if v.stats.packets > 0 {
                        f(cpu, v);
                    }
                }
            },
        )
        .map_err(|e| Error::map(MAP_SOURCES, e))
    }

    /// Calls `f(cpu, slot)` on every occupied slot of the per-destination
    /// table, on every CPU, as `for_each_source`.
    pub fn for_each_dest(&self, mut f: impl FnMut(usize, &DestSlot)) -> Result<()> {
        crate::sys::scan_per_cpu_array::<DestSlot>(self.dests.fd(), self.cpus, 1024, |_, values| {
            for (cpu, v) in values.iter().enumerate() {
                if v.stats.packets > 0 {
                    f(cpu, v);
                }
            }
        })
        .map_err(|e| Error::map(MAP_DESTS, e))
    }

    /// A destination's features summed over CPUs, as `source_stats`; the
    /// window is the one at `scale`.
    pub fn dest_stats(
        &self,
        cfg: &DetectConfig,
        key: &DestKey,
        scale: Scale,
        since_ns: u64,
    ) -> Result<Option<Summed<DestStats>>> {
        let first = set_of(&key.addr, key.extra(), cfg.seed, cfg.dest_mask);
        let slots = self.per_cpu_ways::<DestSlot>(&self.dests, first, |v| v.key == *key)?;
        if slots.is_empty() {
            return Ok(None);
        }
        let mut out = Summed::<DestStats>::default();
        for v in slots.iter().map(|s| &s.stats) {
            let t = &mut out.total;
            t.first_seen_ns = earliest(t.first_seen_ns, v.first_seen_ns);
            t.last_seen_ns = t.last_seen_ns.max(v.last_seen_ns);
            t.packets += v.packets;
            t.bytes += v.bytes;
            t.new_conns += v.new_conns;
            let w = v.at(scale);
            if v.packets > 0 && w.start_ns >= since_ns {
                add_window(&mut out.window, w);
            }
        }
        Ok(Some(out))
    }

    /// Every destination's window at `scale`, summed over the CPUs whose
    /// window began at or after `since_ns`; destinations with no such window
    /// are left out.
    pub fn dest_windows(&self, scale: Scale, since_ns: u64) -> Result<Vec<(DestKey, Window)>> {
        let mut sums = std::collections::HashMap::<DestKey, Window>::new();
        self.for_each_dest(|_, slot| {
            let w = slot.stats.at(scale);
            if w.packets > 0 && w.start_ns >= since_ns {
                add_window(sums.entry(slot.key).or_default(), w);
            }
        })?;
        Ok(sums.into_iter().collect())
    }

    /// Every destination the kernel is tracking, on any CPU.
    pub fn dest_keys(&self) -> Result<Vec<DestKey>> {
        let mut keys = std::collections::HashSet::new();
        crate::sys::scan_per_cpu_array::<DestSlot>(
            self.dests.fd(),
            self.cpus,
            1024,
            |_, values| {
                keys.extend(values.iter().filter(|v| v.stats.packets > 0).map(|v| v.key));
            },
        )
        .map_err(|e| Error::map(MAP_DESTS, e))?;
        Ok(keys.into_iter().collect())
    }

    /// A reader of the kernel's event ring buffer.
    pub fn events(&self) -> Result<aya::maps::RingBuf<MapData>> {
        let data = RawMap::open(self.pins(), MAP_EVENTS)?.into_data();
        let map = aya::maps::Map::from_map_data(data).map_err(|e| Error::map(MAP_EVENTS, e))?;
        aya::maps::RingBuf::try_from(map).map_err(|e| Error::map(MAP_EVENTS, e))
    }

    /// Per-CPU event counters summed: (dropped for lack of room, sent).
    pub fn event_stats(&self) -> Result<(u64, u64)> {
        let sum = |i: u32| -> Result<u64> {
            let values: Vec<u64> = self
                .event_stats
                .get_per_cpu(&i, self.cpus)?
                .ok_or_else(|| Error::map(MAP_EVENT_STATS, format!("entry {i} missing")))?;
            Ok(values.iter().sum())
        };
        Ok((sum(EVENT_STAT_DROPPED)?, sum(EVENT_STAT_SENT)?))
    }

    /// Packets dropped on their way to `addr` (and SYNs among them), summed
    /// over CPUs; sampled in the kernel, see `DROP_SAMPLE`.
    pub fn drops_to(&self, addr: std::net::IpAddr) -> Result<DropCount> {
        let key: AddrKey = super::decisions::addr_key(addr);
        let per_cpu: Vec<DropCount> = self.drops.get_per_cpu(&key, self.cpus)?.unwrap_or_default();
        Ok(per_cpu.iter().fold(DropCount::default(), |a, c| DropCount {
            packets: a.packets + c.packets,
            syns: a.syns + c.syns,
        }))
    }

    /// Throttles in force, by source.
    pub fn throttles(&self) -> Result<Vec<(AddrKey, Throttle)>> {
        self.throttles.dump()
    }

    /// Budgets in force, by destination.
    pub fn budgets(&self) -> Result<Vec<(DestKey, Throttle)>> {
        self.budgets.dump()
    }
}

impl Writer<'_> {
    /// Writes the trip wires and sampling of `cfg`; the feature tables'
    /// geometry (seed, set masks) is filled in here from the pinned maps.
    pub fn set_detect_config(&self, cfg: &DetectConfig) -> Result<()> {
        let current = self.detect_config()?;
        let mut cfg = *cfg;
        cfg.seed = if current.seed != 0 {
            current.seed
        } else {
            random_seed()?
        };
        let sets = |map: &RawMap| -> Result<u32> { Ok(map.capacity()? / FEATURE_WAYS) };
        // The largest power of two of sets that fits, as a mask.
        let mask = |n: u32| (1u32 << (31 - n.max(1).leading_zeros())) - 1;
        cfg.source_mask = mask(sets(&self.sources)?);
        cfg.dest_mask = mask(sets(&self.dests)?);
        cfg.door_mask = mask(self.door.capacity()?);
        self.detect.set(&0u32, &cfg)
    }

    /// Destination ports counted one by one (the rest count as port 0).
    pub fn set_tracked_ports(&self, tcp: &PortBitmap, udp: &PortBitmap) -> Result<()> {
        self.dst_ports.set(&DST_PORTS_TCP, tcp)?;
        self.dst_ports.set(&DST_PORTS_UDP, udp)
    }

    /// Stores how many throttles and budgets are in force in the control
    /// map, so the XDP program skips their lookups while a map is empty.
    fn recount_mitigations(&self) -> Result<()> {
        let count = |map: &RawMap, keys: Result<usize, std::io::Error>| {
            keys.map(|n| n as u32).map_err(|e| Error::map(map.name, e))
        };
        let throttles = count(
            &self.throttles,
            crate::sys::keys::<AddrKey>(self.throttles.fd()).map(|k| k.len()),
        )?;
        let budgets = count(
            &self.budgets,
            crate::sys::keys::<DestKey>(self.budgets.fd()).map(|k| k.len()),
        )?;
        let mut control = self.control()?;
        if (control.throttles, control.budgets) != (throttles, budgets) {
            control.throttles = throttles;
            control.budgets = budgets;
            self.set_control(&control)?;
        }
        Ok(())
    }

    /// Installs or replaces a throttle on a source.
    pub fn set_throttle(&self, key: &AddrKey, t: &Throttle) -> Result<()> {
        self.throttles.set(key, t)?;
        self.recount_mitigations()
    }

    pub fn remove_throttle(&self, key: &AddrKey) -> Result<bool> {
        let removed = self.throttles.remove(key)?;
        self.recount_mitigations()?;
        Ok(removed)
    }

    /// Installs or replaces a new-connection budget on a destination.
    pub fn set_budget(&self, key: &DestKey, t: &Throttle) -> Result<()> {
        self.budgets.set(key, t)?;
        self.recount_mitigations()
    }

    pub fn remove_budget(&self, key: &DestKey) -> Result<bool> {
        let removed = self.budgets.remove(key)?;
        self.recount_mitigations()?;
        Ok(removed)
    }
}

fn random_seed() -> Result<u64> {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| Error::io("reading /dev/urandom", e))?;
    Ok(u64::from_ne_bytes(bytes) | 1)
}
