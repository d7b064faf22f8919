//! The smoothed round trip of RFC 6298 (section 2): the one filter the sender's probe timer,
//! the receiver's NACK timer and the bond's per-uplink silence timer read.

use std::time::Duration;

/// `srtt` and `rttvar` after RFC 6298: the first sample sets `srtt` to itself and `rttvar` to
/// its half; each later one moves `srtt` by 1/8 and `rttvar` by 1/4 of the difference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmoothedRtt {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl SmoothedRtt {
    /// Takes one round-trip sample in.
    pub fn update(&mut self, sample: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                self.rttvar = (self.rttvar * 3 + srtt.abs_diff(sample)) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
    }

    /// The smoothed round trip, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Its mean deviation (zero before the first sample).
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_rfc_6298() {
        let mut r = SmoothedRtt::default();
        assert_eq!(r.srtt(), None);
        r.update(Duration::from_millis(80));
        assert_eq!(r.srtt(), Some(Duration::from_millis(80)));
        assert_eq!(r.rttvar(), Duration::from_millis(40));
        r.update(Duration::from_millis(160));
        // rttvar = 3/4 x 40 + 1/4 x 80 = 50; srtt = 7/8 x 80 + 1/8 x 160 = 90.
        assert_eq!(r.rttvar(), Duration::from_millis(50));
        assert_eq!(r.srtt(), Some(Duration::from_millis(90)));
    }
}
