//! `nanobatch validate MANIFEST`: load and check everything; report every problem; no network.

use super::{CommandResult, load_and_plan};
use crate::catalog::Tier;
use crate::cli::ValidateArgs;
use crate::exit_code;
use crate::plan::TaskView;
use crate::ui::{Printer, counted};

pub fn run(printer: &Printer, args: &ValidateArgs) -> CommandResult {
    let (manifest, plan) = load_and_plan(printer, &args.manifest)?;
    let cost: crate::catalog::Usd =
        plan.tasks.iter().map(|t| TaskView::new(&manifest, t).model.cost(&t.estimate, Tier::Interactive)).sum();
    let refs: usize = plan.tasks.iter().map(|t| t.refs.len()).sum();
    printer.data(&format!(
        "{}: valid — {}, {}, {} checked, estimated {cost}",
        args.manifest.display(),
        counted(manifest.jobs.len() as u64, "job"),
        counted(plan.tasks.len() as u64, "task"),
        counted(refs as u64, "reference image"),
    ));
    Ok(exit_code::OK)
}
