#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sysflow_fuzz_targets::sigma_policy(data));
