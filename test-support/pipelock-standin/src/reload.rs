//! Hot reload, as pipelock 2.3.0 does it.
//!
//! Triggers (`internal/config/reload.go`, `Reloader.Start`): SIGHUP reloads at
//! once; a change to the config file reloads 100 ms after the last of a burst
//! of events. The watch is on the file's *directory*, keeping only events
//! whose name is the file's base name and that are a write, a create or a
//! rename, so an editor's or a tool's write-to-temp-then-rename replace is
//! seen (the rename's target name arrives as a create).
//!
//! One reload (`Reloader.tryReload`, then `Server.Reload` in
//! `internal/cli/runtime/server.go`):
//! 1. load and validate the file; on failure say so on stderr only
//!    (`pipelock: config reload failed: ...`) and keep the running config;
//! 2. refuse turning `forward_proxy.enabled` on (restart-only);
//! 3. skip silently a file whose hash is the last applied reload's, within 2 s
//!    (a file write followed by SIGHUP would otherwise reload twice);
//! 4. compare with the running config (`config.ValidateReload`), print each
//!    downgrade as `WARNING: config reload: <field> - <message>` on stderr and,
//!    the running config being strict, refuse the reload if there is any;
//! 5. otherwise put the new config in force for new requests and log
//!    `config_reload` (`status: success`, `detail: mode=<mode>`, `config_hash`).
//!
//! Refusals at 2 and 4 are `error` events with `method: CONFIG_RELOAD`,
//! `resource: <config path>` and the reason in `error`; pipelock logs no
//! `config_reload` event for them, nor any audit event for step 1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use crate::config::{Config, Mode};
use crate::log::{AuditLog, CONFIG_RELOAD_METHOD};
use crate::proxy::Proxy;
use crate::rules::Cidr;

/// Pipelock's debounce after a file event.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Pipelock's window for skipping a reload of the last applied hash.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(2);

/// The error of a reload refused as a downgrade of a strict config.
pub const DOWNGRADE_REJECTED: &str = "rejected: security downgrade from strict mode";
/// The error of a reload that would turn the forward proxy on.
pub const FORWARD_PROXY_REJECTED: &str =
    "rejected: forward proxy cannot be enabled via reload (requires restart)";

/// A change pipelock counts as a security downgrade (`config.ReloadWarning`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadWarning {
    pub field: &'static str,
    pub message: String,
}

/// Pipelock's `config.ValidateReload`, for the keys the stand-in models, in
/// pipelock's order. Every other check there compares sections the stand-in
/// rejects, which are therefore equal (absent) on both sides.
pub fn downgrade_warnings(old: &Config, new: &Config) -> Vec<ReloadWarning> {
    let mut warnings = Vec::new();
    let mut warn = |field, message| warnings.push(ReloadWarning { field, message });
    if new.mode < old.mode {
        warn(
            "mode",
            format!(
                "mode downgraded from {} to {}",
                old.mode.as_str(),
                new.mode.as_str()
            ),
        );
    }
    if !old.internal.is_empty() && new.internal.is_empty() {
        warn(
            "internal",
            "internal CIDR list emptied — SSRF protection disabled".to_owned(),
        );
    }
    if old.enforce && !new.enforce {
        warn(
            "enforce",
            "enforcement disabled — switching to detect-only mode".to_owned(),
        );
    }
    if old.forward_proxy_enabled && !new.forward_proxy_enabled {
        warn("forward_proxy.enabled", "forward proxy disabled".to_owned());
    }
    let added = domains_added(
        &old.subdomain_entropy_exclusions,
        &new.subdomain_entropy_exclusions,
    );
    if !added.is_empty() {
        warn(
            "fetch_proxy.monitoring.subdomain_entropy_exclusions",
            format!(
                "subdomain entropy exclusions added: {} — entropy detection coverage reduced",
                added.join(", ")
            ),
        );
    }
    let added = domains_added(&old.trusted_domains, &new.trusted_domains);
    if !added.is_empty() {
        warn(
            "trusted_domains",
            format!(
                "trusted domains added: {} — SSRF internal-IP check bypassed for these hosts",
                added.join(", ")
            ),
        );
    }
    let expanded = ip_allowlist_expanded(&old.ip_allowlist, &new.ip_allowlist);
    if !expanded.is_empty() {
        warn(
            "ssrf.ip_allowlist",
            format!(
                "SSRF IP allowlist expanded: {} — SSRF check bypassed for these IP ranges",
                expanded.join(", ")
            ),
        );
    }
    warnings
}

/// Pipelock's `passthroughDomainsAdded`: entries of `new` not in `old`,
/// compared without case.
fn domains_added(old: &[String], new: &[String]) -> Vec<String> {
    new.iter()
        .filter(|d| !old.iter().any(|o| o.eq_ignore_ascii_case(d)))
        .cloned()
        .collect()
}

/// Pipelock's `ssrfIPAllowlistExpanded`: a new CIDR widens the list unless an
/// old CIDR of the same family and an equal or shorter prefix contains it.
fn ip_allowlist_expanded(old: &[Cidr], new: &[Cidr]) -> Vec<String> {
    new.iter()
        .filter(|n| {
            !old.iter().any(|o| {
                o.is_ipv4() == n.is_ipv4() && o.prefix() <= n.prefix() && o.contains(n.addr())
            })
        })
        .map(|n| n.to_string())
        .collect()
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new config is in force; its hash.
    Applied(String),
    /// Same hash as the last applied reload, within [`DEDUP_WINDOW`].
    Skipped,
    /// The file could not be read or is invalid; the message on stderr.
    LoadFailed(String),
    /// Refused; the `error` of the logged event.
    Rejected(String),
}

type Sink = Box<dyn Write + Send>;

/// Reloads `path` into a running [`Proxy`].
pub struct Reloader {
    path: PathBuf,
    proxy: Arc<Proxy>,
    log: Arc<AuditLog>,
    /// Pipelock's stderr: load failures and downgrade warnings go there.
    stderr: Mutex<Sink>,
    last_applied: Mutex<Option<(String, Instant)>>,
}

impl Reloader {
    pub fn new(path: PathBuf, proxy: Arc<Proxy>, log: Arc<AuditLog>, stderr: Sink) -> Self {
        Self {
            path,
            proxy,
            log,
            stderr: Mutex::new(stderr),
            last_applied: Mutex::new(None),
        }
    }

    fn say(&self, line: &str) {
        let mut stderr = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(stderr, "{line}");
        let _ = stderr.flush();
    }

    fn reject(&self, error: &str) -> ReloadOutcome {
        self.log.resource_error(
            CONFIG_RELOAD_METHOD,
            &self.path.display().to_string(),
            error,
        );
        ReloadOutcome::Rejected(error.to_owned())
    }

    /// One reload of the file, as pipelock's `tryReload` then `Server.Reload`.
    pub fn reload(&self) -> ReloadOutcome {
        let new = match Config::read_pipelock(&self.path) {
            Ok(config) => config,
            Err(e) => {
                let message = e.to_string();
                self.say(&format!("pipelock: config reload failed: {message}"));
                return ReloadOutcome::LoadFailed(message);
            }
        };
        let old = self.proxy.config();
        if !old.forward_proxy_enabled && new.forward_proxy_enabled {
            return self.reject(FORWARD_PROXY_REJECTED);
        }
        {
            let last = self.last_applied.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((hash, at)) = &*last
                && *hash == new.hash
                && at.elapsed() < DEDUP_WINDOW
            {
                return ReloadOutcome::Skipped;
            }
        }
        let warnings = downgrade_warnings(&old, &new);
        for w in &warnings {
            self.say(&format!(
                "WARNING: config reload: {} - {}",
                w.field, w.message
            ));
        }
        if old.mode == Mode::Strict && !warnings.is_empty() {
            return self.reject(DOWNGRADE_REJECTED);
        }
        // Past the downgrade check a strict config can only reload to a
        // strict, enforcing one: what the stand-in can serve.
        let mut new = new;
        // The listener is bound at startup and stays (pipelock restarts for it).
        new.listen = old.listen;
        let hash = new.hash.clone();
        let detail = format!("mode={}", new.mode.as_str());
        self.proxy.replace_config(new);
        self.log.config_reload("success", &detail, &hash);
        *self.last_applied.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((hash.clone(), Instant::now()));
        ReloadOutcome::Applied(hash)
    }

    /// Starts watching the config file's directory (and, with `on_sighup`,
    /// SIGHUP) and returns the loop that reloads on each trigger, to be
    /// spawned; both are in place when this returns. An error means the watch
    /// could not start; pipelock then has no reload at all, SIGHUP included.
    /// Must be called within a tokio runtime.
    pub fn watch(
        self: &Arc<Self>,
        on_sighup: bool,
    ) -> Result<impl Future<Output = ()> + Send + 'static, String> {
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .map_err(|e| format!("creating file watcher: {e}"))?;
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("watching directory {}: {e}", dir.display()))?;
        let mut hangup = if on_sighup {
            Some(
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                    .map_err(|e| format!("SIGHUP handler: {e}"))?,
            )
        } else {
            None
        };
        let base = self.path.file_name().map(ToOwned::to_owned);
        let this = Arc::clone(self);
        Ok(async move {
            // Dropping the watcher would end the watch.
            let _watcher = watcher;
            let mut debounce: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
            loop {
                tokio::select! {
                    event = events.recv() => match event {
                        None => return,
                        Some(Ok(event)) => {
                            let ours = event.paths.iter().any(|p| p.file_name() == base.as_deref());
                            if ours && is_reload_trigger(&event.kind) {
                                // Each event restarts the wait: reload once a burst is over.
                                debounce = Some(Box::pin(tokio::time::sleep(DEBOUNCE)));
                            }
                        }
                        // Watcher errors are not fatal in pipelock either.
                        Some(Err(_)) => {}
                    },
                    () = async { debounce.as_mut().expect("guarded").await }, if debounce.is_some() => {
                        debounce = None;
                        this.reload();
                    }
                    Some(()) = async { hangup.as_mut().expect("guarded").recv().await }, if hangup.is_some() => {
                        this.reload();
                    }
                }
            }
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// fsnotify's Write, Create and Rename, as the inotify backend of `notify`
/// reports them (a rename's target name is fsnotify's Create). Chmod, remove
/// and close events do not reload, as in pipelock.
fn is_reload_trigger(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(
                ModifyKind::Data(_)
                    | ModifyKind::Any
                    | ModifyKind::Name(RenameMode::From | RenameMode::To | RenameMode::Any)
            )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "mode: strict\napi_allowlist: [a.test]\nforward_proxy:\n  enabled: true\n";

    fn config(extra: &str) -> Config {
        Config::parse_pipelock(&format!("{BASE}{extra}")).unwrap()
    }

    fn fields(old: &str, new: &str) -> Vec<&'static str> {
        downgrade_warnings(&config(old), &config(new))
            .into_iter()
            .map(|w| w.field)
            .collect()
    }

    #[test]
    fn allowlist_changes_and_narrowing_are_no_downgrade() {
        let old = "trusted_domains: [a.test, b.test]\nssrf:\n  ip_allowlist: [10.0.0.0/8]\n";
        let running = config(old);
        let mut new = running.clone();
        new.api_allowlist = vec!["c.test".into(), "*.d.test".into()];
        assert!(downgrade_warnings(&running, &new).is_empty());
        assert!(fields(old, "trusted_domains: [A.test]\n").is_empty());
        assert!(fields(old, "ssrf:\n  ip_allowlist: [10.1.0.0/16]\n").is_empty());
        assert!(fields(old, "").is_empty());
    }

    #[test]
    fn widening_trusted_domains_or_the_ip_allowlist_is_a_downgrade() {
        let w = downgrade_warnings(
            &config("trusted_domains: [a.test]\n"),
            &config("trusted_domains: [a.test, b.test]\n"),
        );
        assert_eq!(
            w,
            [ReloadWarning {
                field: "trusted_domains",
                message: "trusted domains added: b.test — SSRF internal-IP check bypassed for these hosts".into()
            }]
        );
        let w = downgrade_warnings(
            &config("ssrf:\n  ip_allowlist: [10.1.0.0/16]\n"),
            &config("ssrf:\n  ip_allowlist: [10.0.0.0/8, 10.1.2.0/24]\n"),
        );
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[0].message,
            "SSRF IP allowlist expanded: 10.0.0.0/8 — SSRF check bypassed for these IP ranges"
        );
        // Another family never covers.
        assert_eq!(
            fields(
                "ssrf:\n  ip_allowlist: [10.0.0.0/8]\n",
                "ssrf:\n  ip_allowlist: ['fd00::/8']\n"
            ),
            ["ssrf.ip_allowlist"]
        );
    }

    #[test]
    fn mode_enforce_internal_forward_proxy_and_exclusions_are_checked() {
        let strict = config("");
        let balanced =
            Config::parse_pipelock("mode: balanced\nforward_proxy:\n  enabled: true\n").unwrap();
        assert_eq!(
            downgrade_warnings(&strict, &balanced)[0].message,
            "mode downgraded from strict to balanced"
        );
        assert_eq!(fields("", "enforce: false\n"), ["enforce"]);
        assert_eq!(fields("", "internal: []\n"), ["internal"]);
        let off = Config::parse_pipelock("mode: strict\napi_allowlist: [a.test]\n").unwrap();
        assert_eq!(
            downgrade_warnings(&strict, &off)[0].field,
            "forward_proxy.enabled"
        );
        assert_eq!(
            fields(
                "",
                "fetch_proxy:\n  monitoring:\n    subdomain_entropy_exclusions: [cdn.test]\n"
            ),
            ["fetch_proxy.monitoring.subdomain_entropy_exclusions"]
        );
    }

    #[test]
    fn only_writes_creates_and_renames_trigger() {
        use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, MetadataKind};
        assert!(is_reload_trigger(&EventKind::Create(CreateKind::File)));
        assert!(is_reload_trigger(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(is_reload_trigger(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(is_reload_trigger(&EventKind::Modify(ModifyKind::Name(
            RenameMode::From
        ))));
        assert!(!is_reload_trigger(&EventKind::Modify(
            ModifyKind::Metadata(MetadataKind::Any)
        )));
        assert!(!is_reload_trigger(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(!is_reload_trigger(&EventKind::Remove(
            notify::event::RemoveKind::File
        )));
    }
}
