//! The journal reader and resume state (see `nanobatch::fuzzing::journal`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nanobatch::fuzzing::journal(data));
