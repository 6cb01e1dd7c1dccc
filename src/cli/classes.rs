//! `unitscope classes`: the model's class names, as `--target` takes them.

use std::path::PathBuf;

use anyhow::Result;
use unitscope::data::labels::normalize;
use unitscope::model::ModelCard;

use super::outln;

#[derive(clap::Args)]
pub struct Args {
    /// Only the classes whose name contains this (case, spacing and `_` aside).
    pattern: Option<String>,
    /// Model card (TOML). Without one: the embedded demo model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// One JSON object per class: {"index", "label"}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    // The card's names alone: no weights are read.
    let labels = match &args.model {
        Some(card) => ModelCard::load(card)?.class_names()?,
        None => unitscope::model::demo::labels(),
    };
    // Compared as --target compares names: case, spacing and `_` aside.
    let pattern = args.pattern.as_deref().map(normalize);
    for (index, label) in labels.iter().enumerate() {
        if pattern
            .as_ref()
            .is_some_and(|p| !normalize(label).contains(p))
        {
            continue;
        }
        if args.json {
            outln!("{}", serde_json::json!({ "index": index, "label": label }));
        } else {
            outln!("{index:>5}  {label}");
        }
    }
    Ok(())
}
