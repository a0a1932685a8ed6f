//! The `sluice` command: config-as-code Reverse ETL from the warehouse to the tools teams use.

mod audiences;
mod commands;
mod demo;
mod discovery;
mod output;
mod workspace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sync warehouse models to the tools your teams work in: only what changed, with an
/// outcome for every record.
#[derive(Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
struct Cli {
    /// Project directory (holding sluice.yaml).
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    project: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new project in DIR (default: the current directory).
    Init { dir: Option<PathBuf> },
    /// Check the project files. Projects with audiences or relations also have their declared
    /// columns and joins checked against the sources (skip that with `--offline`).
    Validate {
        /// Do not connect to sources.
        #[arg(long)]
        offline: bool,
    },
    /// Connect to every source and destination and report what works.
    Check,
    /// Show the first rows of a model.
    Preview {
        model: String,
        /// Rows to show.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Dry run: what a sync would send (counts and sample changes). Nothing is sent.
    Plan {
        sync: String,
        /// Sample changes to show per kind.
        #[arg(long, default_value_t = 5)]
        samples: usize,
    },
    /// Run syncs: send what changed since the last run.
    Sync {
        /// Syncs to run.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        syncs: Vec<String>,
        /// Run every sync of the project.
        #[arg(long)]
        all: bool,
        /// Print one JSON object per sync instead of a summary.
        #[arg(long)]
        json: bool,
        /// Keep each request and response (bodies included, credentials left out) for 7 days;
        /// see them with `sluice runs show RUN_ID --requests`.
        #[arg(long)]
        debug_requests: bool,
    },
    /// List recent runs, or show one run's per-record outcomes.
    Runs(commands::RunsArgs),
    /// Audiences: size, sample, breakdown, overlaps and compiled SQL.
    #[command(subcommand)]
    Audiences(audiences::AudiencesCommand),
    /// Inspect destinations.
    #[command(subcommand)]
    Destinations(DestinationsCommand),
    /// Forget a sync's snapshot so the next run sends every record again.
    Reset { sync: String },
    /// Build a demo warehouse from the jaffle_shop data, sync it to a file, change a few
    /// rows and sync again.
    Demo {
        /// Where to write the demo project.
        #[arg(default_value = "sluice-demo")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum DestinationsCommand {
    /// List a destination's objects, their fields and types, the fields that can serve as the
    /// match key, and the modes each object supports. The result is cached for `validate`.
    Describe {
        name: String,
        object: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let project = cli.project;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Init { dir } => commands::init(dir.unwrap_or(project)),
            Command::Validate { offline } => commands::validate(&project, offline).await,
            Command::Check => commands::check(&project).await,
            Command::Preview { model, limit } => commands::preview(&project, &model, limit).await,
            Command::Plan { sync, samples } => commands::plan(&project, &sync, samples).await,
            Command::Sync { syncs, all, json, debug_requests } => {
                commands::sync(&project, &syncs, all, json, debug_requests).await
            }
            Command::Audiences(command) => audiences::run(&project, command).await,
            Command::Runs(args) => commands::runs(&project, args).await,
            Command::Destinations(DestinationsCommand::Describe { name, object, json }) => {
                discovery::describe(&project, &name, object.as_deref(), json).await
            }
            Command::Reset { sync } => commands::reset(&project, &sync).await,
            Command::Demo { dir } => demo::run(&dir).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
