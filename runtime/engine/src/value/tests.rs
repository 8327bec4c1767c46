//! Validation: conversions, every constraint, definitions, and the subject each message names.

mod constraints {
    use crate::value::*;

    fn float(v: f64) -> Value {
        Value {
            kind: Some(Kind::FloatValue(v)),
        }
    }

    #[test]
    fn a_list_of_numbers_becomes_an_embedding() {
        let list = |items: Vec<Kind>| Value {
            kind: Some(Kind::ListValue(pb::ValueList {
                values: items.into_iter().map(|k| Value { kind: Some(k) }).collect(),
            })),
        };
        let c = Constraints::default();
        let v = validate(
            Subject::Variable("e"),
            VariableType::Embedding,
            &c,
            list(vec![Kind::FloatValue(0.5), Kind::IntValue(2)]),
        )
        .unwrap();
        let expected = pb::Embedding {
            values: vec![0.5, 2.0],
            model: None,
        };
        assert_eq!(v.kind, Some(Kind::EmbeddingValue(expected)));
        let error = validate(
            Subject::Variable("e"),
            VariableType::Embedding,
            &c,
            list(vec![Kind::StringValue("a".into())]),
        )
        .unwrap_err();
        assert_eq!(error.message, "variable `e` expects embedding, got list");
    }

    #[test]
    fn widens_ints_for_floats_and_strings_for_choices() {
        let c = Constraints::default();
        let v = validate(
            Subject::Variable("t"),
            VariableType::Float,
            &c,
            Value {
                kind: Some(Kind::IntValue(2)),
            },
        )
        .unwrap();
        assert_eq!(v, float(2.0));
        let c = Constraints {
            choices: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let v = validate(
            Subject::Variable("m"),
            VariableType::Choice,
            &c,
            Value {
                kind: Some(Kind::StringValue("b".into())),
            },
        )
        .unwrap();
        assert_eq!(
            v.kind,
            Some(Kind::ChoiceValue(pb::Choice { value: "b".into() }))
        );
    }

    #[test]
    fn range_violations_name_the_rule() {
        let c = Constraints {
            min: Some(0.0),
            max: Some(2.0),
            ..Default::default()
        };
        let err = validate(
            Subject::Variable("temperature"),
            VariableType::Float,
            &c,
            float(2.5),
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::ConstraintViolation);
        assert_eq!(
            err.message,
            "variable `temperature`: 2.5 is above the maximum 2"
        );
        assert_eq!(err.context["constraint"], "max");
        assert!(
            validate(
                Subject::Variable("t"),
                VariableType::Float,
                &c,
                float(f64::NAN)
            )
            .is_err()
        );
    }

    #[test]
    fn type_mismatch_names_both_types() {
        let err = validate(
            Subject::Variable("n"),
            VariableType::Integer,
            &Constraints::default(),
            float(1.5),
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::TypeMismatch);
        assert_eq!(err.message, "variable `n` expects integer, got float");
    }

    #[test]
    fn tensor_data_must_fit_its_shape() {
        let tensor = pb::Tensor {
            dtype: Dtype::Float32 as i32,
            shape: vec![2, 2],
            data: vec![0; 12].into(),
        };
        let err = validate(
            Subject::Variable("x"),
            VariableType::Tensor,
            &Constraints::default(),
            Value {
                kind: Some(Kind::TensorValue(tensor)),
            },
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "variable `x`: tensor data has 12 bytes, expected 16 for shape [2, 2] of float32"
        );
    }

    #[test]
    fn contradictory_definitions_are_rejected() {
        let c = Constraints {
            min: Some(3.0),
            max: Some(1.0),
            ..Default::default()
        };
        let err = check_definition("t", VariableType::Float, &c).unwrap_err();
        assert_eq!(
            err.message,
            "constraints of `t`: min 3 is greater than max 1"
        );
        let c = Constraints {
            pattern: Some("(".into()),
            ..Default::default()
        };
        assert!(
            check_definition("s", VariableType::String, &c)
                .unwrap_err()
                .message
                .contains("invalid pattern")
        );
        let c = Constraints {
            pattern: Some("a+".into()),
            ..Default::default()
        };
        assert!(check_definition("n", VariableType::Integer, &c).is_err());
        assert!(check_definition("c", VariableType::Choice, &Constraints::default()).is_err());
    }
}

mod conversion_tests {
    use crate::value::*;

    #[test]
    fn list_elements_are_converted() {
        let c = Constraints {
            element_type: Some(VariableType::Float as i32),
            ..Default::default()
        };
        let list = Value {
            kind: Some(Kind::ListValue(pb::ValueList {
                values: vec![Value {
                    kind: Some(Kind::IntValue(2)),
                }],
            })),
        };
        let converted = validate(Subject::Variable("xs"), VariableType::List, &c, list).unwrap();
        let Some(Kind::ListValue(list)) = converted.kind else {
            panic!("not a list")
        };
        assert_eq!(list.values[0].kind, Some(Kind::FloatValue(2.0)));
    }

    #[test]
    fn a_pattern_cannot_escape_its_anchors() {
        let c = Constraints {
            pattern: Some("a)|(b".into()),
            ..Default::default()
        };
        assert!(check_definition("s", VariableType::String, &c).is_err());
        let c = Constraints {
            pattern: Some("a|b".into()),
            ..Default::default()
        };
        let text = |s: &str| Value {
            kind: Some(Kind::StringValue(s.into())),
        };
        assert!(validate(Subject::Variable("s"), VariableType::String, &c, text("b")).is_ok());
        assert!(validate(Subject::Variable("s"), VariableType::String, &c, text("ab")).is_err());
    }
}

mod subject_tests {
    use crate::value::*;

    fn float(v: f64) -> Value {
        Value {
            kind: Some(Kind::FloatValue(v)),
        }
    }

    fn strings(items: &[&str]) -> Value {
        Value {
            kind: Some(Kind::ListValue(pb::ValueList {
                values: items
                    .iter()
                    .map(|s| Value {
                        kind: Some(Kind::StringValue((*s).to_owned())),
                    })
                    .collect(),
            })),
        }
    }

    fn context(error: &BridgeError) -> Vec<(&str, &str)> {
        error
            .context
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The same failures (a range violation and a wrong element type) about each subject:
    /// each message names its subject once, and the context keys name it.
    #[test]
    fn each_subject_is_named_in_message_and_context() {
        let range = Constraints {
            max: Some(2.0),
            ..Default::default()
        };
        let ints = Constraints {
            element_type: Some(VariableType::Integer as i32),
            ..Default::default()
        };
        let subjects = [
            Subject::Variable("temperature"),
            Subject::Argument {
                tool: "tune",
                argument: "temperature",
            },
            Subject::Parameter {
                operation: "dspy.predict",
                parameter: "temperature",
                bound: None,
            },
            Subject::Parameter {
                operation: "dspy.predict",
                parameter: "temperature",
                bound: Some("temp"),
            },
        ];
        let mut seen = Vec::new();
        for subject in subjects {
            let over = validate(subject, VariableType::Float, &range, float(2.5)).unwrap_err();
            let element =
                validate(subject, VariableType::List, &ints, strings(&["a", "b"])).unwrap_err();
            assert_eq!(over.kind, ErrorKind::ConstraintViolation);
            assert_eq!(element.kind, ErrorKind::TypeMismatch);
            seen.push((
                over.message.clone(),
                context(&over)
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                element.message.clone(),
                context(&element)
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ));
        }
        let expected = [
            (
                "variable `temperature`: 2.5 is above the maximum 2",
                "constraint=max limit=2 variable=temperature",
                "variable `temperature[0]` expects integer, got string",
                "actual=string expected=integer variable=temperature[0]",
            ),
            (
                "argument `tune.temperature`: 2.5 is above the maximum 2",
                "constraint=max limit=2 parameter=temperature tool=tune",
                "argument `tune.temperature[0]` expects integer, got string",
                "actual=string expected=integer parameter=temperature tool=tune",
            ),
            (
                "parameter `dspy.predict.temperature`: 2.5 is above the maximum 2",
                "constraint=max limit=2 operation=dspy.predict parameter=temperature",
                "parameter `dspy.predict.temperature[0]` expects integer, got string",
                "actual=string expected=integer operation=dspy.predict parameter=temperature",
            ),
            (
                "parameter `dspy.predict.temperature` (bound to variable `temp`): 2.5 is above \
                 the maximum 2",
                "constraint=max limit=2 operation=dspy.predict parameter=temperature \
                 variable=temp",
                "parameter `dspy.predict.temperature[0]` (bound to variable `temp`) expects \
                 integer, got string",
                "actual=string expected=integer operation=dspy.predict parameter=temperature \
                 variable=temp",
            ),
        ];
        for (got, want) in seen.iter().zip(expected) {
            assert_eq!(
                (
                    got.0.as_str(),
                    got.1.as_str(),
                    got.2.as_str(),
                    got.3.as_str()
                ),
                want
            );
        }
    }

    /// A tool argument and an operation parameter carry the same context keys; only the
    /// key naming the callee differs.
    #[test]
    fn arguments_and_parameters_share_context_keys() {
        let c = Constraints {
            max: Some(2.0),
            ..Default::default()
        };
        let keys = |subject| {
            let error = validate(subject, VariableType::Float, &c, float(3.0)).unwrap_err();
            error.context.into_keys().collect::<Vec<_>>()
        };
        let argument = keys(Subject::Argument {
            tool: "t",
            argument: "x",
        });
        let parameter = keys(Subject::Parameter {
            operation: "f.o",
            parameter: "x",
            bound: None,
        });
        assert_eq!(argument, ["constraint", "limit", "parameter", "tool"]);
        assert_eq!(parameter, ["constraint", "limit", "operation", "parameter"]);
    }
}
