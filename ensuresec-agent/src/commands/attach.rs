//! `ensuresec attach` and `ensuresec detach`.

use std::path::Path;

use anyhow::Result;

use crate::{config::Config, config::Mode, ebpf, pins::PinDir, store::Store};

pub fn attach(pins: &PinDir, iface: &str, mode: Mode, config: Option<&Path>) -> Result<()> {
    crate::attach::ifindex(iface)?;
    let config = Config::load_or_default(config)?;
    let mut bpf = ebpf::load(pins, &config.raw.maps)?;
    let store = Store::open(pins)?;
    let done = crate::attach::attach(&mut bpf, &store.write()?, iface, mode)?;
    if done.replaced {
        println!(
            "replaced the program on {} ({} mode) in place",
            done.iface, done.mode
        );
    } else {
        println!("attached to {} in {} mode", done.iface, done.mode);
    }
    Ok(())
}

pub fn detach(pins: &PinDir, iface: &str, keep_maps: bool) -> Result<()> {
    let done = crate::attach::detach(pins, iface, keep_maps)?;
    println!("detached from {}", done.iface);
    if done.maps_removed {
        println!(
            "no interface left: removed the maps and lists under {}",
            pins.root().display()
        );
    }
    Ok(())
}
