//! A small seeded random number generator and the few distributions the
//! generator draws from.
//!
//! They are written here rather than taken from `rand_distr` because the
//! generator promises the same bytes for the same seed forever, and a
//! library's sampling algorithms may change between releases.

/// xoshiro256++ (Blackman and Vigna), seeded through SplitMix64.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

/// One SplitMix64 step: also a good 64-bit mixing function.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn seed_from(seed: u64) -> Rng {
        let mut state = seed;
        Rng {
            s: std::array::from_fn(|_| splitmix64(&mut state)),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1]: safe to take the logarithm of.
    pub fn uniform_open(&mut self) -> f64 {
        1.0 - self.uniform()
    }

    /// Uniform integer in [0, n); `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal, by the Box-Muller transform (one of the pair is
    /// dropped so that each call uses a fixed amount of the stream).
    pub fn normal(&mut self) -> f64 {
        let r = (-2.0 * self.uniform_open().ln()).sqrt();
        r * (std::f64::consts::TAU * self.uniform()).cos()
    }

    /// Log-normal with the given median and log-scale spread.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Gamma(shape, scale) for shape >= 1, by Marsaglia and Tsang (2000).
    pub fn gamma(&mut self, shape: f64, scale: f64) -> f64 {
        debug_assert!(shape >= 1.0);
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.uniform_open();
            if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v * scale;
            }
        }
    }

    /// Poisson(lambda): Knuth's product method when small, a rounded normal
    /// when large (lambda above 30, where the two agree closely).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let limit = (-lambda).exp();
        let mut k = 0;
        let mut p = self.uniform_open();
        while p > limit {
            k += 1;
            p *= self.uniform_open();
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        (mean, xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n)
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let a: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::seed_from(7);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::seed_from(7);
        assert!(a.iter().all(|&x| x == r.next_u64()));
        let mut other = Rng::seed_from(8);
        assert_ne!(a[0], other.next_u64());
    }

    #[test]
    fn distributions_have_their_moments() {
        let mut r = Rng::seed_from(1);
        let n = 200_000;
        let normal: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let (m, v) = mean_var(&normal);
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.02, "normal {m} {v}");
        let gamma: Vec<f64> = (0..n).map(|_| r.gamma(1.5, 2.0)).collect();
        let (m, v) = mean_var(&gamma);
        assert!(
            (m - 3.0).abs() < 0.03 && (v - 6.0).abs() < 0.15,
            "gamma {m} {v}"
        );
        for lambda in [0.5, 5.0, 80.0] {
            let p: Vec<f64> = (0..n).map(|_| r.poisson(lambda) as f64).collect();
            let (m, v) = mean_var(&p);
            assert!(
                (m / lambda - 1.0).abs() < 0.02 && (v / lambda - 1.0).abs() < 0.05,
                "poisson {lambda}: {m} {v}"
            );
        }
        let below: Vec<u64> = (0..n).map(|_| r.below(10)).collect();
        assert!(below.iter().all(|&b| b < 10));
        assert!((0..10).all(|k| below.contains(&k)));
    }
}
