//! `unitscope predict`: top-5 classes per image.

use std::path::PathBuf;

use anyhow::Result;
use unitscope::data::Source;

use super::job;

#[derive(Clone, clap::Args)]
pub struct Args {
    /// Images (PNG or JPEG), or files a modality plugin opens (`unitscope plugins`).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Model card (TOML). Without one: the embedded demo model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// How many classes to print per image.
    #[arg(long, short = 'k', default_value_t = 5, value_parser = super::count(1..=unitscope::model::card::MAX_CLASSES as u64))]
    top: usize,
    /// Print one JSON object per image: {"image", "top": [{"index", "label", "p"}]}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let source = Source::Files(args.images.clone());
    let model = super::model_for(args.model.as_deref(), &source)?;
    let labels = model.labels().to_vec();
    let args = args.clone();
    let total = args.images.len() as u64;
    let on_demo_model = super::files_on_demo_model(args.model.as_deref(), &source);
    job::run("predict", total, move |cx, out| {
        let entries = source.entries()?;
        for (done, (path, entry)) in args.images.iter().zip(&entries).enumerate() {
            cx.checkpoint()?;
            cx.progress(done as u64, total, path.display().to_string());
            let x = entry
                .load(model.input_spec(), model.device())?
                .tensor
                .unsqueeze(0)?;
            let top = model.predict(&x, args.top)?.remove(0);
            super::check_outputs(top.iter().map(|p| p.p));
            if args.json {
                out.line(&serde_json::json!({ "image": path, "top": top }).to_string())?;
            } else {
                out.line(&path.display().to_string())?;
                for p in &top {
                    out.line(&format!(
                        "  {:>6.2}%  {:>4}  {}",
                        p.p * 100.0,
                        p.index,
                        p.label
                    ))?;
                }
            }
        }
        Ok(())
    })?;
    // After the results, so that an error stays the one line on stderr.
    if on_demo_model {
        super::note_demo_model(&labels);
    }
    Ok(())
}
