//! `allow`: a new config for a running bottle's proxy, taken up without a
//! restart. Pipelock 2.3.0 reloads on SIGHUP (and on a change to the file it
//! watches); the config goes in place through the archive API, the proxy gets
//! SIGHUP, and its `config_reload` event says whether it took the config.

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;

use super::client::{Engine, EngineError};
use super::find::{FindError, find_bottle};
use super::specs::PROXY_CONFIG_PATH;
use crate::core::egress_log::{LogLine, parse_line};
use crate::core::provision::archive::{ArchiveError, proxy_config_archive};
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
            Self::Refused { .. } => vec!["it goes on with its previous config".to_owned()],
            Self::NoReport { proxy } => vec![format!(
                "`docker logs {proxy}` shows what the proxy did; the new config is in place and applies at its next reload"
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
/// once the proxy reported the reload.
pub(crate) async fn reload<E: Engine>(
    engine: &E,
    name: &str,
    yaml: &str,
) -> Result<(), ReloadError> {
    let bottle = find_bottle(engine, name).await?;
    let proxy = bottle.proxy_name.clone();
    let before = reload_reports(engine, &bottle.proxy_id).await?.len();
    let archive = proxy_config_archive(PROXY_CONFIG_PATH, yaml)?;
    engine
        .upload_archive(&bottle.proxy_id, "/", archive)
        .await?;
    engine.signal_container(&bottle.proxy_id, "SIGHUP").await?;
    let clock = Instant::now();
    loop {
        let reports = reload_reports(engine, &bottle.proxy_id).await?;
        // The file change and the signal may each make the proxy reload:
        // the first report after ours is the answer.
        if let Some((ok, detail)) = reports.into_iter().nth(before) {
            return if ok {
                Ok(())
            } else {
                Err(ReloadError::Refused {
                    proxy,
                    reason: detail.unwrap_or_else(|| "no reason given".to_owned()),
                })
            };
        }
        if clock.elapsed() >= RELOAD_TIMEOUT {
            return Err(ReloadError::NoReport { proxy });
        }
        tokio::time::sleep(RELOAD_POLL_INTERVAL).await;
    }
}

/// Every `config_reload` event in the proxy's log so far: whether it took
/// the config, and its reason when not.
async fn reload_reports<E: Engine>(
    engine: &E,
    proxy_id: &str,
) -> Result<Vec<(bool, Option<String>)>, EngineError> {
    let lines: Vec<String> = engine.log_lines(proxy_id, false).try_collect().await?;
    Ok(lines
        .iter()
        .filter_map(|line| match parse_line(line) {
            LogLine::ConfigReload { ok, detail, .. } => Some((ok, detail)),
            _ => None,
        })
        .collect())
}
