//! Link arguments for bpf-linker.

fn main() {
    // bpf-linker asks LLVM to expand only memcpy itself ("in order") by
    // default, so every memset and memmove becomes a call to aya-ebpf's
    // byte-at-a-time loop: zeroing a 16-byte key cost ~80 instructions.
    // Without it LLVM writes them as plain stores.
    println!("cargo:rustc-link-arg-bins=--disable-expand-memcpy-in-order");
}
