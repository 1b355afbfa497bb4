//! `nanobatch models`: the catalogue as data or as tables.

use super::{CommandError, CommandResult};
use crate::catalog::{Catalog, Tier, TokenCounts};
use crate::cli::ModelsArgs;
use crate::exit_code;
use crate::ui::Printer;

pub fn run(printer: &Printer, args: &ModelsArgs) -> CommandResult {
    let catalog = match &args.manifest {
        Some(path) => match crate::manifest::load(path) {
            Ok(m) => m.catalog,
            Err(d) => {
                printer.diagnostics(&d.to_string());
                return Err(CommandError::printed(exit_code::INVALID_INPUT));
            }
        },
        None => Catalog::embedded().clone(),
    };
    if args.json {
        printer.data(&serde_json::to_string_pretty(&catalog).unwrap_or_default());
        return Ok(exit_code::OK);
    }
    printer.data(&render(&catalog, printer));
    Ok(exit_code::OK)
}

fn render(catalog: &Catalog, printer: &Printer) -> String {
    let mut out = format!(
        "model catalogue {} · prices of {} ({})\n",
        catalog.catalog_version, catalog.prices_date, catalog.prices_source
    );
    for m in &catalog.models {
        out.push('\n');
        let nick = m.nickname.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
        out.push_str(&format!("{}{nick}\n", printer.bold(&m.id)));
        out.push_str(&format!(
            "  prices per 1M tokens: input ${:.2} · text/thinking output ${:.2} · image output ${:.2} · batch {:.0}%\n",
            m.prices.input,
            m.prices.output_text,
            m.prices.output_image,
            m.batch_discount * 100.0
        ));
        let refs = match (m.references.max_objects, m.references.max_people) {
            (Some(o), Some(p)) => format!("{} ({o} objects + {p} people)", m.references.max_total),
            _ => m.references.max_total.to_string(),
        };
        let thinking = if m.thinking.always_on {
            "always on (level not settable)".to_owned()
        } else if m.thinking.levels.is_empty() {
            "none".to_owned()
        } else {
            format!("{} (default {})", m.thinking.levels.join(", "), m.thinking.default_level.as_deref().unwrap_or("-"))
        };
        let grounding = match (m.grounding.web, m.grounding.image) {
            (true, true) => "web and image search",
            (true, false) => "web search",
            _ => "none",
        };
        out.push_str(&format!(
            "  reference images: {refs} · {} tokens each · thinking: {thinking} · grounding: {grounding}\n",
            m.input_image_tokens
        ));
        out.push_str(&format!(
            "  output limit: {} text and thinking tokens per answer (what --max-cost reserves for them)\n",
            crate::ui::thousands(u64::from(m.max_output_tokens))
        ));
        out.push_str("  size  wire   tokens/image  $/image  batch $/image\n");
        for s in &m.sizes {
            let t = TokenCounts { output_image: u64::from(s.output_tokens), ..TokenCounts::default() };
            out.push_str(&format!(
                "  {:<5} {:<6} {:>12}  {:>7.4}  {:>13.4}\n",
                s.name,
                s.wire.as_deref().unwrap_or("-"),
                s.output_tokens,
                m.cost(&t, Tier::Interactive).dollars(),
                m.cost(&t, Tier::Batch).dollars()
            ));
        }
        out.push_str("  pixels:");
        for s in &m.sizes {
            out.push_str(&format!(" {:>11}", s.name));
        }
        out.push('\n');
        for ratio in &m.aspect_ratios {
            out.push_str(&format!("  {ratio:<6}"));
            for s in &m.sizes {
                let cell = m.pixels(ratio, &s.name).map(|(w, h)| format!("{w}x{h}")).unwrap_or_default();
                out.push_str(&format!(" {cell:>11}"));
            }
            out.push('\n');
        }
    }
    out
}
