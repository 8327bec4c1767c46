//! Unit tests of the search space: dimensions from constraints, log scale, grids, refusals.

use std::collections::HashMap;

use mlbridge_proto::mlbridge::v1::{self as pb, VariableType, value::Kind};

use super::*;
use crate::error::ErrorKind;

fn var(name: &str, ty: VariableType, c: pb::Constraints, scale: Option<&str>) -> pb::Variable {
    pb::Variable {
        name: name.to_owned(),
        r#type: ty as i32,
        constraints: Some(c),
        metadata: scale
            .map(|s| HashMap::from([(SCALE_KEY.to_owned(), s.to_owned())]))
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn range(min: f64, max: f64) -> pb::Constraints {
    pb::Constraints {
        min: Some(min),
        max: Some(max),
        ..Default::default()
    }
}

fn float_of(v: &pb::Value) -> f64 {
    match v.kind {
        Some(Kind::FloatValue(x)) => x,
        Some(Kind::IntValue(k)) => k as f64,
        ref other => panic!("not a number: {other:?}"),
    }
}

#[test]
fn dimensions_come_from_types_and_constraints() {
    let space = Space::of(&[
        var("t", VariableType::Float, range(0.0, 2.0), None),
        var("k", VariableType::Integer, range(1.5, 9.0), None),
        var(
            "m",
            VariableType::Choice,
            pb::Constraints {
                choices: vec!["a".into(), "b".into()],
                ..Default::default()
            },
            None,
        ),
        var("b", VariableType::Boolean, pb::Constraints::default(), None),
        var(
            "s",
            VariableType::String,
            pb::Constraints {
                choices: vec!["x".into(), "y".into(), "z".into()],
                ..Default::default()
            },
            None,
        ),
    ])
    .unwrap();
    let domains: Vec<&Domain> = space.dimensions.iter().map(|d| &d.domain).collect();
    assert_eq!(
        domains[0],
        &Domain::Float {
            low: 0.0,
            high: 2.0,
            log: false
        }
    );
    assert_eq!(
        domains[1],
        &Domain::Integer {
            low: 2,
            high: 9,
            log: false
        }
    );
    let Domain::Categorical { choices } = domains[2] else {
        panic!("{:?}", domains[2])
    };
    assert_eq!(
        choices[1].kind,
        Some(Kind::ChoiceValue(pb::Choice { value: "b".into() }))
    );
    let Domain::Categorical { choices } = domains[3] else {
        panic!()
    };
    assert_eq!(choices.len(), 2);
    let Domain::Categorical { choices } = domains[4] else {
        panic!()
    };
    assert_eq!(choices[2].kind, Some(Kind::StringValue("z".into())));
}

#[test]
fn exclusive_bounds_move_inside() {
    let c = pb::Constraints {
        min_exclusive: true,
        max_exclusive: true,
        ..range(0.0, 10.0)
    };
    let f = Dimension::of(&var("f", VariableType::Float, c.clone(), None)).unwrap();
    let Domain::Float { low, high, .. } = f.domain else {
        panic!()
    };
    assert!(low > 0.0 && high < 10.0);
    let i = Dimension::of(&var("i", VariableType::Integer, c, None)).unwrap();
    assert_eq!(
        i.domain,
        Domain::Integer {
            low: 1,
            high: 9,
            log: false
        }
    );
}

#[test]
fn unsearchable_variables_are_refused_by_name() {
    let cases = [
        var(
            "nomax",
            VariableType::Float,
            pb::Constraints {
                min: Some(0.0),
                ..Default::default()
            },
            None,
        ),
        var(
            "free",
            VariableType::String,
            pb::Constraints::default(),
            None,
        ),
        var(
            "blob",
            VariableType::Bytes,
            pb::Constraints::default(),
            None,
        ),
        var("neg", VariableType::Float, range(-1.0, 1.0), Some("log")),
        var("empty", VariableType::Integer, range(1.2, 1.8), None),
        var("odd", VariableType::Float, range(1.0, 2.0), Some("cubic")),
    ];
    for v in cases {
        let err = Dimension::of(&v).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument, "{}", v.name);
        assert_eq!(err.context["variable"], v.name);
        assert!(
            err.message.contains(&format!("`{}`", v.name)),
            "{}",
            err.message
        );
    }
    let err = Dimension::of(&var(
        "nomax",
        VariableType::Integer,
        pb::Constraints::default(),
        None,
    ))
    .unwrap_err();
    assert!(err.message.contains("`min` and `max`"), "{}", err.message);
}

#[test]
fn log_scale_spreads_samples_over_decades() {
    let d = Dimension::of(&var(
        "lr",
        VariableType::Float,
        range(1e-5, 1e-1),
        Some("log"),
    ))
    .unwrap();
    let (start, end) = d.interval();
    assert!((start - 1e-5f64.ln()).abs() < 1e-12 && (end - 1e-1f64.ln()).abs() < 1e-12);
    // Evenly spaced coordinates land one per decade.
    let values: Vec<f64> = d.grid(5).iter().map(|x| float_of(&d.snap(*x).1)).collect();
    let expected = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1];
    for (v, e) in values.iter().zip(expected) {
        assert!((v / e - 1.0).abs() < 1e-9, "{values:?}");
    }
    let k = Dimension::of(&var(
        "k",
        VariableType::Integer,
        range(1.0, 1000.0),
        Some("log"),
    ))
    .unwrap();
    let grid: Vec<f64> = k.grid(4).iter().map(|x| float_of(&k.snap(*x).1)).collect();
    assert_eq!(grid, [1.0, 10.0, 100.0, 1000.0]);
}

#[test]
fn snapping_stays_inside_and_rounds_integers() {
    let d = Dimension::of(&var("k", VariableType::Integer, range(0.0, 3.0), None)).unwrap();
    let (start, end) = d.interval();
    for x in [start, -7.0, 0.49, 0.51, 2.5, end.next_down(), 99.0] {
        let (coordinate, value) = d.snap(x);
        let k = float_of(&value);
        assert!((0.0..=3.0).contains(&k) && k.fract() == 0.0, "{x} -> {k}");
        assert_eq!(coordinate, k);
        assert!(coordinate >= start && coordinate < end);
    }
    let f = Dimension::of(&var("f", VariableType::Float, range(0.0, 1.0), None)).unwrap();
    let (coordinate, value) = f.snap(1.0);
    assert_eq!(float_of(&value), 1.0);
    assert!(coordinate < f.interval().1, "tpe ranges are half-open");
}

#[test]
fn grids_cover_every_choice_and_small_integer_ranges() {
    let k = Dimension::of(&var("k", VariableType::Integer, range(0.0, 3.0), None)).unwrap();
    assert_eq!(k.grid(5), [0.0, 1.0, 2.0, 3.0]);
    let wide = Dimension::of(&var("w", VariableType::Integer, range(0.0, 100.0), None)).unwrap();
    assert_eq!(wide.grid(5), [0.0, 25.0, 50.0, 75.0, 100.0]);
    let f = Dimension::of(&var("f", VariableType::Float, range(-1.0, 1.0), None)).unwrap();
    let values: Vec<f64> = f.grid(3).iter().map(|x| float_of(&f.snap(*x).1)).collect();
    assert_eq!(values, [-1.0, 0.0, 1.0]);
    let b = Dimension::of(&var(
        "b",
        VariableType::Boolean,
        pb::Constraints::default(),
        None,
    ))
    .unwrap();
    assert_eq!(b.grid(5), [0.0, 1.0]);
    let space = Space {
        dimensions: vec![k, f, b],
    };
    assert_eq!(space.grid_size(5), 4 * 5 * 2);
    assert_eq!(
        space.grid_size(3),
        3 * 3 * 2,
        "0, 1.5 and 3 round to 0, 2 and 3"
    );
}
