#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sysflow_fuzz_targets::pipeline_config(data));
