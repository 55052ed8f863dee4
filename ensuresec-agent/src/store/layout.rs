//! Pinned maps are checked against the contract (`ensuresec_common::contract`)
//! before anything uses them: maps left by another layout, or a pin of the
//! wrong kind of object, are refused with what differs.

use aya::maps::{MapData, MapInfo, MapType};
use ensuresec_common::contract::{MapContract, MapKind, PINNED_MAPS};

use crate::{
    error::{Error, Result},
    pins::PinDir,
};

fn map_type(kind: MapKind) -> MapType {
    match kind {
        MapKind::Array => MapType::Array,
        MapKind::PerCpuArray => MapType::PerCpuArray,
        MapKind::Hash => MapType::Hash,
        MapKind::LruHash => MapType::LruHash,
        MapKind::LruPerCpuHash => MapType::LruPerCpuHash,
        MapKind::ProgArray => MapType::ProgramArray,
        MapKind::RingBuf => MapType::RingBuf,
    }
}

/// The pinned map of `contract` and the kernel's description of it; `None`
/// when it is not pinned (yet).
pub(super) fn open_pinned(
    pins: &PinDir,
    contract: &MapContract,
) -> Result<Option<(MapData, MapInfo)>> {
    let path = pins.map(contract.name);
    if !path.exists() {
        return Ok(None);
    }
    let data = MapData::from_pin(&path).map_err(|e| Error::map(contract.name, e))?;
    let info = data.info().map_err(|e| Error::map(contract.name, e))?;
    Ok(Some((data, info)))
}

/// Refuses pinned maps whose kind or key/value sizes differ from this
/// build's contract. Maps not pinned yet are skipped (a load creates them).
pub fn check_pinned_layout(pins: &PinDir) -> Result<()> {
    for contract in PINNED_MAPS {
        let Some((_, info)) = open_pinned(pins, contract)? else {
            continue;
        };
        let kind = info.map_type().map_err(|e| Error::map(contract.name, e))?;
        let want = map_type(contract.kind);
        if kind != want {
            return Err(Error::Layout {
                map: contract.name.to_string(),
                what: format!("a {kind:?} where this build uses a {want:?}"),
            });
        }
        let have = (info.key_size(), info.value_size());
        let want = (contract.key_size, contract.value_size);
        if have != want {
            return Err(Error::Layout {
                map: contract.name.to_string(),
                what: format!(
                    "key/value sizes {}/{} where this build uses {}/{}",
                    have.0, have.1, want.0, want.1
                ),
            });
        }
    }
    Ok(())
}
