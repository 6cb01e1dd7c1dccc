//! What feature visualization maximizes, per image of the batch: Lucid's
//! objectives (`lucid.optvis.objectives`) and weighted sums of them, plus the
//! batch-wide diversity term and the image regularizers.
//!
//! - `channel`: a unit's spatial mean, `mean_xy A[c]`.
//! - `neuron`: a unit at one position (the map's centre unless given).
//! - `layer`: DeepDream's `mean(A^2)` over a whole layer.
//! - `logit`: a class's logit.
//! - diversity (Lucid's `diversity`): each image's Gram matrix over the layer's
//!   positions, `G = A A^T` (`[C, C]`), normalized to unit length; the term is the
//!   mean over images of the summed cosine similarity with the others, subtracted.
//! - regularizers on the `[0, 1]` image `I`: L1 `sum |I - 0.5|`, L2
//!   `sqrt(sum (I - 0.5)^2)`, total variation `sum |I(y+1,x) - I(y,x)| + |I(y,x+1) -
//!   I(y,x)|`, and blur `0.5 sum (I - blur(I))^2` with the blurred image held
//!   constant (Lucid's `blur_input_each_step`), each subtracted with its weight.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, bail, ensure};
use candle_core::Tensor;

use crate::attribution::Target;
use crate::model::{Capture, LayerKind, Model, Probe, UnitAddress};

/// One kind of term.
#[derive(Clone, Debug, PartialEq)]
pub enum Term {
    /// A unit's spatial mean; `None`: the batch image's own unit.
    Channel(Option<UnitAddress>),
    /// A unit at a position; `None`: the batch image's own unit, at the centre.
    Neuron(Option<UnitAddress>),
    /// DeepDream on a layer; `None`: the batch image's layer.
    Layer(Option<String>),
    /// A class logit; `None`: the batch image's own class.
    Logit(Option<usize>),
}

/// A weighted sum of terms, as typed: `channel`, `-channel`,
/// `channel - 0.5*channel:layer4:7`, `logit:285`, `2*layer:layer3`.
#[derive(Clone, Debug, PartialEq)]
pub struct Objective {
    /// Weight and term, summed.
    pub terms: Vec<(f64, Term)>,
}

impl FromStr for Objective {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut terms = Vec::new();
        // Split on + and - that start a term (not a number's exponent sign).
        let mut rest = s.trim();
        let mut sign = 1.0;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('-') {
                sign = -sign;
                rest = r.trim_start();
                continue;
            }
            if let Some(r) = rest.strip_prefix('+') {
                rest = r.trim_start();
                continue;
            }
            let end = rest
                .char_indices()
                .find(|&(i, c)| (c == '+' || c == '-') && i > 0 && !rest[..i].ends_with(['e', 'E']))
                .map_or(rest.len(), |(i, _)| i);
            let (weight, term) =
                parse_term(rest[..end].trim()).with_context(|| format!("objective `{s}`"))?;
            terms.push((sign * weight, term));
            sign = 1.0;
            rest = rest[end..].trim_start();
        }
        ensure!(!terms.is_empty(), "objective `{s}` has no term");
        Ok(Self { terms })
    }
}

/// `[WEIGHT*]KIND[:ARGS]`.
fn parse_term(s: &str) -> Result<(f64, Term)> {
    let (weight, term) = match s.split_once('*') {
        Some((w, t)) => {
            let w: f64 = w
                .trim()
                .parse()
                .with_context(|| format!("`{w}` is not a weight"))?;
            ensure!(w.is_finite(), "weight `{w}` is not finite");
            (w, t.trim())
        }
        None => (1.0, s),
    };
    let (kind, args) = match term.split_once(':') {
        Some((k, a)) => (k, Some(a)),
        None => (term, None),
    };
    let unit = |args: Option<&str>| args.map(str::parse::<UnitAddress>).transpose();
    let term = match kind {
        "channel" => Term::Channel(unit(args)?.map(|u| UnitAddress {
            position: None,
            ..u
        })),
        "neuron" => Term::Neuron(unit(args)?),
        "layer" => Term::Layer(args.map(str::to_string)),
        "logit" => Term::Logit(
            args.map(|a| {
                a.parse::<usize>()
                    .with_context(|| format!("class `{a}` is not an index"))
            })
            .transpose()?,
        ),
        other => bail!("unknown term `{other}`: use channel, neuron, layer or logit"),
    };
    Ok((weight, term))
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (w, term)) in self.terms.iter().enumerate() {
            let sign = if *w < 0.0 {
                "-"
            } else if i > 0 {
                "+"
            } else {
                ""
            };
            let gap = if i > 0 { " " } else { "" };
            write!(f, "{gap}{sign}{gap}")?;
            if w.abs() != 1.0 {
                write!(f, "{}*", w.abs())?;
            }
            match term {
                Term::Channel(u) => write!(
                    f,
                    "channel{}",
                    u.as_ref().map_or(String::new(), |u| format!(":{u}"))
                )?,
                Term::Neuron(u) => write!(
                    f,
                    "neuron{}",
                    u.as_ref().map_or(String::new(), |u| format!(":{u}"))
                )?,
                Term::Layer(l) => write!(
                    f,
                    "layer{}",
                    l.as_ref().map_or(String::new(), |l| format!(":{l}"))
                )?,
                Term::Logit(c) => {
                    write!(f, "logit{}", c.map_or(String::new(), |c| format!(":{c}")))?
                }
            }
        }
        Ok(())
    }
}

impl Objective {
    /// The objective made concrete for `targets` (image `i` stands for
    /// `targets[i]`). With `leak_from`, each unit term on a rectifier layer (a
    /// ReLU or ReLU6 of its own) also gets [`LEAK`] times the same unit just
    /// before the rectifier: a unit the initial noise leaves at zero after its
    /// ReLU has no gradient and would never move; the leak gives it one (a leaky
    /// ReLU), and once the unit fires its own term dominates. (Lucid visualizes
    /// `*_pre_relu` layers for the same reason.)
    pub fn plan(&self, targets: &[Target], leak_from: Option<&Model>) -> Result<Plan> {
        let feeding = match leak_from {
            Some(model) => rectifier_inputs(model)?,
            None => Vec::new(),
        };
        let mut layers: Vec<String> = Vec::new();
        let mut per_target = Vec::with_capacity(targets.len());
        for target in targets {
            let mut terms = Vec::new();
            for (weight, term) in &self.terms {
                let mut resolved = resolve(term, target)?;
                if let Resolved::Unit { unit, before, .. } = &mut resolved {
                    *before = feeding
                        .iter()
                        .find(|(rectifier, _)| *rectifier == unit.layer)
                        .map(|(_, input)| input.clone());
                }
                for layer in resolved.layers() {
                    if !layers.contains(&layer) {
                        layers.push(layer);
                    }
                }
                terms.push((*weight, resolved));
            }
            per_target.push(terms);
        }
        Ok(Plan { per_target, layers })
    }
}

/// How much of a unit before its rectifier is added to the unit (see
/// [`Objective::plan`]).
pub const LEAK: f64 = 0.01;

/// Each rectifier layer of `model` with the layer that feeds it (the layer listed
/// just before it, of the same shape).
fn rectifier_inputs(model: &Model) -> Result<Vec<(String, String)>> {
    let layers = model.layers()?;
    Ok(layers
        .windows(2)
        .filter(|pair| {
            matches!(pair[1].kind, LayerKind::Relu | LayerKind::Relu6)
                && pair[0].shape == pair[1].shape
        })
        .map(|pair| (pair[1].name.clone(), pair[0].name.clone()))
        .collect())
}

/// An objective made concrete for a batch of targets.
pub struct Plan {
    per_target: Vec<Vec<(f64, Resolved)>>,
    layers: Vec<String>,
}

impl Plan {
    /// The layers a pass must record.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }

    /// A probe recording the plan's layers and `extra`; it stops the pass after
    /// them unless the plan reads logits.
    pub fn probe(&self, base: Probe, extra: Option<&str>) -> Probe {
        let reads_logits =
            (self.per_target.iter().flatten()).any(|(_, t)| matches!(t, Resolved::Logit(_)));
        let probe = (self.layers.iter().map(String::as_str))
            .chain(extra)
            .fold(base, |p, l| p.record(l));
        match reads_logits {
            true => probe,
            false => probe.stop_after_recorded(),
        }
    }

    /// Each image's value, `[batch]`, on the autograd graph.
    pub fn values(&self, capture: &Capture) -> Result<Tensor> {
        let mut per_image = Vec::with_capacity(self.per_target.len());
        for (i, terms) in self.per_target.iter().enumerate() {
            let mut total: Option<Tensor> = None;
            for (weight, term) in terms {
                let value = (term.value(capture, i)? * *weight)?;
                total = Some(match total {
                    Some(t) => (t + value)?,
                    None => value,
                });
            }
            per_image.push(total.context("an objective with no term")?);
        }
        Ok(Tensor::stack(&per_image, 0)?)
    }
}

/// A term made concrete for one image.
enum Resolved {
    Unit {
        unit: UnitAddress,
        /// Read at the map's centre (a neuron without a position).
        centre: bool,
        /// The layer before the unit's rectifier, for the leak.
        before: Option<String>,
    },
    Layer(String),
    Logit(usize),
}

impl Resolved {
    fn layers(&self) -> Vec<String> {
        match self {
            Self::Unit { unit, before, .. } => std::iter::once(unit.layer.clone())
                .chain(before.clone())
                .collect(),
            Self::Layer(l) => vec![l.clone()],
            Self::Logit(_) => Vec::new(),
        }
    }

    /// The term's value on image `i` of `capture`, a scalar.
    fn value(&self, capture: &Capture, i: usize) -> Result<Tensor> {
        Ok(match self {
            Self::Unit {
                unit,
                centre,
                before,
            } => {
                let value = unit_value(capture.activation(&unit.layer)?.get(i)?, unit, *centre)?;
                match before {
                    Some(layer) => {
                        let input = unit_value(capture.activation(layer)?.get(i)?, unit, *centre)?;
                        (value + (input * LEAK)?)?
                    }
                    None => value,
                }
            }
            Self::Layer(layer) => capture.activation(layer)?.get(i)?.sqr()?.mean_all()?,
            Self::Logit(class) => {
                let logits = capture.logits()?.get(i)?;
                ensure!(*class < logits.dim(0)?, "class {class} is out of range");
                logits.get(*class)?
            }
        })
    }
}

/// A unit's value in one image's activations `a` (`[C, H, W]` or `[C]`): at its
/// position, at the centre, or its channel's spatial mean.
fn unit_value(a: Tensor, unit: &UnitAddress, centre: bool) -> Result<Tensor> {
    ensure!(
        unit.channel < a.dim(0)?,
        "unit {unit}: `{}` has {} units",
        unit.layer,
        a.dim(0)?
    );
    let channel = a.get(unit.channel)?;
    if channel.rank() == 0 {
        return Ok(channel);
    }
    let (h, w) = channel.dims2()?;
    Ok(match (unit.position, centre) {
        // The image may be larger or smaller than the model's input under
        // transforms: a position is kept inside the map.
        (Some((y, x)), false) => channel.get(y.min(h - 1))?.get(x.min(w - 1))?,
        (_, true) => channel.get(h / 2)?.get(w / 2)?,
        (None, false) => channel.mean_all()?,
    })
}

fn resolve(term: &Term, target: &Target) -> Result<Resolved> {
    let own_unit = || match target {
        Target::Unit(u) => Ok(u.clone()),
        Target::Class(c) => bail!("a unit term needs a unit, and this image stands for class {c}"),
    };
    let unit = |unit: UnitAddress, centre| Resolved::Unit {
        unit,
        centre,
        before: None,
    };
    Ok(match term {
        Term::Channel(u) => {
            let u = u.clone().map_or_else(own_unit, Ok)?;
            unit(
                UnitAddress {
                    position: None,
                    ..u
                },
                false,
            )
        }
        Term::Neuron(u) => {
            let u = u.clone().map_or_else(own_unit, Ok)?;
            let centre = u.position.is_none();
            unit(u, centre)
        }
        Term::Layer(Some(l)) => Resolved::Layer(l.clone()),
        Term::Layer(None) => Resolved::Layer(own_unit()?.layer),
        Term::Logit(Some(c)) => Resolved::Logit(*c),
        Term::Logit(None) => match target {
            Target::Class(c) => Resolved::Logit(*c),
            Target::Unit(u) => {
                bail!("`logit` needs a class (`logit:N`); this image stands for unit {u}")
            }
        },
    })
}

/// Lucid's diversity: the mean over images of the summed cosine similarity of
/// their normalized Gram matrices over `activations` (`[B, C, H, W]` or `[B, C]`).
pub fn diversity(activations: &Tensor) -> Result<Tensor> {
    let b = activations.dim(0)?;
    let c = activations.dim(1)?;
    let flat = activations.reshape((b, c, ()))?;
    let grams = flat.matmul(&flat.transpose(1, 2)?)?.reshape((b, c * c))?;
    let norms = (grams.sqr()?.sum_keepdim(1)? + 1e-10)?.sqrt()?;
    let unit = grams.broadcast_div(&norms)?;
    // sum_{i != j} <g_i, g_j> = |sum_i g_i|^2 - sum_i |g_i|^2.
    let total = unit.sum(0)?.sqr()?.sum_all()?;
    let own = unit.sqr()?.sum_all()?;
    Ok(((total - own)? / b as f64)?)
}

/// The image regularizers' weights; zero turns one off.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Regularizers {
    /// `sum |I - 0.5|`.
    pub l1: f64,
    /// `sqrt(sum (I - 0.5)^2)`.
    pub l2: f64,
    /// Summed absolute differences of neighbouring pixels.
    pub total_variation: f64,
    /// `0.5 sum (I - blur(I))^2`, the blurred image held constant.
    pub blur: f64,
}

impl Regularizers {
    /// Their weighted sum on `images` (`[B, 3, H, W]` in `[0, 1]`), to subtract.
    pub fn penalty(&self, images: &Tensor) -> Result<Option<Tensor>> {
        let mut terms = Vec::new();
        let centred = (images - 0.5)?;
        if self.l1 != 0.0 {
            terms.push((centred.abs()?.sum_all()? * self.l1)?);
        }
        if self.l2 != 0.0 {
            terms.push(((centred.sqr()?.sum_all()? + 1e-6)?.sqrt()? * self.l2)?);
        }
        if self.total_variation != 0.0 {
            let (_, _, h, w) = images.dims4()?;
            let dy = (images.narrow(2, 1, h - 1)? - images.narrow(2, 0, h - 1)?)?;
            let dx = (images.narrow(3, 1, w - 1)? - images.narrow(3, 0, w - 1)?)?;
            let tv = (dy.abs()?.sum_all()? + dx.abs()?.sum_all()?)?;
            terms.push((tv * self.total_variation)?);
        }
        if self.blur != 0.0 {
            let blurred = crate::data::gaussian_blur(&images.detach(), 1.0)?;
            let gap = (images - blurred)?.sqr()?.sum_all()?;
            terms.push((gap * (0.5 * self.blur))?);
        }
        Ok(terms
            .into_iter()
            .reduce(|a, b| (a + b).expect("scalars add")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objectives_parse_and_print() {
        for (text, printed) in [
            ("channel", "channel"),
            ("-channel", "-channel"),
            (
                "channel - 0.5*channel:layer4:7",
                "channel - 0.5*channel:layer4:7",
            ),
            ("logit:285", "logit:285"),
            (
                "2*layer:layer3 + neuron:features.10:3:1:2",
                "2*layer:layer3 + neuron:features.10:3:1:2",
            ),
            ("1e-2*layer", "0.01*layer"),
        ] {
            let o: Objective = text.parse().unwrap();
            assert_eq!(o.to_string(), printed);
        }
        for bad in ["", "chanel", "x*channel", "logit:cat", "channel:layer4"] {
            assert!(bad.parse::<Objective>().is_err(), "{bad} parsed");
        }
    }

    /// Identical images are as undiverse as can be: each pair's similarity is 1.
    #[test]
    fn diversity_is_the_mean_summed_similarity() {
        let device = candle_core::Device::Cpu;
        let a = Tensor::new(&[[[1f32, 2.0], [3.0, 4.0]]], &device).unwrap();
        let same = Tensor::cat(&[&a, &a, &a], 0).unwrap();
        let d = diversity(&same).unwrap().to_scalar::<f32>().unwrap();
        assert!((d - 2.0).abs() < 1e-5, "three identical images: {d}");
        let other = Tensor::new(&[[[1f32, 0.0], [0.0, 0.0]]], &device).unwrap();
        let orthogonal = Tensor::cat(
            &[
                &other,
                &Tensor::new(&[[[0f32, 0.0], [0.0, 1.0]]], &device).unwrap(),
            ],
            0,
        )
        .unwrap();
        let d = diversity(&orthogonal).unwrap().to_scalar::<f32>().unwrap();
        assert!(d.abs() < 1e-6, "grams with no overlap: {d}");
    }
}
