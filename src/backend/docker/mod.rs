//! The Docker backend.

pub mod archive;
pub mod image;

use super::{
    ActiveBottle, Backend, BackendError, BottleHandle, BottleSpec, CleanupPlan, CleanupReport, Plan,
};

#[derive(Debug, Default)]
pub struct DockerBackend;

pub struct DockerPlan;
impl std::fmt::Display for DockerPlan {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}
impl Plan for DockerPlan {
    fn agent_name(&self) -> &str {
        ""
    }
}
pub struct DockerBottle;
impl BottleHandle for DockerBottle {
    async fn start(&mut self) -> Result<(), BackendError> { Err(BackendError::new("not yet")) }
    async fn exec_claude(&mut self, _args: &[String], _tty: bool) -> Result<i32, BackendError> {
        Err(BackendError::new("not yet"))
    }
    async fn cp_in(&mut self, _h: &std::path::Path, _c: &str) -> Result<(), BackendError> {
        Err(BackendError::new("not yet"))
    }
    async fn close(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
}
pub struct DockerCleanupPlan;
impl std::fmt::Display for DockerCleanupPlan {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}
impl CleanupPlan for DockerCleanupPlan {
    fn is_empty(&self) -> bool {
        true
    }
}

impl Backend for DockerBackend {
    type Plan = DockerPlan;
    type Bottle = DockerBottle;
    type CleanupPlan = DockerCleanupPlan;
    async fn prepare(&self, _spec: BottleSpec) -> Result<DockerPlan, BackendError> {
        Err(BackendError::new("not yet"))
    }
    fn launch(&self, _plan: DockerPlan) -> DockerBottle {
        DockerBottle
    }
    async fn list_active(&self) -> Result<Vec<ActiveBottle>, BackendError> {
        Ok(vec![])
    }
    async fn prepare_cleanup(&self) -> Result<DockerCleanupPlan, BackendError> {
        Ok(DockerCleanupPlan)
    }
    async fn cleanup(&self, _p: DockerCleanupPlan) -> Result<CleanupReport, BackendError> {
        Ok(CleanupReport::default())
    }
}
