#![no_main]

// The property lives in the gateway crate so that the stable smoke test in
// CI checks exactly what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ionflux_gateway::fuzzing::wix_jws(data));
