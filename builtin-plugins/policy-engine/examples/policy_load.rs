//! Policy load time: `cargo run --release -p sysflow-policy-engine --example policy_load -- <policy path>...`.
//!
//! Parses and compiles each Falco-syntax policy file or directory as the engine does at
//! start-up and prints `<path> <seconds> <rules> <enabled>`; `bench/policy_load.sh`
//! generates large policies and runs this under `/usr/bin/time` for the peak RSS.

use std::{path::Path, time::Instant};

use sysflow_policy_engine::{compile_policies_with, ActionRegistry, CompileOptions};

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: policy_load <policy path>...");
        std::process::exit(2);
    }
    let opts = CompileOptions { actions: ActionRegistry::with_builtins(), ..Default::default() };
    let mut status = 0;
    for p in &paths {
        let started = Instant::now();
        match compile_policies_with(Path::new(p), &opts) {
            Ok(rs) => println!("{p} {:.3} {} {}", started.elapsed().as_secs_f64(), rs.rule_count(), rs.enabled_rule_count()),
            Err(e) => {
                println!("{p} {:.3} error", started.elapsed().as_secs_f64());
                eprintln!("{e}");
                status = 1;
            }
        }
    }
    std::process::exit(status);
}
