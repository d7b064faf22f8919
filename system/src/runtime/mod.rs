//! Real runs over the operating system's UDP, on tokio.

pub mod backend;
pub mod backhaul;
#[cfg(test)]
mod bonded_tests;
pub mod capacity;
pub mod config;
pub mod flood;
pub mod load;
pub mod procstat;
pub mod security;
pub mod service;
pub mod socket;
pub mod tls;
pub mod transfer;
pub mod up;
pub mod users;
