//! [`LinkConfigError`]: a field of a link's configuration (its [`LinkConfig`](super::LinkConfig)
//! or its capacity model) out of its range, naming the field as a scenario file writes it;
//! and the range checks both use.

use thiserror::Error;

use super::packet::{MAX_MTU, MIN_MTU};

/// A field of a [`LinkConfig`] out of its range.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum LinkConfigError {
    /// A probability outside `0..=1` (or NaN).
    #[error("{field} must be within 0..=1, got {value}")]
    NotAProbability {
        /// The field's name, e.g. `loss` or `burst.p_good_to_bad`.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// A time that is negative, infinite or NaN.
    #[error("{field} must be a finite number >= 0, got {value}")]
    Negative {
        /// The field's name, e.g. `delay_ms`.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// A rate that is not a finite number above 0.
    #[error("{field} must be a finite number > 0, got {value}")]
    NotPositive {
        /// The field's name: `rate_bytes_per_s`.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// An MTU outside `68..=65535`.
    #[error("mtu must be within {MIN_MTU}..={MAX_MTU}, got {mtu}")]
    Mtu {
        /// The configured MTU.
        mtu: usize,
    },
    /// A value outside its range, for knobs whose range is not one of the above.
    #[error("{field} {message}")]
    OutOfRange {
        /// The field's name, e.g. `capacity.cellular.period_s`.
        field: &'static str,
        /// What it must be.
        message: String,
    },
    /// Two fields that exclude each other are both set.
    #[error("{field} and {other} exclude each other: set one of them")]
    Conflict {
        /// The field reported: `capacity`.
        field: &'static str,
        /// The other one: `rate_bytes_per_s`.
        other: &'static str,
    },
}

impl LinkConfigError {
    /// The name of the bad field, as written in a scenario file.
    pub fn field(&self) -> &'static str {
        match self {
            LinkConfigError::NotAProbability { field, .. }
            | LinkConfigError::Negative { field, .. }
            | LinkConfigError::NotPositive { field, .. }
            | LinkConfigError::OutOfRange { field, .. }
            | LinkConfigError::Conflict { field, .. } => field,
            LinkConfigError::Mtu { .. } => "mtu",
        }
    }
}

pub(super) fn probability(field: &'static str, value: f64) -> Result<(), LinkConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(LinkConfigError::NotAProbability { field, value })
    }
}

pub(super) fn non_negative(field: &'static str, value: f64) -> Result<(), LinkConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(LinkConfigError::Negative { field, value })
    }
}
