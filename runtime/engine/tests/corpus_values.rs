//! The checked-in corpus of bad values and constraint definitions (`tests/corpus/values`,
//! format in its README): each is refused by the engine's judge with its error kind and a
//! message containing every expected text.

use std::collections::HashMap;
use std::path::Path;

use mlbridge_engine::ErrorKind;
use mlbridge_engine::value::{self, Subject};
use mlbridge_proto::mlbridge::v1::{self as pb, Constraints, Dtype, VariableType, value::Kind};
use serde_json::Value as Json;

fn type_of(json: &Json) -> VariableType {
    match json {
        Json::String(name) => {
            VariableType::from_name(name).unwrap_or_else(|| panic!("unknown type `{name}`"))
        }
        Json::Number(n) => VariableType::try_from(n.as_i64().unwrap() as i32).unwrap(),
        other => panic!("a type is a name or a number, not {other}"),
    }
}

fn dtype_number(json: &Json) -> i32 {
    match json {
        Json::String(name) => {
            Dtype::from_name(name).unwrap_or_else(|| panic!("unknown dtype `{name}`")) as i32
        }
        Json::Number(n) => n.as_i64().unwrap() as i32,
        other => panic!("a dtype is a name or a number, not {other}"),
    }
}

fn float(json: &Json) -> f64 {
    match json {
        Json::String(s) => s.parse().unwrap_or_else(|_| panic!("not a float: {s}")),
        other => other.as_f64().unwrap(),
    }
}

fn strings(json: &Json) -> Vec<String> {
    json.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn constraints(json: Option<&Json>) -> Constraints {
    let mut c = Constraints::default();
    let Some(Json::Object(fields)) = json else {
        return c;
    };
    for (key, v) in fields {
        match key.as_str() {
            "min" => c.min = Some(float(v)),
            "max" => c.max = Some(float(v)),
            "min_exclusive" => c.min_exclusive = v.as_bool().unwrap(),
            "max_exclusive" => c.max_exclusive = v.as_bool().unwrap(),
            "choices" => c.choices = strings(v),
            "min_length" => c.min_length = v.as_u64(),
            "max_length" => c.max_length = v.as_u64(),
            "pattern" => c.pattern = Some(v.as_str().unwrap().to_owned()),
            "dimensions" => c.dimensions = Some(v.as_u64().unwrap() as u32),
            "shape" => {
                c.shape = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .collect()
            }
            "dtype" => c.dtype = Some(dtype_number(v)),
            "allowed_modules" => c.allowed_modules = strings(v),
            "element_type" => {
                c.element_type = Some(match v {
                    Json::Number(n) => n.as_i64().unwrap() as i32,
                    other => type_of(other) as i32,
                })
            }
            "max_items" => c.max_items = v.as_u64(),
            "nullable" => c.nullable = v.as_bool().unwrap(),
            other => panic!("unknown constraint `{other}`"),
        }
    }
    c
}

fn value(json: &Json) -> pb::Value {
    let fields = json.as_object().expect("a value is an object");
    let Some((case, v)) = fields.iter().next() else {
        return pb::Value { kind: None };
    };
    let kind = match case.as_str() {
        "null" => Kind::NullValue(0),
        "bool" => Kind::BoolValue(v.as_bool().unwrap()),
        "int" => Kind::IntValue(v.as_i64().unwrap()),
        "float" => Kind::FloatValue(float(v)),
        "string" => Kind::StringValue(v.as_str().unwrap().to_owned()),
        "repeat" => {
            let text = v[0].as_str().unwrap();
            Kind::StringValue(text.repeat(v[1].as_u64().unwrap() as usize))
        }
        "bytes_len" => Kind::BytesValue(vec![7; v.as_u64().unwrap() as usize].into()),
        "choice" => Kind::ChoiceValue(pb::Choice {
            value: v.as_str().unwrap().to_owned(),
        }),
        "module" => Kind::ModuleValue(pb::ModuleRef {
            name: v.as_str().unwrap().to_owned(),
            ..Default::default()
        }),
        "embedding" => Kind::EmbeddingValue(pb::Embedding {
            values: v
                .as_array()
                .unwrap()
                .iter()
                .map(|x| float(x) as f32)
                .collect(),
            model: None,
        }),
        "tensor" => Kind::TensorValue(pb::Tensor {
            dtype: dtype_number(&v["dtype"]),
            shape: v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect(),
            data: vec![0; v["data_len"].as_u64().unwrap() as usize].into(),
        }),
        "list" => Kind::ListValue(pb::ValueList {
            values: v.as_array().unwrap().iter().map(value).collect(),
        }),
        "map" => Kind::MapValue(pb::ValueMap {
            entries: v
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, item)| (k.clone(), value(item)))
                .collect::<HashMap<_, _>>(),
        }),
        other => panic!("unknown value case `{other}`"),
    };
    pb::Value { kind: Some(kind) }
}

#[test]
fn every_bad_value_and_definition_is_refused_with_its_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus/values");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 25,
        "{} cases in {}",
        paths.len(),
        dir.display()
    );
    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_name().unwrap().to_string_lossy();
        let case: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let ty = type_of(&case["type"]);
        let c = constraints(case.get("constraints"));
        let kind =
            ErrorKind::from_str_name(&format!("ERROR_KIND_{}", case["error"].as_str().unwrap()))
                .unwrap_or_else(|| panic!("{name}: unknown error kind"));
        let outcome = match case["stage"].as_str().unwrap() {
            "definition" => value::check_definition("v", ty, &c).map(|()| None),
            "value" => {
                if let Err(error) = value::check_definition("v", ty, &c) {
                    failures.push(format!("{name}: the definition itself is refused: {error}"));
                    continue;
                }
                value::validate(Subject::Variable("v"), ty, &c, value(&case["value"])).map(Some)
            }
            other => panic!("{name}: unknown stage `{other}`"),
        };
        let error = match outcome {
            Ok(accepted) => {
                failures.push(format!("{name}: accepted as {accepted:?}"));
                continue;
            }
            Err(error) => error,
        };
        if error.kind != kind {
            failures.push(format!(
                "{name}: {:?} instead of {kind:?}: {error}",
                error.kind
            ));
        }
        for needle in case["expect"].as_array().unwrap() {
            let needle = needle.as_str().unwrap();
            if !error.message.contains(needle) {
                failures.push(format!("{name}: `{needle}` not in: {}", error.message));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
