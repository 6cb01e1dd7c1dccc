//! A map of uniform noise: what a method that knows nothing about the model scores,
//! the floor every trust metric's numbers should be read against (the random
//! baseline of Adebayo et al. 2018 and Hooker et al. 2019). Seeded per input, so a
//! run is reproducible at any batch size.

use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::descriptor::{Build, Descriptor};
use super::method::{Attribution, Method, Passes};
use super::target::Target;
use crate::model::Model;

/// The random baseline.
pub const DESCRIPTORS: &[Descriptor] = &[Descriptor {
    name: "random",
    aliases: &[],
    about: "uniform noise, the floor a trust metric's numbers are read against",
    citation: "Adebayo et al. 2018",
    params: &[],
    build: Build::Method(&|_| Ok(Box::new(Random))),
}];

/// Uniform noise in [0, 1) per input element, input `i` drawing from stream `i`.
pub struct Random;

impl Method for Random {
    fn name(&self) -> String {
        "random".into()
    }

    fn passes(&self, _size: (usize, usize)) -> Passes {
        Passes::default()
    }

    fn attribute(&self, _: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Attribution> {
        anyhow::ensure!(targets.len() == inputs.dim(0)?, "one target per input");
        let per_input = inputs.elem_count() / inputs.dim(0)?.max(1);
        let values: Vec<f32> = (0..inputs.dim(0)?)
            .flat_map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(0);
                rng.set_stream(i as u64);
                (0..per_input).map(move |_| rng.random::<f32>())
            })
            .collect();
        let map = Tensor::from_vec(values, inputs.dims(), &Device::Cpu)?;
        Ok(Attribution::Input(map.to_device(inputs.device())?))
    }
}
