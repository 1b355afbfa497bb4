//! The budget (`--max-cost`, `limits.max_cost_usd`): the spend allowed in an output directory,
//! all runs included.
//!
//! Every request reserves its worst case ([`worst_case`]) before it is sent and settles to what
//! its answer says it cost. A request starts only when spent + possibly billed + reserved in
//! flight + its own worst case stays within the limit. One that does not fit while others are
//! in flight waits for them to settle; the run stops only when the next request would not fit
//! with nothing in flight. So real usage cannot take the spend over the budget, unless the
//! server bills beyond the model's output limit: then the worst case of that model grows to
//! what was billed, for the rest of the run.
//!
//! The ledger is pure bookkeeping; the dispatcher asks it and journals.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::catalog::{TokenCounts, Usd};
use crate::plan::TaskIndex;
use crate::plan::estimate::worst_case;

/// Whether a request may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// It does not fit now, but requests in flight hold reservations that may free room.
    Wait,
    /// It would not fit even with nothing in flight.
    Stop,
}

/// Reservations of the requests in flight and what the journal says was spent before.
#[derive(Debug, Default)]
pub struct Ledger {
    limit: Option<Usd>,
    spent_before: Usd,
    possibly_billed_before: Usd,
    reserved: HashMap<TaskIndex, Usd>,
    reserved_total: Usd,
    /// Per model slot: the most text and thinking tokens an answer of this run carried beyond
    /// its bound, and the most image tokens beyond the catalogue's table.
    seen_output_excess: HashMap<usize, u64>,
    seen_image_excess: HashMap<usize, u64>,
}

impl Ledger {
    pub fn new(limit: Option<Usd>, spent_before: Usd, possibly_billed_before: Usd) -> Ledger {
        Ledger { limit, spent_before, possibly_billed_before, ..Ledger::default() }
    }

    pub fn limit(&self) -> Option<Usd> {
        self.limit
    }

    pub fn reserved(&self) -> Usd {
        self.reserved_total
    }

    /// Whether a request whose worst case is `worst` may start, given what this run has spent
    /// and may have been billed so far (`this_run`).
    pub fn admit(&self, this_run: Usd, worst: Usd) -> Admission {
        let Some(limit) = self.limit else { return Admission::Go };
        let committed = self.spent_before + self.possibly_billed_before + this_run;
        if committed + self.reserved_total + worst <= limit {
            Admission::Go
        } else if self.reserved_total.is_zero() {
            Admission::Stop
        } else {
            Admission::Wait
        }
    }

    pub fn reserve(&mut self, task: TaskIndex, worst: Usd) {
        if let Some(old) = self.reserved.insert(task, worst) {
            self.reserved_total -= old;
        }
        self.reserved_total += worst;
    }

    /// The answer came (or the request left the run): its reservation is freed. Whether it held one.
    pub fn release(&mut self, task: TaskIndex) -> bool {
        match self.reserved.remove(&task) {
            Some(cost) => {
                self.reserved_total -= cost;
                true
            }
            None => false,
        }
    }

    /// The worst-case tokens of a request of the model in `slot` whose answer is bounded to
    /// `output_limit` text and thinking tokens: [`worst_case`], raised by the most that answers
    /// of this model carried beyond their bounds in this run.
    pub fn worst_tokens(&self, slot: usize, estimate: &TokenCounts, output_limit: u64) -> TokenCounts {
        let excess = self.seen_output_excess.get(&slot).copied().unwrap_or(0);
        let mut worst = worst_case(estimate, output_limit.saturating_add(excess));
        worst.output_image += self.seen_image_excess.get(&slot).copied().unwrap_or(0);
        worst
    }

    /// Learns from an answer's usage. Returns by how many tokens the answer went beyond its
    /// text-and-thinking bound, when that is more than any answer of this model before (the
    /// server billed beyond the limit).
    pub fn observe(&mut self, slot: usize, usage: &TokenCounts, expected_image: u64, output_limit: u64) -> Option<u64> {
        let image = self.seen_image_excess.entry(slot).or_default();
        *image = (*image).max(usage.output_image.saturating_sub(expected_image));
        let excess = (usage.output_text + usage.thinking).saturating_sub(output_limit);
        let seen = self.seen_output_excess.entry(slot).or_default();
        let raised = excess > *seen;
        *seen = (*seen).max(excess);
        raised.then_some(excess)
    }

    /// The figures of a budget stop: spent this run and before, possibly billed, reserved, and
    /// the worst case of the request that did not fit.
    pub fn figures(&self, spent: Usd, possibly_billed: Usd, next: Usd) -> Option<BudgetFigures> {
        Some(BudgetFigures {
            limit_usd: self.limit?,
            spent_before_usd: self.spent_before,
            spent_usd: spent,
            possibly_billed_usd: self.possibly_billed_before + possibly_billed,
            reserved_usd: self.reserved_total,
            next_usd: next,
        })
    }
}

/// Where the money stood when the budget stopped a run; the terms add up to the total shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetFigures {
    pub limit_usd: Usd,
    /// Spent in this output directory by earlier runs.
    pub spent_before_usd: Usd,
    /// Spent by this run.
    pub spent_usd: Usd,
    /// Requests whose outcome is unknown, this run and before (at their estimates).
    pub possibly_billed_usd: Usd,
    /// Worst cases reserved by requests still in flight (batch jobs, when the run stopped).
    pub reserved_usd: Usd,
    /// The worst case of the next request, which did not fit.
    pub next_usd: Usd,
}

impl BudgetFigures {
    /// Spent, all runs.
    pub fn spent_total(&self) -> Usd {
        self.spent_before_usd + self.spent_usd
    }

    /// What counts against the budget.
    pub fn committed(&self) -> Usd {
        self.spent_total() + self.possibly_billed_usd + self.reserved_usd
    }
}

impl fmt::Display for BudgetFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let over = self.committed() > self.limit_usd;
        write!(f, "{}: {} spent", if over { "budget exceeded" } else { "budget reached" }, self.spent_total())?;
        if !self.spent_before_usd.is_zero() {
            write!(f, " ({} this run, {} before)", self.spent_usd, self.spent_before_usd)?;
        }
        write!(
            f,
            " + {} possibly billed + {} reserved in flight = {} of {}",
            self.possibly_billed_usd,
            self.reserved_usd,
            self.committed(),
            self.limit_usd
        )?;
        if over {
            write!(f, "; the server billed more than the worst case reserved (beyond the model's output limit)")
        } else {
            write!(f, "; the next request could cost up to {} (its worst case), which would cross it", self.next_usd)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Admission, BudgetFigures, Ledger};
    use crate::catalog::{TokenCounts, Usd};

    fn usd(cents: i64) -> Usd {
        Usd::from_pico(cents * 10_000_000_000)
    }

    #[test]
    fn a_request_waits_while_others_hold_room_and_stops_the_run_only_alone() {
        let mut ledger = Ledger::new(Some(usd(100)), usd(20), usd(5));
        assert_eq!(ledger.admit(Usd::ZERO, usd(75)), Admission::Go, "20 + 5 + 75 = 100 fits exactly");
        ledger.reserve(0, usd(40));
        assert_eq!(ledger.admit(Usd::ZERO, usd(40)), Admission::Wait);
        assert!(ledger.release(0));
        assert!(!ledger.release(0), "released once");
        assert_eq!(ledger.admit(usd(50), usd(40)), Admission::Stop, "20 + 5 + 50 + 40 > 100 with nothing in flight");
        assert_eq!(Ledger::new(None, usd(500), Usd::ZERO).admit(usd(500), usd(500)), Admission::Go);
    }

    #[test]
    fn answers_beyond_the_output_limit_raise_the_worst_case() {
        let mut ledger = Ledger::new(Some(usd(100)), Usd::ZERO, Usd::ZERO);
        let estimate = TokenCounts { input_text: 10, output_image: 747, thinking: 120, ..TokenCounts::default() };
        assert_eq!(ledger.worst_tokens(0, &estimate, 32_768).thinking, 32_768);
        let within = TokenCounts { thinking: 3_000, output_image: 747, ..TokenCounts::default() };
        assert_eq!(ledger.observe(0, &within, 747, 32_768), None);
        let beyond = TokenCounts { thinking: 100_000, output_image: 800, ..TokenCounts::default() };
        assert_eq!(ledger.observe(0, &beyond, 747, 32_768), Some(100_000 - 32_768));
        assert_eq!(ledger.observe(0, &beyond, 747, 32_768), None, "no news");
        let worst = ledger.worst_tokens(0, &estimate, 32_768);
        assert_eq!((worst.thinking, worst.output_image), (100_000, 800));
        assert_eq!(ledger.worst_tokens(1, &estimate, 32_768).thinking, 32_768, "another model is not affected");
        assert_eq!(ledger.worst_tokens(0, &estimate, 1_000).thinking, 1_000 + 100_000 - 32_768, "a job's own bound");
    }

    #[test]
    fn the_stop_message_adds_up() {
        let figures = BudgetFigures {
            limit_usd: usd(50),
            spent_before_usd: usd(10),
            spent_usd: usd(25),
            possibly_billed_usd: usd(3),
            reserved_usd: usd(2),
            next_usd: usd(14),
        };
        assert_eq!(figures.committed(), usd(40));
        assert_eq!(
            figures.to_string(),
            "budget reached: $0.3500 spent ($0.2500 this run, $0.1000 before) + $0.0300 possibly billed + \
             $0.0200 reserved in flight = $0.4000 of $0.5000; the next request could cost up to $0.1400 \
             (its worst case), which would cross it"
        );
        let over = BudgetFigures { spent_usd: usd(45), ..figures };
        assert!(over.to_string().starts_with("budget exceeded: $0.5500 spent"), "{over}");
    }
}
