//! claude-bottle: run Claude Code agents in isolated Docker "bottles" whose only
//! way out is an allowlisting egress proxy.
//!
//! Layout: `cli` parses arguments and drives a session; `manifest` loads and
//! validates the user's JSON; `core` holds the backend-agnostic logic (env
//! resolution, egress policy, pipelock config, provisioning content); `backend`
//! makes bottles real, with `backend::docker` the only implementation.

pub mod backend;
pub mod cli;
pub mod core;
pub mod manifest;
pub mod term;
