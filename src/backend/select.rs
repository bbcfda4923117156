//! The registry: `CLAUDE_BOTTLE_BACKEND` names a backend, and [`AnyBackend`]
//! implements [`Backend`] for all of them by dispatching to the one chosen.
//! A new engine is a new arm here and nothing in the CLI.

use std::fmt;

use super::docker::{DockerBackend, DockerBottle, DockerPlan};
use super::{
    ActiveBottle, Backend, BackendError, BottleHandle, Check, CleanupPlan, CleanupReport,
    DoctorRequest, KeptBottle, LogLines, WorkListing,
};
use crate::core::spec::BottleSpec;
use crate::core::work_home::refs::ObjectId;
use crate::diagnostic::Diagnostic;
use crate::printer::Printer;

/// The environment variable that selects the backend.
pub const BACKEND_ENV: &str = "CLAUDE_BOTTLE_BACKEND";
pub const DEFAULT_BACKEND: &str = "docker";
/// Every backend this build knows, by the name `CLAUDE_BOTTLE_BACKEND` takes.
const KNOWN_BACKENDS: &[&str] = &["docker"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown backend `{name}` in `{BACKEND_ENV}`")]
pub struct UnknownBackend {
    pub name: String,
}

impl Diagnostic for UnknownBackend {
    fn hints(&self) -> Vec<String> {
        vec![format!(
            "known backends: {}; unset `{BACKEND_ENV}` to use `{DEFAULT_BACKEND}`",
            KNOWN_BACKENDS.join(", ")
        )]
    }
}

/// The selected backend.
#[derive(Debug)]
pub enum AnyBackend {
    Docker(DockerBackend),
}

impl AnyBackend {
    /// The backend named by the process's `CLAUDE_BOTTLE_BACKEND`.
    pub fn from_env(printer: &Printer) -> Result<Self, UnknownBackend> {
        Self::named(std::env::var(BACKEND_ENV).ok().as_deref(), printer)
    }

    /// The backend called `name`, default `docker`.
    pub fn named(name: Option<&str>, printer: &Printer) -> Result<Self, UnknownBackend> {
        match name.unwrap_or(DEFAULT_BACKEND) {
            "docker" => Ok(Self::Docker(DockerBackend::new(printer.clone()))),
            other => Err(UnknownBackend {
                name: other.to_owned(),
            }),
        }
    }

    /// The environment variables every backend reads, with their meaning and
    /// default, for `--help`.
    pub fn environment() -> Vec<(&'static str, String)> {
        DockerBackend::environment()
    }
}

/// A plan of the selected backend.
#[derive(Debug)]
pub enum AnyPlan {
    Docker(DockerPlan),
}

impl fmt::Display for AnyPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Docker(plan) => plan.fmt(f),
        }
    }
}

/// A session of the selected backend.
pub enum AnyBottle {
    Docker(DockerBottle),
}

impl BottleHandle for AnyBottle {
    async fn start(&mut self) -> Result<(), BackendError> {
        match self {
            Self::Docker(bottle) => bottle.start().await,
        }
    }

    async fn exec_claude(&mut self, args: &[String], tty: bool) -> Result<i32, BackendError> {
        match self {
            Self::Docker(bottle) => bottle.exec_claude(args, tty).await,
        }
    }

    async fn close(&mut self) -> Result<(), BackendError> {
        match self {
            Self::Docker(bottle) => bottle.close().await,
        }
    }

    async fn proxy_log(&mut self) -> Result<Vec<String>, BackendError> {
        match self {
            Self::Docker(bottle) => bottle.proxy_log().await,
        }
    }

    fn abandon(&mut self) {
        match self {
            Self::Docker(bottle) => bottle.abandon(),
        }
    }

    async fn work_repos(&mut self) -> Result<Vec<String>, BackendError> {
        match self {
            Self::Docker(bottle) => bottle.work_repos().await,
        }
    }

    async fn work_listing(&mut self, repo: &str) -> Result<Option<WorkListing>, BackendError> {
        match self {
            Self::Docker(bottle) => bottle.work_listing(repo).await,
        }
    }

    async fn work_bundle(
        &mut self,
        repo: &str,
        refs: &[String],
        bases: &[ObjectId],
        dest: &std::path::Path,
    ) -> Result<(), BackendError> {
        match self {
            Self::Docker(bottle) => bottle.work_bundle(repo, refs, bases, dest).await,
        }
    }

    async fn changed_files(&mut self, dest: &std::path::Path) -> Result<(), BackendError> {
        match self {
            Self::Docker(bottle) => bottle.changed_files(dest).await,
        }
    }

    fn keep_agent(&mut self) -> Option<KeptBottle> {
        match self {
            Self::Docker(bottle) => bottle.keep_agent(),
        }
    }
}

impl Backend for AnyBackend {
    type Plan = AnyPlan;
    type Bottle = AnyBottle;

    async fn prepare(&self, spec: BottleSpec) -> Result<AnyPlan, BackendError> {
        match self {
            Self::Docker(docker) => docker.prepare(spec).await.map(AnyPlan::Docker),
        }
    }

    async fn prewarm(&self, spec: BottleSpec, count: usize) -> Result<Vec<String>, BackendError> {
        match self {
            Self::Docker(docker) => docker.prewarm(spec, count).await,
        }
    }

    fn launch(&self, plan: AnyPlan) -> AnyBottle {
        match (self, plan) {
            (Self::Docker(docker), AnyPlan::Docker(plan)) => AnyBottle::Docker(docker.launch(plan)),
        }
    }

    async fn list_active(&self) -> Result<Vec<ActiveBottle>, BackendError> {
        match self {
            Self::Docker(docker) => docker.list_active().await,
        }
    }

    async fn prepare_cleanup(&self) -> Result<CleanupPlan, BackendError> {
        match self {
            Self::Docker(docker) => docker.prepare_cleanup().await,
        }
    }

    async fn cleanup(&self, plan: CleanupPlan) -> Result<CleanupReport, BackendError> {
        match self {
            Self::Docker(docker) => docker.cleanup(plan).await,
        }
    }

    async fn proxy_log(&self, name: &str, follow: bool) -> Result<LogLines, BackendError> {
        match self {
            Self::Docker(docker) => docker.proxy_log(name, follow).await,
        }
    }

    async fn proxy_config(&self, name: &str) -> Result<String, BackendError> {
        match self {
            Self::Docker(docker) => docker.proxy_config(name).await,
        }
    }

    async fn reload_proxy(&self, name: &str, yaml: &str) -> Result<(), BackendError> {
        match self {
            Self::Docker(docker) => docker.reload_proxy(name, yaml).await,
        }
    }

    async fn doctor(&self, request: &DoctorRequest) -> Vec<Check> {
        match self {
            Self::Docker(docker) => docker.doctor(request).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_means_docker_and_an_unknown_name_lists_the_known_ones() {
        let printer = Printer::capture(false);
        assert!(matches!(
            AnyBackend::named(None, &printer),
            Ok(AnyBackend::Docker(_))
        ));
        assert!(matches!(
            AnyBackend::named(Some("docker"), &printer),
            Ok(AnyBackend::Docker(_))
        ));
        let err = AnyBackend::named(Some("podmn"), &printer).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown backend `podmn` in `CLAUDE_BOTTLE_BACKEND`"
        );
        assert_eq!(
            err.hints(),
            ["known backends: docker; unset `CLAUDE_BOTTLE_BACKEND` to use `docker`"]
        );
    }
}
