//! Tests for the mlbridge patch (see PATCHED.md): extension declarations after a single
//! extension number, and `edition = "2023";` / `edition = "2024";` files.
//!
//! The expected behaviour is protoc's (libprotoc 35.1), checked by hand; the error wording is
//! this crate's.

use prost_types::{
    descriptor_proto::ExtensionRange,
    field_descriptor_proto::{Label, Type},
    source_code_info::Location,
    uninterpreted_option::NamePart,
    DescriptorProto, ExtensionRangeOptions, FieldDescriptorProto, FileDescriptorProto,
    OneofDescriptorProto, UninterpretedOption,
};

use crate::{
    ast::{Edition, Syntax},
    error::ParseErrorKind::{self, *},
};

fn parse(source: &str) -> Result<FileDescriptorProto, Vec<ParseErrorKind>> {
    crate::parse("test.proto", source).map_err(|err| err.into_inner())
}

fn parse_ok(source: &str) -> FileDescriptorProto {
    match parse(source) {
        Ok(file) => file,
        Err(errors) => panic!("{source:?} does not parse: {errors:?}"),
    }
}

/// The error messages, as a caller sees them.
fn error_messages(source: &str) -> Vec<String> {
    let error = crate::parse("test.proto", source).unwrap_err();
    error.into_inner().iter().map(|e| e.to_string()).collect()
}

fn location<'a>(file: &'a FileDescriptorProto, path: &[i32]) -> Option<&'a Location> {
    file.source_code_info
        .as_ref()
        .unwrap()
        .location
        .iter()
        .find(|l| l.path == path)
}

fn fields(file: &FileDescriptorProto) -> &[FieldDescriptorProto] {
    &file.message_type[0].field
}

// Extension declarations.

fn declaration_option(aggregate: &str) -> Option<ExtensionRangeOptions> {
    Some(ExtensionRangeOptions {
        uninterpreted_option: vec![UninterpretedOption {
            name: vec![NamePart {
                name_part: "declaration".to_owned(),
                is_extension: false,
            }],
            aggregate_value: Some(aggregate.to_owned()),
            ..Default::default()
        }],
    })
}

#[test]
fn extension_declaration_after_single_number() {
    let file = parse_ok(
        r#"syntax = "proto2";
        message M {
            extensions 536000000 [declaration = { number: 536000000 type: ".buf.x" full_name: ".buf.y" }];
        }"#,
    );
    assert_eq!(
        file.message_type[0].extension_range,
        vec![ExtensionRange {
            start: Some(536000000),
            end: Some(536000001),
            options: declaration_option(
                r#"number : 536000000 type : ".buf.x" full_name : ".buf.y""#
            ),
        }]
    );
    // As protoc: the whole statement, then the range and its start and end.
    for (path, span) in [
        (vec![4, 0, 5], vec![2, 12, 106]),
        (vec![4, 0, 5, 0], vec![2, 23, 32]),
        (vec![4, 0, 5, 0, 1], vec![2, 23, 32]),
        (vec![4, 0, 5, 0, 2], vec![2, 23, 32]),
    ] {
        assert_eq!(location(&file, &path).unwrap().span, span, "{path:?}");
    }
}

#[test]
fn extension_declaration_after_list_of_ranges() {
    // A single number last in a list, and before a range; ranges with `to` worked before.
    let file = parse_ok(
        "message M { extensions 4 to 5, 7 [verification = UNVERIFIED]; extensions 9, 10 to max [verification = UNVERIFIED]; }",
    );
    let ranges: Vec<_> = file.message_type[0]
        .extension_range
        .iter()
        .map(|r| (r.start.unwrap(), r.end.unwrap(), r.options.is_some()))
        .collect();
    assert_eq!(
        ranges,
        vec![
            (4, 6, true),
            (7, 8, true),
            (9, 10, true),
            (10, 536870912, true)
        ]
    );
}

#[test]
fn extension_declaration_as_in_descriptor_proto() {
    // google/protobuf/descriptor.proto (protobuf 33), FileDescriptorSet.
    let file = parse_ok(
        r#"syntax = "proto2";
        package google.protobuf;
        message FileDescriptorSet {
          repeated FileDescriptorProto file = 1;

          // Extensions for tooling.
          extensions 536000000 [declaration = {
            number: 536000000
            type: ".buf.descriptor.v1.FileDescriptorSetExtension"
            full_name: ".buf.descriptor.v1.buf_file_descriptor_set_extension"
          }];
        }"#,
    );
    let range = &file.message_type[0].extension_range[0];
    assert_eq!((range.start, range.end), (Some(536000000), Some(536000001)));
    assert_eq!(
        range.options,
        declaration_option(
            r#"number : 536000000 type : ".buf.descriptor.v1.FileDescriptorSetExtension" full_name : ".buf.descriptor.v1.buf_file_descriptor_set_extension""#
        )
    );
}

#[test]
fn extension_declaration_in_editions() {
    let file = parse_ok(
        r#"edition = "2023";
        message M { extensions 100 [declaration = { number: 100 full_name: ".x" type: "int32" }]; }"#,
    );
    let range = &file.message_type[0].extension_range[0];
    assert_eq!((range.start, range.end), (Some(100), Some(101)));
    assert!(range.options.is_some());
}

#[test]
fn reserved_single_number_still_rejects_options() {
    // protoc: `Expected ";".` Only `extensions` takes options.
    assert_eq!(
        parse("message M { reserved 5 [deprecated = true]; }"),
        Err(vec![UnexpectedToken {
            expected: "'to', ',' or ';'".to_owned(),
            found: "[".to_owned(),
            span: 23..24,
        }]),
    );
    assert_eq!(
        parse("enum E { A = 0; reserved 5 [deprecated = true]; }"),
        Err(vec![UnexpectedToken {
            expected: "'to', ',' or ';'".to_owned(),
            found: "[".to_owned(),
            span: 27..28,
        }]),
    );
    assert_eq!(
        parse(r#"edition = "2023"; message M { reserved 5 [deprecated = true]; }"#),
        Err(vec![UnexpectedToken {
            expected: "'to', ',' or ';'".to_owned(),
            found: "[".to_owned(),
            span: 41..42,
        }]),
    );
}

#[test]
fn extensions_single_number_error_names_bracket() {
    assert_eq!(
        parse("message M { extensions 5 }"),
        Err(vec![UnexpectedToken {
            expected: "'to', ',', ';' or '['".to_owned(),
            found: "}".to_owned(),
            span: 25..26,
        }]),
    );
}

// The edition statement.

#[test]
fn edition_2023_and_2024() {
    for (edition, ast_edition) in [
        ("2023", Edition::Edition2023),
        ("2024", Edition::Edition2024),
    ] {
        let source = format!("edition = \"{edition}\";\nmessage M {{}}\n");

        let ast = crate::parse::parse_file(&source).unwrap();
        assert_eq!(ast.syntax, Syntax::Editions(ast_edition));

        let file = parse_ok(&source);
        // The marker the patch gives editions files (a proto2 file leaves it unset).
        assert_eq!(file.syntax.as_deref(), Some("proto2"));
        // protoc records the edition statement where it records `syntax`: field 12.
        assert_eq!(
            location(&file, &[12]),
            Some(&Location {
                path: vec![12],
                span: vec![0, 0, 17],
                ..Default::default()
            })
        );
        assert_eq!(location(&file, &[14]), None);
        assert_eq!(location(&file, &[]).unwrap().span, vec![0, 0, 1, 12]);
    }
}

#[test]
fn edition_string_forms() {
    // As for `syntax`, and as protoc: either quote, and adjacent strings concatenated.
    for source in [
        "edition = '2023';",
        r#"edition = "20" "23";"#,
        "/* c */ edition /* c */ = /* c */ \"2023\" /* c */ ;",
    ] {
        assert_eq!(parse_ok(source).syntax.as_deref(), Some("proto2"), "{source}");
    }
}

#[test]
fn edition_display() {
    assert_eq!(
        Syntax::Editions(Edition::Edition2023).to_string(),
        "editions"
    );
    assert_eq!(
        Syntax::Editions(Edition::Edition2024).to_string(),
        "editions"
    );
    assert_eq!(Edition::Edition2023.to_string(), "2023");
    assert_eq!(Edition::Edition2024.to_string(), "2024");
}

#[test]
fn edition_comments_attach_like_syntax() {
    // protoc, for both files: path [12], leading " leading\n", trailing " trailing\n",
    // detached [" detached\n"]; span [3, 0, 17] and [3, 0, 18].
    let edition = parse_ok(
        "// detached\n\n// leading\nedition = \"2023\"; // trailing\n\n// pkg\npackage p;\n",
    );
    let syntax = parse_ok(
        "// detached\n\n// leading\nsyntax = \"proto2\"; // trailing\n\n// pkg\npackage p;\n",
    );
    let expected = Location {
        path: vec![12],
        span: vec![3, 0, 17],
        leading_comments: Some(" leading\n".to_owned()),
        trailing_comments: Some(" trailing\n".to_owned()),
        leading_detached_comments: vec![" detached\n".to_owned()],
    };
    assert_eq!(location(&edition, &[12]), Some(&expected));
    assert_eq!(
        location(&syntax, &[12]),
        Some(&Location {
            span: vec![3, 0, 18],
            ..expected
        })
    );
    // Everything else is the same, down to the comments of the next statement.
    assert_eq!(
        location(&edition, &[2])
            .unwrap()
            .leading_comments
            .as_deref(),
        Some(" pkg\n")
    );
    let without_syntax = |file: &FileDescriptorProto| {
        let mut file = file.clone();
        file.syntax = None;
        file.source_code_info
            .as_mut()
            .unwrap()
            .location
            .retain(|l| l.path != [12]);
        file
    };
    assert_eq!(without_syntax(&edition), without_syntax(&syntax));
}

#[test]
fn unsupported_edition() {
    for (edition, span) in [
        ("2025", 10..16),
        ("2022", 10..16),
        ("proto2", 10..18),
        ("", 10..12),
    ] {
        let source = format!("edition = \"{edition}\";\nmessage M {{}}\n");
        assert_eq!(
            parse(&source),
            Err(vec![UnsupportedEdition {
                edition: edition.to_owned(),
                span,
            }]),
        );
    }
    assert_eq!(
        error_messages(r#"edition = "2025";"#),
        vec![r#"unsupported edition "2025""#]
    );
    let error = crate::parse("test.proto", r#"edition = "2025";"#).unwrap_err();
    assert_eq!(error.span(), Some(10..16));
    assert_eq!(
        format!("{error:?}"),
        r#"test.proto:1:11: unsupported edition "2025""#
    );
}

#[test]
fn edition_must_be_a_string() {
    assert_eq!(
        parse("edition = 2023;"),
        Err(vec![UnexpectedToken {
            expected: "a string".to_owned(),
            found: "2023".to_owned(),
            span: 10..14,
        }]),
    );
}

#[test]
fn edition_only_first() {
    // protoc: `Expected top-level statement (e.g. "message").` for each of these.
    let expected = "'enum', 'extend', 'import', 'message', 'option', 'service', 'package' or ';'";
    for (source, span) in [
        ("package p;\nedition = \"2023\";", 11..18),
        ("syntax = \"proto3\";\nedition = \"2023\";", 19..26),
        ("edition = \"2023\";\nedition = \"2023\";", 18..25),
        ("message M {}\nedition = \"2023\";", 13..20),
    ] {
        assert_eq!(
            parse(source),
            Err(vec![UnexpectedToken {
                expected: expected.to_owned(),
                found: "edition".to_owned(),
                span,
            }]),
            "{source}"
        );
    }
}

#[test]
fn syntax_editions_is_still_unknown() {
    // protoc: `Unrecognized syntax identifier "editions".`
    assert_eq!(
        parse(r#"syntax = "editions";"#),
        Err(vec![UnknownSyntax {
            syntax: "editions".to_owned(),
            span: 9..19,
        }]),
    );
}

// Fields in editions.

#[test]
fn editions_field_without_label_is_optional() {
    let file = parse_ok(
        r#"edition = "2023";
        message M {
            int32 a = 1;
            M b = 2;
            map<string, int32> c = 3;
            oneof o { string d = 4; }
            extensions 100 to 200;
        }
        extend M { int32 e = 100; }"#,
    );
    let message = &file.message_type[0];
    let labels: Vec<_> = message
        .field
        .iter()
        .map(|f| (f.label(), f.oneof_index))
        .collect();
    assert_eq!(
        labels,
        vec![
            (Label::Optional, None),
            (Label::Optional, None),
            (Label::Repeated, None),
            (Label::Optional, Some(0)),
        ]
    );
    // No proto3-style synthetic oneofs: only the real one.
    assert_eq!(
        message.oneof_decl,
        vec![OneofDescriptorProto {
            name: Some("o".to_owned()),
            options: None
        }]
    );
    assert!(message.field.iter().all(|f| f.proto3_optional.is_none()));
    // An extension without a label is allowed too (proto2 requires one).
    assert_eq!(file.extension[0].label(), Label::Optional);
    // No label, so no label location.
    assert_eq!(location(&file, &[4, 0, 2, 0, 4]), None);
}

#[test]
fn editions_repeated_field() {
    let file = parse_ok(r#"edition = "2024"; message M { repeated int32 a = 1; }"#);
    assert_eq!(fields(&file)[0].label(), Label::Repeated);
    assert_eq!(
        location(&file, &[4, 0, 2, 0, 4]).unwrap().span,
        vec![0, 30, 38]
    );
}

#[test]
fn editions_required_field() {
    // protoc: `Label "required" is not supported in editions, use
    // features.field_presence = LEGACY_REQUIRED.`
    assert_eq!(
        parse(r#"edition = "2023"; message M { required int32 a = 1; }"#),
        Err(vec![EditionsRequiredField { span: 30..38 }]),
    );
    // In an extension, the editions error rather than proto2's "may not be required".
    assert_eq!(
        parse(
            r#"edition = "2023"; message M { extensions 1 to 9; } extend M { required int32 a = 1; }"#
        ),
        Err(vec![EditionsRequiredField { span: 62..70 }]),
    );
    assert_eq!(
        error_messages(r#"edition = "2023"; message M { required int32 a = 1; }"#),
        vec!["required is not allowed in editions; use features.field_presence = LEGACY_REQUIRED"]
    );
}

#[test]
fn editions_optional_field() {
    // protoc: `Label "optional" is not supported in editions. By default, all singular fields
    // have presence unless features.field_presence is set.`
    assert_eq!(
        parse(r#"edition = "2023"; message M { optional int32 a = 1; }"#),
        Err(vec![EditionsOptionalField { span: 30..38 }]),
    );
    assert_eq!(
        parse(
            r#"edition = "2023"; message M { extensions 1 to 9; } extend M { optional int32 a = 1; }"#
        ),
        Err(vec![EditionsOptionalField { span: 62..70 }]),
    );
    assert_eq!(
        error_messages(r#"edition = "2023"; message M { optional int32 a = 1; }"#),
        vec!["optional is not allowed in editions; use features.field_presence"]
    );
}

#[test]
fn editions_oneof_field_with_label() {
    // As in proto2 and proto3 (protoc: `Fields in oneofs must not have labels`).
    assert_eq!(
        parse(r#"edition = "2023"; message M { oneof o { optional int32 a = 1; } }"#),
        Err(vec![OneofFieldWithLabel { span: 40..48 }]),
    );
}

#[test]
fn editions_group_field() {
    // protoc: `Group syntax is no longer supported in editions. To get group behavior you can
    // specify features.message_encoding = DELIMITED on a message field.`
    assert_eq!(
        parse(r#"edition = "2023"; message M { group G = 1 { int32 x = 2; } }"#),
        Err(vec![EditionsGroupField { span: 30..58 }]),
    );
    assert_eq!(
        parse(r#"edition = "2023"; message M { repeated group G = 1 { int32 x = 2; } }"#),
        Err(vec![EditionsGroupField { span: 30..67 }]),
    );
    assert_eq!(
        parse(r#"edition = "2023"; message M { oneof o { group G = 1 { int32 x = 2; } } }"#),
        Err(vec![EditionsGroupField { span: 40..68 }]),
    );
    assert_eq!(
        parse(
            r#"edition = "2023"; message M { extensions 1 to 9; } extend M { group G = 1 { int32 x = 2; } }"#
        ),
        Err(vec![EditionsGroupField { span: 62..90 }]),
    );
    assert_eq!(
        error_messages(r#"edition = "2023"; message M { group G = 1 {} }"#),
        vec!["group syntax is not allowed in editions; use a message field with features.message_encoding = DELIMITED"]
    );
}

#[test]
fn editions_default_values() {
    let file = parse_ok(
        r#"edition = "2023";
        message M {
            int32 a = 1 [default = -5];
            string b = 2 [default = "x"];
            E c = 3 [default = B];
            float d = 4 [default = inf];
        }
        enum E { A = 0; B = 1; }"#,
    );
    let defaults: Vec<_> = fields(&file)
        .iter()
        .map(|f| f.default_value.as_deref())
        .collect();
    assert_eq!(
        defaults,
        vec![Some("-5"), Some("x"), Some("B"), Some("inf")]
    );
    assert_eq!(fields(&file)[0].r#type(), Type::Int32);
    // Still not on repeated fields (protoc: `Repeated fields can't have default values.`).
    assert_eq!(
        parse(r#"edition = "2023"; message M { repeated int32 a = 1 [default = 1]; }"#),
        Err(vec![InvalidDefault {
            kind: "repeated",
            span: 52..63,
        }]),
    );
}

#[test]
fn editions_reserved_names_are_identifiers() {
    let file = parse_ok(
        r#"edition = "2023";
        message M { reserved foo, bar; reserved 3 to 5; }
        enum E { A = 0; reserved B; }"#,
    );
    assert_eq!(file.message_type[0].reserved_name, vec!["foo", "bar"]);
    assert_eq!(file.enum_type[0].reserved_name, vec!["B"]);
    // Same locations as protoc: the statement, then each name.
    for (path, span) in [
        (vec![4, 0, 10], vec![1, 20, 38]),
        (vec![4, 0, 10, 0], vec![1, 29, 32]),
        (vec![4, 0, 10, 1], vec![1, 34, 37]),
        (vec![5, 0, 5], vec![2, 24, 35]),
        (vec![5, 0, 5, 0], vec![2, 33, 34]),
    ] {
        assert_eq!(location(&file, &path).unwrap().span, span, "{path:?}");
    }

    // protoc: `Reserved names must be identifiers in editions, not string literals.`
    assert_eq!(
        parse(r#"edition = "2023"; message M { reserved "foo"; }"#),
        Err(vec![EditionsReservedNameString { span: 39..44 }]),
    );
    assert_eq!(
        parse(r#"edition = "2023"; enum E { A = 0; reserved "B", C; }"#),
        Err(vec![EditionsReservedNameString { span: 43..46 }]),
    );
    assert_eq!(
        parse(r#"edition = "2023"; message M { reserved foo.bar; }"#),
        Err(vec![UnexpectedToken {
            expected: "',' or ';'".to_owned(),
            found: ".".to_owned(),
            span: 42..43,
        }]),
    );
    assert_eq!(
        parse(r#"edition = "2023"; message M { reserved ; }"#),
        Err(vec![UnexpectedToken {
            expected: "a positive integer or identifier".to_owned(),
            found: ";".to_owned(),
            span: 39..40,
        }]),
    );
}

#[test]
fn editions_file_is_its_proto2_twin() {
    // Apart from the labels, an editions file gives the descriptor of the proto2 file with the
    // same declarations, `optional` labels included.
    let body = |label: &str| {
        format!(
            "package p;
            import 'other.proto';
            option java_package = 'p';
            message M {{
                {label}int32 a = 1 [default = 7];
                repeated string b = 2;
                map<int32, M> c = 3;
                oneof o {{ bytes d = 4; }}
                message N {{ {label}M m = 1; }}
                enum E {{ X = 0; }}
                reserved 10 to 20;
                extensions 100 to max [verification = UNVERIFIED];
            }}
            extend M {{ {label}int64 e = 100; }}
            service S {{ rpc R(M) returns (stream M); }}"
        )
    };
    let strip = |mut file: FileDescriptorProto| {
        file.syntax = None;
        file.source_code_info = None;
        file
    };
    let edition = parse_ok(&format!("edition = '2023';\n{}", body("")));
    let proto2 = parse_ok(&format!("syntax = 'proto2';\n{}", body("optional ")));
    assert_eq!(edition.syntax.as_deref(), Some("proto2"));
    assert_eq!(proto2.syntax, None);
    assert_eq!(strip(edition), strip(proto2));
}

// proto2 and proto3 files are unchanged (the upstream tests and snapshots pass unchanged too,
// apart from the message of the `extensions 5 }` error).

#[test]
fn proto3_unchanged() {
    let file = parse_ok(
        r#"syntax = "proto3";
        message M { optional int32 a = 1; int32 b = 2; }"#,
    );
    assert_eq!(file.syntax.as_deref(), Some("proto3"));
    assert_eq!(
        file.message_type[0],
        DescriptorProto {
            name: Some("M".to_owned()),
            field: vec![
                FieldDescriptorProto {
                    name: Some("a".to_owned()),
                    number: Some(1),
                    label: Some(Label::Optional as i32),
                    r#type: Some(Type::Int32 as i32),
                    oneof_index: Some(0),
                    proto3_optional: Some(true),
                    ..Default::default()
                },
                FieldDescriptorProto {
                    name: Some("b".to_owned()),
                    number: Some(2),
                    label: Some(Label::Optional as i32),
                    r#type: Some(Type::Int32 as i32),
                    ..Default::default()
                },
            ],
            oneof_decl: vec![OneofDescriptorProto {
                name: Some("_a".to_owned()),
                options: None,
            }],
            ..Default::default()
        }
    );
    assert_eq!(
        parse(r#"syntax = "proto3"; message M { int32 a = 1 [default = 1]; }"#),
        Err(vec![Proto3DefaultValue { span: 44..55 }]),
    );
    assert_eq!(
        parse(r#"syntax = "proto3"; message M { group G = 1 {} }"#),
        Err(vec![Proto3GroupField { span: 31..45 }]),
    );
    assert_eq!(
        parse(r#"syntax = "proto3"; message M { required int32 a = 1; }"#),
        Err(vec![Proto3RequiredField { span: 31..39 }]),
    );
    assert_eq!(
        parse(r#"syntax = "proto3"; message M { reserved foo; }"#),
        Err(vec![UnexpectedToken {
            expected: "a positive integer or string".to_owned(),
            found: "foo".to_owned(),
            span: 40..43,
        }]),
    );
}

#[test]
fn proto2_unchanged() {
    let file = parse_ok(
        r#"syntax = "proto2";
        message M {
            optional int32 a = 1 [default = 3];
            required string b = 2;
            repeated group G = 3 { optional int32 x = 4; }
            reserved "c";
            extensions 5 to 9, 11;
        }
        extend M { optional int32 e = 5; }"#,
    );
    assert_eq!(file.syntax, None);
    let message = &file.message_type[0];
    let summary: Vec<_> = message
        .field
        .iter()
        .map(|f| (f.name(), f.label(), f.r#type(), f.default_value.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("a", Label::Optional, Type::Int32, Some("3")),
            ("b", Label::Required, Type::String, None),
            ("g", Label::Repeated, Type::Group, None),
        ]
    );
    assert!(message.oneof_decl.is_empty());
    assert_eq!(message.nested_type[0].name(), "G");
    assert_eq!(message.reserved_name, vec!["c"]);
    assert_eq!(
        message.extension_range,
        vec![
            ExtensionRange {
                start: Some(5),
                end: Some(10),
                options: None
            },
            ExtensionRange {
                start: Some(11),
                end: Some(12),
                options: None
            },
        ]
    );
    assert_eq!(
        parse("message M { int32 a = 1; }"),
        Err(vec![Proto2FieldMissingLabel { span: 12..24 }]),
    );
    assert_eq!(
        parse("message M { extensions 1 to 9; } extend M { required int32 a = 1; }"),
        Err(vec![RequiredExtendField { span: 44..52 }]),
    );
    assert_eq!(
        parse("message M { reserved foo; }"),
        Err(vec![UnexpectedToken {
            expected: "a positive integer or string".to_owned(),
            found: "foo".to_owned(),
            span: 21..24,
        }]),
    );
}

#[test]
fn edition_2024_features_not_read_yet_are_named() {
    assert_eq!(
        parse("edition = \"2024\";\nexport message M {}\n"),
        Err(vec![UnsupportedEditionFeature {
            feature: "symbol visibility (`export` / `local`, edition 2024)",
            span: 18..24,
        }]),
    );
    assert_eq!(
        error_messages("edition = \"2024\";\nimport option \"x.proto\";\n"),
        vec!["option imports (`import option`, edition 2024) is not supported yet"]
    );
    // Outside editions, `export` is an unexpected token as before.
    assert!(matches!(
        parse("syntax = \"proto3\";\nexport message M {}\n"),
        Err(errors) if matches!(errors[..], [UnexpectedToken { .. }])
    ));
}
