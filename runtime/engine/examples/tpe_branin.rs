//! Compares the engine's samplers on the control-plane benchmark's objective without the
//! Python bench: Branin-Hoo shifted to a minimum of 0 over x in [-5, 10], y in [0, 15]
//! (tests/bench/control_plane.py), 50 trials per run, and prints the median, mean and
//! quartiles of the best value over seeds 1..=5 (the bench's seeds) and 1..=N.
//!
//! `cargo run -p mlbridge-engine --example tpe_branin [N]` (N defaults to 30).

use mlbridge_engine::resources::optimizer::sampler::{
    HyperoptTpeSampler, RandomSampler, Sampler, TpeSampler,
};
use mlbridge_engine::resources::optimizer::space::{Dimension, Domain, Space};
use mlbridge_engine::resources::optimizer::trials::{Direction, Outcome, Study};
use mlbridge_proto::mlbridge::v1::value::Kind;

const TRIALS: usize = 50;

/// A sampler's name and how to make one.
type Contender = (&'static str, fn() -> Box<dyn Sampler>);
const BRANIN_MIN: f64 = 0.397_887_357_729_738;

fn branin(x: f64, y: f64) -> f64 {
    let pi = std::f64::consts::PI;
    let b = 5.1 / (4.0 * pi * pi);
    let c = 5.0 / pi;
    let t = 1.0 / (8.0 * pi);
    (y - b * x * x + c * x - 6.0).powi(2) + 10.0 * (1.0 - t) * x.cos() + 10.0 - BRANIN_MIN
}

fn space() -> Space {
    let float = |name: &str, low: f64, high: f64| Dimension {
        name: name.into(),
        domain: Domain::Float {
            low,
            high,
            log: false,
        },
    };
    Space {
        dimensions: vec![float("x", -5.0, 10.0), float("y", 0.0, 15.0)],
    }
}

fn best(sampler: Box<dyn Sampler>, seed: u64) -> f64 {
    let mut study = Study::new(space(), sampler, seed, Direction::Minimize);
    for _ in 0..TRIALS {
        let [number] = study.ask_batch(1)[..] else {
            panic!("no candidate")
        };
        let values: Vec<f64> = study
            .trial(number)
            .expect("drawn")
            .candidate
            .values
            .iter()
            .map(|v| match v.kind {
                Some(Kind::FloatValue(x)) => x,
                ref other => panic!("not a float: {other:?}"),
            })
            .collect();
        study
            .tell(
                number,
                Outcome::Complete(branin(values[0], values[1])),
                Default::default(),
                1,
            )
            .expect("running");
    }
    study
        .best()
        .and_then(|t| t.score)
        .expect("a complete trial")
}

fn summary(mut xs: Vec<f64>) -> String {
    xs.sort_by(f64::total_cmp);
    let q = |p: f64| xs[((xs.len() - 1) as f64 * p).round() as usize];
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    format!(
        "median {:>8.4}  mean {:>8.4}  q25 {:>8.4}  q75 {:>8.4}",
        q(0.5),
        mean,
        q(0.25),
        q(0.75)
    )
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N: a number of seeds"))
        .unwrap_or(30);
    let samplers: Vec<Contender> = vec![
        ("random", || Box::new(RandomSampler)),
        ("tpe crate (Hyperopt-style)", || {
            Box::new(HyperoptTpeSampler { startup: 10 })
        }),
        ("tpe (multivariate, default)", || {
            Box::new(TpeSampler::new(10))
        }),
        ("tpe (univariate)", || {
            Box::new(TpeSampler {
                startup: 10,
                multivariate: false,
            })
        }),
    ];
    for seeds in [1..=5, 1..=n] {
        println!("{TRIALS} trials, seeds {seeds:?}: best value (regret)");
        for (name, make) in &samplers {
            let bests: Vec<f64> = seeds.clone().map(|s| best(make(), s)).collect();
            println!("  {name:<30} {}", summary(bests));
        }
    }
}
