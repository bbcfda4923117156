//! The clap-derive argument structs and the environment table of `--help`.
//! Each subcommand's module takes its own struct; nothing here touches the
//! manifest or the daemon.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::backend::{AnyBackend, BACKEND_ENV, DEFAULT_BACKEND};
use crate::core::env::{OAUTH_TOKEN_CONTAINER_VAR, OAUTH_TOKEN_HOST_VAR};
use crate::manifest::{MANIFEST_ENV_VAR as MANIFEST_ENV, MANIFEST_FILE_NAME as MANIFEST_FILE};

/// The manifest lookup and every environment variable, each default taken
/// from where it is defined.
fn after_help() -> String {
    let mut rows: Vec<(&str, String)> = vec![
        (MANIFEST_ENV, "manifest path (below --manifest)".to_owned()),
        (
            BACKEND_ENV,
            format!("backend to use (default: {DEFAULT_BACKEND})"),
        ),
        (
            OAUTH_TOKEN_HOST_VAR,
            format!("forwarded into the bottle as {OAUTH_TOKEN_CONTAINER_VAR}"),
        ),
    ];
    rows.extend(AnyBackend::environment());
    rows.push(("NO_COLOR", "disable colour".to_owned()));
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut text = format!(
        "Manifest lookup (first match wins): --manifest PATH, ${MANIFEST_ENV}, ./{MANIFEST_FILE},\n\
         $XDG_CONFIG_HOME/claude-bottle/{MANIFEST_FILE}, then the built-in default (agent `claude`).\n\n\
         Environment:"
    );
    for (name, meaning) in rows {
        text.push_str(&format!("\n  {name:width$}  {meaning}"));
    }
    text
}

/// Run Claude Code agents in bottles: isolated containers whose only way out
/// is an egress proxy that admits allowlisted hosts.
#[derive(Debug, Parser)]
#[command(name = "claude-bottle", version, about, after_help = after_help())]
pub struct Cli {
    /// Use this manifest instead of searching for one
    #[arg(long, global = true, value_name = "PATH")]
    pub manifest: Option<PathBuf>,

    /// Show debug logs on stderr (repeat for more detail)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Print only errors, warnings and what is asked for (data, the plan to confirm)
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch a bottle for AGENT, attach to Claude Code in it, and tear it down on exit
    Start(StartArgs),
    /// Make warm bottles for AGENT ahead of time: a later `start` of it claims one and runs Claude at once
    Prewarm(PrewarmArgs),
    /// Show the manifest's agents and the bottles that are running
    List(ListArgs),
    /// Remove everything claude-bottle created, running or left behind
    Cleanup(CleanupArgs),
    /// Print the pipelock proxy config generated for AGENT's bottle
    ProxyConfig(ProxyConfigArgs),
    /// Show what a running bottle's proxy allowed and denied
    Egress(EgressArgs),
    /// Allow hosts in a running bottle at once, without restarting its proxy
    Allow(AllowArgs),
    /// Write the built-in default manifest to ./claude-bottle.json
    Init(InitArgs),
    /// Check the engine, runtimes, address space, images and disk a bottle needs
    Doctor(DoctorArgs),
    /// Print a shell completion script for SHELL on stdout
    Completions(CompletionsArgs),
    /// Print the manifest's JSON Schema (draft 2020-12), for editors to check manifests with
    Schema,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The agent to run; may be omitted when the manifest has exactly one
    pub agent: Option<String>,

    /// Put the current directory into the bottle's workspace as git would carry it: ignored files stay on the host
    #[arg(long)]
    pub cwd: bool,

    /// Pin the bottle's name (its agent container's); a name already in use is then an error
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,

    /// Print the plan and exit without creating anything
    #[arg(long)]
    pub dry_run: bool,

    /// Run `claude remote-control` instead of the interactive `claude`
    #[arg(long)]
    pub remote_control: bool,

    /// Arguments passed to `claude` (after `--`)
    #[arg(last = true, value_name = "CLAUDE_ARGS")]
    pub claude_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PrewarmArgs {
    /// The agent to make warm bottles for; may be omitted when the manifest has exactly one
    pub agent: Option<String>,

    /// How many warm bottles to make
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=50))]
    pub count: u8,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print machine-readable JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,

    /// Show what would be removed and exit
    #[arg(long)]
    pub dry_run: bool,

    /// Remove bottles holding work that did not come home too
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct EgressArgs {
    /// A running bottle's container name, or an agent with one running
    /// bottle; may be omitted when one bottle runs
    pub name: Option<String>,
    /// Go on printing events as they happen, until the bottle ends
    #[arg(short, long)]
    pub follow: bool,
    /// One JSON object per line: time, decision, host, port, method, reason
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "NAME may be omitted when one bottle runs; a first word that names a running \
bottle (its container name, or an agent with one running bottle) is NAME, every other word a host."
)]
pub struct AllowArgs {
    /// [NAME] HOST...: the bottle, then hostnames, `*.example.com` wildcards or IP addresses
    #[arg(required = true, value_name = "NAME|HOST")]
    pub words: Vec<String>,
    /// Also write the change to the bottle's allowlist in the manifest file it was started from
    #[arg(long)]
    pub save: bool,
    /// Take the hosts out of the allowlist instead
    #[arg(long)]
    pub remove: bool,
}

#[derive(Debug, Args)]
pub struct ProxyConfigArgs {
    /// The agent whose bottle's proxy config to print
    pub agent: Option<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "For example: `source <(claude-bottle completions bash)` in ~/.bashrc, or \
`claude-bottle completions fish > ~/.config/fish/completions/claude-bottle.fish`."
)]
pub struct CompletionsArgs {
    /// The shell to write the script for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing ./claude-bottle.json
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// One JSON object per line: name, status, detail, hint
    #[arg(long)]
    pub json: bool,
}
