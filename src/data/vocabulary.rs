//! What concept labels are: a vocabulary of labels in categories, and per image
//! its labels as regions of pixels that share them (pixel labels, from as many
//! layers as cover a pixel, and the image-level labels, which cover every pixel).

use std::collections::HashMap;

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

/// One image's labels, as regions: the pixels that carry one combination of
/// labels each. What a pixel adds to a dissection's tally depends only on its
/// labels, so a mask is counted per region (one lookup a pixel) and each
/// region's labels added once.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageLabels {
    /// The labels' `(rows, columns)`, covering the whole image.
    size: (usize, usize),
    /// Per pixel (row-major), its region.
    region_of: Vec<u32>,
    regions: Vec<Region>,
}

/// Pixels of one combination of labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    /// Its labels: the pixel labels that cover it (a label once per layer that
    /// gives it: each is counted) and the image-level labels.
    pub labels: Vec<u32>,
    /// How many pixels it has.
    pub pixels: u64,
}

impl ImageLabels {
    /// The labels of an image of `size` `(rows, columns)` from its pixel labels,
    /// layer by layer (each `rows · columns` label numbers, 0 for none), and its
    /// image-level labels, which cover every pixel.
    ///
    /// # Panics
    /// If a layer does not have `rows · columns` labels.
    pub fn from_layers(size: (usize, usize), layers: &[Vec<u32>], image: &[u32]) -> Self {
        let (area, columns) = (size.0 * size.1, size.1);
        assert!(
            layers.iter().all(|layer| layer.len() == area),
            "a layer of labels is not {}x{}",
            size.0,
            size.1
        );
        let mut index: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut regions: Vec<Region> = Vec::new();
        let mut region_of: Vec<u32> = Vec::with_capacity(area);
        let mut combination = vec![0; layers.len()];
        let alike = |p: usize, q: usize| layers.iter().all(|layer| layer[p] == layer[q]);
        for p in 0..area {
            // Neighbours mostly share their labels: a pixel takes the region of the
            // one before it or above it, and is looked up only where both differ
            // (along a boundary's far side).
            let r = if p > 0 && alike(p, p - 1) {
                region_of[p - 1]
            } else if p >= columns && alike(p, p - columns) {
                region_of[p - columns]
            } else {
                for (l, layer) in combination.iter_mut().zip(layers) {
                    *l = layer[p];
                }
                match index.get(combination.as_slice()) {
                    Some(&r) => r,
                    None => {
                        let named = combination.iter().copied().filter(|&l| l != 0);
                        regions.push(Region {
                            labels: named.chain(image.iter().copied()).collect(),
                            pixels: 0,
                        });
                        let r = (regions.len() - 1) as u32;
                        index.insert(combination.clone(), r);
                        r
                    }
                }
            };
            regions[r as usize].pixels += 1;
            region_of.push(r);
        }
        Self {
            size,
            region_of,
            regions,
        }
    }

    /// The labels of an image of `size` `(rows, columns)` whose pixels (row-major)
    /// lie in the regions `region_of` names, `labels` giving each region's labels.
    ///
    /// # Panics
    /// If `region_of` does not have `rows · columns` pixels, or names a region
    /// past `labels`.
    pub(crate) fn from_regions(
        size: (usize, usize),
        region_of: Vec<u32>,
        labels: Vec<Vec<u32>>,
    ) -> Self {
        assert_eq!(region_of.len(), size.0 * size.1, "a region per pixel");
        let mut regions: Vec<Region> = (labels.into_iter())
            .map(|labels| Region { labels, pixels: 0 })
            .collect();
        for &r in &region_of {
            regions[r as usize].pixels += 1;
        }
        Self {
            size,
            region_of,
            regions,
        }
    }

    /// The labels' `(rows, columns)`.
    pub fn size(&self) -> (usize, usize) {
        self.size
    }

    /// Per pixel (row-major), its region in [`ImageLabels::regions`].
    pub fn region_of(&self) -> &[u32] {
        &self.region_of
    }

    /// The regions.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The labels of pixel `p` (row-major).
    pub fn at(&self, p: usize) -> &[u32] {
        &self.regions[self.region_of[p] as usize].labels
    }
}
