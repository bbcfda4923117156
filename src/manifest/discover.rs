use super::{Manifest, ManifestError};
use std::path::PathBuf;

pub const DEFAULT_MANIFEST_JSON: &str = "{}";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestSource {
    Embedded,
    File(PathBuf),
}

pub fn load(_explicit: Option<&std::path::Path>) -> Result<Manifest, ManifestError> {
    Err(ManifestError("not yet".into()))
}

pub fn load_from_str(_text: &str, _source: ManifestSource) -> Result<Manifest, ManifestError> {
    Err(ManifestError("not yet".into()))
}
