//! `unitscope explain`: attribution maps of images, as PNG overlays, a comparison
//! grid, a JSON summary, optional raw arrays, and optionally in the terminal.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Tensor;
use image::RgbImage;
use serde_json::json;
use unitscope::atomic;
use unitscope::attribution::{
    self, Attribution, ChannelReduction, Notes, Params, TargetSpec, registry,
};
use unitscope::data::{Sample, Source, text};
use unitscope::jobs;
use unitscope::metrics::{DeletionInsertion, MapScores};
use unitscope::model::Model;
use unitscope::render::html::{Painted, painted_page};
use unitscope::render::{
    self, Backdrop, Cells, Colormap, ColourBar, Panel, Scale, Style, Terminal, file_part,
};

use super::job::{self, Printer};
use super::methods::NamedMethod;
use super::outln;

#[derive(Clone, clap::Args)]
pub struct Args {
    /// Images (PNG or JPEG), or files a modality plugin opens (`unitscope plugins`).
    #[arg(required_unless_present_any = ["demo", "list_methods"])]
    images: Vec<PathBuf>,
    /// Model card (TOML). Without one: the embedded demo model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Explain N held-out scenes of the demo world instead of image files.
    #[arg(long, value_name = "N", conflicts_with = "images", value_parser = super::count(1..=1_000_000))]
    demo: Option<usize>,
    /// What to explain, comma-separated or repeated for several: `predicted`, a class
    /// index or name (any synonym, any case; `unitscope classes` lists them), or a
    /// unit LAYER:CHANNEL[:Y:X].
    #[arg(long, short, default_value = "predicted")]
    target: Vec<String>,
    /// Output folder.
    #[arg(long, short, default_value = "explain")]
    output: PathBuf,
    /// Also print the heatmaps in the terminal (kitty or iTerm2 graphics, else sixel,
    /// else half blocks).
    #[arg(long)]
    show: bool,
    /// Also write every raw map as float32 .npy.
    #[arg(long)]
    save_raw: bool,
    /// Also measure every map into summary.json: RISE's deletion and insertion areas
    /// for the predicted class, and on demo scenes the pointing game and the share of
    /// the mass on the object (`unitscope evaluate` explains them).
    #[arg(long)]
    metrics: bool,
    /// Draw the superpixels of LIME's and KernelSHAP's maps over their heatmaps
    /// (their regions are written as NAME.segments.png either way).
    #[arg(long)]
    outline: bool,
    /// List the methods and exit.
    #[arg(long)]
    list_methods: bool,
    /// Replace an earlier run in the output folder (the files its summary.json lists).
    #[arg(long)]
    force: bool,
    /// How gradient-type maps lose their color channels.
    #[arg(long, value_parser = super::choice::<ChannelReduction>(), default_value_t)]
    reduction: ChannelReduction,
    /// Heatmap colors (signed `--reduction sum` maps use red-blue).
    #[arg(long, value_parser = super::choice::<Colormap>(), default_value_t)]
    colormap: Colormap,
    /// Whether a method's maps for several targets share one scale.
    #[arg(long, value_parser = super::choice::<Scale>(), default_value_t)]
    scale: Scale,
    /// Heatmap opacity over the image, 0 to 1.
    #[arg(long, default_value_t = 0.5, value_parser = super::real(0.0, 1.0), allow_negative_numbers = true)]
    alpha: f64,
    #[command(flatten)]
    methods: super::methods::MethodArgs,
}

/// How often a long run's `summary.json` is rewritten with what it has done.
const SUMMARY_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// What `explain` runs with, once the options are read.
struct Run<'a> {
    model: &'a Model,
    methods: &'a [NamedMethod],
    params: &'a Params,
    /// Each target with the text that asked for it (in file names).
    targets: &'a [(String, TargetSpec)],
    /// Where `--show` prints, if asked.
    terminal: Option<Terminal>,
}

pub fn run(args: &Args) -> Result<()> {
    if args.list_methods {
        for line in registry::listing() {
            outln!("{line}");
        }
        return Ok(());
    }
    let model = super::model_for(args.model.as_deref(), &args.source())?;
    args.source().check(model.input_spec())?;
    let methods = args.methods.build(&model)?;
    let params = args.methods.params(&model);
    let targets: Vec<(String, TargetSpec)> = args
        .target
        .iter()
        .map(|t| TargetSpec::parse_list(t, model.labels()))
        .collect::<Result<Vec<_>>>()?
        .concat();
    // Two maps may not share a file name: one would overwrite the other.
    unique("method", methods.iter().map(|(k, _)| k.as_str()))?;
    unique("target", targets.iter().map(|(t, _)| t.as_str()))?;
    anyhow::ensure!(!targets.is_empty(), "--target names nothing to explain");
    if args.force && args.demo.is_none() {
        // Replacing an earlier run needs a run to replace it with: read the files
        // before anything is deleted.
        for entry in args.source().entries()? {
            entry.load(model.input_spec(), model.device())?;
        }
    }
    prepare_output(&args.output, args.force)?;
    // Asked here, before the job: the answer to a terminal query is read from the
    // terminal, which a worker must not race the progress bar for.
    let terminal = args.show.then(Terminal::detect).transpose()?;
    let total = args.source().len()? as u64;
    let args = args.clone();
    let photos_on_demo_model = super::files_on_demo_model(args.model.as_deref(), &args.source());
    let model_labels = model.labels().to_vec();
    job::run("explain", total, move |cx, out| {
        let run = Run {
            model: &model,
            methods: &methods,
            params: &params,
            targets: &targets,
            terminal,
        };
        explain(&args, &run, (cx, out))
    })?;
    // After the results, so that an error stays the one line on stderr.
    if photos_on_demo_model {
        super::note_demo_model(&model_labels);
    }
    Ok(())
}

/// The body of `explain`, run as a job: every input in turn, reporting progress and
/// stopping at a cancellation between inputs or inside a method's batches. However
/// the run ends, `summary.json` lists what it wrote (every file of which is whole).
fn explain(args: &Args, run: &Run, job: (&jobs::Context, &Printer)) -> Result<()> {
    let path = args.output.join("summary.json");
    let mut summary = Vec::new();
    let outcome = explain_each(args, run, job, &mut summary);
    if outcome.is_ok() || !summary.is_empty() {
        atomic::write(&path, serde_json::to_string_pretty(&summary)?.as_bytes())?;
    }
    outcome
}

/// [`explain`]'s inputs, their entries pushed onto `summary`, which is rewritten
/// every few seconds so that even a killed run leaves one close to what it wrote.
fn explain_each(
    args: &Args,
    run: &Run,
    (cx, out): (&jobs::Context, &Printer),
    summary: &mut Vec<serde_json::Value>,
) -> Result<()> {
    let mut saved = Instant::now();
    let Run {
        model,
        methods,
        params,
        targets,
        terminal,
    } = run;
    let total = args.demo.unwrap_or(args.images.len()) as u64;
    let (spec, device) = (model.input_spec(), model.device());
    for (done, input) in args.source().samples(spec, device)?.enumerate() {
        cx.checkpoint()?;
        let input = &input?;
        cx.progress(done as u64, total, &input.name);
        let x = input.tensor.unsqueeze(0)?;
        let top = model.predict(&x, 1)?.remove(0).remove(0);
        super::check_outputs([top.p]);
        let resolved: Vec<_> = targets
            .iter()
            .map(|(_, t)| t.resolve(&[top.index]))
            .collect();
        // A text model's input read back as characters, for the page of maps over them.
        let text = match model.architecture().is_sequence() {
            true => Some(text::characters(model.labels(), &input.tensor)?),
            false => None,
        };
        let mut over_text = Vec::new();
        let original = input.original()?;
        let on = Backdrop::of(input, &original, model.input_spec());
        let input_size = on.input;
        let mut panels = vec![Panel {
            image: panel_image(&render::framed(input, original.clone())),
            caption: vec![
                input.name.clone(),
                format!("{} {:.0}%", top.label, top.p * 100.0),
            ],
        }];
        let mut explained = Vec::new();
        for (key, method) in methods.iter() {
            let start = Instant::now();
            let noted = attribution::attribute_noted(method.as_ref(), model, &x, &resolved)?;
            let (results, notes): (Vec<_>, Vec<_>) = noted.into_iter().unzip();
            // The targets ran as one batch: each map's share of its time.
            let batch_ms = start.elapsed().as_secs_f64() * 1e3;
            let ms = batch_ms / targets.len() as f64;
            let heats = render::draw_all_on(&results, on, args.style())?;
            let each = targets
                .iter()
                .zip(&resolved)
                .zip(results)
                .zip(heats)
                .zip(notes);
            for (((((spec, _), resolved), maps), heat), notes) in each {
                // One input: one map, and its notes.
                let notes = notes.into_iter().next().unwrap_or_default();
                let stem = format!("{}.{}.{}", input.name, file_part(key), file_part(spec));
                let segments = match &notes.segmentation {
                    Some(regions) => {
                        let path = args.output.join(format!("{stem}.segments.png"));
                        render::save_segments(regions, &path)?;
                        Some(path)
                    }
                    None => None,
                };
                let heat = match (&notes.segmentation, args.outline) {
                    (Some(regions), true) => render::outline(&heat, regions, [255, 255, 255]),
                    _ => heat,
                };
                let heat = render::framed(input, heat);
                let warning = blank_cam(&maps)?.map(|layer| {
                    let target = describe(&resolved[0], model);
                    format!(
                        "{} on `{layer}` is all zero for {target}: no channel there raises the \
                         target (a unit below `{layer}` does not depend on it; try another --layer)",
                        method.name()
                    )
                });
                if let Some(w) = &warning {
                    eprintln!("warning: {}: {w}", input.name);
                }
                let png = args.output.join(format!("{stem}.png"));
                render::save_png(&heat, &png)?;
                if let Some(terminal) = terminal {
                    let target = describe(&resolved[0], model);
                    let title = format!("{} {} ({target})", input.name, method.name());
                    out.line(&title)?;
                    out.suspend(|| terminal.print(&heat, SHOW_AREA))?;
                }
                let raw = if args.save_raw {
                    save_raw(
                        &args.output,
                        &stem,
                        &maps,
                        model.input_spec().size,
                        args.reduction,
                    )?
                } else {
                    Vec::new()
                };
                let metrics = match args.metrics {
                    true => Some(measure(model, input, &maps, top.index)?),
                    false => None,
                };
                if text.is_some() {
                    let values = maps
                        .display_raw((1, model.input_spec().size[1]), ChannelReduction::Sum)?
                        .flatten_all()?
                        .to_vec1::<f32>()?;
                    let target = describe(&resolved[0], model);
                    over_text.push((format!("{} for {target}", method.name()), values));
                }
                panels.push(Panel {
                    image: panel_image(&heat),
                    caption: caption(key, &describe(&resolved[0], model), &maps, &notes)?,
                });
                explained.push(json!({
                    "metrics": metrics,
                    "warning": warning,
                    "method": method.name(),
                    "parameters": registry::values(key, params)?,
                    "passes": method.passes(input_size),
                    "target": describe(&resolved[0], model),
                    "ms": ms,
                    "batch_ms": batch_ms,
                    "png": png,
                    "raw": raw,
                    "r2": notes.r2,
                    "conservation": notes.conservation,
                    "segments": segments,
                }));
            }
        }
        if let Some(chars) = &text {
            let page = args.output.join(format!("{}.text.html", input.name));
            write_text_page(&page, &input.name, chars, &over_text)?;
            out.line(&format!(
                "{}: maps over its characters -> {}",
                input.name,
                page.display()
            ))?;
        }
        let grid = args.output.join(format!("{}.grid.png", input.name));
        let grid_image = render::grid(&panels, panels.len())?;
        // A modality that draws its maps itself has its own colours, not ours.
        let bars = match on.painter {
            Some(_) => Vec::new(),
            None => args.colour_bars(),
        };
        render::save_png(&render::with_colour_bars(&grid_image, &bars), &grid)?;
        out.line(&format!(
            "{}: {} ({:.1}%) -> {}",
            input.name,
            top.label,
            top.p * 100.0,
            grid.display()
        ))?;
        summary.push(json!({
            "image": input.name,
            "path": input.path,
            "prediction": top,
            "grid": grid,
            "maps": explained,
        }));
        if saved.elapsed() > SUMMARY_EVERY {
            let path = args.output.join("summary.json");
            atomic::write(&path, serde_json::to_string_pretty(&summary)?.as_bytes())?;
            saved = Instant::now();
        }
    }
    Ok(())
}

impl Args {
    /// Where the inputs come from.
    fn source(&self) -> Source {
        match self.demo {
            Some(n) => Source::Demo(n),
            None => Source::Files(self.images.clone()),
        }
    }

    /// The colour bars under a grid: the colormap of unsigned maps, and red-blue
    /// when `--reduction sum` keeps the signs.
    fn colour_bars(&self) -> Vec<ColourBar> {
        let mut bars = vec![ColourBar {
            colormap: self.colormap,
            low: "0",
            high: "max",
            caption: match self.scale {
                Scale::PerMap => {
                    "each panel scaled to its own range (its raw range is in its caption)"
                }
                Scale::Shared => {
                    "each method's panels on one scale across targets (raw ranges in captions)"
                }
            }
            .into(),
        }];
        if self.reduction == ChannelReduction::Sum {
            bars.push(ColourBar {
                colormap: Colormap::RedBlue,
                low: "-max",
                high: "+max",
                caption: "signed maps: negative blue, zero white, positive red".into(),
            });
        }
        bars
    }

    /// How maps are drawn, from the options.
    fn style(&self) -> Style {
        Style {
            reduction: self.reduction,
            colormap: self.colormap,
            alpha: self.alpha as f32,
            scale: self.scale,
        }
    }
}

/// The first layer whose CAM is zero everywhere, if any: the normalized display of
/// such a map would be blank with no hint why.
fn blank_cam(maps: &Attribution) -> Result<Option<String>> {
    let Attribution::Layers(layers) = maps else {
        return Ok(None);
    };
    for (layer, map) in layers {
        let peak = map.abs()?.max_all()?.to_dtype(candle_core::DType::F64)?;
        if peak.to_scalar::<f64>()? == 0.0 {
            return Ok(Some(layer.clone()));
        }
    }
    Ok(None)
}

/// A target as people read it: a class with its label, or a unit.
fn describe(target: &attribution::Target, model: &Model) -> String {
    match target {
        attribution::Target::Class(c) => format!("class {c} ({})", model.labels()[*c]),
        unit => unit.to_string(),
    }
}

/// Writes the raw maps of the first input as float32 .npy: an input map as `C x H x
/// W`; CAM maps per layer at layer resolution, and the displayed map at the
/// model's input size (`[H, W]`).
fn save_raw(
    folder: &Path,
    stem: &str,
    maps: &Attribution,
    [h, w]: [usize; 2],
    reduction: ChannelReduction,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut write = |suffix: &str, t: &Tensor| -> Result<()> {
        let path = folder.join(format!("{stem}.{}.npy", file_part(suffix)));
        render::save_npy(&t.squeeze(0)?, &path)?;
        written.push(path);
        Ok(())
    };
    match maps {
        Attribution::Input(map) => write("raw", map)?,
        Attribution::Layers(layers) => {
            for (layer, map) in layers {
                write(&format!("raw.{layer}"), map)?;
            }
            write("display", &maps.display((h, w), reduction)?)?;
        }
    }
    Ok(written)
}

/// The maps of a text input over its characters, one block each, each on its own
/// signed scale (summed over the one-hot channels: a character's own share).
fn write_text_page(
    path: &Path,
    name: &str,
    chars: &[Option<char>],
    maps: &[(String, Vec<f32>)],
) -> Result<()> {
    let blocks: Vec<Painted> = maps
        .iter()
        .map(|(caption, values)| Painted {
            caption: caption.clone(),
            chars,
            values,
            scale: values.iter().map(|v| v.abs()).fold(0.0, f32::max),
        })
        .collect();
    let note = "Each character's share of the prediction of the character after the text: red \
                raised it, blue lowered it.";
    let page = painted_page(&format!("{name}: attributions"), note, &blocks);
    atomic::write(path, page.as_bytes())
}

/// An error if two of `names` make the same file name part.
fn unique<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    for name in names {
        if let Some(earlier) = seen.insert(file_part(name), name) {
            anyhow::bail!(
                "the {what}s `{earlier}` and `{name}` would write the same files; give each once"
            );
        }
    }
    Ok(())
}

/// Makes `dir` ready for one run: created if missing; an earlier finished run in it
/// refused, or with `force` removed (the files its `summary.json` lists, nothing
/// else), so that a folder never mixes two runs' maps. Files that are no run's are
/// never touched: a folder holding them but no `summary.json` is refused.
fn prepare_output(dir: &Path, force: bool) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let occupied = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read `{}`", dir.display()))?
        .next()
        .is_some();
    if !occupied {
        return Ok(());
    }
    let summary = dir.join("summary.json");
    anyhow::ensure!(
        summary.is_file(),
        "`{}` holds files that are not a finished explain run; give an empty or new -o",
        dir.display()
    );
    anyhow::ensure!(
        force,
        "`{}` holds an earlier run (summary.json and its maps); give --force to replace it, \
         or another -o",
        dir.display()
    );
    let text = std::fs::read_to_string(&summary)
        .with_context(|| format!("cannot read `{}`", summary.display()))?;
    let earlier: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not an explain summary", summary.display()))?;
    let mut listed = Vec::new();
    for image in earlier.as_array().into_iter().flatten() {
        listed.extend(image["grid"].as_str());
        for map in image["maps"].as_array().into_iter().flatten() {
            listed.extend(map["png"].as_str());
            listed.extend(map["segments"].as_str());
            listed.extend(
                map["raw"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_str()),
            );
        }
    }
    for file in listed {
        // Only files of the folder itself: a summary is no licence to delete elsewhere.
        let Some(name) = Path::new(file).file_name() else {
            continue;
        };
        match std::fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e)
                    .with_context(|| format!("cannot remove `{file}` of the earlier run"));
            }
            _ => {}
        }
    }
    // Debris of a run killed mid-write (a second Ctrl-C), never a whole file.
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".unitscope-") && name.ends_with(".part") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    std::fs::remove_file(&summary).with_context(|| format!("cannot remove `{}`", summary.display()))
}

/// The longest side of a grid panel: a photo's own resolution is kept in its map's
/// PNG, but ten 4000 px panels side by side would be a grid no one can open.
const MAX_PANEL_SIDE: u32 = 512;

/// `img` as a grid panel: as it is, or shrunk to [`MAX_PANEL_SIDE`].
fn panel_image(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    let longest = w.max(h);
    if longest <= MAX_PANEL_SIDE {
        return img.clone();
    }
    let scale = MAX_PANEL_SIDE as f64 / longest as f64;
    let size = (
        (w as f64 * scale).round().max(1.0),
        (h as f64 * scale).round().max(1.0),
    );
    image::imageops::resize(
        img,
        size.0 as u32,
        size.1 as u32,
        image::imageops::FilterType::Triangle,
    )
}

/// The cells `--show` prints each heatmap into.
const SHOW_AREA: Cells = Cells {
    columns: 32,
    rows: 32,
};

/// A map's caption in the grid: the method as asked for, the target, and the
/// layer(s) a CAM was taken at (input maps are at the input).
fn caption(method: &str, target: &str, maps: &Attribution, notes: &Notes) -> Result<Vec<String>> {
    let at = match maps {
        Attribution::Input(_) => "at the input".to_owned(),
        Attribution::Layers(layers) => {
            let names: Vec<&str> = layers.iter().map(|(name, _)| name.as_str()).collect();
            format!("layer {}", names.join(","))
        }
    };
    // A picture's colors no longer show its values' size (each panel is scaled to
    // its own range, or a method's to one shared range): say what the values were.
    let (lo, hi) = maps.raw_range()?;
    let range = format!("raw {lo:.2e}..{hi:.2e}");
    let mut lines = vec![method.to_owned(), target.to_owned(), at, range];
    // What the method says of its own map: how well LIME's surrogate fits, how much
    // of the target's value LRP's relevance kept.
    lines.extend(notes.r2.map(|r2| format!("fit R^2 {r2:.2}")));
    lines.extend(
        notes
            .conservation
            .map(|k| format!("sums to {:.0}% of target", k * 100.0)),
    );
    Ok(lines)
}

/// The trust scores of one map of `input`, for the probability of `class`.
fn measure(model: &Model, input: &Sample, maps: &Attribution, class: usize) -> Result<MapScores> {
    let (_, h, w) = input.tensor.dims3()?;
    let values = maps
        .display((h, w), ChannelReduction::MaxAbs)?
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?;
    let games = DeletionInsertion::default();
    let pair = (&input.tensor, values.as_slice());
    MapScores::measure(model, &games, pair, class, input.mask.as_deref())
}
