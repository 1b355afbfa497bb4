//! The integration tests: one binary (see ARCHITECTURE.md), modules by area.

mod adopt;
mod batch;
mod bounds;
mod budget;
mod cli;
mod conversation;
mod faults;
mod fuzz_corpora;
mod gateways;
mod hardening;
mod inputs;
mod invalid;
mod modes;
mod outputs;
mod report;
mod resume;
mod review;
mod run;
mod run_home;
mod schemas;
mod soak;
mod streaming;
mod support;
mod terminal;
