//! Unit tests of the study: batches, reproducibility after failures, best, tell errors.

use mlbridge_proto::mlbridge::v1::value::Kind;

use super::*;
use crate::error::ErrorKind;
use crate::resources::optimizer::sampler::{GridSampler, RandomSampler, TpeSampler};
use crate::resources::optimizer::space::{Dimension, Domain};

fn plane() -> Space {
    let dim = |name: &str| Dimension {
        name: name.to_owned(),
        domain: Domain::Float {
            low: -2.0,
            high: 2.0,
            log: false,
        },
    };
    Space {
        dimensions: vec![dim("x"), dim("y")],
    }
}

fn xy(trial: &Trial) -> (f64, f64) {
    let n = |i: usize| match trial.candidate.values[i].kind {
        Some(Kind::FloatValue(v)) => v,
        _ => panic!(),
    };
    (n(0), n(1))
}

/// Runs `total` trials in batches of `parallel` on a smooth score; trials whose number is
/// in `failing` fail. Returns every candidate in number order.
fn run(tpe: bool, seed: u64, parallel: usize, total: usize, failing: &[u64]) -> Vec<(f64, f64)> {
    let sampler: Box<dyn Sampler> = if tpe {
        Box::new(TpeSampler::new(4))
    } else {
        Box::new(RandomSampler)
    };
    let mut study = Study::new(plane(), sampler, seed, Direction::Maximize);
    while study.trials().len() < total {
        let batch = study.ask_batch(parallel.min(total - study.trials().len()));
        // Finish the batch in reverse order: the order results arrive in changes nothing.
        for number in batch.into_iter().rev() {
            let (x, y) = xy(study.trial(number).unwrap());
            let outcome = if failing.contains(&number) {
                Outcome::Failed(TrialError {
                    kind: "CALLBACK_ERROR".into(),
                    remote_type: "ValueError".into(),
                    message: "boom".into(),
                    traceback: String::new(),
                })
            } else {
                Outcome::Complete(-(x * x + y * y))
            };
            study.tell(number, outcome, Duration::ZERO, 1).unwrap();
        }
    }
    study.trials().iter().map(xy).collect()
}

#[test]
fn the_same_seed_gives_the_same_candidates_in_batches_and_after_failures() {
    for tpe in [false, true] {
        for parallel in [1, 3] {
            let a = run(tpe, 42, parallel, 20, &[2, 5, 6, 11]);
            let b = run(tpe, 42, parallel, 20, &[2, 5, 6, 11]);
            assert_eq!(a, b, "tpe={tpe} parallel={parallel}");
            let c = run(tpe, 43, parallel, 20, &[2, 5, 6, 11]);
            assert_ne!(a, c, "another seed, other candidates");
            // Trials of one batch differ from each other.
            assert_ne!(a[0], a[1]);
        }
        // Startup (random) candidates depend on seed and number only.
        let serial = run(tpe, 42, 1, 4, &[]);
        let batched = run(tpe, 42, 3, 4, &[]);
        assert_eq!(serial, batched);
    }
    // Failures only change what TPE learns from, never the random draws.
    assert_eq!(run(false, 9, 1, 12, &[]), run(false, 9, 1, 12, &[1, 3]));
    assert_ne!(run(true, 9, 1, 12, &[]), run(true, 9, 1, 12, &[1, 3]));
}

#[test]
fn best_follows_the_direction_and_ignores_failures() {
    for (direction, expected) in [(Direction::Maximize, 2), (Direction::Minimize, 0)] {
        let mut study = Study::new(plane(), Box::new(RandomSampler), 1, direction);
        assert!(study.best().is_none());
        assert_eq!(study.ask_batch(5), [0, 1, 2, 3, 4]);
        for (number, score) in [(0, 1.0), (1, 2.0), (2, 3.0), (4, 3.0)] {
            study
                .tell(number, Outcome::Complete(score), Duration::ZERO, 1)
                .unwrap();
        }
        study
            .tell(
                3,
                Outcome::TimedOut(TrialError::default()),
                Duration::ZERO,
                2,
            )
            .unwrap();
        assert_eq!(study.best().unwrap().number, expected);
        assert_eq!(study.counts(), (4, 0, 1, 0));
    }
}

#[test]
fn tell_refuses_unknown_repeated_and_non_finite() {
    let mut study = Study::new(plane(), Box::new(RandomSampler), 1, Direction::Maximize);
    study.ask_batch(2);
    let err = study
        .tell(7, Outcome::Complete(1.0), Duration::ZERO, 1)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    let err = study
        .tell(0, Outcome::Complete(f64::NAN), Duration::ZERO, 1)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    study
        .tell(0, Outcome::Pruned(None), Duration::ZERO, 1)
        .unwrap();
    let err = study
        .tell(0, Outcome::Complete(1.0), Duration::ZERO, 1)
        .unwrap_err();
    assert!(err.message.contains("already told"), "{}", err.message);
    assert_eq!(study.trial(0).unwrap().state, TrialState::Pruned);
}

#[test]
fn a_grid_study_stops_when_the_grid_is_done() {
    let mut study = Study::new(
        plane(),
        Box::new(GridSampler { points: 2 }),
        0,
        Direction::Maximize,
    );
    assert_eq!(study.remaining(), 4);
    assert_eq!(study.ask_batch(3).len(), 3);
    assert_eq!(study.ask_batch(3), [3]);
    assert!(study.ask_batch(3).is_empty());
    let points: Vec<(f64, f64)> = study.trials().iter().map(xy).collect();
    assert_eq!(points, [(-2.0, -2.0), (-2.0, 2.0), (2.0, -2.0), (2.0, 2.0)]);
}

#[test]
fn trials_render_as_maps() {
    let mut study = Study::new(plane(), Box::new(RandomSampler), 1, Direction::Maximize);
    study.ask_batch(1);
    let error = TrialError {
        kind: "CALLBACK_ERROR".into(),
        remote_type: "ValueError".into(),
        message: "bad".into(),
        traceback: "Traceback ...".into(),
    };
    let trial = study
        .tell(0, Outcome::Failed(error), Duration::from_micros(1500), 2)
        .unwrap()
        .clone();
    let Some(Kind::MapValue(map)) = trial.to_value(study.space()).kind else {
        panic!()
    };
    let e = &map.entries;
    assert_eq!(e["state"].kind, Some(Kind::StringValue("failed".into())));
    assert_eq!(e["duration_us"].kind, Some(Kind::IntValue(1500)));
    assert_eq!(e["attempts"].kind, Some(Kind::IntValue(2)));
    assert!(!e.contains_key("score"));
    let Some(Kind::MapValue(error)) = &e["error"].kind else {
        panic!()
    };
    assert_eq!(
        error.entries["type"].kind,
        Some(Kind::StringValue("ValueError".into()))
    );
    let Some(Kind::MapValue(values)) = &e["values"].kind else {
        panic!()
    };
    assert_eq!(values.entries.len(), 2);
}
