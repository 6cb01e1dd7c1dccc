//! What concept labels are: a vocabulary of labels in categories, and per image
//! its pixel labels (several layers may cover one pixel) and image-level labels.

/// The labels a dataset uses and their categories.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Vocabulary {
    /// Category names, in order.
    pub categories: Vec<String>,
    /// Per global label number; number 0 is "unlabelled".
    pub labels: Vec<Label>,
}

/// A label: its name and its primary category.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Label {
    /// The name, e.g. `red`.
    pub name: String,
    /// The index of its primary category; `None` for label 0 and labels no
    /// category lists.
    pub category: Option<usize>,
}

impl Label {
    pub(super) fn unlabelled() -> Self {
        Self {
            name: "-".into(),
            category: None,
        }
    }
}

/// One image's labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageLabels {
    /// The labels' `(rows, columns)`, covering the whole image.
    pub size: (usize, usize),
    /// Pixel labels, layer by layer: each `rows · columns` label numbers (0: none).
    pub layers: Vec<Vec<u32>>,
    /// Labels of the whole image.
    pub scalars: Vec<u32>,
}
