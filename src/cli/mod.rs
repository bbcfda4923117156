//! The command line: argument parsing, logging set-up, and one module per
//! subcommand. `main` maps the result of [`run`] to an exit code.

mod allow;
mod args;
mod bottle_name;
mod bring_home;
mod cleanup;
mod completions;
mod confirm;
mod doctor;
mod egress;
mod error;
mod init;
mod list;
mod logging;
mod prewarm;
mod proxy_config;
mod schema;
mod signals;
mod start;

use std::process::ExitCode;

use clap::Parser;

pub use args::{Cli, Command};
pub use confirm::confirm;
pub use error::Error;

use crate::manifest::{self, Agent, Manifest};
use crate::printer::Printer;
use crate::term::RealTerminal;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(error::EXIT_USAGE));
        }
    };
    logging::init(cli.verbose);
    let printer = Printer::stderr(cli.quiet);
    match run(cli, &printer) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            printer.error(&err);
            ExitCode::from(err.code())
        }
    }
}

/// Runs one command and returns the process exit code.
pub fn run(cli: Cli, printer: &Printer) -> Result<u8, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let mut term = RealTerminal;
    let manifest = cli.manifest.as_deref();
    runtime.block_on(async {
        match cli.command {
            Command::Start(args) => start::run(manifest, args, &mut term, printer).await,
            Command::Prewarm(args) => prewarm::run(manifest, args, printer).await,
            Command::List(args) => list::run(manifest, args, printer).await,
            Command::Cleanup(args) => cleanup::run(args, &mut term, printer).await,
            Command::ProxyConfig(args) => proxy_config::run(manifest, args),
            Command::Egress(args) => egress::run(args, printer).await,
            Command::Allow(args) => allow::run(args, printer).await,
            Command::Init(args) => init::run(args, printer),
            Command::Doctor(args) => doctor::run(manifest, args, printer).await,
            Command::Completions(args) => completions::run(args),
            Command::Schema => schema::run(),
        }
    })
}

/// Picks the agent named on the command line, or the only one.
pub(crate) fn select_agent<'m>(
    manifest: &'m Manifest,
    requested: Option<&str>,
    command: &'static str,
) -> Result<(&'m str, &'m Agent), Error> {
    let known = || {
        manifest
            .agents
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    match requested {
        Some(name) => manifest
            .agents
            .get_key_value(name)
            .map(|(k, a)| (k.as_str(), a))
            .ok_or_else(|| Error::UnknownAgent {
                name: name.to_owned(),
                known: known(),
                source_label: manifest.source.to_string(),
            }),
        None => {
            let mut agents = manifest.agents.iter();
            match (agents.next(), agents.next()) {
                (Some((name, agent)), None) => Ok((name.as_str(), agent)),
                _ => Err(Error::AgentRequired {
                    command,
                    count: manifest.agents.len(),
                    known: known(),
                    source_label: manifest.source.to_string(),
                }),
            }
        }
    }
}

/// Prints what is about to be done; `--quiet` hides it only when nobody is
/// asked about it. Returns whether `--dry-run` ends the command here.
pub(crate) fn show_plan(
    printer: &Printer,
    plan: &impl std::fmt::Display,
    dry_run: bool,
    yes: bool,
) -> bool {
    if dry_run || !yes {
        printer.always(plan);
    } else {
        printer.block(plan);
    }
    dry_run
}

pub(crate) fn load_manifest(explicit: Option<&std::path::Path>) -> Result<Manifest, Error> {
    let manifest = manifest::load(explicit)?;
    tracing::debug!(source = %manifest.source, "manifest loaded");
    Ok(manifest)
}
