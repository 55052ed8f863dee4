//! Types and pure logic shared by the XDP programs and the user-space agent.
//!
//! Everything outside the `user` feature is `no_std` and `#[repr(C)]`, because the
//! eBPF crate and the agent must agree byte for byte on map keys and values.
#![cfg_attr(not(feature = "user"), no_std)]

pub mod contract;
pub mod decisions;
pub mod exact;
pub mod features;
pub mod maps;
pub mod named;
pub mod reason;
pub mod trie;

#[cfg(feature = "user")]
pub mod entry;
#[cfg(feature = "user")]
pub mod import;
#[cfg(feature = "user")]
pub mod ports;
#[cfg(feature = "user")]
pub mod precedence;
#[cfg(feature = "user")]
pub mod trie_build;
#[cfg(feature = "user")]
pub mod trie_rule;
#[cfg(feature = "user")]
pub mod ttl;
#[cfg(feature = "user")]
pub mod vector;
