//! Output names: a rendered template becomes a relative path that is safe on every file system
//! and stays inside the output directory, or an explanation of why it cannot.

/// Longest path component (bytes), leaving room for `.json`, `.jpeg` and temp-file suffixes.
pub const MAX_COMPONENT: usize = 150;
/// Longest relative path (bytes).
pub const MAX_PATH: usize = 400;

const WINDOWS_RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2",
    "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Checks a rendered output name and returns it normalised (`/`-separated, no empty or `.`
/// components). The name has no extension: the extension follows the returned image type.
pub fn normalise_output(rendered: &str) -> Result<String, String> {
    let text = rendered.trim();
    if text.is_empty() {
        return Err("the output name is empty".into());
    }
    if text.contains('\0') {
        return Err("the output name contains a NUL byte".into());
    }
    if text.contains('\\') {
        return Err(format!("output name `{text}` contains `\\`; use `/` to separate directories"));
    }
    if text.starts_with('/') || (text.len() >= 2 && text.as_bytes()[1] == b':') {
        return Err(format!("output name `{text}` is an absolute path; names are relative to the output directory"));
    }
    let mut named = 0usize;
    let mut clean = true;
    for part in text.split('/') {
        match part {
            "" | "." => {
                clean = false;
                continue;
            }
            ".." => return Err(format!("output name `{text}` uses `..`; names must stay inside the output directory")),
            _ => {}
        }
        check_component(part, text)?;
        named += 1;
    }
    if named == 0 {
        return Err(format!("output name `{text}` names no file"));
    }
    // Most names need no rewriting: no list to join, no second copy.
    let joined = if clean {
        text.to_owned()
    } else {
        text.split('/').filter(|p| !matches!(*p, "" | ".")).collect::<Vec<_>>().join("/")
    };

    if joined.len() > MAX_PATH {
        return Err(format!("output name is {} bytes long; the limit is {MAX_PATH}", joined.len()));
    }
    Ok(joined)
}

fn check_component(part: &str, whole: &str) -> Result<(), String> {
    if part.starts_with('.') {
        return Err(format!(
            "output name `{whole}` has a part starting with `.`; hidden names are reserved for nanobatch's state"
        ));
    }
    if part.len() > MAX_COMPONENT {
        return Err(format!(
            "a part of output name `{whole}` is {} bytes long; the limit is {MAX_COMPONENT}",
            part.len()
        ));
    }
    if let Some(bad) =
        part.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '=' | '@' | ',')))
    {
        return Err(format!(
            "output name `{whole}` contains `{}`; use letters, digits, `-`, `_` and `.` (apply `| slug` to values)",
            bad.escape_default()
        ));
    }
    if part.ends_with('.') || part.ends_with(' ') {
        return Err(format!("a part of output name `{whole}` ends with `.`, which Windows cannot store"));
    }
    let stem = part.split('.').next().unwrap_or(part);
    if stem.len() <= 4 && is_windows_reserved(&stem.to_ascii_uppercase()) {
        return Err(format!("output name `{whole}` uses `{part}`, a name reserved on Windows"));
    }
    Ok(())
}

/// `CON`, `NUL`, `COM1`, … (upper case, without extension).
pub fn is_windows_reserved(stem: &str) -> bool {
    WINDOWS_RESERVED.contains(&stem)
}

/// Hash for collision checks: case-insensitive, as on macOS and Windows file systems. Equal
/// hashes are confirmed with [`same_file_name`].
pub fn collision_hash(normalised: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    let mut buf = [0u8; MAX_PATH];
    if normalised.is_ascii() && normalised.len() <= buf.len() {
        let lower = &mut buf[..normalised.len()];
        lower.copy_from_slice(normalised.as_bytes());
        lower.make_ascii_lowercase();
        h.write(lower);
    } else {
        h.write(normalised.to_lowercase().as_bytes());
    }
    h.finish()
}

/// Whether two normalised names are one file on a case-insensitive file system.
pub fn same_file_name(a: &str, b: &str) -> bool {
    a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

#[cfg(test)]
mod tests {
    use super::normalise_output;

    #[test]
    fn accepts_plain_names() {
        assert_eq!(normalise_output("packshot/SKU-001-1x1-2K").unwrap(), "packshot/SKU-001-1x1-2K");
        assert_eq!(normalise_output("a//b/./c").unwrap(), "a/b/c");
    }

    #[test]
    fn refuses_escapes_and_unsafe_names() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "C:/x",
            "a\\b",
            "a\0b",
            "ok/.hidden",
            "ok/CON",
            "ok/nul.txt",
            "a b",
            "what?",
            "",
            "trailing.",
        ] {
            assert!(normalise_output(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(normalise_output(&"x".repeat(200)).is_err());
    }
}
