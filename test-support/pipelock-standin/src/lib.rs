//! # pipelock-standin: a TEST DOUBLE of pipelock
//!
//! This crate is **not** pipelock and not part of claude-bottle. It stands in
//! for the pipelock 2.3.0 egress proxy in claude-bottle's end-to-end tests,
//! on machines that cannot pull pipelock's image. It reads the same YAML
//! (rejecting unknown keys), enforces `api_allowlist` in strict mode with
//! pipelock's matching rules for CONNECT tunnels and plain HTTP requests,
//! applies pipelock's SSRF rules to the addresses it dials, answers
//! `GET /health`, writes pipelock-style JSON log lines to stdout, and
//! reloads its config on SIGHUP or a change to the file as pipelock does.
//! See README.md for what it leaves out.

pub mod config;
pub mod health;
pub mod log;
pub mod proxy;
pub mod reload;
pub mod rules;
