//! Prints generated records one per line (`{:?}`) for eyeballing a scenario:
//! `cargo run -p sysflow-tracegen --example print_records -- 3000 7 mixed`.

use sysflow_tracegen::{GenConfig, Generator, Scenario};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let records = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let seed = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let scenario: Scenario = match args.get(3).map(|s| s.parse()).transpose() {
        Ok(s) => s.unwrap_or(Scenario::Mixed),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    for r in Generator::new(GenConfig { records, seed, scenario, ..GenConfig::default() }) {
        println!("{r:?}");
    }
}
