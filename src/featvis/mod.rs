//! Feature visualization by optimization: start from noise, back-propagate an
//! objective (a unit's activation, a class logit, ...) to the image, step, repeat
//! (Erhan et al. 2009; Olah, Mordvintsev & Schubert 2017, "Feature Visualization",
//! Distill). What makes the results readable follows Lucid and Lucent: a Fourier
//! parameterization with decorrelated colours ([`param`]), random transforms
//! before every step ([`transform`]), and optional regularizers and a diversity
//! term ([`objective`]); Adam at 0.05 for 512 steps by default.
//!
//! One optimization runs a whole batch: image `i` stands for `targets[i]` (a unit
//! or a class), so one pass of the engine serves many units.
//!
//! Each step is two backward passes. The engine gives the gradient of the
//! objective at its input (its own rules and fast paths: a pass that stops after
//! the layers the objective reads, its trunk on the engine's tape, the gradient
//! held at the stem); Candle's autograd then carries it through the transforms
//! and the parameterization as the gradient of `sum(x * g)` ([`pull`]), with the
//! regularizers added there. Normalization stays off that graph: its gradient is a
//! division of `g` by each channel's deviation. On the CPU each stage of the image
//! side is one op with a hand-written backward (Candle's own backward of a binary
//! op computes both operands' gradients, and each is a pass over the batch).

pub mod objective;
mod op;
pub mod param;
mod spectrum;
pub mod transform;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use candle_core::{DType, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::Digest;

use crate::attribution::Target;
use crate::model::{Model, Probe};
pub use objective::{Objective, Regularizers, Term};
pub use param::{ImageParam, Parameterization};
pub use transform::Transforms;

/// How to optimize.
#[derive(Clone, Debug)]
pub struct Settings {
    /// What each image maximizes.
    pub objective: Objective,
    /// Pixels or a Fourier spectrum.
    pub parameterization: Parameterization,
    /// Optimize in decorrelated colour space (colour images only).
    pub decorrelate: bool,
    /// 1: a grey image (shown to the model as RGB); 3: colour.
    pub channels: usize,
    /// The image's `(rows, columns)`; `None`: the model's input size.
    pub size: Option<(usize, usize)>,
    /// The random transforms before each step; `None`: Lucid's, sized for the
    /// image ([`Transforms::standard_for`]).
    pub transforms: Option<Transforms>,
    /// Penalties on the image.
    pub regularizers: Regularizers,
    /// Weight of the diversity term, and the layer it compares images on (`None`:
    /// the first layer the objective reads).
    pub diversity: Option<(f64, Option<String>)>,
    /// Optimizer steps.
    pub steps: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// The initial noise's and the transforms' seed.
    pub seed: u64,
}

impl Settings {
    /// Lucid's defaults for `objective`: Fourier, decorrelated colour, standard
    /// transforms (sized for the image), Adam at 0.05, 512 steps.
    pub fn new(objective: Objective) -> Self {
        Self {
            objective,
            parameterization: Parameterization::Fourier,
            decorrelate: true,
            channels: 3,
            size: None,
            transforms: None,
            regularizers: Regularizers::default(),
            diversity: None,
            steps: 512,
            lr: 0.05,
            seed: 0,
        }
    }
}

/// What an optimization made.
#[derive(Clone, Debug, Serialize)]
pub struct Visualization {
    /// Per target, the image.
    #[serde(skip)]
    pub images: Vec<RgbImage>,
    /// Per target, the objective optimized (with its leak, without regularizers and
    /// diversity) at each step, on the transformed image the step saw.
    pub curves: Vec<Vec<f32>>,
    /// Per target, the objective as asked on the final image, untransformed.
    pub values: Vec<f32>,
}

/// Optimizes one image per target; `progress` hears (step, steps). Stops between
/// steps when the running job is cancelled.
pub fn visualize(
    model: &Model,
    targets: &[Target],
    settings: &Settings,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Visualization> {
    ensure!(!targets.is_empty(), "nothing to visualize");
    ensure!(settings.steps > 0, "at least one step");
    let [rows, columns] = model.input_spec().size;
    let size = settings.size.unwrap_or((rows, columns));
    let seeds: Vec<u64> = image_keys(targets)
        .iter()
        .map(|key| {
            let digest = sha2::Sha256::digest(format!("{} {key}", settings.seed).as_bytes());
            u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
        })
        .collect();
    let param = ImageParam::new(
        settings.parameterization,
        &seeds,
        settings.channels,
        size,
        settings.decorrelate,
        model.device(),
    )?;
    let plan = settings.objective.plan(targets, Some(model))?;
    let diversity = match &settings.diversity {
        Some((weight, layer)) => {
            let layer = layer.clone().or_else(|| plan.layers().first().cloned());
            let Some(layer) = layer else {
                anyhow::bail!("the diversity term needs a layer: the objective reads none")
            };
            Some((*weight, layer))
        }
        None => None,
    };
    let probe = plan.probe(Probe::new(), diversity.as_ref().map(|(_, l)| l.as_str()));
    let mut optimizer = AdamW::new(
        param.vars().to_vec(),
        ParamsAdamW {
            lr: settings.lr,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let normalize = Normalize::new(model)?;
    let transforms = settings
        .transforms
        .clone()
        .unwrap_or_else(|| Transforms::standard_for(size));
    // The transforms draw from their own stream, so the initial noise of a seed
    // does not depend on how many steps ran.
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ 0x7472_616e_7366_6f72);
    let mut curves = vec![Vec::with_capacity(settings.steps); targets.len()];
    for step in 0..settings.steps {
        crate::jobs::checkpoint()?;
        progress(step as u64, settings.steps as u64);
        let images = param.images()?;
        let warped = transforms.draw(size, &mut rng).apply(&images)?;
        let x = normalize.apply(&warped.detach())?;
        let capture = model.forward_held(&x, &probe, &|stem, x| stem.apply(x))?;
        let values = plan.values(&capture)?;
        let mut total = values.sum_all()?;
        if let Some((weight, layer)) = &diversity {
            total = (total - (objective::diversity(capture.activation(layer)?)? * *weight)?)?;
        }
        let g = capture.backward(&total)?.input()?.to_dtype(DType::F32)?;
        let mut ascent = op::pull(&warped, &normalize.gradient(&g)?)?;
        if let Some(penalty) = settings.regularizers.penalty(&images)? {
            ascent = (ascent - penalty)?;
        }
        optimizer.backward_step(&ascent.neg()?)?;
        let values = values.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        for (curve, v) in curves.iter_mut().zip(values) {
            curve.push(v);
        }
    }
    progress(settings.steps as u64, settings.steps as u64);
    // The final values are the objective as asked, without the leak.
    let images = param.images()?.detach();
    let asked = settings.objective.plan(targets, None)?;
    let probe = asked.probe(Probe::new().values_only(), None);
    let capture = model.forward(&normalize.apply(&images)?, &probe)?;
    let values = asked.values(&capture)?;
    Ok(Visualization {
        images: param::to_pictures(&images, model.input_spec())?,
        curves,
        values: values.to_dtype(DType::F32)?.to_vec1()?,
    })
}

/// The model's preprocessing of `[0, 1]` images: `(x - mean) / std` per channel.
struct Normalize {
    mean: Tensor,
    std: Tensor,
}

impl Normalize {
    fn new(model: &Model) -> Result<Self> {
        let spec = model.input_spec();
        let column = |v: [f64; 3]| {
            Tensor::from_vec(v.map(|x| x as f32).to_vec(), (1, 3, 1, 1), model.device())
        };
        Ok(Self {
            mean: column(spec.mean)?,
            std: column(spec.std)?,
        })
    }

    fn apply(&self, images: &Tensor) -> Result<Tensor> {
        Ok(images.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?)
    }

    /// The gradient at the images given the gradient `g` at the normalized images.
    fn gradient(&self, g: &Tensor) -> Result<Tensor> {
        Ok(g.broadcast_div(&self.std)?)
    }
}

/// What tells the images of a batch apart: each target, with the number of its
/// copies before it (a unit's diverse images are copies of one target).
fn image_keys(targets: &[Target]) -> Vec<String> {
    targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let copy = targets[..i].iter().filter(|u| *u == t).count();
            format!("{t:?} copy {copy}")
        })
        .collect()
}

/// [`visualize`] through a folder of PNGs: each image is read from `dir` when a
/// file under its key (the model's digest and preprocessing, the settings, the
/// target and its copy) is there and decodes at the right size; the others are
/// optimized together and written. Returns the images and what went wrong writing
/// them (a cache that cannot be written loses nothing but time). `None`: nothing
/// is kept.
pub fn cached(
    model: &Model,
    targets: &[Target],
    settings: &Settings,
    dir: Option<&Path>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Vec<RgbImage>, Vec<String>)> {
    let Some(dir) = dir else {
        return Ok((
            visualize(model, targets, settings, progress)?.images,
            Vec::new(),
        ));
    };
    let [rows, columns] = model.input_spec().size;
    let (h, w) = settings.size.unwrap_or((rows, columns));
    let preprocessing = serde_json::to_string(model.input_spec())?;
    let digest = model.digest()?;
    let paths: Vec<PathBuf> = image_keys(targets)
        .iter()
        .map(|image| {
            let key = format!(
                "feature visualization 2\nmodel {digest}\npreprocessing {preprocessing}\n{settings:?}\n{image}\n"
            );
            let name = format!("{:x}", sha2::Sha256::digest(key.as_bytes()));
            dir.join(format!("{}.png", &name[..32]))
        })
        .collect();
    let mut images: Vec<Option<RgbImage>> = paths
        .iter()
        .map(|p| {
            let image = image::open(p).ok()?.to_rgb8();
            (image.dimensions() == (w as u32, h as u32)).then_some(image)
        })
        .collect();
    let missing: Vec<usize> = (0..targets.len())
        .filter(|&i| images[i].is_none())
        .collect();
    let mut notes = Vec::new();
    if !missing.is_empty() {
        let asked: Vec<Target> = missing.iter().map(|&i| targets[i].clone()).collect();
        let made = visualize(model, &asked, settings, progress)?;
        let stored = std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the cache `{}`", dir.display()));
        if let Err(e) = &stored {
            notes.push(format!("{e:#}; the visualizations are not cached"));
        }
        for (&i, image) in missing.iter().zip(made.images) {
            if stored.is_ok()
                && let Err(e) = crate::render::save_png(&image, &paths[i])
            {
                notes.push(format!("{e:#}; not cached"));
            }
            images[i] = Some(image);
        }
    }
    Ok((images.into_iter().flatten().collect(), notes))
}
