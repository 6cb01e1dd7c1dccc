//! The `unitscope` command line.

mod cli;
mod tui;

// Keeps freed activation-sized blocks for the next pass (see the module).
#[global_allocator]
static ALLOCATOR: cli::allocator::Recycling = cli::allocator::Recycling;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect what a neural network has learned: layers, units, gradients.
#[derive(Parser)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no subcommand: the inspector (the TUI) on a terminal, the overview of
    /// the model into a pipe.
    #[command(flatten)]
    inspect: tui::Options,
    /// A plugin library (or a folder of them) to load besides those found beside
    /// the binary and in $XDG_DATA_HOME/unitscope/plugins; repeatable.
    #[arg(long, global = true, value_name = "PATH")]
    #[allow(dead_code)] // read before clap runs, by `plugin_paths`
    plugin: Vec<std::path::PathBuf>,
    /// Where the engine runs: cpu, cuda, cuda:N (a build with `--features cuda`:
    /// scripts/build-cuda.sh), or auto (the first GPU if there is one, else the CPU).
    /// The inspector also reads `device` from its config.
    #[arg(long, global = true, value_name = "DEVICE")]
    device: Option<unitscope::model::DeviceChoice>,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's layer table: name, kind, output shape, units.
    Info(cli::info::Args),
    /// Print the top-5 classes of each image.
    Predict(cli::predict::Args),
    /// List the model's class names (what --target takes), optionally matching a pattern.
    Classes(cli::classes::Args),
    /// The demo concept world: render images and masks, list concepts.
    #[command(subcommand)]
    Demo(cli::demo::Demo),
    /// Train the demo model, or a modality plugin's model on its world.
    Train(cli::train::Train),
    /// Attribution maps of images: PNG overlays, a grid, JSON, raw arrays.
    Explain(Box<cli::explain::Args>),
    /// How far to trust each method: deletion/insertion, pointing game, randomization.
    Evaluate(Box<cli::evaluate::Args>),
    /// What excites each unit, found in data: top-k inputs, receptive-field crops, JSON.
    Topk(Box<cli::topk::Args>),
    /// What a unit looks for, made by optimization: feature visualization PNGs and curves.
    Visualize(Box<cli::visualize::Args>),
    /// Questions about a layer's units as a whole: which follow a world's tracks.
    #[command(subcommand)]
    Units(cli::units::Units),
    /// Which concept each unit detects (Network Dissection): tally.csv and JSON per layer.
    Dissect(Box<cli::dissect::Command>),
    /// Time the engine and the attribution methods.
    #[command(subcommand)]
    Bench(cli::bench::Bench),
    /// List the plugins found: name, kind, version, ABI and status.
    Plugins(cli::plugins::Args),
}

fn main() -> ExitCode {
    cli::allocator::use_huge_pages();
    cli::allocator::keep_freed_blocks();
    cli::threads::sleep_idle_candle_workers();
    unitscope::model::device::keep_float32();
    // Before the command line is read: a method plugin's parameters are options.
    unitscope::plugin::load(&plugin_paths(std::env::args_os()), &option_names());
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            // --help and --version; a closed pipe cuts them short quietly.
            return match e.print() {
                Err(io) if io.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("error: cannot write to standard output: {io}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::from(e.exit_code() as u8),
            };
        }
        Err(e) => {
            // clap's first paragraph says what is wrong; the usage and tip after it
            // would break the one-line contract of every other error.
            let text = e.to_string();
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!("{} (see --help)", first.join(" "));
            return ExitCode::from(2);
        }
    };
    // `plugins` lists them; the inspector shows them as notices.
    if !matches!(cli.command, None | Some(Command::Plugins(_))) {
        for problem in unitscope::plugin::problems() {
            eprintln!("warning: {problem}");
        }
    }
    if let Some(device) = cli.device {
        cli::choose_device(device);
    }
    let result = match cli.command {
        None if is_interactive() => tui::run(&cli.inspect, cli.device),
        None => cli::overview::run(cli.inspect.model.as_deref()),
        Some(Command::Info(args)) => cli::info::run(&args),
        Some(Command::Predict(args)) => cli::predict::run(&args),
        Some(Command::Classes(args)) => cli::classes::run(&args),
        Some(Command::Explain(args)) => cli::explain::run(&args),
        Some(Command::Evaluate(args)) => cli::evaluate::run(&args),
        Some(Command::Topk(args)) => cli::topk::run(&args),
        Some(Command::Visualize(args)) => cli::visualize::run(&args),
        Some(Command::Dissect(args)) => cli::dissect::run(&args),
        Some(Command::Units(command)) => cli::units::run(&command),
        Some(Command::Bench(bench)) => cli::bench::run(&bench),
        Some(Command::Demo(demo)) => cli::demo::run(&demo),
        Some(Command::Train(train)) => cli::train::run(&train),
        Some(Command::Plugins(args)) => cli::plugins::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped reading (`| head`) is not a failure: end quietly, as
        // ripgrep does.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.is::<cli::job::Interrupted>() => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            // One line, whatever the causes' own formatting: scripts grep stderr.
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The paths given to `--plugin`, read before clap reads the rest (which needs
/// the plugins' options).
fn plugin_paths(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    let mut args = args.skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--plugin" {
            paths.extend(args.next().map(Into::into));
        } else if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--plugin=")) {
            paths.push(path.into());
        }
    }
    paths
}

/// Every long option of every subcommand that is not a method parameter: names a
/// plugin's parameter may not take.
fn option_names() -> Vec<String> {
    use clap::CommandFactory;
    let shared: Vec<&str> = unitscope::attribution::registry::parameters()
        .iter()
        .map(|p| p.name)
        .collect();
    let cli = Cli::command();
    let mut names: Vec<String> = std::iter::once(&cli)
        .chain(cli.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .filter_map(|a| a.get_long())
        .chain(["help", "version"])
        .filter(|n| !shared.contains(n))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether a person is at the terminal: standard input and output both one.
fn is_interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, as `{:#}` joins them, without the backtraces
/// Candle appends to its errors when `RUST_BACKTRACE` is set.
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|cause| match cause.downcast_ref::<candle_core::Error>() {
            Some(candle_core::Error::WithBacktrace { inner, .. }) => inner.to_string(),
            _ => cause.to_string(),
        })
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}
