//! Key choice for the keyed workloads: a small fast PRNG and the uniform and zipfian
//! distributions over `0..n`.
//!
//! The zipfian sampler is rejection-inversion (W. Hörmann and G. Derflinger,
//! "Rejection-inversion to generate variates from monotone discrete distributions",
//! 1996), as in Apache Commons RNG: exact (P(k) ∝ 1/(k+1)^θ for k in `0..n`), O(1)
//! per sample with an expected acceptance rate close to 1, and O(1) set-up whatever
//! `n` (no zeta sum). Rank 0 is the hottest key (`k0`), rank 1 the next, and so on.

/// xorshift64* seeded through splitmix64: cheap, deterministic per worker, good enough
/// to spread requests over a key space (not for anything cryptographic).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that neighbouring worker seeds diverge at once.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (Lemire): no division.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// How keys are picked from `0..n`.
#[derive(Clone, Debug)]
pub enum KeyDist {
    Uniform { n: u64 },
    Zipfian(Zipf),
}

impl KeyDist {
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            KeyDist::Uniform { n } => rng.below(*n),
            KeyDist::Zipfian(z) => z.sample(rng),
        }
    }
}

/// Zipf distribution over ranks `0..n` with exponent `theta` (> 0, ≠ 1 not required).
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    theta: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    s: f64,
}

impl Zipf {
    /// `n ≥ 1`, `theta > 0`.
    pub fn new(n: u64, theta: f64) -> Self {
        assert!(n >= 1 && theta > 0.0);
        let mut z = Zipf {
            n: n as f64,
            theta,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            s: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(z.n + 0.5);
        z.s = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    /// A rank in `0..n`; rank `r` has probability `(r+1)^-θ / Σ_{k=1..n} k^-θ`.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.s || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64 - 1;
            }
        }
    }

    /// `h(x) = x^-θ`.
    fn h(&self, x: f64) -> f64 {
        (-self.theta * x.ln()).exp()
    }

    /// `H(x) = ∫ h`, written so that θ = 1 (log) needs no special case.
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.theta) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.theta)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// `ln(1+x)/x`, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1)/x`, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Observed frequencies match the exact Zipf probabilities (chi-square well under
    /// the 0.1 % critical value) for small key spaces and several exponents.
    #[test]
    fn zipf_matches_exact_probabilities() {
        for &(n, theta) in &[(1u64, 0.99), (2, 0.99), (10, 0.99), (50, 0.5), (20, 1.0)] {
            let z = Zipf::new(n, theta);
            let mut rng = Rng::new(42);
            let samples = 400_000;
            let mut counts = vec![0u64; n as usize];
            for _ in 0..samples {
                let k = z.sample(&mut rng);
                assert!(k < n, "rank {k} out of 0..{n}");
                counts[k as usize] += 1;
            }
            let norm: f64 = (1..=n).map(|k| (k as f64).powf(-theta)).sum();
            let mut chi2 = 0.0;
            for (i, &c) in counts.iter().enumerate() {
                let expected = samples as f64 * ((i + 1) as f64).powf(-theta) / norm;
                chi2 += (c as f64 - expected).powi(2) / expected;
            }
            // Well above the 0.1 % critical value of chi-square with n-1 degrees of
            // freedom (27.9 for 9, 85.4 for 49), far below what a wrong law gives.
            let df = (n as f64 - 1.0).max(1.0);
            let bound = df + 5.0 * (2.0 * df).sqrt() + 10.0;
            assert!(
                chi2 < bound,
                "n={n} theta={theta}: chi2 {chi2} >= {bound}, counts {counts:?}"
            );
        }
    }

    /// On a large key space the head carries the share theory says (θ = 0.99:
    /// rank 0 gets 1/H(n, θ)), and samples stay in range.
    #[test]
    fn zipf_large_key_space() {
        let n = 1_000_000u64;
        let z = Zipf::new(n, 0.99);
        let mut rng = Rng::new(7);
        let samples = 1_000_000;
        let mut zeros = 0u64;
        for _ in 0..samples {
            let k = z.sample(&mut rng);
            assert!(k < n);
            zeros += u64::from(k == 0);
        }
        let norm: f64 = (1..=n).map(|k| (k as f64).powf(-0.99)).sum();
        let want = 1.0 / norm;
        let got = zeros as f64 / samples as f64;
        assert!((got - want).abs() < 0.002, "p(0): got {got}, want {want}");
    }

    #[test]
    fn uniform_below_stays_in_range_and_covers() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 7];
        for _ in 0..10_000 {
            let k = rng.below(7);
            seen[k as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
