//! `unitscope info`: the layer table.

use std::path::PathBuf;

use anyhow::Result;

use super::outln;

#[derive(clap::Args, Default)]
pub struct Args {
    /// Model card (TOML). Without one: the embedded demo model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print JSON: {"model", "input", "layers": [{"name", "kind", "shape", "units"}]}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let model = super::load_model(args.model.as_deref())?;
    let layers = model.layers()?;
    if args.json {
        let out = serde_json::json!({ "model": model.name(), "input": model.input_spec(), "layers": layers });
        outln!("{out}");
        return Ok(());
    }
    let [h, w] = model.input_spec().size;
    outln!(
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
    outln!(
        "{:<width$}  {:<14}  {:<16}  {:>6}",
        "layer",
        "kind",
        "shape",
        "units"
    );
    for l in layers {
        let shape = l
            .shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("x");
        outln!(
            "{:<width$}  {:<14}  {:<16}  {:>6}",
            l.name,
            l.kind.to_string(),
            shape,
            l.units
        );
    }
    Ok(())
}
