//! Real runs over the operating system's UDP, on tokio.

pub mod transfer;
