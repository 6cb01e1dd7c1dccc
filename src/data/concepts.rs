//! Concept-labelled images, as Network Dissection reads them: a Broden dataset on
//! disk, the demo world and a modality plugin's world give the same
//! [`ConceptSet`] (a [`Vocabulary`] and each image's [`ImageLabels`]).

use anyhow::{Result, ensure};
use rayon::prelude::*;

use super::broden::Broden;
use super::vocabulary::{ImageLabels, Label, Vocabulary};
use candle_core::{Device, Tensor};

use super::image::{InputSpec, load_image};
use super::modality::World as PluginWorld;
use super::world::{Category, Concept, HELD_OUT, SIZE, Scene, World};

/// Images with concept labels.
#[derive(Clone, Debug)]
pub enum ConceptSet {
    /// A Broden-layout dataset.
    Broden(Broden),
    /// The first `n` held-out scenes of the demo world, with its concepts.
    Demo(usize),
    /// The first held-out samples of a modality plugin's world, with its concepts.
    World(WorldSet),
}

/// Held-out samples of a modality plugin's world (seed 0), each concept's mask a
/// layer of its own (a plugin's concepts may overlap, as two sounds at one time
/// and frequency).
#[derive(Clone)]
pub struct WorldSet {
    /// The modality's name.
    pub name: String,
    /// Its world.
    pub world: &'static dyn PluginWorld,
    /// Samples, from the world's first held-out one.
    pub count: usize,
    /// `[C, H, W]` they are made at: the model's input.
    pub shape: [usize; 3],
}

impl std::fmt::Debug for WorldSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (name, count, shape) = (&self.name, self.count, self.shape);
        write!(f, "WorldSet({name}, {count} samples of {shape:?})")
    }
}

impl WorldSet {
    /// Its categories (in the order the concepts first name them) and, after label
    /// 0, its concepts in the world's order.
    fn vocabulary(&self) -> Vocabulary {
        let mut categories: Vec<String> = Vec::new();
        let mut labels = vec![Label::unlabelled()];
        for (category, name) in self.world.concepts() {
            let index = match categories.iter().position(|c| c == category) {
                Some(index) => index,
                None => {
                    categories.push(category.clone());
                    categories.len() - 1
                }
            };
            labels.push(Label {
                name: name.clone(),
                category: Some(index),
            });
        }
        Vocabulary { categories, labels }
    }

    /// Sample `i`'s input (`[C, H, W]` values) and labels: concept `c`'s mask as
    /// layer `c`, labelled `c + 1`.
    fn sample(&self, i: usize) -> Result<(Vec<f32>, ImageLabels)> {
        let [_, h, w] = self.shape;
        let index = self.world.held_out() + i as u64;
        let sample = self.world.sample(0, index, self.shape)?;
        let layers: Vec<Vec<u32>> = sample
            .masks
            .chunks_exact(h * w)
            .zip(1..)
            .map(|(mask, label)| mask.iter().map(|&m| if m { label } else { 0 }).collect())
            .collect();
        Ok((sample.input, ImageLabels::from_layers((h, w), &layers, &[])))
    }
}

impl ConceptSet {
    /// Its categories and labels.
    pub fn vocabulary(&self) -> Vocabulary {
        match self {
            Self::Broden(b) => b.vocabulary().clone(),
            Self::Demo(_) => demo_vocabulary(),
            Self::World(w) => w.vocabulary(),
        }
    }

    /// How many images it has.
    pub fn len(&self) -> usize {
        match self {
            Self::Broden(b) => b.len(),
            Self::Demo(n) => *n,
            Self::World(w) => w.count,
        }
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Image `i`'s labels.
    pub fn labels(&self, i: usize) -> Result<ImageLabels> {
        match self {
            Self::Broden(b) => b.labels(i),
            Self::Demo(_) => Ok(scene_labels(&demo_scene(i))),
            Self::World(w) => Ok(w.sample(i)?.1),
        }
    }

    /// `images` preprocessed by `spec` into one `[N, C, H, W]` batch on `device`,
    /// loaded in parallel, and each one's labels if asked (a demo scene is drawn
    /// once for both).
    pub fn load(
        &self,
        images: &[usize],
        spec: &InputSpec,
        device: &Device,
        labelled: bool,
    ) -> Result<(Tensor, Vec<Option<ImageLabels>>)> {
        let shape = spec.shape();
        if let Self::World(w) = self {
            ensure!(
                shape == w.shape,
                "the `{}` world's samples are made as {:?}, not the model's {shape:?}",
                w.name,
                w.shape
            );
        }
        let size: usize = shape.iter().product();
        // Each input written in place in the batch: no tensor per image to stack.
        let mut batch = vec![0f32; images.len() * size];
        let labels = (batch.par_chunks_mut(size).zip(images))
            .map(|(out, &i)| self.load_into(i, spec, out, labelled))
            .collect::<Result<Vec<_>>>()?;
        let batch = Tensor::from_vec(batch, [&[images.len()], &shape[..]].concat(), device)?;
        Ok((batch, labels))
    }

    /// Image `i` preprocessed by `spec` into `out` (a world's sample already of
    /// the spec's shape), and its labels if asked.
    fn load_into(
        &self,
        i: usize,
        spec: &InputSpec,
        out: &mut [f32],
        labelled: bool,
    ) -> Result<Option<ImageLabels>> {
        match self {
            Self::Broden(b) => {
                spec.normalize_into(&load_image(&b.image_path(i))?, out)?;
                labelled.then(|| b.labels(i)).transpose()
            }
            Self::Demo(_) => {
                let scene = demo_scene(i);
                spec.normalize_into(&scene.image, out)?;
                Ok(labelled.then(|| scene_labels(&scene)))
            }
            Self::World(w) => {
                let (input, labels) = w.sample(i)?;
                ensure!(
                    input.len() == out.len(),
                    "the `{}` world gave {} values for an input of {:?}",
                    w.name,
                    input.len(),
                    w.shape
                );
                out.copy_from_slice(&input);
                Ok(labelled.then_some(labels))
            }
        }
    }

    /// What the set is known by, for cache keys.
    pub fn identity(&self) -> String {
        match self {
            Self::Broden(b) => b.identity(),
            Self::Demo(n) => format!("demo world, {n} held-out scenes"),
            Self::World(w) => format!(
                "{} world, {} held-out samples at {}x{}",
                w.name, w.count, w.shape[1], w.shape[2]
            ),
        }
    }
}

/// The demo world's concepts as labels, numbered from 1 in catalogue order.
fn demo_vocabulary() -> Vocabulary {
    let labels = std::iter::once(Label::unlabelled())
        .chain(Concept::all().map(|c| Label {
            name: c.name().to_string(),
            category: Some(category_index(c.category)),
        }))
        .collect();
    Vocabulary {
        categories: Category::ALL.iter().map(|c| c.name().to_string()).collect(),
        labels,
    }
}

fn category_index(category: Category) -> usize {
    Category::ALL
        .iter()
        .position(|&c| c == category)
        .expect("every category is in ALL")
}

/// The label number of `concept` in [`demo_vocabulary`].
pub fn demo_label(concept: Concept) -> u32 {
    let before: usize = Category::ALL
        .iter()
        .take(category_index(concept.category))
        .map(|c| c.names().len())
        .sum();
    (1 + before + concept.index) as u32
}

/// Held-out scene `i` of the demo world, as [`super::Source::Demo`] gives it.
fn demo_scene(i: usize) -> Scene {
    World::new(0).scene(HELD_OUT + i as u64)
}

/// A scene's pixel labels: each owner of pixels (the background, then each
/// object) a region, with its concept in every category it has.
fn scene_labels(scene: &Scene) -> ImageLabels {
    let owners = std::iter::once(None).chain(scene.objects.iter().map(Some));
    let labels = owners
        .map(|object| {
            let index = |category| match (category, object) {
                (Category::Background, None) => Some(scene.background),
                (Category::Shape, Some(o)) => Some(o.shape),
                (Category::Color, Some(o)) => Some(o.color),
                (Category::Texture, Some(o)) => Some(o.texture),
                _ => None,
            };
            (Category::ALL.iter())
                .filter_map(|&category| {
                    let index = index(category)?;
                    Some(demo_label(Concept { category, index }))
                })
                .collect()
        })
        .collect();
    let region_of = scene.owner.iter().map(|&k| k as u32).collect();
    ImageLabels::from_regions((SIZE, SIZE), region_of, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo labels are the scene's concept masks, pixel by pixel.
    #[test]
    fn demo_labels_are_the_scenes_masks() {
        // Enough scenes for every background and overlapping objects.
        for i in 0..24 {
            let scene = World::new(0).scene(HELD_OUT + i);
            let labels = scene_labels(&scene);
            assert_eq!(labels.size(), (SIZE, SIZE));
            for concept in Concept::all() {
                let mask = scene.mask(concept);
                let number = demo_label(concept);
                for (p, &m) in mask.iter().enumerate() {
                    let at = labels.at(p);
                    assert_eq!(m, at.contains(&number), "scene {i}, {}", concept.name());
                    // One concept a category: a background's pixel, or an object's.
                    assert_eq!(at.len(), if scene.owner[p] == 0 { 1 } else { 3 });
                }
            }
            for (k, region) in labels.regions().iter().enumerate() {
                let owned = scene.owner.iter().filter(|&&o| o as usize == k).count();
                assert_eq!(region.pixels, owned as u64, "scene {i}, owner {k}");
            }
        }
        let vocabulary = demo_vocabulary();
        for concept in Concept::all() {
            assert_eq!(
                vocabulary.labels[demo_label(concept) as usize].name,
                concept.name()
            );
        }
    }
}
