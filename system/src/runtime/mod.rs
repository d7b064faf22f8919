//! Real runs over the operating system's UDP, on tokio.

pub mod service;
pub mod transfer;
