//! `unitscope demo`: the demo concept world.

use std::path::PathBuf;

use anyhow::{Context, Result};
use image::GrayImage;
use unitscope::atomic;
use unitscope::data::world::{Category, Concept, SIZE, World};
use unitscope::jobs;

use super::job::{self, Printer};
use super::outln;

#[derive(clap::Subcommand)]
pub enum Demo {
    /// Write demo images, their concept masks (PNG) and index.json to a folder.
    Render(RenderArgs),
    /// List the concept catalogue by category.
    Concepts,
}

#[derive(Clone, clap::Args)]
pub struct RenderArgs {
    /// How many images.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    count: u64,
    /// World seed: the same seed gives the same images on every machine.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// First scene index (held-out scenes start at 2^40).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Output folder (created if missing).
    #[arg(short, long)]
    out: PathBuf,
}

pub fn run(demo: &Demo) -> Result<()> {
    match demo {
        Demo::Render(args) => render(args),
        Demo::Concepts => {
            for category in Category::ALL {
                outln!("{:<11} {}", category.name(), category.names().join(", "));
            }
            Ok(())
        }
    }
}

fn render(args: &RenderArgs) -> Result<()> {
    let args = args.clone();
    job::run("render", args.count, move |cx, out| {
        render_scenes(&args, (cx, out))
    })
}

/// The body of `demo render`, run as a job: a scene at a time.
fn render_scenes(args: &RenderArgs, (cx, out): (&jobs::Context, &Printer)) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create `{}`", args.out.display()))?;
    anyhow::ensure!(
        args.start.checked_add(args.count).is_some(),
        "--start {} plus --count {} passes the last scene index, 2^64 - 1",
        args.start,
        args.count
    );
    let world = World::new(args.seed);
    let mut entries = Vec::new();
    for i in 0..args.count {
        cx.checkpoint()?;
        cx.progress(i, args.count, format!("scene {i}"));
        let index = args.start + i;
        let scene = world.scene(index);
        let stem = format!("{index:05}");
        let file = format!("{stem}.png");
        save(&scene.image, &args.out, &file)?;
        let mut concepts = Vec::new();
        for concept in scene.concepts() {
            let mask = scene.mask(concept);
            let mask_file = format!("{stem}_{}_{}.png", concept.category.name(), concept.name());
            let img = GrayImage::from_fn(SIZE as u32, SIZE as u32, |x, y| {
                image::Luma([if mask[y as usize * SIZE + x as usize] {
                    255
                } else {
                    0
                }])
            });
            save(&img, &args.out, &mask_file)?;
            concepts.push(concept_json(
                concept,
                &mask_file,
                mask.iter().filter(|&&m| m).count(),
            ));
        }
        entries.push(serde_json::json!({
            "file": file, "index": index, "class": scene.class, "class_name": scene.class_name(),
            "concepts": concepts,
        }));
    }
    let index = serde_json::json!({ "seed": args.seed, "size": SIZE, "images": entries });
    let path = args.out.join("index.json");
    atomic::write(&path, serde_json::to_string_pretty(&index)?.as_bytes())?;
    out.line(&format!(
        "wrote {} images with their concept masks and index.json to {}",
        args.count,
        args.out.display()
    ))
}

fn concept_json(concept: Concept, mask: &str, pixels: usize) -> serde_json::Value {
    serde_json::json!({ "category": concept.category, "name": concept.name(), "mask": mask, "pixels": pixels })
}

fn save<P: image::PixelWithColorType>(
    img: &image::ImageBuffer<P, Vec<P::Subpixel>>,
    dir: &std::path::Path,
    file: &str,
) -> Result<()>
where
    [P::Subpixel]: image::EncodableLayout,
{
    atomic::write_with(&dir.join(file), |out| {
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
        Ok(out.write_all(&png)?)
    })
}
