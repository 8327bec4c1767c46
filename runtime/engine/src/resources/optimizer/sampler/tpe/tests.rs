//! Unit tests of the Optuna-style TPE: its numerics, its defaults, the space it respects,
//! determinism, and search quality against random search.

use super::*;
use crate::resources::optimizer::sampler::trial_rng;

#[test]
fn the_normal_quantile_inverts_the_cdf() {
    for p in [
        1e-300, 1e-20, 1e-5, 0.01, 0.02425, 0.3, 0.5, 0.8, 0.975, 0.999_999,
    ] {
        let z = ndtri(p);
        assert!(
            ((ndtr(z) - p) / p).abs() < 1e-12,
            "p {p} z {z} cdf {}",
            ndtr(z)
        );
    }
    assert!((ndtri(0.975) - 1.959_963_984_540_054).abs() < 1e-12);
}

#[test]
fn truncated_normal_draws_stay_inside_and_have_the_right_mean() {
    let mut rng = trial_rng(1, 1);
    let n = 20_000;
    // Standard normal truncated to [-1, 2]: mean (φ(-1) − φ(2)) / (Φ(2) − Φ(-1)).
    let phi = |z: f64| (-0.5 * z * z).exp() / (2.0 * PI).sqrt();
    let expected = (phi(-1.0) - phi(2.0)) / (ndtr(2.0) - ndtr(-1.0));
    let mut sum = 0.0;
    for _ in 0..n {
        let z = truncated_standard_normal(-1.0, 2.0, &mut rng);
        assert!((-1.0..=2.0).contains(&z), "{z}");
        sum += z;
    }
    let mean = sum / n as f64;
    assert!(
        (mean - expected).abs() < 0.02,
        "mean {mean} expected {expected}"
    );
}
