//! The attribution-method flags `explain` and `evaluate` share.

use anyhow::{Result, bail, ensure};
use unitscope::attribution::{self, Baseline, Method, Quadrature, Upsampling, registry};
use unitscope::data::MAX_SIGMA;
use unitscope::data::image::MAX_INPUT_SIDE;
use unitscope::model::Model;

/// Model passes one method may take per input (SmoothGrad's samples times its inner
/// method's passes): beyond this a run is hours, not a mistake to wait out.
const MAX_PASSES: usize = 100_000;

#[derive(Clone, clap::Args)]
pub struct MethodArgs {
    /// Methods, comma-separated (`unitscope explain --list-methods` names them all).
    #[arg(
        long,
        short,
        value_delimiter = ',',
        default_value = "saliency,guided-backprop,grad-cam"
    )]
    method: Vec<String>,
    /// Layers for the CAM methods (comma-separated; several are averaged). Default:
    /// the last layer with feature maps.
    #[arg(long, value_delimiter = ',')]
    layer: Vec<String>,
    /// SmoothGrad: noisy copies per image.
    #[arg(long, default_value_t = 50, value_parser = super::count(1..=10_000))]
    samples: usize,
    /// SmoothGrad: noise as a fraction of the input's value range.
    #[arg(long, default_value_t = 0.15, value_parser = super::real(0.0, 10.0), allow_negative_numbers = true)]
    noise_level: f64,
    /// SmoothGrad: seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Integrated gradients: steps.
    #[arg(long, default_value_t = 50, value_parser = super::count(1..=10_000))]
    steps: usize,
    /// Integrated gradients: baseline `zero`, `blur` (sigma 10 px) or `blur:SIGMA`.
    #[arg(long, default_value = "zero")]
    baseline: String,
    /// Integrated gradients: quadrature.
    #[arg(long, value_enum, default_value = "gauss-legendre")]
    quadrature: QuadratureArg,
    /// Occlusion: window side in pixels.
    #[arg(long, default_value_t = 16, value_parser = super::count(1..=MAX_INPUT_SIDE as u64))]
    window: usize,
    /// Occlusion: pixels between windows.
    #[arg(long, default_value_t = 8, value_parser = super::count(1..=MAX_INPUT_SIDE as u64))]
    stride: usize,
    /// Guided Grad-CAM: upsample the CAM by nearest neighbour (Captum's default)
    /// instead of bilinearly (the paper's).
    #[arg(long)]
    nearest: bool,
    /// Inputs per pass for SmoothGrad, integrated gradients and occlusion (bounds memory).
    #[arg(long, default_value_t = 16, value_parser = super::count(1..=256))]
    batch_size: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum QuadratureArg {
    RiemannLeft,
    RiemannRight,
    RiemannMiddle,
    RiemannTrapezoid,
    GaussLegendre,
}

impl MethodArgs {
    /// Each method as named on the command line, built for `model`.
    pub fn build(&self, model: &Model) -> Result<Vec<(String, Box<dyn Method>)>> {
        let options = self.options(model)?;
        self.method
            .iter()
            .map(|name| {
                let method = registry::build(name, &options)?;
                let passes = method.passes();
                let total = passes.backward + passes.forward;
                ensure!(
                    total <= MAX_PASSES,
                    "`{name}` would take {total} model passes per input, over the limit of \
                     {MAX_PASSES}: lower --samples, --steps or raise --window/--stride"
                );
                Ok((name.clone(), method))
            })
            .collect()
    }

    fn options(&self, model: &Model) -> Result<registry::MethodOptions> {
        let layers = match self.layer.is_empty() {
            true => vec![attribution::default_cam_layer(model)?],
            false => self.layer.clone(),
        };
        let baseline = match self.baseline.split_once(':') {
            None if self.baseline == "zero" => Baseline::Zero,
            None if self.baseline == "blur" => Baseline::Blurred(10.0),
            Some(("blur", sigma)) => Baseline::Blurred(
                super::real(0.0, MAX_SIGMA)(sigma)
                    .ok()
                    .filter(|&s| s > 0.0)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--baseline blur:{sigma}: the blur's sigma must be a number of pixels \
                             above 0 and at most {MAX_SIGMA}"
                        )
                    })?,
            ),
            _ => bail!(
                "--baseline `{}`: use zero, blur or blur:SIGMA",
                self.baseline
            ),
        };
        Ok(registry::MethodOptions {
            layers,
            upsampling: match self.nearest {
                true => Upsampling::Nearest,
                false => Upsampling::Bilinear,
            },
            samples: self.samples,
            noise_level: self.noise_level,
            seed: self.seed,
            steps: self.steps,
            quadrature: match self.quadrature {
                QuadratureArg::RiemannLeft => Quadrature::RiemannLeft,
                QuadratureArg::RiemannRight => Quadrature::RiemannRight,
                QuadratureArg::RiemannMiddle => Quadrature::RiemannMiddle,
                QuadratureArg::RiemannTrapezoid => Quadrature::RiemannTrapezoid,
                QuadratureArg::GaussLegendre => Quadrature::GaussLegendre,
            },
            baseline,
            window: self.window,
            stride: self.stride,
            fill: 0.0,
            batch: self.batch_size,
        })
    }
}
