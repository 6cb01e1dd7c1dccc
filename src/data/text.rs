//! One-hot text read back: a sequence model's input holds, at each position, a 1
//! in the channel of its character (or nothing, before a text shorter than the
//! window), and its labels name the characters (`⏎` newline, `␣` space, as the
//! text plugin names them).

use anyhow::{Result, ensure};
use candle_core::{DType, Tensor};

/// The character a label names: `⏎` a newline, `␣` a space, a one-character
/// label itself; `None` for a label that names no one character.
pub fn character(label: &str) -> Option<char> {
    let mut chars = label.chars();
    match (chars.next(), chars.next()) {
        (Some('⏎'), None) => Some('\n'),
        (Some('␣'), None) => Some(' '),
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// The characters of `input`, `[C, 1, T]` one-hot over the classes `labels` names:
/// `None` where a position holds no character (or one no label names).
pub fn characters(labels: &[String], input: &Tensor) -> Result<Vec<Option<char>>> {
    let (c, h, t) = input.dims3()?;
    ensure!(
        c == labels.len() && h == 1,
        "one-hot text is [{}, 1, T], not {:?}",
        labels.len(),
        input.dims()
    );
    let values = input
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok((0..t)
        .map(|step| {
            let hot = (0..c).find(|&v| values[v * t + step] == 1.0)?;
            character(&labels[hot])
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_characters() {
        assert_eq!(character("⏎"), Some('\n'));
        assert_eq!(character("␣"), Some(' '));
        assert_eq!(character("{"), Some('{'));
        assert_eq!(character("tabby cat"), None);
    }

    #[test]
    fn one_hot_columns_read_back() {
        let labels: Vec<String> = ["⏎", "␣", "a"].map(String::from).to_vec();
        // Positions: nothing, `a`, space, newline.
        let input = Tensor::new(
            &[[[0f32, 0., 0., 1.]], [[0., 0., 1., 0.]], [[0., 1., 0., 0.]]],
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let read = characters(&labels, &input).unwrap();
        assert_eq!(read, [None, Some('a'), Some(' '), Some('\n')]);
        assert!(characters(&labels[..2], &input).is_err());
    }
}
