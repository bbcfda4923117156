//! Diagnostics go to stderr through `tracing`, off unless `-v` asks for
//! them: what the user is told goes through the printer. Only this crate's
//! events are shown: dependencies (the HTTP stack under bollard) could
//! otherwise print request bodies, which carry secret env values.

use tracing_subscriber::EnvFilter;

use crate::printer::colour_enabled;

pub fn init(verbose: u8) {
    let level = match verbose {
        0 => return,
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::new(format!("warn,claude_bottle={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_enabled())
        .with_target(true)
        .without_time();
    // A second init (tests calling `main` twice) is harmless; keep the first.
    let _ = builder.try_init();
}
