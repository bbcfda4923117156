//! `allow [NAME] HOST... [--save] [--remove]`: hosts added to (or taken out
//! of) a running bottle's allowlist through a proxy reload, without a
//! restart; with `--save`, in the manifest file too.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use super::args::AllowArgs;
use super::{Error, bottle_name};
use crate::backend::{ActiveBottle, AnyBackend, Backend, SessionState};
use crate::core::allowlist_change::{self, Downgrade};
use crate::core::egress::EgressPolicy;
use crate::core::pipelock::PipelockConfig;
use crate::manifest::{self, AllowRule};
use crate::printer::Printer;

/// How long a host's name may take to resolve for the internal-address check.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn run(args: AllowArgs, printer: &Printer) -> Result<u8, Error> {
    let backend = AnyBackend::from_env(printer)?;
    run_with(&backend, args, printer).await
}

async fn run_with<B: Backend>(
    backend: &B,
    args: AllowArgs,
    printer: &Printer,
) -> Result<u8, Error> {
    let active = backend.list_active().await?;
    let (name, raw_hosts) = split_name(&active, &args.words);
    if raw_hosts.is_empty() {
        return Err(Error::NoHostsGiven);
    }
    let hosts: Vec<AllowRule> = raw_hosts
        .iter()
        .map(|raw| AllowRule::parse(raw))
        .collect::<Result<_, _>>()?;
    let bottle = bottle_name::resolve(&active, name)?;
    // The manifest's change is worked out, and checked, before the bottle
    // changes: a manifest that cannot take it changes nothing.
    let save = if args.save {
        Some(SavePlan::prepare(bottle, &hosts, args.remove)?)
    } else {
        None
    };

    // One change at a time per bottle: each reads the config the last one left.
    let _lock = lock_bottle(&bottle.name)?;
    let yaml = backend.proxy_config(&bottle.name).await?;
    let mut config = PipelockConfig::from_yaml(&yaml)?;
    if !args.remove {
        refuse_downgrades(&config, &hosts, bottle).await?;
    }
    let change = allowlist_change::apply(&mut config, &hosts, args.remove);
    if config.api_allowlist.is_empty() {
        return Err(Error::WouldEmptyAllowlist {
            bottle: bottle.name.clone(),
        });
    }
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
        let tunnels = if args.remove {
            "; connections already open stay up until they close"
        } else {
            ""
        };
        printer.status(format_args!(
            "{verb} in `{}`, the proxy reloaded{tunnels}: {}",
            bottle.name,
            change.changed.join(", ")
        ));
    }
    if let Some(save) = save {
        save.write(&hosts, args.remove, printer)?;
    }
    Ok(0)
}

/// `--save`: the manifest file, its text when the command started, and the
/// edit, checked to load.
struct SavePlan {
    path: PathBuf,
    bottle: String,
    text: String,
}

impl SavePlan {
    fn prepare(bottle: &ActiveBottle, hosts: &[AllowRule], remove: bool) -> Result<Self, Error> {
        if bottle.session_state == SessionState::Unknown {
            return Err(Error::SaveFromAnotherHost {
                name: bottle.name.clone(),
            });
        }
        let (Some(path), false) = (&bottle.manifest_path, bottle.bottle.is_empty()) else {
            return Err(Error::SaveWithoutManifest);
        };
        let text = std::fs::read_to_string(path).map_err(|source| Error::ManifestRead {
            path: path.clone(),
            source,
        })?;
        let plan = Self {
            path: path.clone(),
            bottle: bottle.bottle.clone(),
            text,
        };
        plan.edit(&plan.text, hosts, remove)?;
        Ok(plan)
    }

    /// `text` with the change, checked to load as a manifest whose bottle
    /// still admits something.
    fn edit(
        &self,
        text: &str,
        hosts: &[AllowRule],
        remove: bool,
    ) -> Result<manifest::Edited, Error> {
        let edited = if remove {
            manifest::remove_from_allowlist(text, &self.bottle, hosts)?
        } else {
            manifest::add_to_allowlist(text, &self.bottle, hosts)?
        };
        let loaded = manifest::load_from_str(
            &edited.text,
            manifest::ManifestSource::File(self.path.clone()),
        )?;
        if let Some(bottle) = loaded.bottles.get(&self.bottle) {
            EgressPolicy::for_bottle(&self.bottle, bottle)?;
        }
        Ok(edited)
    }

    /// Writes the change, redone on the file as it is now if it changed
    /// meanwhile.
    fn write(&self, hosts: &[AllowRule], remove: bool, printer: &Printer) -> Result<(), Error> {
        let unsaved = |source: std::io::Error| Error::ManifestNotSaved {
            path: self.path.clone(),
            source,
        };
        let now = std::fs::read_to_string(&self.path).map_err(unsaved)?;
        let edited = self.edit(&now, hosts, remove)?;
        if !edited.is_changed() {
            printer.status(format_args!("`{}` already says so", self.path.display()));
            return Ok(());
        }
        manifest::write_atomically(&self.path, &edited.text).map_err(unsaved)?;
        let changed: Vec<String> = edited.changed.iter().map(ToString::to_string).collect();
        printer.status(format_args!(
            "saved in `{}` (`bottles.{}.egress.allowlist`): {}",
            self.path.display(),
            self.bottle,
            changed.join(", ")
        ));
        Ok(())
    }
}

/// An exclusive lock on changes to the bottle `name` from this machine.
fn lock_bottle(name: &str) -> Result<Flock<std::fs::File>, Error> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("claude-bottle-allow-{name}.lock"));
    let locked = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| (e, path.clone()))
        .and_then(|file| {
            Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, errno)| (std::io::Error::from(errno), path.clone()))
        });
    locked.map_err(|(source, path)| Error::Lock { path, source })
}

/// NAME is optional and comes first: a first word that names a running
/// bottle is NAME, and so is one without a dot when hosts follow it (bottle
/// and agent names rarely have one, hosts nearly always); every other word
/// is a host.
fn split_name<'a>(active: &[ActiveBottle], words: &'a [String]) -> (Option<&'a str>, &'a [String]) {
    match words {
        [first, rest @ ..]
            if bottle_name::names_a_bottle(active, first)
                || (!rest.is_empty() && !first.contains(['.', ':'])) =>
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
    // Every name at once: each may take the whole resolver timeout.
    let resolved = futures_util::future::join_all(hosts.iter().map(|host| async move {
        match host {
            AllowRule::Exact(name) => resolve(name.as_str()).await,
            AllowRule::Wildcard(_) | AllowRule::Ip(_) => Vec::new(),
        }
    }))
    .await;
    for (host, addresses) in hosts.iter().zip(resolved) {
        if let Some(downgrade) = allowlist_change::downgrade_needed(config, host, &addresses) {
            let why = match &downgrade {
                Downgrade::InternalAddress { .. } => "it is an internal address, which the proxy reaches only within `ip_cidrs`, and pipelock refuses a reload that widens them".to_owned(),
                Downgrade::InternalName { address, .. } => format!(
                    "it resolves to `{address}`, an internal address, which the proxy reaches only for `trusted_domains`, and pipelock refuses a reload that adds to them"
                ),
            };
            let entry = match &downgrade {
                Downgrade::InternalAddress { address, .. } => {
                    ipnet::IpNet::from(*address).to_string()
                }
                Downgrade::InternalName { host, .. } => host.clone(),
            };
            return Err(Error::NeedsDowngrade {
                host: downgrade.host().to_owned(),
                why,
                key: downgrade.manifest_key(),
                entry,
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
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::backend::{BackendError, BottleHandle, CleanupPlan, CleanupReport, LogLines};
    use crate::core::egress::EgressPolicy;
    use crate::manifest::{Bottle, Egress};

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    /// One running bottle whose proxy config is `config`; records reloads,
    /// and refuses them when told to.
    struct OneBottle {
        bottle: ActiveBottle,
        config: Mutex<String>,
        reloads: Arc<Mutex<Vec<String>>>,
        refuse: bool,
    }

    impl OneBottle {
        fn new(manifest: Option<PathBuf>, refuse: bool) -> Self {
            let bottle = Bottle {
                egress: Egress {
                    allowlist: vec![AllowRule::parse("api.anthropic.com").unwrap()],
                    ..Egress::default()
                },
                ..Bottle::default()
            };
            let policy = EgressPolicy::for_bottle("b", &bottle).unwrap();
            Self {
                bottle: ActiveBottle {
                    bottle: "b".into(),
                    manifest_path: manifest,
                    ..ActiveBottle::running("claude-bottle-rev", "rev")
                },
                config: Mutex::new(crate::core::pipelock::render("b", &policy).unwrap()),
                reloads: Arc::default(),
                refuse,
            }
        }

        fn reloads(&self) -> Vec<String> {
            self.reloads.lock().unwrap().clone()
        }
    }

    struct NoBottle;

    impl BottleHandle for NoBottle {
        async fn start(&mut self) -> Result<(), BackendError> {
            unreachable!()
        }
        async fn exec_claude(&mut self, _: &[String], _: bool) -> Result<i32, BackendError> {
            unreachable!()
        }
        async fn close(&mut self) -> Result<(), BackendError> {
            unreachable!()
        }
        async fn proxy_log(&mut self) -> Result<Vec<String>, BackendError> {
            unreachable!()
        }
        fn abandon(&mut self) {}
        async fn work_repos(&mut self) -> Result<Vec<String>, BackendError> {
            unreachable!()
        }
        async fn work_listing(
            &mut self,
            _: &str,
        ) -> Result<Option<crate::backend::WorkListing>, BackendError> {
            unreachable!()
        }
        async fn work_bundle(
            &mut self,
            _: &str,
            _: &[String],
            _: &[crate::core::work_home::refs::ObjectId],
            _: &std::path::Path,
        ) -> Result<(), BackendError> {
            unreachable!()
        }
        async fn changed_files(&mut self, _: &std::path::Path) -> Result<(), BackendError> {
            unreachable!()
        }
        fn keep_agent(&mut self) -> Option<crate::backend::KeptBottle> {
            unreachable!()
        }
    }

    impl Backend for OneBottle {
        type Plan = &'static str;
        type Bottle = NoBottle;
        async fn prepare(
            &self,
            _: crate::core::spec::BottleSpec,
        ) -> Result<&'static str, BackendError> {
            unreachable!()
        }
        async fn prewarm(
            &self,
            _: crate::core::spec::BottleSpec,
            _: usize,
        ) -> Result<Vec<String>, BackendError> {
            unreachable!()
        }
        fn launch(&self, _: &'static str) -> NoBottle {
            NoBottle
        }
        async fn list_active(&self) -> Result<Vec<ActiveBottle>, BackendError> {
            Ok(vec![self.bottle.clone()])
        }
        async fn prepare_cleanup(&self) -> Result<CleanupPlan, BackendError> {
            unreachable!()
        }
        async fn cleanup(&self, _: CleanupPlan) -> Result<CleanupReport, BackendError> {
            unreachable!()
        }
        async fn proxy_log(&self, _: &str, _: bool) -> Result<LogLines, BackendError> {
            unreachable!()
        }
        async fn proxy_config(&self, _: &str) -> Result<String, BackendError> {
            Ok(self.config.lock().unwrap().clone())
        }
        async fn reload_proxy(&self, _: &str, yaml: &str) -> Result<(), BackendError> {
            self.reloads.lock().unwrap().push(yaml.to_owned());
            if self.refuse {
                return Err(BackendError::failure(
                    "the proxy refused the new config: no",
                ));
            }
            *self.config.lock().unwrap() = yaml.to_owned();
            Ok(())
        }

        async fn doctor(&self, _: &crate::backend::DoctorRequest) -> Vec<crate::backend::Check> {
            unreachable!("this test never runs doctor")
        }
    }

    fn allow(list: &[&str], save: bool, remove: bool) -> AllowArgs {
        AllowArgs {
            words: words(list),
            save,
            remove,
        }
    }

    const MANIFEST: &str = "{\n  \"bottles\": { \"b\": { \"egress\": { \"allowlist\": [\"api.anthropic.com\"] } } },\n  \"agents\": { \"rev\": { \"bottle\": \"b\" } }\n}\n";

    fn manifest_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claude-bottle.json");
        std::fs::write(&path, MANIFEST).unwrap();
        (dir, path)
    }

    #[tokio::test]
    async fn a_host_is_allowed_live_and_saved() {
        let (_dir, path) = manifest_file();
        let backend = OneBottle::new(Some(path.clone()), false);
        let printer = Printer::capture(false);
        let code = run_with(&backend, allow(&["x.test"], true, false), &printer)
            .await
            .unwrap();
        assert_eq!(code, 0);
        assert_eq!(backend.reloads().len(), 1);
        assert!(
            backend.reloads()[0].contains("- x.test"),
            "{}",
            backend.reloads()[0]
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            MANIFEST.replace(
                "[\"api.anthropic.com\"]",
                "[\"api.anthropic.com\", \"x.test\"]"
            )
        );
        // Again: nothing to change, no reload.
        run_with(&backend, allow(&["X.test"], false, false), &printer)
            .await
            .unwrap();
        assert_eq!(backend.reloads().len(), 1);
    }

    #[tokio::test]
    async fn what_cannot_work_changes_nothing() {
        let (_dir, path) = manifest_file();
        let printer = Printer::capture(false);
        let cases: [(AllowArgs, Option<PathBuf>); 5] = [
            (allow(&["https://x.test"], true, false), Some(path.clone())),
            (allow(&["10.1.2.3"], true, false), Some(path.clone())),
            (allow(&["x.test"], true, false), None),
            (
                allow(&["api.anthropic.com"], true, true),
                Some(path.clone()),
            ),
            (
                allow(&["claude-bottle-rev"], false, false),
                Some(path.clone()),
            ),
        ];
        for (args, manifest) in cases {
            let shown = format!("{:?}", args.words);
            let backend = OneBottle::new(manifest, false);
            let Err(err) = run_with(&backend, args, &printer).await else {
                panic!("{shown} succeeded");
            };
            assert_eq!(err.code(), 2, "{shown}: {err}");
            assert!(backend.reloads().is_empty(), "{shown}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), MANIFEST, "{shown}");
        }
    }

    #[tokio::test]
    async fn a_refused_reload_exits_1_and_leaves_the_manifest_alone() {
        let (_dir, path) = manifest_file();
        let backend = OneBottle::new(Some(path.clone()), true);
        let printer = Printer::capture(false);
        let err = run_with(&backend, allow(&["x.test"], true, false), &printer)
            .await
            .unwrap_err();
        assert_eq!(err.code(), 1);
        assert!(err.to_string().contains("refused"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), MANIFEST);
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
