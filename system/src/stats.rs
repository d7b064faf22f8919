//! Small statistics helpers for reports.

/// The most recent samples (at most [`Samples::CAP`]) with exact quantiles over them, so a
/// long-running service keeps a bounded window rather than every sample since it started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    values: Vec<f64>,
    /// Where the next sample goes once the window is full.
    next: usize,
}

impl Samples {
    /// Samples kept at most.
    pub const CAP: usize = 1 << 20;

    pub fn push(&mut self, v: f64) {
        if self.values.len() < Self::CAP {
            self.values.push(v);
        } else {
            self.values[self.next] = v;
            self.next = (self.next + 1) % Self::CAP;
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The `q` quantile (nearest rank, `q` in 0..=1); 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.values.is_empty() {
            return 0.0;
        }
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }
}

/// Jain's fairness index: `(sum x)^2 / (n sum x^2)`, 1 when every share is equal, `1/n` when
/// one takes everything; 1 for no load at all.
pub fn jain(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let sq: f64 = x.iter().map(|v| v * v).sum();
    if sq > 0.0 {
        sum * sum / (x.len() as f64 * sq)
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_index_bounds() {
        assert_eq!(jain(&[3.0, 3.0, 3.0]), 1.0);
        assert!((jain(&[6.0, 0.0, 0.0]) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(jain(&[0.0, 0.0]), 1.0);
    }

    #[test]
    fn nearest_rank_quantiles() {
        let mut s = Samples::default();
        for v in 1..=100 {
            s.push(v as f64);
        }
        assert_eq!(s.quantile(0.5), 50.0);
        assert_eq!(s.quantile(0.99), 99.0);
        assert_eq!(s.quantile(1.0), 100.0);
        assert_eq!(s.quantile(0.0), 1.0);
        assert_eq!(Samples::default().quantile(0.5), 0.0);
    }
}
