//! Where inputs come from, as one source: image files, a folder of images, or
//! held-out scenes of the demo world (which come with the pixels of the object that
//! sets their class). Files of a plugin's modality ([`super::modality`]) come from
//! files and folders like images. Every view and command reads its inputs from a
//! [`Source`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use candle_core::{Device, Tensor};
use image::RgbImage;

use super::image::{InputSpec, Window, load_image};
use super::modality::{self, Modality, View};
use super::world::{HELD_OUT, SIZE, World};

/// A source of inputs.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// These files (images, or a modality's), in order.
    Files(Vec<PathBuf>),
    /// The files of a folder of the kind most of them are: PNG and JPEG pictures,
    /// or one modality's files; by name.
    Folder(PathBuf),
    /// The first `n` held-out scenes of the demo world.
    Demo(usize),
}

/// One input, preprocessed.
pub struct Sample {
    /// Its name in output file names: the file's stem (made unique), or `sceneN`.
    pub name: String,
    /// The file it was read from, if any.
    pub path: Option<PathBuf>,
    /// The image as it was before preprocessing, for a demo scene (as drawn); an
    /// image file is not kept decoded ([`Sample::original`] reads it again).
    pub scene: Option<RgbImage>,
    /// The model's input, `[3, H, W]`.
    pub tensor: Tensor,
    /// For demo scenes, the pixels of the object that sets the class.
    pub mask: Option<Vec<bool>>,
    /// For a modality's file, what it is shown as.
    pub view: Option<Arc<View>>,
}

impl Sample {
    /// The image as it was before preprocessing, at its own resolution: read again
    /// from its file, so that a folder of large photos is not held decoded at once.
    pub fn original(&self) -> Result<RgbImage> {
        if let Some(view) = &self.view {
            return Ok(view.picture.image.clone());
        }
        match (&self.scene, &self.path) {
            (Some(scene), _) => Ok(scene.clone()),
            (None, Some(path)) => load_image(path),
            (None, None) => anyhow::bail!("`{}` has no image to draw on", self.name),
        }
    }

    /// The part of `original` (of size `(width, height)`) the model saw, as `(x,
    /// y, width, height)`: what `spec` crops of an image; all of a modality's
    /// picture, which its input spans edge to edge.
    pub fn window(&self, spec: &InputSpec, original: (u32, u32)) -> Window {
        match self.view {
            Some(_) => (0.0, 0.0, original.0 as f64, original.1 as f64),
            None => spec.window(original),
        }
    }
}

impl Source {
    /// How many inputs it gives.
    pub fn len(&self) -> Result<usize> {
        Ok(match self {
            Self::Files(paths) => paths.len(),
            Self::Folder(folder) => images_in(folder)?.len(),
            Self::Demo(n) => *n,
        })
    }

    /// Whether it gives none.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The model card its files open with when the user names none: the one their
    /// modality ships, when all are one modality's.
    pub fn shipped_card(&self) -> Option<PathBuf> {
        match self {
            Self::Demo(_) => None,
            Self::Files(paths) => modality::shipped_card(paths),
            Self::Folder(folder) => modality::shipped_card(&images_in(folder).ok()?),
        }
    }

    /// An error unless a model taking `spec`'s inputs suits it: demo scenes are
    /// [`SIZE`] px, and a model made for other inputs never saw them.
    pub fn check(&self, spec: &InputSpec) -> Result<()> {
        if let Self::Demo(_) = self {
            ensure!(
                spec.size == [SIZE; 2],
                "demo scenes are {SIZE}x{SIZE} px and this model takes {}x{} inputs: it was not \
                 made for them; give image files (or a folder) instead",
                spec.size[0],
                spec.size[1]
            );
        }
        Ok(())
    }

    /// Its inputs, named but not read: a folder of thousands of images is listed,
    /// not decoded (the TUI opens one at a time).
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let paths = match self {
            Self::Demo(n) => {
                return Ok((0..*n as u64)
                    .map(|i| Entry {
                        name: format!("scene{i}"),
                        kind: EntryKind::Scene(i),
                    })
                    .collect());
            }
            Self::Files(paths) => paths.clone(),
            Self::Folder(folder) => images_in(folder)?,
        };
        let names = unique_names(&paths);
        Ok(names
            .into_iter()
            .zip(paths)
            .map(|(name, path)| Entry {
                name,
                kind: EntryKind::File(path),
            })
            .collect())
    }

    /// Its inputs, preprocessed by `spec` onto `device`, in order. Image files are
    /// all read first, so a bad one fails before any result is written; scenes,
    /// whose count is only a number, are drawn one at a time.
    pub fn samples<'a>(
        &'a self,
        spec: &'a InputSpec,
        device: &'a Device,
    ) -> Result<Box<dyn Iterator<Item = Result<Sample>> + 'a>> {
        let entries = self.entries()?;
        if let Self::Demo(_) = self {
            return Ok(Box::new(
                entries.into_iter().map(move |e| e.load(spec, device)),
            ));
        }
        let samples = entries
            .iter()
            .map(|e| e.load(spec, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(samples.into_iter().map(Ok)))
    }
}

/// One input of a [`Source`], not yet read.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Its name in output file names (as [`Sample::name`]).
    pub name: String,
    kind: EntryKind,
}

#[derive(Clone, Debug, PartialEq)]
enum EntryKind {
    /// The i-th held-out scene of the demo world.
    Scene(u64),
    File(PathBuf),
}

impl Entry {
    /// The file it is read from, if any.
    pub fn path(&self) -> Option<&Path> {
        match &self.kind {
            EntryKind::File(path) => Some(path),
            EntryKind::Scene(_) => None,
        }
    }

    /// What the entry's content is known by, for cache keys: the scene's number, or
    /// the file's path, size and modification time (a file that cannot be read
    /// says so, and fails later where it is loaded).
    pub fn identity(&self) -> String {
        match &self.kind {
            EntryKind::Scene(i) => format!("demo scene {i}"),
            EntryKind::File(path) => format!("{} {}", path.display(), stamp(path)),
        }
    }

    /// Reads it and preprocesses it by `spec` onto `device`.
    pub fn load(&self, spec: &InputSpec, device: &Device) -> Result<Sample> {
        match &self.kind {
            EntryKind::Scene(i) => {
                let scene = World::new(0).scene(HELD_OUT + i);
                Ok(Sample {
                    name: self.name.clone(),
                    path: None,
                    tensor: spec.to_tensor(&scene.image, device)?,
                    mask: Some(scene.subject_mask()),
                    scene: Some(scene.image),
                    view: None,
                })
            }
            EntryKind::File(path) => match modality::for_path(path) {
                Some(modality) => self.decode(modality, path, spec, device),
                None => self.read_image(path, spec, device),
            },
        }
    }

    /// An image file, preprocessed by `spec`.
    fn read_image(&self, path: &Path, spec: &InputSpec, device: &Device) -> Result<Sample> {
        let image = load_image(path)?;
        Ok(Sample {
            name: self.name.clone(),
            path: Some(path.to_path_buf()),
            tensor: spec.to_tensor(&image, device)?,
            mask: None,
            scene: None,
            view: None,
        })
    }

    /// A file of `modality`, decoded by its plugin into the input `spec` sizes.
    fn decode(
        &self,
        modality: &'static dyn Modality,
        path: &Path,
        spec: &InputSpec,
        device: &Device,
    ) -> Result<Sample> {
        let shape = spec.shape();
        let decoded = modality
            .decode(path, shape)
            .with_context(|| format!("{} cannot open `{}`", modality.name(), path.display()))?;
        Ok(Sample {
            name: self.name.clone(),
            path: Some(path.to_path_buf()),
            tensor: Tensor::from_vec(decoded.input, shape.to_vec(), device)?,
            mask: None,
            scene: None,
            view: Some(Arc::new(decoded.view)),
        })
    }
}

/// What tells versions of a file apart, for cache keys: its size and modification
/// time (or why it cannot be read, which fails later where it is loaded).
fn stamp(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{} {modified}", m.len())
        }
        Err(e) => format!("unreadable: {e}"),
    }
}

/// The inputs of `folder`, sorted: its files of the kind most of them are
/// (PNG and JPEG pictures, or one modality's files; on a tie, pictures, then
/// modalities by name), so that a folder of clips beside their script stays a
/// folder of clips; an error if it has none.
fn images_in(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("cannot read folder `{}`", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| modality::opens(p))
        .collect();
    paths.sort();
    ensure!(
        !paths.is_empty(),
        "`{}` holds no PNG or JPEG images, nor files a modality plugin opens",
        folder.display()
    );
    // A file's kind: its modality's name; "" for a picture.
    let kind = |p: &Path| modality::for_path(p).map_or("", |m| m.name()).to_owned();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for path in &paths {
        *counts.entry(kind(path)).or_default() += 1;
    }
    let most = counts
        .iter()
        .max_by_key(|(kind, n)| (**n, std::cmp::Reverse(*kind)))
        .map(|(kind, _)| kind.clone())
        .unwrap_or_default();
    paths.retain(|p| kind(p) == most);
    Ok(paths)
}

/// The names of `paths` in output file names: each file's stem, and where several
/// files share one (`a/x.png`, `b/x.png`), `-2`, `-3`, ... after the second and later
/// in order, so no output overwrites another.
fn unique_names(paths: &[PathBuf]) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    paths
        .iter()
        .map(|path| {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            let name = (1..)
                .map(|n| match n {
                    1 => stem.clone(),
                    n => format!("{stem}-{n}"),
                })
                .find(|name| !taken.contains(name))
                .unwrap_or(stem);
            taken.insert(name.clone());
            name
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_share_a_name_get_suffixes() {
        let paths: Vec<PathBuf> = ["a/x.png", "b/x.png", "x-2.png", "c/x.jpg"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(unique_names(&paths), ["x", "x-2", "x-2-2", "x-3"]);
    }

    #[test]
    fn a_folder_gives_its_images_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let scene = World::new(0).scene(1).image;
        for name in ["b.png", "a.PNG", "notes.txt"] {
            match name.ends_with("txt") {
                true => std::fs::write(dir.path().join(name), "x").unwrap(),
                false => scene
                    .save_with_format(dir.path().join(name), image::ImageFormat::Png)
                    .unwrap(),
            }
        }
        let source = Source::Folder(dir.path().to_owned());
        assert_eq!(source.len().unwrap(), 2);
        let spec = InputSpec::default();
        let names: Vec<String> = source
            .samples(&spec, &Device::Cpu)
            .unwrap()
            .map(|s| s.unwrap().name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        let empty = tempfile::tempdir().unwrap();
        let err = Source::Folder(empty.path().to_owned()).len().unwrap_err();
        assert!(err.to_string().contains("no PNG or JPEG"), "{err}");
    }

    #[test]
    fn demo_scenes_come_with_masks() {
        let spec = InputSpec {
            size: [super::super::world::SIZE; 2],
            ..InputSpec::default()
        };
        let samples: Vec<Sample> = Source::Demo(2)
            .samples(&spec, &Device::Cpu)
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(samples[1].name, "scene1");
        assert!(
            samples
                .iter()
                .all(|s| s.mask.as_ref().is_some_and(|m| m.iter().any(|&b| b)))
        );
    }
}
