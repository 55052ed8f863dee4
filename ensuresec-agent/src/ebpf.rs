//! Loading the XDP object: embedded at build time, maps pinned by name under
//! the pin directory and reused when already there.

use aya::{Ebpf, EbpfLoader};
use ensuresec_common::{
    exact::{WAYS_V4, WAYS_V6, buckets_for},
    maps::{
        Control, LAYOUT_VERSION, MAP_CONTROL, MAP_PROGS, MAP_TRIE4_NODES, MAP_TRIE4_RULES,
        MAP_TRIE6_LEAVES, MAP_TRIE6_NODES, MAP_TRIE6_RULES, MAP_X4_KEYS, MAP_X4_VALS, MAP_X6_KEYS,
        MAP_X6_VALS, PROG_DETECT,
    },
    trie::{MAX_NODES_PER_RULE, nodes_v6},
};

use crate::{
    config::MapSizes,
    error::{Error, Result},
    pins::{PinDir, ensure_bpffs},
    store::RawMap,
};

/// The compiled XDP object.
pub fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ensuresec"))
}

/// Name of the filter program in the object.
pub const FILTER_PROGRAM: &str = "ensuresec";
/// The program the filter tail-calls for feature extraction and mitigations.
pub const DETECT_PROGRAM: &str = "ensuresec_detect";

/// Loads the filter and its detection program into the kernel (once per
/// `Ebpf`) and installs the detection program in `ES_PROGS`.
pub fn load_filter(ebpf: &mut Ebpf) -> Result<()> {
    for name in [DETECT_PROGRAM, FILTER_PROGRAM] {
        let prog: &mut aya::programs::Xdp = ebpf
            .program_mut(name)
            .ok_or_else(|| Error::Load(format!("no program `{name}` in the object")))?
            .try_into()
            .map_err(|e| Error::Load(format!("{e}")))?;
        if prog.fd().is_err() {
            prog.load()
                .map_err(|e| Error::Load(format!("{name}: {e:#?}")))?;
        }
    }
    let detect: &aya::programs::Xdp = ebpf
        .program(DETECT_PROGRAM)
        .ok_or_else(|| Error::Load(format!("no program `{DETECT_PROGRAM}`")))?
        .try_into()
        .map_err(|e| Error::Load(format!("{e}")))?;
    let fd = detect
        .fd()
        .map_err(|e| Error::Load(format!("{e}")))?
        .try_clone()
        .map_err(|e| Error::Load(format!("{e}")))?;
    let map = ebpf
        .map_mut(MAP_PROGS)
        .ok_or_else(|| Error::map(MAP_PROGS, "missing from the object"))?;
    let mut progs = aya::maps::ProgramArray::try_from(map).map_err(|e| Error::map(MAP_PROGS, e))?;
    progs
        .set(PROG_DETECT, &fd, 0)
        .map_err(|e| Error::map(MAP_PROGS, e))
}

/// Loads the object, creating or reusing the pinned maps. Programs are not
/// loaded into the kernel yet; callers load the ones they need.
pub fn load(pins: &PinDir, sizes: &MapSizes) -> Result<Ebpf> {
    load_with(pins, sizes, &[])
}

/// `load`, with the size of more maps set (the benchmark's source table).
pub fn load_with(pins: &PinDir, sizes: &MapSizes, extra: &[(&str, u32)]) -> Result<Ebpf> {
    ensure_bpffs(pins.root())?;
    std::fs::create_dir_all(pins.maps())
        .map_err(|e| Error::io(format!("creating {}", pins.maps().display()), e))?;
    std::fs::create_dir_all(pins.links())
        .map_err(|e| Error::io(format!("creating {}", pins.links().display()), e))?;
    crate::store::check_pinned_layout(pins)?;
    let maps_dir = pins.maps();
    let (x4, x6) = (
        buckets_for(sizes.exact_v4, WAYS_V4),
        buckets_for(sizes.exact_v6, WAYS_V6),
    );
    let mut loader = EbpfLoader::new();
    for (name, size) in extra {
        loader.map_max_entries(name, *size);
    }
    let ebpf = loader
        .default_map_pin_directory(&maps_dir)
        .map_max_entries(MAP_X4_KEYS, x4)
        .map_max_entries(MAP_X4_VALS, x4 * WAYS_V4 as u32)
        .map_max_entries(MAP_X6_KEYS, x6)
        .map_max_entries(MAP_X6_VALS, x6 * WAYS_V6 as u32)
        .map_max_entries(MAP_TRIE4_RULES, 2 * sizes.cidr_v4)
        .map_max_entries(MAP_TRIE4_NODES, 2 * MAX_NODES_PER_RULE * sizes.cidr_v4)
        .map_max_entries(MAP_TRIE6_RULES, 2 * sizes.cidr_v6)
        .map_max_entries(MAP_TRIE6_LEAVES, 2 * sizes.cidr_v6)
        .map_max_entries(MAP_TRIE6_NODES, 2 * nodes_v6(sizes.cidr_v6))
        .load(object())
        .map_err(|e| Error::Load(format!("{e:#}")))?;
    init_control(pins, sizes)?;
    Ok(ebpf)
}

/// Fills `ES_CONTROL` of maps this load created: layout version, the exact
/// tables' geometry and fresh random hash seeds.
fn init_control(pins: &PinDir, sizes: &MapSizes) -> Result<()> {
    let control_map = RawMap::open(pins, MAP_CONTROL)?;
    let mut control: Control = control_map.get(&0u32)?.unwrap_or_default();
    if control.layout_version != 0 {
        return Ok(());
    }
    let mut seeds = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seeds))
        .map_err(|e| Error::io("reading /dev/urandom", e))?;
    control.x4_seed = u64::from_ne_bytes(seeds[..8].try_into().expect("8 bytes"));
    control.x6_seed = u64::from_ne_bytes(seeds[8..].try_into().expect("8 bytes"));
    control.x4_mask = buckets_for(sizes.exact_v4, WAYS_V4) - 1;
    control.x6_mask = buckets_for(sizes.exact_v6, WAYS_V6) - 1;
    control.x4_capacity = sizes.exact_v4;
    control.x6_capacity = sizes.exact_v6;
    control.layout_version = LAYOUT_VERSION;
    control_map.set(&0u32, &control)
}
