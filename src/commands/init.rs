//! `nanobatch init [DIR]`: a commented starter manifest, a CSV and a reference image.

use std::path::Path;

use super::{CommandError, CommandResult};
use crate::cli::InitArgs;
use crate::exit_code;
use crate::fsutil;
use crate::ui::Printer;

const MANIFEST: &str = include_str!("init_manifest.yaml");
const CSV: &str =
    "sku,name,color\nMUG-001,ceramic mug,sage green\nMUG-002,ceramic mug,terracotta\nBOT-001,glass bottle,smoke grey\n";

pub fn run(printer: &Printer, args: &InitArgs) -> CommandResult {
    let files: [(&str, Vec<u8>); 3] = [
        ("nanobatch.yaml", MANIFEST.as_bytes().to_vec()),
        ("data/products.csv", CSV.as_bytes().to_vec()),
        ("refs/brand-style.png", brand_image()),
    ];
    if !args.force {
        let existing: Vec<String> = files
            .iter()
            .map(|(p, _)| args.dir.join(p))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(CommandError::invalid(format!("would overwrite {}", existing.join(", ")))
                .with_hint("add --force to overwrite"));
        }
    }
    for (rel, bytes) in &files {
        let path = args.dir.join(rel);
        if let Some(parent) = path.parent() {
            fsutil::create_dir_all(parent).map_err(|e| CommandError::fatal(e.to_string()))?;
        }
        fsutil::write_atomic(&path, bytes).map_err(|e| CommandError::fatal(e.to_string()))?;
        printer.note(&format!("wrote {}", path.display()));
    }
    let manifest = args.dir.join("nanobatch.yaml");
    printer.note(&format!(
        "next: nanobatch plan {m}   (the cost, no network)\n      nanobatch run {m} --mock   (the whole pipeline on the built-in emulator)",
        m = display(&manifest)
    ));
    Ok(exit_code::OK)
}

fn display(path: &Path) -> String {
    path.strip_prefix(".").unwrap_or(path).display().to_string()
}

/// A small brand-style swatch to use as a reference image.
fn brand_image() -> Vec<u8> {
    let img = image::RgbImage::from_fn(256, 256, |x, y| {
        if (x / 32 + y / 32) % 2 == 0 { image::Rgb([38, 70, 83]) } else { image::Rgb([233, 196, 106]) }
    });
    let mut out = Vec::new();
    let _ = img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png);
    out
}
