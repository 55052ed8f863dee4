//! Shared test and lab code: network namespaces with real hosts, frames for
//! BPF_PROG_TEST_RUN, and the XDP object loaded for kernel tests.

pub mod app_scenarios;
pub mod attacks;
pub mod bench_lists;
pub mod bench_out;
pub mod capture;
pub mod clients;
pub mod cutoff;
pub mod dataset;
pub mod fail2ban;
pub mod fuzz;
pub mod kernel;
pub mod lab;
pub mod locks;
pub mod netns;
pub mod packet;
pub mod receivers;
pub mod reference;
pub mod rig;
pub mod ring_load;
pub mod scenarios;
pub mod shop;
pub mod upstreams;
pub mod visitors;
pub mod wait;
pub mod xdp_harness;
