//! The response parser and the streaming splitter (see `nanobatch::fuzzing::response`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nanobatch::fuzzing::response(data));
