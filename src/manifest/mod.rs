//! The manifest: YAML → raw schema ([`schema`]) → validated model ([`model`]), with every
//! problem reported at once, each with file, line, column, key path and a fix.
//!
//! Only [`load`] reads files and only [`load::parse`] knows the YAML crate. Nothing here touches
//! the network.

pub mod diagnostic;
pub mod load;
pub mod locate;
pub mod model;
pub mod schema;
pub mod sheet;
pub mod template;
pub mod validate;
pub mod vars;

use std::path::Path;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use model::Manifest;

/// Reads, parses and validates the manifest at `path` (and its CSV files and reference images).
pub fn load(path: &Path) -> Result<Manifest, Diagnostics> {
    let source = read_source(path)?;
    let parsed = load::parse(path, &source)?;
    validate::validate(path, &source, parsed)
}

/// Validates manifest text as if it were the file at `path` (tests, fuzzing).
pub fn load_str(path: &Path, source: &str) -> Result<Manifest, Diagnostics> {
    let parsed = load::parse(path, source)?;
    validate::validate(path, source, parsed)
}

fn read_source(path: &Path) -> Result<String, Diagnostics> {
    let fail = |message: String, help: Option<&str>| {
        let d = Diagnostic::error(path, message);
        Diagnostics(vec![match help {
            Some(h) => d.with_help(h),
            None => d,
        }])
    };
    let meta = crate::fsutil::metadata(path).map_err(|e| {
        fail(format!("cannot read manifest {}: {}", path.display(), crate::fsutil::io_reason(&e)), None)
    })?;
    if !meta.is_file() {
        return Err(fail(format!("{} is not a file", path.display()), None));
    }
    if meta.len() > load::MAX_MANIFEST_BYTES as u64 {
        return Err(fail(
            format!("manifest is {} bytes; the limit is {}", meta.len(), load::MAX_MANIFEST_BYTES),
            Some("put data rows in a CSV file and point `vars:` at it"),
        ));
    }
    let bytes = crate::fsutil::read(path).map_err(|e| fail(e.to_string(), None))?;
    String::from_utf8(bytes).map_err(|e| {
        fail(
            format!("manifest is not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()),
            Some("save the file as UTF-8"),
        )
    })
}
