//! Adapter manifests: every invalid manifest is rejected with `file:line:column: field:`
//! and a message naming what is wrong; the checked-in manifests parse; generation from a
//! folder of manifests writes nothing when one of them is bad.

use std::path::Path;

use mlbridge_codegen::manifest::{self, Literal, OperationKind, ValueType};

const HEADER: &str = r#"[framework]
id = "demo"
implementation = "demo_impl"
"#;

/// A manifest with one operation whose single parameter is `param` (TOML lines).
fn with_param(param: &str) -> String {
    format!(
        "{HEADER}\n[[operation]]\nname = \"run\"\nkind = \"function\"\n\n[[operation.parameter]]\n{param}\n"
    )
}

fn error(text: &str) -> String {
    match manifest::parse(Path::new("adapters/demo.toml"), text) {
        Ok(m) => panic!("expected an error, parsed {m:?}"),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn assert_error(text: &str, location: &str, needles: &[&str]) {
    let message = error(text);
    assert!(
        message.starts_with(&format!("adapters/demo.toml:{location}: ")),
        "location {location} expected in: {message}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "`{needle}` expected in: {message}"
        );
    }
}

#[test]
fn the_checked_in_manifests_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/adapters");
    let manifests = manifest::load_dir(&dir).unwrap();
    let ids: Vec<&str> = manifests.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["builtin", "dspy", "sklearn"]);

    let dspy = &manifests[1];
    let predict = &dspy.operations[0];
    assert_eq!(predict.name, "predict");
    assert_eq!(predict.kind, OperationKind::Module);
    assert_eq!(
        predict.variable_aware.as_deref(),
        Some("VariableAwarePredict")
    );
    let bindable: Vec<&str> = predict
        .parameters
        .iter()
        .filter(|p| p.bindable)
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(bindable, ["model", "temperature", "max_tokens"]);
    let temperature = &predict.parameters[3];
    assert_eq!(temperature.ty, ValueType::Float);
    assert_eq!(temperature.default, Some(Literal::Float(0.0)));
    assert_eq!(temperature.constraints.max, Some(2.0));

    let sklearn = &manifests[2];
    let c = &sklearn.operations[0].parameters[3];
    assert_eq!((c.name.as_str(), c.keyword()), ("c", "C"));
}

#[test]
fn syntax_errors_and_unknown_keys_name_their_position() {
    assert_error(
        &format!("{HEADER}\n[[operation]]\nname = \"run\"\nkind = \n"),
        "7:8",
        &["string values must be quoted"],
    );
    assert_error(
        &with_param("name = \"x\"\ntype = \"float\"\nbindabel = true"),
        "12:1",
        &["unknown field `bindabel`"],
    );
    assert_error(
        "[framework]\nid = \"demo\"\n",
        "1:1",
        &["missing field `implementation`"],
    );
}

#[test]
fn unknown_types_and_kinds_are_named() {
    assert_error(
        &with_param("name = \"x\"\ntype = \"flaot\""),
        "11:8",
        &[
            "operation[0].parameter[0].type",
            "unknown type `flaot`",
            "float, integer",
        ],
    );
    assert_error(
        &format!("{HEADER}\n[[operation]]\nname = \"run\"\nkind = \"lambda\"\n"),
        "7:8",
        &["operation[0].kind", "unknown kind `lambda`"],
    );
    assert_error(
        &format!(
            "{HEADER}\n[[operation]]\nname = \"run\"\nkind = \"function\"\n[[operation.result]]\nname = \"r\"\ntype = \"set\"\n"
        ),
        "10:8",
        &["operation[0].result[0].type", "unknown type `set`"],
    );
}

#[test]
fn duplicate_names_are_rejected() {
    let op = "[[operation]]\nname = \"run\"\nkind = \"function\"\n";
    assert_error(
        &format!("{HEADER}\n{op}\n{op}"),
        "9:1",
        &["operation[1].name", "duplicate operation name `run`"],
    );
    assert_error(
        &with_param(
            "name = \"x\"\ntype = \"float\"\n\n[[operation.parameter]]\nname = \"x\"\ntype = \"integer\"",
        ),
        "13:1",
        &[
            "operation[0].parameter[1].name",
            "duplicate parameter name `x`",
        ],
    );
    let tool = "[[tool]]\nname = \"t\"\n";
    assert_error(
        &format!("{HEADER}\n{tool}\n{tool}"),
        "8:1",
        &["tool[1].name", "duplicate tool name `t`"],
    );
    // `chain_of_thought_output` would generate `ChainOfThoughtOutput` twice.
    let clash = "[[operation]]\nname = \"chain_of_thought\"\nkind = \"function\"\n\n[[operation]]\nname = \"chain_of_thought_output\"\nkind = \"function\"\n";
    assert_error(
        &format!("{HEADER}\n{clash}"),
        "9:1",
        &[
            "`ChainOfThoughtOutput`",
            "clashes with operation `chain_of_thought`",
        ],
    );
}

#[test]
fn names_that_are_not_identifiers_or_are_keywords_are_rejected() {
    assert_error(
        &with_param("name = \"type\"\ntype = \"float\""),
        "10:8",
        &["operation[0].parameter[0].name", "`type` is a Rust keyword"],
    );
    assert_error(
        &with_param("name = \"lambda\"\ntype = \"float\""),
        "10:8",
        &["`lambda` is a Python keyword"],
    );
    assert_error(
        &with_param("name = \"async\"\ntype = \"float\""),
        "10:8",
        &["`async` is a keyword in both Rust and Python"],
    );
    assert_error(
        &with_param("name = \"Temperature\"\ntype = \"float\""),
        "10:8",
        &["`Temperature` is not a valid parameter name", "snake_case"],
    );
    assert_error(
        &with_param("name = \"call\"\ntype = \"float\""),
        "10:8",
        &["`call` is reserved by the generated code"],
    );
    assert_error(
        "[framework]\nid = \"match\"\nimplementation = \"x\"\n",
        "2:6",
        &["framework.id", "Rust keyword"],
    );
    assert_error(
        "[framework]\nid = \"demo\"\nimplementation = \"my.class.impl\"\n",
        "3:18",
        &["framework.implementation", "`class` is not an identifier"],
    );
    assert_error(
        &format!(
            "{HEADER}\n[[operation]]\nname = \"run\"\nkind = \"function\"\nfunction = \"1run\"\n"
        ),
        "8:12",
        &["operation[0].function", "not a valid Python identifier"],
    );
}

#[test]
fn ids_that_would_write_outside_the_output_folder_are_rejected() {
    for id in ["../evil", "a/b", "..", "/etc/passwd", "..\\\\evil"] {
        let message = error(&format!(
            "[framework]\nid = \"{id}\"\nimplementation = \"x\"\n"
        ));
        assert!(
            message.starts_with("adapters/demo.toml:2:6: framework.id: ")
                && message.contains("outside the output folder"),
            "{id}: {message}"
        );
    }
}

#[test]
fn constraints_that_contradict_the_type_are_rejected() {
    assert_error(
        &with_param("name = \"x\"\ntype = \"string\"\nconstraints = { min = 0 }"),
        "12:23",
        &[
            "operation[0].parameter[0].constraints.min",
            "`min` does not apply to type `string`",
        ],
    );
    assert_error(
        &with_param("name = \"x\"\ntype = \"float\"\nconstraints = { choices = [\"a\"] }"),
        "12:27",
        &["`choices` does not apply to type `float`"],
    );
    assert_error(
        &with_param("name = \"x\"\ntype = \"float\"\nconstraints = { min = 2.0, max = 1.0 }"),
        "12:23",
        &["min 2 and max 1 admit no value"],
    );
    assert_error(
        &with_param("name = \"x\"\ntype = \"choice\""),
        "11:8",
        &["a `choice` parameter needs `choices`"],
    );
    assert_error(
        &with_param("name = \"x\"\ntype = \"choice\"\nconstraints = { choices = [] }"),
        "12:27",
        &["`choices` is empty"],
    );
    assert_error(
        &with_param("name = \"x\"\ntype = \"tensor\"\nconstraints = { dtype = \"float128\" }"),
        "12:25",
        &["unknown dtype `float128`"],
    );
    assert_error(
        &with_param(
            "name = \"x\"\ntype = \"string\"\nconstraints = { min_length = 5, max_length = 2 }",
        ),
        "12:30",
        &["min_length 5 is above max_length 2"],
    );
}

#[test]
fn defaults_must_fit_the_type_and_constraints() {
    assert_error(
        &with_param("name = \"x\"\ntype = \"integer\"\ndefault = 0.5"),
        "12:11",
        &["operation[0].parameter[0].default", "expected an integer"],
    );
    assert_error(
        &with_param("name = \"x\"\ntype = \"float\"\ndefault = 3.0\nconstraints = { max = 2.0 }"),
        "12:11",
        &["default 3 is above the maximum 2"],
    );
    assert_error(
        &with_param(
            "name = \"x\"\ntype = \"choice\"\ndefault = \"c\"\nconstraints = { choices = [\"a\", \"b\"] }",
        ),
        "12:11",
        &["default `c` is not one of the choices a, b"],
    );
    assert_error(
        &with_param("name = \"x\"\ntype = \"float\"\nrequired = true\ndefault = 1.0"),
        "13:11",
        &["a required parameter cannot have a default"],
    );
}

#[test]
fn variable_aware_needs_a_target_and_a_bindable_parameter() {
    let op = |extra: &str| {
        format!(
            "{HEADER}\n[[operation]]\nname = \"run\"\nkind = \"module\"\nvariable_aware = \"VariableAwareRun\"\n{extra}\n[[operation.parameter]]\nname = \"x\"\ntype = \"float\"\n"
        )
    };
    assert_error(
        &op(""),
        "8:18",
        &["operation[0].variable_aware", "needs `target`"],
    );
    assert_error(
        &op("target = \"pkg.Run\"\n"),
        "8:18",
        &["at least one `bindable` parameter"],
    );
    assert_error(
        &format!(
            "{HEADER}\n[[operation]]\nname = \"run\"\nkind = \"function\"\ntarget = \"pkg.run\"\nvariable_aware = \"VariableAwareRun\"\n"
        ),
        "9:18",
        &["only `module` and `estimator` operations"],
    );
}

#[test]
fn tool_parameters_cannot_be_bindable() {
    assert_error(
        &format!(
            "{HEADER}\n[[tool]]\nname = \"t\"\n\n[[tool.parameter]]\nname = \"x\"\ntype = \"float\"\nbindable = true\n"
        ),
        "11:12",
        &["tool[0].parameter[0].bindable", "only operation parameters"],
    );
}

#[test]
fn a_bad_manifest_in_a_folder_fails_generation_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("adapters");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(
        manifests.join("a.toml"),
        "[framework]\nid = \"a\"\nimplementation = \"a_impl\"\n",
    )
    .unwrap();
    std::fs::write(
        manifests.join("b.toml"),
        "[framework]\nid = \"a\"\nimplementation = \"b_impl\"\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let err = mlbridge_codegen::configure()
        .manifests(&manifests)
        .rust_out(out.join("rust"))
        .python_out(out.join("python"))
        .compile(&[] as &[&str])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("b.toml: framework.id: `a` is already defined by") && err.contains("a.toml"),
        "{err}"
    );
    assert!(!out.exists(), "nothing may be written");
}

#[test]
fn every_dtype_the_proto_defines_is_accepted() {
    use mlbridge_proto::mlbridge::v1::Dtype;
    let text =
        with_param("name = \"x\"\ntype = \"tensor\"\nconstraints = { dtype = \"complex128\" }");
    let parsed = manifest::parse(Path::new("adapters/demo.toml"), &text).unwrap();
    let constraints = &parsed.operations[0].parameters[0].constraints;
    assert_eq!(constraints.dtype.as_deref(), Some("complex128"));
    for dtype in Dtype::NAMED {
        let text = with_param(&format!(
            "name = \"x\"\ntype = \"tensor\"\nconstraints = {{ dtype = \"{}\" }}",
            dtype.name()
        ));
        let parsed = manifest::parse(Path::new("adapters/demo.toml"), &text)
            .unwrap_or_else(|e| panic!("dtype {} rejected: {e}", dtype.name()));
        let constraints = &parsed.operations[0].parameters[0].constraints;
        assert_eq!(constraints.dtype.as_deref(), Some(dtype.name()));
    }
}

#[test]
fn an_unknown_dtype_lists_the_names_from_the_proto() {
    let accepted: Vec<&str> = manifest::dtype_names().collect();
    assert_eq!(accepted.first(), Some(&"float16"));
    assert!(accepted.contains(&"complex128"), "{accepted:?}");
    assert!(!accepted.contains(&"unspecified"), "{accepted:?}");
    let expected = format!(
        "unknown dtype `float128`; expected one of {}",
        accepted.join(", ")
    );
    assert_error(
        &with_param("name = \"x\"\ntype = \"tensor\"\nconstraints = { dtype = \"float128\" }"),
        "12:25",
        &[&expected],
    );
}

#[test]
fn type_names_are_the_protos_short_names() {
    use mlbridge_proto::mlbridge::v1::VariableType;
    let names: Vec<&str> = ValueType::ALL.iter().map(|t| t.as_str()).collect();
    let proto: Vec<&str> = VariableType::NAMED.iter().map(|t| t.name()).collect();
    assert_eq!(names, proto);
    for ty in ValueType::ALL {
        assert_eq!(ty.variable_type().name(), ty.as_str());
    }
    assert_error(
        &with_param("name = \"x\"\ntype = \"unspecified\""),
        "11:8",
        &["unknown type `unspecified`; expected one of float, integer,"],
    );
}
