//! `include/unitscope.h` declares exactly the Rust ABI: the same structs with the
//! same fields in the same order, the same sizes and offsets (checked by the C
//! compiler itself), and the same constants.

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use unitscope_sdk::abi::*;

/// Each struct's name, size and fields with their offsets and sizes, from the
/// Rust types.
macro_rules! layouts {
    ($($ty:ident { $($field:ident),* $(,)? })*) => {
        vec![$((
            stringify!($ty),
            size_of::<$ty>(),
            vec![$((
                stringify!($field),
                offset_of!($ty, $field),
                field_size(|s: &$ty| &s.$field),
            )),*],
        )),*]
    };
}

fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

type Layout = (&'static str, usize, Vec<(&'static str, usize, usize)>);

fn rust_layouts() -> Vec<Layout> {
    layouts! {
        UsStr { ptr, len }
        UsText { ptr, len, free }
        UsTensor { data, len, rank, dims, free }
        UsChoice { name, help }
        UsParam {
            name, help, kind, integer_default, integer_min, integer_max, real_default,
            real_min, real_max, text_default, choices, n_choices,
        }
        UsArg { name, kind, integer, real, flag, text, layers, n_layers }
        UsTarget { kind, class_index, layer, channel, has_position, y, x, weights, n_weights }
        UsPasses { backward, forward }
        UsModelInfo { size, name, channels, height, width, classes, layers }
        UsLayerInfo { size, name, kind, rank, dims }
        UsHost { size, abi_minor, ctx, model, layer, forward, gradient, cancelled }
        UsMethod { size, citation, params, n_params, attribute, passes }
        UsDecoded {
            size, handle, input, display, rgb, width, height, x_label, x_unit, x_start,
            x_end, y_label, y_unit, y_start, y_end, tokens, n_tokens,
        }
        UsSample { size, input, class_index, masks, tracks }
        UsWorld {
            size, classes, n_classes, concepts, categories, n_concepts, held_out, sample,
            tracks, n_tracks,
        }
        UsModality { size, extensions, n_extensions, card, decode, release, draw, world }
        UsPlugin { size, abi_major, abi_minor, kind, name, version, about, method, modality }
    }
}

fn rust_constants() -> Vec<(&'static str, i64)> {
    vec![
        ("US_ABI_MAJOR", ABI_MAJOR.into()),
        ("US_ABI_MINOR", ABI_MINOR.into()),
        ("US_MAX_RANK", MAX_RANK as i64),
        ("US_OK", US_OK.into()),
        ("US_ERROR", US_ERROR.into()),
        ("US_CANCELLED", US_CANCELLED.into()),
        ("US_KIND_METHOD", KIND_METHOD.into()),
        ("US_KIND_MODALITY", KIND_MODALITY.into()),
        ("US_PARAM_INTEGER", PARAM_INTEGER.into()),
        ("US_PARAM_REAL", PARAM_REAL.into()),
        ("US_PARAM_CHOICE", PARAM_CHOICE.into()),
        ("US_PARAM_FLAG", PARAM_FLAG.into()),
        ("US_PARAM_TEXT", PARAM_TEXT.into()),
        ("US_PARAM_LAYERS", PARAM_LAYERS.into()),
        ("US_TARGET_CLASS", TARGET_CLASS.into()),
        ("US_TARGET_UNIT", TARGET_UNIT.into()),
        ("US_TARGET_WEIGHTED", TARGET_WEIGHTED.into()),
        ("US_RULE_GRADIENT", RULE_GRADIENT.into()),
        ("US_RULE_GUIDED_BACKPROP", RULE_GUIDED_BACKPROP.into()),
        ("US_RULE_DECONVNET", RULE_DECONVNET.into()),
        ("US_DISPLAY_IMAGE", DISPLAY_IMAGE.into()),
        ("US_DISPLAY_TOKENS", DISPLAY_TOKENS.into()),
    ]
}

fn header() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/unitscope.h");
    std::fs::read_to_string(path).unwrap()
}

/// The header's structs in order, each with its field names in order: a field is
/// the last identifier of its declaration, or the `(*name)` of a function pointer.
fn header_structs(text: &str) -> Vec<(String, Vec<String>)> {
    let mut structs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("typedef struct ") {
        rest = &rest[start + "typedef struct ".len()..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        let body = &rest[rest.find('{').unwrap() + 1..rest.find('}').unwrap()];
        let fields = body
            .split(';')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| match d.find("(*") {
                Some(i) => d[i + 2..d[i..].find(')').unwrap() + i].to_owned(),
                None => {
                    let d = d.split('[').next().unwrap();
                    d.rsplit(|c: char| !c.is_alphanumeric() && c != '_')
                        .next()
                        .unwrap()
                        .to_owned()
                }
            })
            .collect();
        structs.push((name, fields));
    }
    structs
}

#[test]
fn the_header_declares_the_same_structs_and_fields() {
    let header: Vec<(String, Vec<String>)> = header_structs(&header());
    let rust: Vec<(String, Vec<String>)> = rust_layouts()
        .into_iter()
        .map(|(name, _, fields)| {
            (
                name.to_owned(),
                fields.iter().map(|(f, ..)| f.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(header, rust);
}

#[test]
fn the_header_declares_the_same_constants() {
    let mut header: Vec<(String, i64)> = header()
        .lines()
        .filter_map(|l| l.strip_prefix("#define US_"))
        .map(|l| {
            let (name, value) = l.split_once(' ').unwrap();
            (format!("US_{name}"), value.trim().parse().unwrap())
        })
        .collect();
    let mut rust: Vec<(String, i64)> = rust_constants()
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v))
        .collect();
    header.sort();
    rust.sort();
    assert_eq!(header, rust);
    assert_eq!(ENTRY, b"unitscope_plugin_v1\0");
    assert!(self::header().contains("*unitscope_plugin_v1("));
}

/// The C compiler agrees with Rust on every struct's size and every field's offset
/// and size: a C file of static assertions made from the Rust layouts compiles
/// against the header.
#[test]
fn the_c_compiler_lays_the_header_out_as_rust_does() {
    let mut c = String::from("#include <stddef.h>\n#include \"unitscope.h\"\n");
    for (name, size, fields) in rust_layouts() {
        c += &format!("_Static_assert(sizeof({name}) == {size}, \"sizeof {name}\");\n");
        for (field, offset, size) in fields {
            c += &format!(
                "_Static_assert(offsetof({name}, {field}) == {offset}, \"{name}.{field}\");\n\
                 _Static_assert(sizeof((({name} *)0)->{field}) == {size}, \"sizeof {name}.{field}\");\n"
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("layout.c");
    std::fs::write(&source, c).unwrap();
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let output = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".to_owned()))
        .args(["-std=c11", "-Wall", "-Werror", "-fsyntax-only", "-I"])
        .arg(&include)
        .arg(&source)
        .output()
        .expect("a C compiler (cc) to check the header with");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
