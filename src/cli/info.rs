//! `unitscope info`: the layer table.

use std::path::PathBuf;

use anyhow::Result;
use unitscope::data::InputSpec;
use unitscope::model::{ArchOptions, Architecture, Model, Weights};

#[derive(clap::Args, Default)]
pub struct Args {
    /// Model card (TOML). Without one: the demo architecture, untrained.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print JSON: {"model", "input", "layers": [{"name", "kind", "shape", "units"}]}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let model = match &args.model {
        Some(card) => super::load_model(card)?,
        None => demo_architecture()?,
    };
    let layers = model.layers()?;
    if args.json {
        let out = serde_json::json!({ "model": model.name(), "input": model.input_spec(), "layers": layers });
        println!("{out}");
        return Ok(());
    }
    let [h, w] = model.input_spec().size;
    println!(
        "{} — {} layers at 3x{h}x{w}, {} classes",
        model.name(),
        layers.len(),
        model.labels().len()
    );
    let width = layers
        .iter()
        .map(|l| l.name.len())
        .max()
        .unwrap_or(0)
        .max(5);
    println!(
        "{:<width$}  {:<14}  {:<16}  {:>6}",
        "layer", "kind", "shape", "units"
    );
    for l in layers {
        let shape = l
            .shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("x");
        println!(
            "{:<width$}  {:<14}  {:<16}  {:>6}",
            l.name,
            l.kind.to_string(),
            shape,
            l.units
        );
    }
    if args.model.is_none() {
        println!(
            "\n(no --model given: this is the demo plain-CNN architecture with untrained weights;"
        );
        println!(" pass --model CARD.toml for a real model)");
    }
    Ok(())
}

/// The demo world's architecture with closed-form weights, until its trained weights ship.
fn demo_architecture() -> Result<Model> {
    let input = InputSpec {
        size: [64, 64],
        ..InputSpec::default()
    };
    let labels = unitscope::data::labels::numbered(10);
    Model::new(
        "demo plain CNN (untrained)".into(),
        Architecture::PlainCnn,
        &ArchOptions::default(),
        &Weights::synthetic(&super::device()?),
        input,
        labels,
    )
}
