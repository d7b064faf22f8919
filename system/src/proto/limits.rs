//! What a size policy and its FEC may be configured to: the segment size limits
//! ([`SizeLimits`]) and [`PolicyError`], the error for a configuration that cannot work. Below
//! the estimator, the FEC planner and the policies, which all take these.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::link::{MAX_MTU, MIN_MTU};

/// The seed's default segment size (seed [0029]).
pub const DEFAULT_SEGMENT_SIZE: usize = 500;

/// Smallest and largest segment size a policy may choose, and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SizeLimits {
    pub initial: usize,
    pub min: usize,
    pub max: usize,
}

impl Default for SizeLimits {
    fn default() -> Self {
        SizeLimits {
            initial: DEFAULT_SEGMENT_SIZE,
            min: 100,
            max: 8000,
        }
    }
}

/// A size limit that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("segment size limits: min must be at least 1, got {0}")]
    MinZero(usize),
    #[error("segment size limits: min ({min}) must not exceed max ({max})")]
    MinAboveMax { min: usize, max: usize },
    #[error("segment size limits: max ({0}) exceeds the largest segment payload")]
    MaxTooLarge(usize),
    #[error("segment size limits: initial ({initial}) must lie within min..=max ({min}..={max})")]
    InitialOutside {
        initial: usize,
        min: usize,
        max: usize,
    },
    #[error("policy: expected `seed`, `fixed:N` or `model`, got `{0}`")]
    UnknownPolicy(String),
    #[error("policy: fixed size `{0}` is not a positive number")]
    BadFixedSize(String),
    #[error("fec: expected `off`, `auto` or `fixed:M` (M at most 255), got `{0}`")]
    BadFec(String),
    #[error("fec_budget: must be a finite number >= 0, got {0}")]
    BadFecBudget(String),
    #[error("fec_target: must lie within 0..1, got {0}")]
    BadFecTarget(String),
    #[error("mtu: must lie within {MIN_MTU}..={MAX_MTU}, got {0}")]
    BadMtu(usize),
}

impl SizeLimits {
    /// Checks the limits, naming the field at fault.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.min == 0 {
            return Err(PolicyError::MinZero(self.min));
        }
        if self.min > self.max {
            return Err(PolicyError::MinAboveMax {
                min: self.min,
                max: self.max,
            });
        }
        if self.max > super::wire::MAX_SEGMENT_PAYLOAD {
            return Err(PolicyError::MaxTooLarge(self.max));
        }
        if !(self.min..=self.max).contains(&self.initial) {
            return Err(PolicyError::InitialOutside {
                initial: self.initial,
                min: self.min,
                max: self.max,
            });
        }
        Ok(())
    }

    pub(super) fn clamp(&self, size: f64) -> usize {
        (size.round() as usize).clamp(self.min, self.max)
    }
}
