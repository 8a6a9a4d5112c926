//! How many rows the file holds by the end of each step: the hourly profile
//! rounded cumulatively, so the count is exact and no step's rounding is
//! lost.
//!
//! The volume up to any step is found without walking the steps before it,
//! so the generator skips a stretch of empty steps instead of walking it,
//! and `--steps 4294967295` costs about what `--steps 743` does. Up to
//! [`WALKED_STEPS`] steps the volume is the running f64 sum it always was,
//! kept in a table: where the share of rows lands exactly on a half, that
//! sum's last bits decided the rounding, and files made before must keep
//! their bytes. Beyond, it is integer arithmetic on the profile in
//! thousandths, exact, in constant time.

use super::calibration::HOURLY_WEIGHT;

/// The most steps whose volume is the walked f64 sum (1 MiB of table).
pub const WALKED_STEPS: u32 = 1 << 17;

/// The rows by the end of each step of a file of `rows` rows over `steps`
/// steps.
#[derive(Clone, Debug)]
pub struct Volume {
    rows: u64,
    steps: u32,
    /// Weight of all the steps, in thousandths.
    total: u128,
    /// Up to [`WALKED_STEPS`] steps: the running f64 sum of the weights by
    /// the end of each step, from step 0.
    walked: Option<Vec<f64>>,
}

/// Weight of one day, in thousandths.
fn day() -> u128 {
    HOURLY_WEIGHT.iter().map(|&w| u128::from(w)).sum()
}

/// Weight of steps 1 to `step` (step `s` has hour `s % 24`), in thousandths.
fn weight_through(step: u32) -> u128 {
    let days = u128::from(step / 24);
    let hours: u64 = HOURLY_WEIGHT[1..=(step % 24) as usize].iter().sum();
    days * day() + u128::from(hours)
}

/// The weight of a step as the f64 it always was (0.35, 0.13, ...).
fn weight_f64(step: u32) -> f64 {
    HOURLY_WEIGHT[(step % 24) as usize] as f64 / 1000.0
}

impl Volume {
    /// `steps` must be at least 1.
    pub fn new(rows: u64, steps: u32) -> Volume {
        let walked = (steps <= WALKED_STEPS).then(|| {
            let mut sum = 0.0;
            let running = (1..=steps).map(|s| {
                sum += weight_f64(s);
                sum
            });
            std::iter::once(0.0).chain(running).collect()
        });
        Volume {
            rows,
            steps,
            total: weight_through(steps),
            walked,
        }
    }

    /// Rows by the end of `step`: the share of the weight so far, rounded
    /// half away from zero; all of them by the last step.
    pub fn rows_by(&self, step: u32) -> u64 {
        if step >= self.steps {
            return self.rows;
        }
        if let Some(sum) = &self.walked {
            let (before, total) = (sum[step as usize], sum[self.steps as usize]);
            return (self.rows as f64 * before / total).round() as u64;
        }
        let scaled = 2 * u128::from(self.rows) * weight_through(step);
        // At most `rows`: the weight so far is below the total.
        ((scaled + self.total) / (2 * self.total)) as u64
    }
    /// The first step after `step` that ends with more than `done` rows, by
    /// bisection; `None` once all rows are done.
    pub fn next_busy(&self, step: u32, done: u64) -> Option<u32> {
        if done >= self.rows || step >= self.steps {
            return None;
        }
        // rows_by(hi) > done always holds; rows_by(lo) <= done.
        let (mut lo, mut hi) = (step, self.steps);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.rows_by(mid) > done {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The volume as it was computed before it was exact: a running f64 sum
    /// of the weights, step by step. Files made then must keep their bytes.
    fn walked(rows: u64, steps: u32) -> Vec<u64> {
        // The profile as it was written before it was in thousandths.
        const HOURLY: [f64; 24] = [
            0.35, 0.13, 0.05, 0.026, 0.027, 0.032, 0.079, 0.32, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
            1.0, 1.0, 1.0, 1.0, 0.9, 0.75, 0.6, 0.5, 0.45,
        ];
        let weight = |s: u32| HOURLY[(s % 24) as usize];
        let total: f64 = (1..=steps).map(weight).sum();
        let mut before = 0.0;
        (1..=steps)
            .map(|s| {
                before += weight(s);
                if s == steps {
                    rows
                } else {
                    (rows as f64 * before / total).round() as u64
                }
            })
            .collect()
    }

    #[test]
    fn volume_matches_the_walked_one_on_ordinary_files() {
        let sizes = (0..3_000).chain([41_370, 200_000, 800_000, 1_000_000, 6_362_620]);
        for rows in sizes {
            for steps in [1, 23, 24, 48, 100, 743] {
                let v = Volume::new(rows, steps);
                let by: Vec<u64> = (1..=steps).map(|s| v.rows_by(s)).collect();
                assert_eq!(by, walked(rows, steps), "{rows} rows over {steps} steps");
            }
        }
    }

    /// Beyond the table the share is exact: within half a row of the
    /// rational share recomputed in f64 (off only where it is a half).
    #[test]
    fn beyond_the_table_the_volume_is_the_exact_share() {
        let steps = WALKED_STEPS + 1_000;
        for rows in [0, 1, 7, 10_000, 6_362_620] {
            let v = Volume::new(rows, steps);
            assert!(v.walked.is_none());
            let total = weight_through(steps) as f64;
            let mut last = 0;
            for step in (0..=steps).step_by(997).chain([steps - 1, steps]) {
                let by = v.rows_by(step);
                let share = rows as f64 * weight_through(step) as f64 / total;
                assert!((by as f64 - share).abs() <= 0.5 + 1e-6, "{rows} at {step}");
                assert!(by >= last);
                last = by;
            }
            assert_eq!(v.rows_by(steps), rows);
        }
    }

    #[test]
    fn next_busy_is_the_first_step_with_more_rows() {
        for (rows, steps) in [(10, 743), (1_000, 743), (3, 100_000), (0, 5), (7, 1)] {
            let v = Volume::new(rows, steps);
            let mut done = 0;
            let mut step = 0;
            while let Some(next) = v.next_busy(step, done) {
                assert!((step + 1..next).all(|s| v.rows_by(s) == done));
                assert!(v.rows_by(next) > done);
                (step, done) = (next, v.rows_by(next));
            }
            assert_eq!(done, rows);
        }
        let huge = Volume::new(10, u32::MAX);
        assert_eq!(huge.rows_by(u32::MAX), 10);
        assert!(huge.next_busy(0, 0).is_some_and(|s| s > 24));
    }
}
