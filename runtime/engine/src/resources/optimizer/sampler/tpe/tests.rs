//! Unit tests of the Optuna-style TPE: its numerics, its defaults, the space it respects,
//! determinism, and search quality against random search.

use mlbridge_proto::mlbridge::v1 as pb;

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

#[test]
fn gamma_and_weights_follow_optuna() {
    // Optuna's min(ceil(0.1 n), 25), and the engine's default with 15%.
    let optuna = |n| gamma(n, 10);
    assert_eq!(
        [0, 1, 10, 11, 20, 21, 249, 250, 251, 1000].map(optuna),
        [0, 1, 1, 2, 2, 3, 25, 25, 25, 25]
    );
    let engine = |n| gamma(n, GAMMA_PERCENT);
    assert_eq!(
        [0, 1, 10, 11, 20, 21, 166, 167, 1000].map(engine),
        [0, 1, 2, 2, 3, 4, 25, 25, 25]
    );
    assert_eq!(weights(0), Vec::<f64>::new());
    assert_eq!(weights(24), vec![1.0; 24]);
    assert_eq!(weights(25), vec![1.0; 25]);
    assert_eq!(weights(26), [vec![1.0 / 26.0], vec![1.0; 25]].concat());
    // np.linspace(1/30, 1, 5) then 25 ones.
    let w = weights(30);
    let ramp = [
        1.0 / 30.0,
        0.275,
        0.516_666_666_666_666_7,
        0.758_333_333_333_333_3,
        1.0,
    ];
    for (a, b) in w[..5].iter().zip(ramp) {
        assert!((a - b).abs() < 1e-12, "{w:?}");
    }
    assert_eq!(w[5..], [1.0; 25]);
}

#[test]
fn kernels_follow_optunas_bandwidths_and_magic_clip() {
    // Observations 1, 2 and 6 in [0, 10]: the inner one looks both ways (max(1, 4) = 4), the
    // outer ones inwards only (1 and 4); the clip floor is 10 / min(100, 3 + 2) = 2.
    let Kernels::Numeric { mus, sigmas, .. } = Kernels::new(
        Kind::Continuous {
            low: 0.0,
            high: 10.0,
        },
        &[6.0, 1.0, 2.0],
    ) else {
        panic!("numeric")
    };
    assert_eq!(mus, [6.0, 1.0, 2.0, 5.0]);
    assert_eq!(sigmas, [4.0, 2.0, 4.0, 10.0]);
    // One observation: the range ends are its neighbours.
    let Kernels::Numeric { sigmas, .. } = Kernels::new(
        Kind::Continuous {
            low: 0.0,
            high: 10.0,
        },
        &[8.0],
    ) else {
        panic!("numeric")
    };
    assert_eq!(sigmas, [8.0, 10.0]);
    // Categorical: 1 + 1/3 on the observed choice and 1/3 on each, normalised; the prior
    // row is uniform.
    let Kernels::Categorical { rows } = Kernels::new(Kind::Categorical { n: 3 }, &[2.0, 0.0])
    else {
        panic!("categorical")
    };
    let third = 1.0 / 3.0;
    let row = |i: usize| {
        let mut r = vec![third / 2.0; 3];
        r[i] = (1.0 + third) / 2.0;
        r
    };
    let expected = [row(2), row(0), vec![third; 3]];
    for (got, want) in rows.iter().zip(&expected) {
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{rows:?}");
        }
    }
}

#[test]
fn an_integer_kernel_is_a_distribution_over_the_integers() {
    // Integers 1..=20 on a log scale: the masses of every integer's cell add up to 1, and
    // draws are integers of the range.
    let (low, high) = (0.5f64.ln(), 20.5f64.ln());
    let kernels = Kernels::new(
        Kind::Integer {
            low,
            high,
            log: true,
        },
        &[3f64.ln(), 7f64.ln()],
    );
    for k in 0..3 {
        let total: f64 = (1..=20)
            .map(|i| kernels.log_pdf(k, (i as f64).ln()).exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-9, "kernel {k}: {total}");
    }
    let mut rng = trial_rng(3, 0);
    for _ in 0..500 {
        let i = kernels.draw(0, &mut rng).exp();
        assert!(
            (i - i.round()).abs() < 1e-9 && (1.0..=20.0).contains(&i.round()),
            "{i}"
        );
    }
}

fn choices(names: &[&str]) -> Vec<pb::Value> {
    names
        .iter()
        .map(|n| pb::Value {
            kind: Some(pb::value::Kind::StringValue((*n).to_owned())),
        })
        .collect()
}

/// Learning rate (log scale), an integer, an integer on a log scale and a categorical.
fn mixed() -> Space {
    let dimension = |name: &str, domain| Dimension {
        name: name.to_owned(),
        domain,
    };
    Space {
        dimensions: vec![
            dimension(
                "lr",
                Domain::Float {
                    low: 1e-6,
                    high: 1.0,
                    log: true,
                },
            ),
            dimension(
                "k",
                Domain::Integer {
                    low: -3,
                    high: 3,
                    log: false,
                },
            ),
            dimension(
                "units",
                Domain::Integer {
                    low: 1,
                    high: 1000,
                    log: true,
                },
            ),
            dimension(
                "kind",
                Domain::Categorical {
                    choices: choices(&["a", "b", "c"]),
                },
            ),
        ],
    }
}

fn as_f64(v: &pb::Value) -> f64 {
    match &v.kind {
        Some(pb::value::Kind::FloatValue(x)) => *x,
        Some(pb::value::Kind::IntValue(k)) => *k as f64,
        other => panic!("not a number: {other:?}"),
    }
}

/// Smallest at lr = 1e-4, k = 2, units = 100, kind = "b".
fn mixed_loss(values: &[pb::Value]) -> f64 {
    let kind_b = values[3] == choices(&["b"])[0];
    (as_f64(&values[0]).log10() + 4.0).powi(2)
        + (as_f64(&values[1]) - 2.0).powi(2)
        + (as_f64(&values[2]).log10() - 2.0).powi(2)
        + if kind_b { 0.0 } else { 4.0 }
}

/// Runs `trials` trials of `sampler` on `space`, checking that every proposal lies in the
/// space (numbers inside their interval) and that the models' proposals (trials `startup`
/// on) are exactly points of it (integers and categories on one of their points, as the
/// acquisition function scored them); returns each trial's values and loss.
fn run(
    sampler: &dyn Sampler,
    space: &Space,
    loss: fn(&[pb::Value]) -> f64,
    seed: u64,
    trials: u64,
    startup: u64,
) -> Vec<(Vec<pb::Value>, f64)> {
    let mut done: Vec<(Vec<f64>, Vec<pb::Value>, f64)> = Vec::new();
    for number in 0..trials {
        let history: Vec<Observation<'_>> = done
            .iter()
            .map(|(coordinates, _, loss)| Observation {
                coordinates,
                loss: *loss,
            })
            .collect();
        let xs = sampler
            .sample(space, number, &history, &mut trial_rng(seed, number))
            .expect("a candidate");
        let candidate = space.candidate(&xs);
        for ((dimension, x), snapped) in
            space.dimensions.iter().zip(&xs).zip(&candidate.coordinates)
        {
            let (start, end) = dimension.interval();
            assert!(
                start <= *x && *x <= end,
                "{}: {x} outside [{start}, {end}]",
                dimension.name
            );
            if number >= startup && !matches!(dimension.domain, Domain::Float { .. }) {
                assert_eq!(
                    x, snapped,
                    "{}: {x} is not one of its points",
                    dimension.name
                );
            }
        }
        let l = loss(&candidate.values);
        done.push((candidate.coordinates, candidate.values, l));
    }
    done.into_iter().map(|(_, values, l)| (values, l)).collect()
}

#[test]
fn tpe_respects_bounds_integers_choices_and_log_scale_and_finds_the_optimum() {
    let space = mixed();
    let trials = run(&TpeSampler::new(10), &space, mixed_loss, 5, 80, 10);
    let (best, loss) = trials
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("trials");
    let lr = as_f64(&best[0]);
    // The right choice and integer, and a learning rate within a decade of 1e-4, where
    // uniform draws on a linear scale would almost never go below 1e-2.
    assert!(*loss < 1.0, "best {best:?} loss {loss}");
    assert_eq!(best[3], choices(&["b"])[0]);
    assert!((1e-5..1e-3).contains(&lr), "{lr}");
    // Once the models take over, the good choice is drawn most of the time.
    let b = trials[10..]
        .iter()
        .filter(|(values, _)| values[3] == choices(&["b"])[0])
        .count();
    assert!(b > 35, "`b` in {b} of 70 model trials");
}

#[test]
fn the_same_seed_and_history_give_the_same_candidates() {
    let space = mixed();
    let sampler = TpeSampler::new(5);
    let a = run(&sampler, &space, mixed_loss, 9, 30, 5);
    let b = run(&sampler, &space, mixed_loss, 9, 30, 5);
    let c = run(&sampler, &space, mixed_loss, 10, 30, 5);
    assert_eq!(a, b);
    assert_ne!(a[5..], c[5..]);
    // And the univariate variant.
    let univariate = TpeSampler {
        multivariate: false,
        ..TpeSampler::new(5)
    };
    assert_eq!(
        run(&univariate, &space, mixed_loss, 9, 30, 5),
        run(&univariate, &space, mixed_loss, 9, 30, 5)
    );
}

/// Branin-Hoo shifted to a minimum of 0, as in tests/bench/control_plane.py.
fn branin(values: &[pb::Value]) -> f64 {
    let (x, y) = (as_f64(&values[0]), as_f64(&values[1]));
    let b = 5.1 / (4.0 * PI * PI);
    let c = 5.0 / PI;
    let t = 1.0 / (8.0 * PI);
    (y - b * x * x + c * x - 6.0).powi(2) + 10.0 * (1.0 - t) * x.cos() + 10.0
        - 0.397_887_357_729_738
}

fn median_best(sampler: &dyn Sampler, seeds: std::ops::Range<u64>) -> f64 {
    let space = Space {
        dimensions: [("x", -5.0, 10.0), ("y", 0.0, 15.0)]
            .map(|(name, low, high)| Dimension {
                name: name.to_owned(),
                domain: Domain::Float {
                    low,
                    high,
                    log: false,
                },
            })
            .to_vec(),
    };
    let mut bests: Vec<f64> = seeds
        .map(|seed| {
            run(sampler, &space, branin, seed, 50, 10)
                .iter()
                .map(|(_, l)| *l)
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    bests.sort_by(f64::total_cmp);
    bests[bests.len() / 2]
}

#[test]
fn tpe_beats_random_search_on_branin() {
    let seeds = 1..32;
    let tpe = median_best(&TpeSampler::new(10), seeds.clone());
    let random = median_best(&RandomSampler, seeds);
    eprintln!("median best of 50 trials over 31 seeds: tpe {tpe}, random {random}");
    assert!(tpe * 2.0 < random, "tpe {tpe} vs random {random}");
}
