//! `schema`: the JSON Schema of the manifest, generated from its wire types,
//! on stdout.

use std::io::Write;

use super::Error;

pub fn run() -> Result<u8, Error> {
    let mut text = crate::manifest::json_schema_text();
    text.push('\n');
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(Error::Stdout)?;
    Ok(0)
}
