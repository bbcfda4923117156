//! `prewarm`: warm bottles for AGENT, made ahead so that a later `start`
//! of it claims one instead of making a bottle.

use std::io::Write;
use std::path::Path;

use super::args::PrewarmArgs;
use super::signals::{Interrupts, Signals};
use super::start::bottle_spec;
use super::{Error, load_manifest, select_agent};
use crate::backend::{AnyBackend, Backend};
use crate::core::env;
use crate::printer::Printer;

pub async fn run(
    manifest_path: Option<&Path>,
    args: PrewarmArgs,
    printer: &Printer,
) -> Result<u8, Error> {
    // An interrupted prewarm drops its bottles, whose sessions remove them.
    let mut signals = Signals::install()?;
    let manifest = load_manifest(manifest_path)?;
    let (agent_name, agent) = select_agent(&manifest, args.agent.as_deref(), "prewarm")?;
    let backend = AnyBackend::from_env(printer)?;
    // Only the literals are fixed when a bottle is made; host values and
    // secrets are read by the `start` that claims it.
    let env = env::literals(&manifest.bottle_of(agent).env);
    let spec = bottle_spec(&manifest, agent_name, agent, env)?;
    let count = usize::from(args.count);
    let made = tokio::select! {
        made = backend.prewarm(spec, count) => made?,
        interrupted = signals.recv() => return Err(interrupted),
    };
    let mut stdout = std::io::stdout().lock();
    for name in &made {
        writeln!(stdout, "{name}").map_err(Error::Stdout)?;
    }
    printer.status(format_args!(
        "{} warm bottle(s) of agent `{agent_name}` ready; `claude-bottle start {agent_name}` claims one",
        made.len()
    ));
    Ok(0)
}
