//! `allow`: a new config for a running bottle's proxy, taken up without a
//! restart. Pipelock 2.3.0 reloads on SIGHUP (and on a change to the file it
//! watches); the config goes in place through the archive API, the proxy gets
//! SIGHUP, and its `config_reload` event says whether it took the config.

use std::time::Duration;

use futures_util::TryStreamExt;

use super::client::{Engine, EngineError, whole_tar};
use super::find::{FindError, find_bottle};
use super::specs::PROXY_CONFIG_PATH;
use crate::core::egress_log::{LogLine, parse_line, terminal_safe};
use crate::core::provision::archive::{ArchiveError, root_file_archive};
use crate::diagnostic::Diagnostic;

/// How long the proxy may take to report its reload.
pub(crate) const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
const RELOAD_POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    #[error(transparent)]
    Find(#[from] FindError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("the proxy `{proxy}` refused the new config: {reason}")]
    Refused { proxy: String, reason: String },
    #[error("the proxy `{proxy}` did not report a reload within {} s", RELOAD_TIMEOUT.as_secs())]
    NoReport { proxy: String },
}

impl Diagnostic for ReloadError {
    fn hints(&self) -> Vec<String> {
        match self {
            Self::Find(e) => e.hints(),
            Self::Engine(e) => e.hints(),
            Self::Archive(e) => e.hints(),
            Self::Refused { .. } => {
                vec!["it goes on with its previous config, which is back in place".to_owned()]
            }
            Self::NoReport { proxy } => vec![format!(
                "its previous config is back in place; `docker logs {proxy}` shows what the proxy did"
            )],
        }
    }
}

/// The config the bottle's proxy runs with.
pub(crate) async fn proxy_config<E: Engine>(engine: &E, name: &str) -> Result<String, ReloadError> {
    let bottle = find_bottle(engine, name).await?;
    let bytes = engine
        .read_file(&bottle.proxy_id, PROXY_CONFIG_PATH)
        .await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Puts `yaml` in place as the proxy's config and has it reload; returns
/// once the proxy reported the reload. When it refuses the config, or does
/// not answer, the previous config goes back in place, so the file always
/// holds what the proxy runs with.
pub(crate) async fn reload<E: Engine>(
    engine: &E,
    name: &str,
    yaml: &str,
) -> Result<(), ReloadError> {
    let bottle = find_bottle(engine, name).await?;
    let previous = engine
        .read_file(&bottle.proxy_id, PROXY_CONFIG_PATH)
        .await?;
    let before = reload_reports(engine, &bottle.proxy_id).await?.len();
    put_config(engine, &bottle.proxy_id, yaml.as_bytes()).await?;
    engine.signal_container(&bottle.proxy_id, "SIGHUP").await?;
    let answer = first_report_after(engine, &bottle.proxy_id, before).await;
    // The file change and the signal may each make the proxy reload; let
    // the second report land now, so it is not taken for the answer to the
    // next change.
    tokio::time::sleep(SETTLE).await;
    let failure = match answer? {
        Some(report) if report.ok => return Ok(()),
        Some(report) => ReloadError::Refused {
            proxy: bottle.proxy_name.clone(),
            reason: terminal_safe(&report.reason()),
        },
        None => ReloadError::NoReport {
            proxy: bottle.proxy_name.clone(),
        },
    };
    // Its hash is the one the proxy runs with: it takes it back silently.
    put_config(engine, &bottle.proxy_id, &previous).await?;
    Err(failure)
}

/// How long a reload's second report may take after its first: pipelock
/// debounces its file watch by 100 ms.
const SETTLE: Duration = Duration::from_millis(300);

async fn put_config<E: Engine>(engine: &E, proxy_id: &str, yaml: &[u8]) -> Result<(), ReloadError> {
    let yaml = String::from_utf8_lossy(yaml);
    let archive = root_file_archive(PROXY_CONFIG_PATH, &yaml)?;
    engine
        .upload_archive(proxy_id, "/", whole_tar(archive))
        .await?;
    Ok(())
}

/// One reload as the proxy reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    ok: bool,
    detail: Option<String>,
    /// What pipelock found wrong with the config, printed just before its
    /// refusal (`WARNING: config reload: <field> - <message>`).
    findings: Vec<String>,
}

impl Report {
    fn reason(&self) -> String {
        let mut reason = self
            .detail
            .clone()
            .unwrap_or_else(|| "no reason given".to_owned());
        for finding in &self.findings {
            reason.push_str("; ");
            reason.push_str(finding);
        }
        reason
    }
}

/// Pipelock's stderr line for each finding of a refused reload.
const FINDING_PREFIX: &str = "WARNING: config reload: ";

/// The first reload report beyond the `before` already in the log, or
/// `None` when none came within [`RELOAD_TIMEOUT`].
async fn first_report_after<E: Engine>(
    engine: &E,
    proxy_id: &str,
    before: usize,
) -> Result<Option<Report>, EngineError> {
    let deadline = tokio::time::Instant::now() + RELOAD_TIMEOUT;
    loop {
        let reports = reload_reports(engine, proxy_id).await?;
        if let Some(report) = reports.into_iter().nth(before) {
            return Ok(Some(report));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(RELOAD_POLL_INTERVAL).await;
    }
}

/// Every reload report in the proxy's log so far, each with the findings
/// printed since the one before.
async fn reload_reports<E: Engine>(engine: &E, proxy_id: &str) -> Result<Vec<Report>, EngineError> {
    let lines: Vec<String> = engine.log_lines(proxy_id, false).try_collect().await?;
    let mut reports = Vec::new();
    let mut findings = Vec::new();
    for line in &lines {
        if let Some(finding) = line.strip_prefix(FINDING_PREFIX) {
            findings.push(finding.trim().to_owned());
            continue;
        }
        if let LogLine::ConfigReload { ok, detail, .. } = parse_line(line) {
            reports.push(Report {
                ok,
                detail,
                findings: std::mem::take(&mut findings),
            });
        }
    }
    Ok(reports)
}
