//! The Mann-Whitney U test: do two sets of response times come from the same distribution?
//!
//! Rank-based, so one slow outlier (a GC pause, a noisy neighbour) cannot make a difference on
//! its own, and no normality is assumed. The p-value uses the normal approximation with a tie
//! correction, which is adequate from about five samples per side.

/// Two-sided p-value that `a` and `b` come from the same distribution.
#[allow(
    clippy::cast_precision_loss,
    clippy::float_cmp,
    clippy::many_single_char_names
)] // tiny counts; exact ties are ties; the textbook names
pub(crate) fn mann_whitney_p(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|x| (*x, true))
        .chain(b.iter().map(|x| (*x, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Average ranks over ties; collect the tie-group sizes for the variance correction.
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        let group = (j - i + 1) as f64;
        tie_term += group * group * group - group;
        rank_sum_a += all[i..=j].iter().filter(|(_, in_a)| *in_a).count() as f64 * average_rank;
        i = j + 1;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let n = n1f + n2f;
    let u = rank_sum_a - n1f * (n1f + 1.0) / 2.0;
    let mean = n1f * n2f / 2.0;
    let variance = n1f * n2f / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if variance <= 0.0 {
        return 1.0;
    }
    let z = ((u - mean).abs() - 0.5).max(0.0) / variance.sqrt();
    (2.0 * normal_upper_tail(z)).min(1.0)
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
    }
}

/// P(Z > z) for a standard normal Z (Abramowitz and Stegun 7.1.26, error under 1.5e-7).
fn normal_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    0.5 * poly * (-x * x).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_samples_are_significant_and_mixed_ones_are_not() {
        let fast = [1.0, 1.2, 0.9, 1.1, 1.3, 1.0, 0.8];
        let slow = [50.0, 52.0, 49.0, 55.0, 51.0, 60.0, 48.0];
        assert!(mann_whitney_p(&fast, &slow) < 0.01);
        let a = [10.0, 12.0, 11.0, 13.0, 9.0, 10.5, 12.5];
        let b = [11.0, 10.0, 12.0, 9.5, 13.5, 11.5, 10.2];
        assert!(mann_whitney_p(&a, &b) > 0.2);
        assert!((mann_whitney_p(&[1.0; 5], &[1.0; 5]) - 1.0).abs() < 1e-9);
        assert!((normal_upper_tail(1.96) - 0.025).abs() < 1e-3);
        assert!((median(&[3.0, 1.0, 2.0, 10.0]) - 2.5).abs() < 1e-9);
    }
}
