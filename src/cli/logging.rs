//! Logs go to stderr through `tracing`; `-v` raises the level. Only this
//! crate's events are shown: dependencies (the HTTP stack under bollard) could
//! otherwise print request bodies, which carry secret env values.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn colour_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

pub fn init(verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::new(format!("warn,claude_bottle={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_enabled())
        .with_target(verbose > 0)
        .without_time();
    // A second init (tests calling `main` twice) is harmless; keep the first.
    let _ = builder.try_init();
}

pub fn error_label() -> &'static str {
    if colour_enabled() {
        "\x1b[1;31merror\x1b[0m"
    } else {
        "error"
    }
}
