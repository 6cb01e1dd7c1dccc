//! `unitscope` with no subcommand and no terminal (a pipe, CI): the model's layer
//! table and, for the embedded demo model, its predictions on a few held-out demo
//! scenes. On a terminal the same command opens the inspector.

use anyhow::Result;
use candle_core::Tensor;
use unitscope::data::world::{HELD_OUT, World};

use super::outln;

pub fn run(card: Option<&std::path::Path>) -> Result<()> {
    super::info::run(&super::info::Args {
        model: card.map(Into::into),
        ..Default::default()
    })?;
    if card.is_some() {
        return Ok(());
    }
    let model = super::load_model(None)?;
    let world = World::new(0);
    let scenes: Vec<_> = (0..8).map(|i| world.scene(HELD_OUT + i)).collect();
    let batch = scenes
        .iter()
        .map(|s| model.input_spec().to_tensor(&s.image, model.device()))
        .collect::<Result<Vec<_>>>()?;
    let predictions = model.predict(&Tensor::stack(&batch, 0)?, 1)?;
    outln!(
        "\nheld-out demo scenes (`unitscope demo render --start 1099511627776 -o DIR` draws them):"
    );
    for (i, (scene, top)) in scenes.iter().zip(predictions).enumerate() {
        let p = &top[0];
        let mark = if p.index == scene.class { "ok" } else { "MISS" };
        outln!(
            "  scene {i}: {:<9} predicted {:<9} {:>5.1}%  {mark}",
            scene.class_name(),
            p.label,
            p.p * 100.0
        );
    }
    Ok(())
}
