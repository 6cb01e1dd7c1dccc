//! The `unitscope` command line.

mod cli;

// Keeps freed activation-sized blocks for the next pass (see the module).
#[global_allocator]
static ALLOCATOR: cli::allocator::Recycling = cli::allocator::Recycling;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect what a neural network has learned: layers, units, gradients.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's layer table: name, kind, output shape, units.
    Info(cli::info::Args),
    /// Print the top-5 classes of each image.
    Predict(cli::predict::Args),
    /// The demo concept world: render images and masks, list concepts.
    #[command(subcommand)]
    Demo(cli::demo::Demo),
    /// Train the demo model.
    #[command(subcommand)]
    Train(cli::train::Train),
    /// Attribution maps of images: PNG overlays, a grid, JSON, raw arrays.
    Explain(Box<cli::explain::Args>),
    /// How far to trust each method: deletion/insertion, pointing game, randomization.
    Evaluate(Box<cli::evaluate::Args>),
    /// Time the engine and the attribution methods.
    #[command(subcommand)]
    Bench(cli::bench::Bench),
}

fn main() -> ExitCode {
    cli::allocator::use_huge_pages();
    cli::allocator::keep_freed_blocks();
    cli::threads::sleep_idle_candle_workers();
    let cli = Cli::parse();
    let result = match cli.command {
        None => cli::overview::run(),
        Some(Command::Info(args)) => cli::info::run(&args),
        Some(Command::Predict(args)) => cli::predict::run(&args),
        Some(Command::Explain(args)) => cli::explain::run(&args),
        Some(Command::Evaluate(args)) => cli::evaluate::run(&args),
        Some(Command::Bench(bench)) => cli::bench::run(&bench),
        Some(Command::Demo(demo)) => cli::demo::run(&demo),
        Some(Command::Train(train)) => cli::train::run(&train),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the causes' own formatting: scripts grep stderr.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
