//! The demo world's concepts, in Broden-like categories.

use serde::Serialize;

/// A concept category. Shapes are Broden's "object" category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The shape of an object.
    Shape,
    /// An object's color.
    Color,
    /// An object's surface pattern.
    Texture,
    /// What lies behind the objects.
    Background,
}

impl Category {
    /// All categories, in catalogue order.
    pub const ALL: [Category; 4] = [Self::Shape, Self::Color, Self::Texture, Self::Background];

    /// The concept names of this category; an index into this list is a concept's id
    /// within its category.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Self::Shape => &SHAPES,
            Self::Color => &COLOR_NAMES,
            Self::Texture => &TEXTURES,
            Self::Background => &BACKGROUNDS,
        }
    }

    /// The category's name, as in file names and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Shape => "shape",
            Self::Color => "color",
            Self::Texture => "texture",
            Self::Background => "background",
        }
    }
}

/// One concept: a category and an index into its names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Concept {
    /// Its category.
    pub category: Category,
    /// Its index in [`Category::names`].
    pub index: usize,
}

impl Concept {
    /// The concept's name, e.g. `stripes-horizontal`.
    pub fn name(self) -> &'static str {
        self.category.names()[self.index]
    }

    /// Every concept, category by category.
    pub fn all() -> impl Iterator<Item = Concept> {
        Category::ALL.into_iter().flat_map(|category| {
            (0..category.names().len()).map(move |index| Concept { category, index })
        })
    }
}

/// Object shapes; the image class is the shape of the largest visible object.
pub const SHAPES: [&str; 8] = [
    "circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon",
];

/// Object colors and their RGB at full brightness.
pub const COLORS: [(&str, [u8; 3]); 8] = [
    ("red", [220, 40, 40]),
    ("orange", [240, 140, 30]),
    ("yellow", [230, 220, 40]),
    ("green", [50, 180, 60]),
    ("cyan", [40, 200, 210]),
    ("blue", [40, 80, 220]),
    ("purple", [140, 60, 200]),
    ("pink", [240, 110, 180]),
];

const COLOR_NAMES: [&str; 8] = {
    let mut names = [""; 8];
    let mut i = 0;
    while i < 8 {
        names[i] = COLORS[i].0;
        i += 1;
    }
    names
};

/// Object surface patterns: the color at full brightness, or at [`SHADE`].
pub const TEXTURES: [&str; 5] = [
    "solid",
    "stripes-horizontal",
    "stripes-vertical",
    "dots",
    "checker",
];

/// The brightness of a texture's dark phase.
pub const SHADE: f32 = 0.5;

/// Backgrounds, all grey (R = G = B), so no background pixel has an object color.
pub const BACKGROUNDS: [&str; 4] = ["plain", "noise", "gradient", "grid"];
