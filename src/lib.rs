//! claude-bottle: run Claude Code agents in isolated "bottles" whose only
//! way out is an allowlisting egress proxy.
//!
//! Layout: `cli` parses arguments and drives a session; `manifest` loads and
//! validates the user's JSON; `core` holds the engine-agnostic logic (the
//! spec, env resolution, egress policy, pipelock config, provisioning
//! content); `backend` makes bottles real, with `backend::docker` the one
//! engine so far. `printer` owns what the user reads on stderr, `diagnostic`
//! how errors carry their hints, and `term` the terminal.

pub mod backend;
pub mod cli;
pub mod core;
pub mod diagnostic;
pub mod manifest;
pub mod printer;
pub mod term;

/// Host `git` as the tests run it to set up and inspect repositories: one
/// definition for the unit tests and the integration tests.
#[cfg(test)]
#[path = "../tests/docker_support/git.rs"]
mod test_git;
