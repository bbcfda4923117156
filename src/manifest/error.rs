#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);
