//! The clap-derive argument structs. They are turned into validated commands in
//! `cli::mod`; nothing here touches the manifest or the daemon.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Manifest lookup (first match wins): --manifest PATH, $CLAUDE_BOTTLE_MANIFEST, ./claude-bottle.json,
$XDG_CONFIG_HOME/claude-bottle/claude-bottle.json, then the built-in default (agent `claude`).

Environment:
  CLAUDE_BOTTLE_MANIFEST        manifest path (below --manifest)
  CLAUDE_BOTTLE_BACKEND         backend to use (default: docker)
  CLAUDE_BOTTLE_OAUTH_TOKEN     forwarded into the bottle as CLAUDE_CODE_OAUTH_TOKEN
  CLAUDE_BOTTLE_PIPELOCK_IMAGE  proxy image (default: ghcr.io/luckypipewrench/pipelock:2.3.0)
  CLAUDE_BOTTLE_CONTAINER_HOME  home directory inside the bottle (default: /home/node)
  DOCKER_HOST                   Docker daemon to use
  NO_COLOR                      disable colour";

/// Run Claude Code agents in bottles: isolated containers whose only way out
/// is an egress proxy that admits allowlisted hosts.
#[derive(Debug, Parser)]
#[command(name = "claude-bottle", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Use this manifest instead of searching for one
    #[arg(long, global = true, value_name = "PATH")]
    pub manifest: Option<PathBuf>,

    /// Show debug logs on stderr (repeat for more detail)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch a bottle for AGENT, attach to Claude Code in it, and tear it down on exit
    Start(StartArgs),
    /// Show the manifest's agents and the bottles that are running
    List(ListArgs),
    /// Remove every container and network claude-bottle created (running or left behind)
    Cleanup(CleanupArgs),
    /// Print the pipelock proxy config generated for AGENT's bottle
    ProxyConfig(ProxyConfigArgs),
    /// Write the built-in default manifest to ./claude-bottle.json
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The agent to run; may be omitted when the manifest has exactly one
    pub agent: Option<String>,

    /// Put the current directory (with its .git) into the bottle's workspace
    #[arg(long)]
    pub cwd: bool,

    /// Pin the container name; a name already in use is then an error
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
}

#[derive(Debug, Args)]
pub struct ProxyConfigArgs {
    /// The agent whose bottle's proxy config to print
    pub agent: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing ./claude-bottle.json
    #[arg(long)]
    pub force: bool,
}
