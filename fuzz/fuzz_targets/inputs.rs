#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ecr_push::fuzzing::inputs(data));
