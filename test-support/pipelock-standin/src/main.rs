//! `pipelock-standin`: a TEST DOUBLE of pipelock for claude-bottle's
//! end-to-end tests (see lib.rs and README.md). Its command line mirrors the
//! parts of pipelock's that claude-bottle uses, so the image's ENTRYPOINT can
//! be this binary at `/pipelock`:
//!
//! ```text
//! pipelock-standin run --config PATH [--listen ADDR]
//! pipelock-standin healthcheck [--addr ADDR]
//! pipelock-standin check-config PATH
//! ```
//!
//! `run` reloads the config on SIGHUP and when the file changes (see reload.rs).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use pipelock_standin::config::Config;
use pipelock_standin::health;
use pipelock_standin::log::{AuditLog, CONFIG_RELOAD_METHOD};
use pipelock_standin::proxy::Proxy;
use pipelock_standin::reload::Reloader;

const USAGE: &str = "pipelock-standin: a TEST DOUBLE of pipelock (not the real proxy)

usage:
  pipelock-standin run --config PATH [--listen ADDR]   serve with a pipelock YAML config
  pipelock-standin healthcheck [--addr ADDR]           GET /health (default 127.0.0.1:8888), exit 0 if 200
  pipelock-standin check-config PATH                   parse and validate a config, exit 0 if accepted
";

enum Command {
    Run {
        config: PathBuf,
        listen: Option<String>,
    },
    Healthcheck {
        addr: String,
    },
    CheckConfig {
        config: PathBuf,
    },
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("missing command".into());
    };
    let mut flags = std::collections::HashMap::new();
    let mut positional = Vec::new();
    let mut iter = rest.iter();
    while let Some(arg) = iter.next() {
        if let Some(flag) = arg.strip_prefix("--") {
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => {
                    let value = iter
                        .next()
                        .ok_or_else(|| format!("`--{flag}` needs a value"))?;
                    (flag.to_owned(), value.clone())
                }
            };
            flags.insert(name, value);
        } else {
            positional.push(arg.clone());
        }
    }
    let allow = |known: &[&str]| match flags.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(format!("unknown flag `--{unknown}` for `{command}`")),
        None => Ok(()),
    };
    match command.as_str() {
        "run" => {
            allow(&["config", "listen"])?;
            let config = flags
                .remove("config")
                .ok_or("`run` needs `--config PATH` (the stand-in has no built-in config)")?;
            Ok(Command::Run {
                config: config.into(),
                listen: flags.remove("listen"),
            })
        }
        "healthcheck" => {
            allow(&["addr"])?;
            Ok(Command::Healthcheck {
                addr: flags
                    .remove("addr")
                    .unwrap_or_else(|| health::DEFAULT_ADDR.to_owned()),
            })
        }
        "check-config" => {
            allow(&["config"])?;
            let config = flags
                .remove("config")
                .or_else(|| positional.pop())
                .ok_or("`check-config` needs a config path")?;
            Ok(Command::CheckConfig {
                config: config.into(),
            })
        }
        "help" | "--help" | "-h" => Ok(Command::Help),
        other => Err(format!("unknown command `{other}`")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("pipelock-standin: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Command::Healthcheck { addr } => health::check(&addr).map_err(|e| e.to_string()),
        Command::CheckConfig { config } => Config::load(&config)
            .map(|_| println!("config `{}` accepted", config.display()))
            .map_err(|e| e.to_string()),
        Command::Run { config, listen } => run(&config, listen.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pipelock-standin: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(config_path: &std::path::Path, listen: Option<&str>) -> Result<(), String> {
    let mut config = Config::load(config_path).map_err(|e| format!("invalid config: {e}"))?;
    if let Some(listen) = listen {
        config.listen = listen
            .parse()
            .map_err(|_| format!("invalid `--listen` address `{listen}`"))?;
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on `{}`: {e}", config.listen))?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("listener address: {e}"))?;
        let log = Arc::new(AuditLog::stdout(
            config.include_allowed,
            config.include_blocked,
        ));
        let startup = (bound.to_string(), config.mode.as_str(), config.hash.clone());
        let proxy = Arc::new(Proxy::new(config, Arc::clone(&log)));
        // As PID 1 in a container nothing else ends the process on SIGTERM.
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("signal handler: {e}"))?;
        // Hot reload on SIGHUP and on a change to the file, as pipelock. Set
        // up before the startup line, so whoever sees that line may send SIGHUP.
        let reloader = Arc::new(Reloader::new(
            config_path.to_owned(),
            Arc::clone(&proxy),
            Arc::clone(&log),
            Box::new(std::io::stderr()),
        ));
        match reloader.watch(true) {
            Ok(watch) => {
                tokio::spawn(watch);
            }
            Err(e) => {
                log.resource_error(CONFIG_RELOAD_METHOD, &config_path.display().to_string(), &e)
            }
        }
        log.startup(&startup.0, startup.1, &startup.2);
        let stopped =
            |served: std::io::Result<()>| served.map_err(|e| format!("listener failed: {e}"));
        tokio::select! {
            served = proxy.serve(listener) => stopped(served),
            // Pipelock logs the same reason for SIGTERM and SIGINT.
            _ = sigterm.recv() => { log.shutdown("signal received"); Ok(()) }
            _ = tokio::signal::ctrl_c() => { log.shutdown("signal received"); Ok(()) }
        }
    })
}
