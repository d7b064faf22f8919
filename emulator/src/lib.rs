//! Network emulator for livecam: the real role processes across emulated lossy links.
//!
//! `livecam emulate SCENARIO.toml` takes a scenario file (the simulator's format, see
//! [`livecam_sim::scenario`]), gives every host its own network namespace joined by a veth pair
//! to the root namespace, and runs a bridge there ([`bridge`]) that forwards the hosts'
//! Ethernet frames with `pnet` (AF_PACKET), applying per directed host pair the very link
//! models the simulators use ([`livecam_system::link`]): loss, bit errors (frames really
//! corrupted), delay and jitter, rate with a queue, Gilbert-Elliott bursts, partitions and
//! link changes on the scenario's schedule. The hosts' MTU is the scenario's, so large segments
//! really fragment. It starts the real `livecam tier1|tier2|mobile` processes in the
//! namespaces, collects their JSON summaries and tears everything down ([`netns`]), also on
//! Ctrl-C, and sweeps what a killed run left.
//!
//! The kernel on the target machines has no `netem` qdisc, so all shaping happens here, in user
//! space. The decision is sans-IO ([`forward::Forwarder`], driven by `now`); the glue around it
//! is thin: [`engine`] (threads and a clock), [`bridge`] (AF_PACKET), [`relay`] (the same
//! models between processes on loopback UDP, `--relay`, no privileges needed).
//!
//! [`bench`] measures the bridge (`livecam emulate --bench`: packets per second, added latency).

pub mod baseline;
pub mod bench;
pub mod bridge;
pub mod cli;
pub mod engine;
pub mod experiment;
pub mod forward;
pub mod frame;
pub mod netns;
pub mod plan;
pub mod relay;
pub mod run;

pub use livecam_system::link;
