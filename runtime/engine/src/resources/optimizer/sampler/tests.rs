//! Unit tests of the samplers: reproducibility, bounds, grid coverage, and TPE against
//! random search on a smooth function.

use mlbridge_proto::mlbridge::v1::value::Kind;

use super::*;
use crate::resources::optimizer::space::{Dimension, Domain, Space};
use crate::resources::optimizer::trials::{Direction, Outcome, Study};

fn float_dim(name: &str, low: f64, high: f64, log: bool) -> Dimension {
    Dimension {
        name: name.to_owned(),
        domain: Domain::Float { low, high, log },
    }
}

fn plane() -> Space {
    Space {
        dimensions: vec![
            float_dim("x", -5.0, 5.0, false),
            float_dim("y", -5.0, 5.0, false),
        ],
    }
}

fn number(v: &mlbridge_proto::mlbridge::v1::Value) -> f64 {
    match v.kind {
        Some(Kind::FloatValue(x)) => x,
        Some(Kind::IntValue(k)) => k as f64,
        ref other => panic!("not a number: {other:?}"),
    }
}

/// A smooth bowl with its minimum 0 at (0.7, -1.3), computed here in Rust.
fn bowl(values: &[f64]) -> f64 {
    (values[0] - 0.7).powi(2) + (values[1] + 1.3).powi(2)
}

/// Best (lowest) bowl value after `trials` trials of `sampler` seeded with `seed`.
fn best_after(sampler: Box<dyn Sampler>, seed: u64, trials: usize) -> f64 {
    let mut study = Study::new(plane(), sampler, seed, Direction::Minimize);
    for _ in 0..trials {
        let [number] = study.ask_batch(1)[..] else {
            panic!("no candidate")
        };
        let xs: Vec<f64> = study
            .trial(number)
            .unwrap()
            .candidate
            .values
            .iter()
            .map(number_of)
            .collect();
        study
            .tell(number, Outcome::Complete(bowl(&xs)), Default::default(), 1)
            .unwrap();
    }
    study.best().unwrap().score.unwrap()
}

fn number_of(v: &mlbridge_proto::mlbridge::v1::Value) -> f64 {
    number(v)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[test]
fn tpe_beats_random_search_on_a_smooth_function() {
    let seeds = [1u64, 2, 3, 4, 5];
    let tpe: Vec<f64> = seeds
        .iter()
        .map(|s| best_after(Box::new(TpeSampler::new(10)), *s, 50))
        .collect();
    let random: Vec<f64> = seeds
        .iter()
        .map(|s| best_after(Box::new(RandomSampler), *s, 50))
        .collect();
    let (tpe, random) = (median(tpe), median(random));
    eprintln!("median best of 50 trials over 5 seeds: tpe {tpe}, random {random}");
    assert!(tpe < random, "median best: tpe {tpe} vs random {random}");
}

#[test]
fn the_same_seed_and_number_give_the_same_candidate() {
    let space = plane();
    for sampler in [
        Box::new(RandomSampler) as Box<dyn Sampler>,
        Box::new(TpeSampler::new(1)),
    ] {
        let a = sampler
            .sample(&space, 3, &[], &mut trial_rng(7, 3))
            .unwrap();
        let b = sampler
            .sample(&space, 3, &[], &mut trial_rng(7, 3))
            .unwrap();
        assert_eq!(a, b);
        let other_seed = sampler
            .sample(&space, 3, &[], &mut trial_rng(8, 3))
            .unwrap();
        let other_number = sampler
            .sample(&space, 4, &[], &mut trial_rng(7, 4))
            .unwrap();
        assert_ne!(a, other_seed);
        assert_ne!(a, other_number);
    }
}

#[test]
fn random_samples_stay_in_bounds_and_log_scale_is_log_uniform() {
    let space = Space {
        dimensions: vec![
            float_dim("lr", 1e-6, 1.0, true),
            Dimension {
                name: "k".into(),
                domain: Domain::Integer {
                    low: -3,
                    high: 3,
                    log: false,
                },
            },
        ],
    };
    let mut below_1e_3 = 0;
    let mut ks = [0usize; 7];
    for n in 0..2000 {
        let xs = RandomSampler
            .sample(&space, n, &[], &mut trial_rng(11, n))
            .unwrap();
        let c = space.candidate(&xs);
        let lr = number(&c.values[0]);
        let k = number(&c.values[1]);
        assert!((1e-6..=1.0).contains(&lr), "{lr}");
        assert!((-3.0..=3.0).contains(&k) && k.fract() == 0.0, "{k}");
        if lr < 1e-3 {
            below_1e_3 += 1;
        }
        ks[(k + 3.0) as usize] += 1;
    }
    // Half the decades lie below 1e-3: about half the samples, where a linear scale
    // would put 0.1% of them.
    assert!((800..1200).contains(&below_1e_3), "{below_1e_3}");
    // Every integer is reached, the end points as often as the others.
    assert!(ks.iter().all(|&c| c > 200), "{ks:?}");
}

#[test]
fn grid_enumerates_every_point_once_then_stops() {
    let space = Space {
        dimensions: vec![
            float_dim("x", 0.0, 1.0, false),
            Dimension {
                name: "b".into(),
                domain: Domain::Categorical {
                    choices: vec![
                        mlbridge_proto::mlbridge::v1::Value {
                            kind: Some(Kind::BoolValue(false)),
                        },
                        mlbridge_proto::mlbridge::v1::Value {
                            kind: Some(Kind::BoolValue(true)),
                        },
                    ],
                },
            },
        ],
    };
    let grid = GridSampler { points: 3 };
    assert_eq!(grid.capacity(&space), Some(6));
    let mut seen = Vec::new();
    for n in 0..6 {
        let xs = grid.sample(&space, n, &[], &mut trial_rng(0, n)).unwrap();
        let c = space.candidate(&xs);
        seen.push((number(&c.values[0]), c.values[1].clone()));
    }
    assert!(grid.sample(&space, 6, &[], &mut trial_rng(0, 6)).is_none());
    for x in [0.0, 0.5, 1.0] {
        for b in [false, true] {
            let point = (
                x,
                mlbridge_proto::mlbridge::v1::Value {
                    kind: Some(Kind::BoolValue(b)),
                },
            );
            assert_eq!(seen.iter().filter(|p| **p == point).count(), 1, "{point:?}");
        }
    }
}
