//! `init`: writes the embedded default manifest to ./claude-bottle.json.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Error;
use super::args::InitArgs;
use crate::manifest::DEFAULT_MANIFEST_JSON;
use crate::printer::Printer;

pub const INIT_FILE: &str = crate::manifest::MANIFEST_FILE_NAME;

pub fn run(args: InitArgs, printer: &Printer) -> Result<u8, Error> {
    let path = PathBuf::from(INIT_FILE);
    write_manifest(&path, args.force)?;
    printer.status(format_args!(
        "wrote `{}`; edit it, then run `claude-bottle start`",
        path.display()
    ));
    Ok(0)
}

/// Writes through a temporary file in the same directory and renames it into
/// place, so a failure never leaves a half-written manifest behind.
fn write_manifest(path: &Path, force: bool) -> Result<(), Error> {
    let write_err = |source| Error::InitWrite {
        path: path.to_path_buf(),
        source,
    };
    if !force && path.exists() {
        return Err(Error::InitExists {
            path: path.to_path_buf(),
        });
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(write_err)?;
    tmp.write_all(DEFAULT_MANIFEST_JSON.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(write_err)?;
    let persisted = if force {
        tmp.persist(path).map(drop)
    } else {
        tmp.persist_noclobber(path).map(drop)
    };
    persisted.map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            Error::InitExists {
                path: path.to_path_buf(),
            }
        } else {
            write_err(e.error)
        }
    })
}
