//! The rules a prefix trie holds, IPv4 and IPv6, seen through one interface.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::maps::{ListEntry, TrieRule, TrieRule6};

/// A rule the trie can hold.
pub trait PrefixRule: Copy {
    /// "IPv4" or "IPv6", for messages.
    const FAMILY: &'static str;
    /// Address width in bits.
    const WIDTH: u32;
    /// Whether stretches of the trie with one rule below become leaves.
    const COMPRESSED: bool;
    /// The network address, aligned to the left of 128 bits.
    fn bits(&self) -> u128;
    /// The prefix length in bits.
    fn prefix_bits(&self) -> u32;
    fn entry(&self) -> &ListEntry;
    fn entry_mut(&mut self) -> &mut ListEntry;
    /// The prefix as text, for messages.
    fn show(&self) -> String;
    /// A rule for the network `bits` (aligned to the left) of `len` bits.
    fn from_parts(bits: u128, len: u32, entry: ListEntry) -> Self;
}

impl PrefixRule for TrieRule {
    const FAMILY: &'static str = "IPv4";
    const WIDTH: u32 = 32;
    // Four levels at most: a leaf would save little and cost a check.
    const COMPRESSED: bool = false;
    fn bits(&self) -> u128 {
        (self.addr as u128) << 96
    }
    fn prefix_bits(&self) -> u32 {
        self.prefix_len
    }
    fn entry(&self) -> &ListEntry {
        &self.entry
    }
    fn entry_mut(&mut self) -> &mut ListEntry {
        &mut self.entry
    }
    fn show(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.addr), self.prefix_len)
    }
    fn from_parts(bits: u128, len: u32, entry: ListEntry) -> Self {
        TrieRule {
            entry,
            addr: (bits >> 96) as u32,
            prefix_len: len,
        }
    }
}

impl PrefixRule for TrieRule6 {
    const FAMILY: &'static str = "IPv6";
    const WIDTH: u32 = 128;
    const COMPRESSED: bool = true;
    fn bits(&self) -> u128 {
        u128::from_be_bytes(self.addr)
    }
    fn prefix_bits(&self) -> u32 {
        self.prefix_len
    }
    fn entry(&self) -> &ListEntry {
        &self.entry
    }
    fn entry_mut(&mut self) -> &mut ListEntry {
        &mut self.entry
    }
    fn show(&self) -> String {
        format!("{}/{}", Ipv6Addr::from(self.addr), self.prefix_len)
    }
    fn from_parts(bits: u128, len: u32, entry: ListEntry) -> Self {
        TrieRule6 {
            entry,
            addr: bits.to_be_bytes(),
            prefix_len: len,
            _pad: 0,
        }
    }
}
