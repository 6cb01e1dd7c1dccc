//! Methods by name, as the command line and the TUI ask for them.

use anyhow::{Result, bail};

use super::{
    Baseline, Cam, CamWeighting, Gradient, GuidedGradCam, IntegratedGradients, Method, Occlusion,
    Quadrature, SmoothGrad, Statistic, Upsampling,
};

/// The method names [`build`] knows, with a line each for help texts.
pub const METHODS: &[(&str, &str)] = &[
    ("saliency", "vanilla gradient (Simonyan et al. 2014)"),
    ("gradient-x-input", "gradient times input"),
    (
        "deconvnet",
        "DeconvNet backward rule (Zeiler & Fergus 2014)",
    ),
    (
        "guided-backprop",
        "guided backpropagation (Springenberg et al. 2015)",
    ),
    ("grad-cam", "Grad-CAM on --layer (Selvaraju et al. 2017)"),
    (
        "grad-cam++",
        "Grad-CAM++ on --layer (Chattopadhay et al. 2018)",
    ),
    ("layer-cam", "LayerCAM on --layer (Jiang et al. 2021)"),
    ("guided-grad-cam", "guided backprop x Grad-CAM on --layer"),
    (
        "integrated-gradients",
        "integrated gradients (Sundararajan et al. 2017)",
    ),
    (
        "occlusion",
        "occlusion by a sliding window (Zeiler & Fergus 2014)",
    ),
    (
        "smoothgrad:METHOD",
        "SmoothGrad around any method (Smilkov et al. 2017)",
    ),
    (
        "smoothgrad-sq:METHOD",
        "mean of squared maps over noisy copies",
    ),
    (
        "vargrad:METHOD",
        "variance of the maps over noisy copies (Adebayo et al. 2018)",
    ),
];

/// The parameters methods take; each method reads the ones it needs.
#[derive(Clone, Debug)]
pub struct MethodOptions {
    /// CAM layers (Grad-CAM and relatives); several are averaged.
    pub layers: Vec<String>,
    /// Guided Grad-CAM's upsampling.
    pub upsampling: Upsampling,
    /// SmoothGrad's noisy copies.
    pub samples: usize,
    /// SmoothGrad's noise level (fraction of the input's range).
    pub noise_level: f64,
    /// SmoothGrad's seed.
    pub seed: u64,
    /// Integrated gradients' steps.
    pub steps: usize,
    /// Integrated gradients' quadrature.
    pub quadrature: Quadrature,
    /// Integrated gradients' baseline.
    pub baseline: Baseline,
    /// Occlusion's window side and stride, in pixels.
    pub window: usize,
    /// Occlusion's stride.
    pub stride: usize,
    /// Occlusion's fill value.
    pub fill: f64,
    /// Inputs per pass for the methods that run many (SmoothGrad, IG, occlusion).
    pub batch: usize,
}

impl Default for MethodOptions {
    fn default() -> Self {
        let occlusion = Occlusion::default();
        Self {
            layers: Vec::new(),
            upsampling: Upsampling::Bilinear,
            samples: 50,
            noise_level: 0.15,
            seed: 0,
            steps: 50,
            quadrature: Quadrature::GaussLegendre,
            baseline: Baseline::Zero,
            window: occlusion.window,
            stride: occlusion.stride,
            fill: occlusion.fill,
            batch: 16,
        }
    }
}

/// The method called `name` (see [`METHODS`]) with `options`.
pub fn build(name: &str, options: &MethodOptions) -> Result<Box<dyn Method>> {
    if let Some((wrapper, inner)) = name.split_once(':') {
        let statistic = match wrapper {
            "smoothgrad" => Statistic::Mean,
            "smoothgrad-sq" => Statistic::MeanOfSquares,
            "vargrad" => Statistic::Variance,
            _ => bail!("`{wrapper}` wraps no method; {}", known()),
        };
        // One wrapper: noise over noise multiplies the passes and means nothing more.
        if inner.contains(':') {
            bail!("`{wrapper}:` wraps a plain method, not another wrapper");
        }
        return Ok(Box::new(SmoothGrad {
            samples: options.samples,
            level: options.noise_level,
            statistic,
            batch: options.batch,
            seed: options.seed,
            ..SmoothGrad::new(build(inner, options)?)
        }));
    }
    let cam = |weighting| -> Result<Box<dyn Method>> {
        Ok(Box::new(Cam {
            layers: cam_layers(name, options)?,
            weighting,
        }))
    };
    Ok(match name {
        "saliency" => Box::new(Gradient::saliency()),
        "gradient-x-input" => Box::new(Gradient::times_input()),
        "deconvnet" => Box::new(Gradient::deconvnet()),
        "guided-backprop" => Box::new(Gradient::guided_backprop()),
        "grad-cam" => cam(CamWeighting::GradCam)?,
        "grad-cam++" => cam(CamWeighting::GradCamPlusPlus)?,
        "layer-cam" => cam(CamWeighting::LayerCam)?,
        "guided-grad-cam" => {
            let layers = cam_layers(name, options)?;
            if layers.len() > 1 {
                bail!("guided-grad-cam takes one --layer, got {}", layers.len());
            }
            Box::new(GuidedGradCam {
                layer: layers[0].clone(),
                upsampling: options.upsampling,
            })
        }
        "integrated-gradients" | "ig" => Box::new(IntegratedGradients {
            steps: options.steps,
            quadrature: options.quadrature,
            baseline: options.baseline.clone(),
            batch: options.batch,
        }),
        "occlusion" => Box::new(Occlusion {
            window: options.window,
            stride: options.stride,
            fill: options.fill,
            batch: options.batch,
        }),
        "smoothgrad" | "smoothgrad-sq" | "vargrad" => {
            return build(&format!("{name}:saliency"), options);
        }
        _ => bail!("unknown method `{name}`; {}", known()),
    })
}

fn cam_layers(name: &str, options: &MethodOptions) -> Result<Vec<String>> {
    if options.layers.is_empty() {
        bail!("{name} needs a layer with feature maps: --layer NAME (`unitscope info` lists them)");
    }
    Ok(options.layers.clone())
}

fn known() -> String {
    let names: Vec<&str> = METHODS.iter().map(|(n, _)| *n).collect();
    format!("known methods: {}", names.join(", "))
}
