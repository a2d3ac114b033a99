//! "B beats A": how likely each offer is to have the highest conversion
//! rate, from approved conversions per click (Beta-Bernoulli with a
//! uniform prior), and the optimize mode's split built from it (Thompson
//! sampling, with a floor per offer so every offer keeps learning).

/// Monte-Carlo draws behind a `p_best` the stats show.
pub const DRAWS: u32 = 10_000;
/// The stats' draws start from this seed: the same data gives the same
/// number on every call.
pub const SEED: u64 = 0x5EED_A9E7_7AC4_0001;
/// Clicks every offer needs before the optimize mode moves traffic.
pub const MIN_CLICKS: i64 = 100;
/// Smallest share of traffic an active offer keeps in optimize mode.
pub const FLOOR: f64 = 0.05;

/// One offer's record: clicks, and approved conversions among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arm {
    pub clicks: i64,
    pub approved: i64,
}

/// The probability that each arm has the highest rate, estimated from
/// `draws` joint draws of the posteriors Beta(1 + approved, 1 + clicks -
/// approved). One arm: 1. Deterministic for a given `seed`.
pub fn p_best(arms: &[Arm], draws: u32, seed: u64) -> Vec<f64> {
    match arms.len() {
        0 => return Vec::new(),
        1 => return vec![1.0],
        _ => {}
    }
    let params: Vec<(f64, f64)> = arms
        .iter()
        .map(|a| {
            let clicks = a.clicks.max(0);
            let approved = a.approved.clamp(0, clicks);
            (1.0 + approved as f64, 1.0 + (clicks - approved) as f64)
        })
        .collect();
    let mut rng = Rng(seed);
    let mut wins = vec![0u32; arms.len()];
    for _ in 0..draws {
        let mut best = (0, f64::MIN);
        for (i, &(a, b)) in params.iter().enumerate() {
            let x = rng.beta(a, b);
            if x > best.1 {
                best = (i, x);
            }
        }
        wins[best.0] += 1;
    }
    wins.iter().map(|&w| f64::from(w) / f64::from(draws.max(1))).collect()
}

/// The optimize mode's shares of traffic: Thompson sampling's chance of
/// picking each arm (its `p_best`), each raised to at least [`FLOOR`]
/// (an equal split when the floors alone would pass 100 %). None until
/// every arm has [`MIN_CLICKS`] clicks: the weights decide until then.
pub fn shares(arms: &[Arm], seed: u64) -> Option<Vec<f64>> {
    if arms.is_empty() || arms.iter().any(|a| a.clicks < MIN_CLICKS) {
        return None;
    }
    let n = arms.len() as f64;
    if FLOOR * n >= 1.0 {
        return Some(vec![1.0 / n; arms.len()]);
    }
    let p = p_best(arms, 2_000, seed);
    Some(p.iter().map(|p| FLOOR + (1.0 - FLOOR * n) * p).collect())
}

/// splitmix64's finalizer: every input bit reaches every output bit.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A dependency-free generator: splitmix64, enough for sampling (not for
/// secrets).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Marsaglia's polar method, one of the pair).
    fn normal(&mut self) -> f64 {
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return u * (-2.0 * s.ln() / s).sqrt();
            }
        }
    }

    /// Gamma(shape, 1) for shape ≥ 1 (Marsaglia and Tsang).
    fn gamma(&mut self, shape: f64) -> f64 {
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.uniform();
            if u < 1.0 - 0.0331 * x * x * x * x || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v;
            }
        }
    }

    fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        x / (x + y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(clicks: i64, approved: i64) -> Arm {
        Arm { clicks, approved }
    }

    #[test]
    fn p_best_matches_known_cases_and_repeats_itself() {
        // Equal records: a coin toss.
        let p = p_best(&[arm(1000, 50), arm(1000, 50)], DRAWS, SEED);
        assert!((p[0] - 0.5).abs() < 0.03, "{p:?}");
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // No data at all: Beta(1,1) each, a uniform draw; 1/3 each.
        let p = p_best(&[arm(0, 0), arm(0, 0), arm(0, 0)], DRAWS, SEED);
        assert!(p.iter().all(|x| (x - 1.0 / 3.0).abs() < 0.03), "{p:?}");
        // 5 % against 2.5 % on 2 000 clicks each: B is clearly better.
        // Exact value (normal approximation of the difference): P ≈ 0.9999.
        let p = p_best(&[arm(2000, 50), arm(2000, 100)], DRAWS, SEED);
        assert!(p[1] > 0.999, "{p:?}");
        // Close records: 60/1000 against 50/1000. The difference of the
        // posteriors is about normal with mean 0.01 and sd 0.0102:
        // P(first best) = Φ(0.98) ≈ 0.836.
        let p = p_best(&[arm(1000, 60), arm(1000, 50)], DRAWS, SEED);
        assert!((p[0] - 0.836).abs() < 0.02, "{p:?}");
        assert_eq!(p, p_best(&[arm(1000, 60), arm(1000, 50)], DRAWS, SEED), "same data, same number");
        assert_eq!(p_best(&[arm(5, 1)], DRAWS, SEED), [1.0]);
        // Counts that make no sense (more approved than clicks) are clamped.
        assert_eq!(p_best(&[arm(0, 9), arm(-1, 0)], 100, 1).len(), 2);
    }

    #[test]
    fn shares_wait_for_data_and_keep_a_floor() {
        assert_eq!(shares(&[arm(99, 10), arm(5000, 10)], 1), None);
        let s = shares(&[arm(5000, 10), arm(5000, 400)], 7).unwrap();
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!((s[0] - FLOOR).abs() < 1e-3, "the loser keeps its floor: {s:?}");
        assert!(s[1] > 0.94);
        let many = vec![arm(200, 1); 25];
        assert!(shares(&many, 1).unwrap().iter().all(|x| (x - 0.04).abs() < 1e-12));
    }
}
