//! `allow [NAME] HOST... [--save] [--remove]`: hosts added to (or taken out
//! of) a running bottle's allowlist through a proxy reload, without a
//! restart; with `--save`, in the manifest file too.

use std::net::IpAddr;
use std::time::Duration;

use super::args::AllowArgs;
use super::{Error, bottle_name};
use crate::backend::{ActiveBottle, AnyBackend, Backend};
use crate::core::allowlist_change::{self, Downgrade};
use crate::core::pipelock::PipelockConfig;
use crate::manifest::{self, AllowRule};
use crate::printer::Printer;

/// How long a host's name may take to resolve for the internal-address check.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn run(args: AllowArgs, printer: &Printer) -> Result<u8, Error> {
    let backend = AnyBackend::from_env(printer)?;
    let active = backend.list_active().await?;
    let (name, raw_hosts) = split_name(&active, &args.words);
    let hosts: Vec<AllowRule> = raw_hosts
        .iter()
        .map(|raw| AllowRule::parse(raw))
        .collect::<Result<_, _>>()?;
    let bottle = bottle_name::resolve(&active, name)?;
    let manifest_path = match (&bottle.manifest_path, args.save) {
        (None, true) => return Err(Error::SaveWithoutManifest),
        (path, _) => path.clone(),
    };

    let yaml = backend.proxy_config(&bottle.name).await?;
    let mut config = PipelockConfig::from_yaml(&yaml)?;
    if !args.remove {
        refuse_downgrades(&config, &hosts, bottle).await?;
    }
    let change = allowlist_change::apply(&mut config, &hosts, args.remove);
    let verb = if args.remove { "removed" } else { "allowed" };
    if change.changed.is_empty() {
        printer.status(format_args!(
            "nothing to change in `{}`: {}",
            bottle.name,
            change.unchanged.join(", ")
        ));
    } else {
        let yaml = config.to_yaml(&bottle.bottle)?;
        backend.reload_proxy(&bottle.name, &yaml).await?;
        printer.status(format_args!(
            "{verb} in `{}` (the proxy reloaded): {}",
            bottle.name,
            change.changed.join(", ")
        ));
    }
    if let Some(path) = manifest_path.filter(|_| args.save) {
        let text = std::fs::read_to_string(&path).map_err(|source| Error::ManifestRead {
            path: path.clone(),
            source,
        })?;
        let edited = if args.remove {
            manifest::remove_from_allowlist(&text, &bottle.bottle, &hosts)?
        } else {
            manifest::add_to_allowlist(&text, &bottle.bottle, &hosts)?
        };
        if edited.is_changed() {
            manifest::write_atomically(&path, &edited.text).map_err(|source| {
                Error::ManifestWrite {
                    path: path.clone(),
                    source,
                }
            })?;
            let changed: Vec<String> = edited.changed.iter().map(ToString::to_string).collect();
            printer.status(format_args!(
                "saved in `{}` (`bottles.{}.egress.allowlist`): {}",
                path.display(),
                bottle.bottle,
                changed.join(", ")
            ));
        } else {
            printer.status(format_args!("`{}` already says so", path.display()));
        }
    }
    Ok(0)
}

/// NAME is optional and comes first: when hosts follow it, a first word
/// that names a running bottle, or has no dot (bottle and agent names rarely
/// do, hosts nearly always), is NAME; every other word is a host.
fn split_name<'a>(active: &[ActiveBottle], words: &'a [String]) -> (Option<&'a str>, &'a [String]) {
    match words {
        [first, rest @ ..]
            if !rest.is_empty()
                && (bottle_name::names_a_bottle(active, first) || !first.contains(['.', ':'])) =>
        {
            (Some(first.as_str()), rest)
        }
        _ => (None, words),
    }
}

/// Refuses, before anything changes, a host pipelock would only admit with a
/// reload it refuses in strict mode.
async fn refuse_downgrades(
    config: &PipelockConfig,
    hosts: &[AllowRule],
    bottle: &ActiveBottle,
) -> Result<(), Error> {
    for host in hosts {
        let addresses = match host {
            AllowRule::Exact(name) => resolve(name.as_str()).await,
            AllowRule::Wildcard(_) | AllowRule::Ip(_) => Vec::new(),
        };
        if let Some(downgrade) = allowlist_change::downgrade_needed(config, host, &addresses) {
            let why = match &downgrade {
                Downgrade::InternalAddress { .. } => "it is an internal address, which the proxy reaches only within `ip_cidrs`, and pipelock refuses a reload that widens them".to_owned(),
                Downgrade::InternalName { address, .. } => format!(
                    "it resolves to `{address}`, an internal address, which the proxy reaches only for `trusted_domains`, and pipelock refuses a reload that adds to them"
                ),
            };
            return Err(Error::NeedsDowngrade {
                host: downgrade.host().to_owned(),
                why,
                key: downgrade.manifest_key(),
                bottle: bottle.bottle.clone(),
            });
        }
    }
    Ok(())
}

/// The addresses `name` resolves to on this host; none when it does not
/// resolve in time (the proxy decides then).
async fn resolve(name: &str) -> Vec<IpAddr> {
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, 443))).await {
        Ok(Ok(addresses)) => addresses.map(|a| a.ip()).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn a_first_word_is_name_when_hosts_follow_and_it_looks_like_one() {
        let none: [ActiveBottle; 0] = [];
        let one = words(&["x.test"]);
        assert_eq!(split_name(&none, &one), (None, one.as_slice()));
        let single_label = words(&["intranet"]);
        assert_eq!(
            split_name(&none, &single_label),
            (None, single_label.as_slice())
        );
        let named = words(&["reviewer", "x.test", "y.test"]);
        assert_eq!(split_name(&none, &named), (Some("reviewer"), &named[1..]));
        let hosts = words(&["a.test", "b.test"]);
        assert_eq!(split_name(&none, &hosts), (None, hosts.as_slice()));
        let ips = words(&["2001:db8::1", "b.test"]);
        assert_eq!(split_name(&none, &ips), (None, ips.as_slice()));
    }
}
