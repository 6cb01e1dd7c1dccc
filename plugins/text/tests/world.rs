//! The text world's tracks, its alphabet, and the reading of text files.

use std::io::Write;

use unitscope_text::read::read;
use unitscope_text::world::{ALPHABET, CLASSES, Text, World, character, index};

/// Every character of the alphabet has its class, and its class name shows it.
#[test]
fn the_alphabet_and_its_names_agree() {
    assert_eq!(CLASSES.len(), ALPHABET);
    for (i, name) in CLASSES.iter().enumerate() {
        let c = character(i);
        assert_eq!(index(c), Some(i));
        let shown = match c {
            '\n' => "⏎".to_string(),
            ' ' => "␣".to_string(),
            c => c.to_string(),
        };
        assert_eq!(*name, shown);
    }
    assert_eq!(index('é'), None);
    assert_eq!(index('\t'), None);
}

/// The tracks of a hand-written line, character by character.
#[test]
fn tracks_follow_brackets_strings_columns_and_indentation() {
    let text = Text::read("if (a) {\n    f(\"x(\", [1])\n}\n".chars().collect());
    let [depth, quote, column, indent] = &text.tracks;
    let line2 = 9; // the second line's first character
    // `(` inside the string opens nothing; the call's and list's brackets do.
    let expected_depth = [
        0, 0, 0, 1, 1, 0, 0, 1, 1, // "if (a) {\n"
        1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3, 2, 1, 1, // "    f(\"x(\", [1])\n"
        0, 0, // "}\n"
    ];
    let got: Vec<usize> = depth.iter().map(|&d| d as usize).collect();
    assert_eq!(got, expected_depth);
    // The opening quote and the string's text are inside; the closing quote is not.
    let quoted: Vec<usize> = (0..text.chars.len()).filter(|&i| quote[i] == 1.0).collect();
    assert_eq!(quoted, vec![line2 + 6, line2 + 7, line2 + 8]);
    assert_eq!(column[line2 + 4], 4.0);
    assert_eq!(column[line2], 0.0);
    assert!(indent[line2..line2 + 16].iter().all(|&i| i == 1.0));
    assert!(indent[..line2].iter().all(|&i| i == 0.0));
}

/// Samples are reproducible, of the asked length, in the alphabet, and their
/// strings are balanced as their tracks say.
#[test]
fn samples_are_reproducible_windows_of_code() {
    let world = World::new(3);
    let a = world.sample(17, 300);
    assert_eq!(a, world.sample(17, 300));
    assert_ne!(a, world.sample(18, 300));
    assert_eq!(a.chars.len(), 300);
    assert!(a.chars.iter().all(|&c| index(c).is_some()));
    let shown: String = a.chars.iter().collect();
    println!("{shown}");
    // Every track varies over a window this long.
    for track in &a.tracks {
        assert!(track.iter().any(|&v| v != track[0]), "{shown}");
    }
}

/// Files: the first characters, CRLF and tabs read as the world writes them; bad
/// ones refused with the reason.
#[test]
fn files_are_read_as_far_as_needed_and_bad_ones_refused() {
    let dir = std::env::temp_dir().join(format!("unitscope-text-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        path
    };
    let plain = write("a.txt", b"x = 1\r\n\ty\n");
    assert_eq!(
        read(&plain, 100).unwrap().into_iter().collect::<String>(),
        "x = 1\n    y\n"
    );
    assert_eq!(read(&plain, 3).unwrap(), vec!['x', ' ', '=']);
    let empty = write("empty.txt", b"");
    assert!(read(&empty, 10).unwrap_err().contains("empty"));
    let latin1 = write("latin1.txt", b"caf\xe9 = 1\n");
    let e = read(&latin1, 10).unwrap_err();
    assert!(e.contains("not UTF-8") && e.contains("byte 3"), "{e}");
    let accent = write("accent.txt", "x = 1\ncafé\n".as_bytes());
    let e = read(&accent, 10).unwrap_err();
    assert!(
        e.contains("line 2, column 4") && e.contains("U+00E9"),
        "{e}"
    );
    // A character cut where the read stops is not an error: the read is bounded.
    let mut long = "a".repeat(8 * 4 + 7).into_bytes();
    long.extend("é".repeat(100).as_bytes());
    let cut = write("cut.txt", &long);
    assert_eq!(read(&cut, 4).unwrap(), vec!['a'; 4]);
    std::fs::remove_dir_all(&dir).unwrap();
}
