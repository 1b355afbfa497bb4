//! Exit codes: part of the public contract (scripts branch on them).

/// Every task succeeded (or was already done).
pub const OK: i32 = 0;
/// The run finished, and some tasks failed (or produced no image, or were skipped).
pub const TASKS_FAILED: i32 = 1;
/// A fatal runtime error: the journal or an output could not be written, the key was rejected.
pub const FATAL: i32 = 2;
/// Invalid input: manifest, CSV, reference files, flags. Nothing was sent or written.
pub const INVALID_INPUT: i32 = 3;
/// Stopped by a guard (budget, daily quota); the run can be resumed.
pub const STOPPED_BY_GUARD: i32 = 4;
/// Interrupted (Ctrl-C).
pub const INTERRUPTED: i32 = 130;
