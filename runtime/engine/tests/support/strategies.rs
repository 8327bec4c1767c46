//! Generators of arbitrary schema values: every `Value` case (nested lists and maps,
//! tensors with any shape, dtype and data length), constraints with any mix of fields
//! (including contradictory ones, NaN bounds, unknown enum numbers and odd patterns), and
//! names from the valid grammar, near it, and far from it.

use std::collections::HashMap;

use mlbridge_proto::mlbridge::v1::{self as pb, Constraints, Value, VariableType, value::Kind};
use proptest::collection::{hash_map, vec};
use proptest::option;
use proptest::prelude::*;

/// Every declared variable type except UNSPECIFIED (which registration refuses).
pub(crate) fn variable_type() -> impl Strategy<Value = VariableType> {
    (1i32..=12).prop_map(|n| VariableType::try_from(n).expect("1..=12 are variable types"))
}

/// Any variable type, UNSPECIFIED included.
pub(crate) fn any_variable_type() -> impl Strategy<Value = VariableType> {
    (0i32..=12).prop_map(|n| VariableType::try_from(n).expect("0..=12 are variable types"))
}

/// An enum number as a client may send it: mostly known values, sometimes not.
fn enum_number(known: i32) -> impl Strategy<Value = i32> {
    prop_oneof![4 => 0..=known, 1 => any::<i32>()]
}

/// Doubles including the edges: NaN, infinities, zero signs, extremes.
pub(crate) fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -1e6f64..1e6,
        1 => any::<f64>(),
        1 => prop::sample::select(vec![
            f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, f64::MAX, f64::MIN,
            f64::MIN_POSITIVE, 9.007_199_254_740_993e15, 1e15, -1e15,
        ]),
    ]
}

/// Text: short ASCII, arbitrary Unicode, regex metacharacters, and sometimes long.
pub(crate) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9_]{0,8}",
        2 => any::<String>(),
        2 => r"[\\\[\](){}|*+?.^$a-c0-9,-]{0,12}",
        1 => (any::<char>(), 0usize..5_000).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

/// A regex-like pattern: valid ones, broken ones, and ones that blow up when compiled.
pub(crate) fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => text(),
        1 => prop::sample::select(vec![
            "(", ")", "a)|(b", "[", "[z-a]", "a{2,1}", "\\", "(?P<x>a)(?P<x>b)", "(?<", "\\p{Nope}",
            "a{1000}{1000}", "(a{100}){100}{100}", "\\b{start}", "(?i)ǅ", "^$", "", ".*", "(?s:.)*",
            "[[:alpha:]]", "\\d{4294967295}",
        ]).prop_map(str::to_owned),
        1 => (1u32..300, 1u32..300).prop_map(|(a, b)| format!("(x{{{a}}}){{{b}}}")),
    ]
}

/// Any `Value`, nested up to a few levels (lists and maps of any value).
pub(crate) fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value { kind: None }),
        1 => any::<i32>().prop_map(|n| kind(Kind::NullValue(n))),
        2 => any::<bool>().prop_map(|b| kind(Kind::BoolValue(b))),
        3 => prop_oneof![any::<i64>(), -100i64..100].prop_map(|n| kind(Kind::IntValue(n))),
        3 => float().prop_map(|f| kind(Kind::FloatValue(f))),
        3 => text().prop_map(|s| kind(Kind::StringValue(s))),
        2 => vec(any::<u8>(), 0..64).prop_map(|b| kind(Kind::BytesValue(b.into()))),
        2 => text().prop_map(|value| kind(Kind::ChoiceValue(pb::Choice { value }))),
        2 => (text(), option::of(text())).prop_map(|(name, signature)| {
            kind(Kind::ModuleValue(pb::ModuleRef { name, signature, config: HashMap::new() }))
        }),
        2 => (vec(any::<f32>(), 0..16), option::of(text())).prop_map(|(values, model)| {
            kind(Kind::EmbeddingValue(pb::Embedding { values, model }))
        }),
        3 => tensor().prop_map(|t| kind(Kind::TensorValue(t))),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6)
                .prop_map(|values| kind(Kind::ListValue(pb::ValueList { values }))),
            hash_map(text(), inner, 0..6)
                .prop_map(|entries| kind(Kind::MapValue(pb::ValueMap { entries }))),
        ]
    })
}

fn kind(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

/// A tensor with any dtype number, any shape (small dims mostly, sometimes huge ones whose
/// product overflows) and a data length that usually fits the shape and sometimes not.
pub(crate) fn tensor() -> impl Strategy<Value = pb::Tensor> {
    let dim = prop_oneof![6 => 0u64..5, 1 => any::<u64>(), 1 => Just(u64::MAX)];
    (
        enum_number(14),
        vec(dim, 0..5),
        prop_oneof![3 => Just(None), 1 => option::of(0usize..200)],
    )
        .prop_map(|(dtype, shape, length)| {
            let item = pb::Dtype::try_from(dtype)
                .ok()
                .and_then(|d| d.item_size())
                .unwrap_or(1);
            let fitting = shape
                .iter()
                .try_fold(item as u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= 4096)
                .unwrap_or(7) as usize;
            pb::Tensor {
                dtype,
                shape,
                data: vec![0x5a; length.unwrap_or(fitting)].into(),
            }
        })
}

/// Constraints with any mix of fields, valid for some type or not.
pub(crate) fn constraints() -> impl Strategy<Value = Constraints> {
    let numeric = (
        option::of(float()),
        option::of(float()),
        any::<bool>(),
        any::<bool>(),
    );
    let text_rules = (
        vec(text(), 0..4),
        option::of(prop_oneof![0u64..20, any::<u64>()]),
        option::of(prop_oneof![0u64..20, any::<u64>()]),
        option::of(pattern()),
    );
    let shapes = (
        option::of(prop_oneof![1u32..10, any::<u32>()]),
        vec(prop_oneof![0u64..5, any::<u64>()], 0..4),
        option::of(enum_number(14)),
    );
    let containers = (
        vec(text(), 0..3),
        option::of(enum_number(12)),
        option::of(prop_oneof![0u64..8, any::<u64>()]),
        any::<bool>(),
    );
    (numeric, text_rules, shapes, containers).prop_map(
        |(
            (min, max, min_exclusive, max_exclusive),
            (choices, min_length, max_length, pattern),
            (dimensions, shape, dtype),
            (allowed_modules, element_type, max_items, nullable),
        )| Constraints {
            min,
            max,
            min_exclusive,
            max_exclusive,
            choices,
            min_length,
            max_length,
            pattern,
            dimensions,
            shape,
            dtype,
            allowed_modules,
            element_type,
            max_items,
            nullable,
        },
    )
}

/// Constraints that usually fit `ty` (only its own fields, mostly consistent), so that
/// generated cases reach value validation instead of stopping at the definition check.
pub(crate) fn constraints_for(ty: VariableType) -> BoxedStrategy<Constraints> {
    use VariableType as T;
    let none = Constraints::default();
    match ty {
        T::Float | T::Integer | T::Any => (
            option::of(-100f64..100.0),
            option::of(-100f64..100.0),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                move |(min, max, min_exclusive, max_exclusive, nullable)| Constraints {
                    min,
                    max,
                    min_exclusive: min_exclusive && min.is_some(),
                    max_exclusive: max_exclusive && max.is_some(),
                    nullable,
                    ..Constraints::default()
                },
            )
            .boxed(),
        T::String | T::Choice => (
            vec("[a-c]{0,3}", 0..4),
            option::of(0u64..6),
            option::of(0u64..12),
            option::of(prop_oneof!["[a-c]*", "a|bb", "[a-z]{2,3}", pattern()]),
        )
            .prop_map(
                move |(choices, min_length, max_length, pattern)| Constraints {
                    choices,
                    min_length,
                    max_length,
                    pattern: if ty == T::String { pattern } else { None },
                    ..Constraints::default()
                },
            )
            .boxed(),
        T::Bytes => (option::of(0u64..10), option::of(0u64..70))
            .prop_map(|(min_length, max_length)| Constraints {
                min_length,
                max_length,
                ..Constraints::default()
            })
            .boxed(),
        T::List | T::Map => (option::of(1i32..=12), option::of(0u64..8))
            .prop_map(move |(element_type, max_items)| Constraints {
                element_type,
                max_items,
                min_length: None,
                ..Constraints::default()
            })
            .boxed(),
        T::Embedding => option::of(1u32..20)
            .prop_map(|dimensions| Constraints {
                dimensions,
                ..Constraints::default()
            })
            .boxed(),
        T::Tensor => (vec(0u64..4, 0..4), option::of(1i32..=14))
            .prop_map(|(shape, dtype)| Constraints {
                shape,
                dtype,
                ..Constraints::default()
            })
            .boxed(),
        T::Module => vec(text(), 0..3)
            .prop_map(|allowed_modules| Constraints {
                allowed_modules,
                ..Constraints::default()
            })
            .boxed(),
        T::Boolean | T::Unspecified => Just(none).boxed(),
    }
}

/// A value that usually has the shape `ty` expects (so that constraints get exercised),
/// and sometimes any value at all.
pub(crate) fn value_for(ty: VariableType) -> BoxedStrategy<Value> {
    use VariableType as T;
    let typed: BoxedStrategy<Value> = match ty {
        T::Float => float().prop_map(|f| kind(Kind::FloatValue(f))).boxed(),
        T::Integer => (-120i64..120).prop_map(|n| kind(Kind::IntValue(n))).boxed(),
        T::String | T::Choice => "[a-d]{0,14}"
            .prop_map(|s| kind(Kind::StringValue(s)))
            .boxed(),
        T::Bytes => vec(any::<u8>(), 0..80)
            .prop_map(|b| kind(Kind::BytesValue(b.into())))
            .boxed(),
        T::Embedding => vec(-1f32..1.0, 0..20)
            .prop_map(|values| {
                kind(Kind::EmbeddingValue(pb::Embedding {
                    values,
                    model: None,
                }))
            })
            .boxed(),
        T::Tensor => tensor().prop_map(|t| kind(Kind::TensorValue(t))).boxed(),
        T::List => vec(value(), 0..10)
            .prop_map(|values| kind(Kind::ListValue(pb::ValueList { values })))
            .boxed(),
        T::Map => hash_map("[a-z]{1,3}", value(), 0..10)
            .prop_map(|entries| kind(Kind::MapValue(pb::ValueMap { entries })))
            .boxed(),
        _ => value().boxed(),
    };
    prop_oneof![3 => typed, 1 => value()].boxed()
}

/// A variable name: valid ones, ones that break one rule, and arbitrary text.
pub(crate) fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z_][a-zA-Z0-9_.:/-]{0,12}",
        1 => "[a-z]{1}[a-z0-9]{254,256}",
        1 => "[0-9 *?\\[\\]{}]{0,3}[a-z]{0,3}",
        1 => any::<String>(),
        1 => (any::<char>(), 0usize..20_000).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}
