//! `proxy-config AGENT`: the generated pipelock YAML on stdout.

use std::io::Write;

use super::args::ProxyConfigArgs;
use super::{Error, load_manifest, select_agent};
use crate::core::egress::EgressPolicy;
use crate::core::pipelock;

pub fn run(manifest: Option<&std::path::Path>, args: ProxyConfigArgs) -> Result<u8, Error> {
    let manifest = load_manifest(manifest)?;
    let (_, agent) = select_agent(&manifest, args.agent.as_deref(), "proxy-config")?;
    let policy = EgressPolicy::for_bottle(&agent.bottle, manifest.bottle_of(agent))?;
    let yaml = pipelock::render(&agent.bottle, &policy)?;
    std::io::stdout()
        .lock()
        .write_all(yaml.as_bytes())
        .map_err(Error::Stdout)?;
    Ok(0)
}
