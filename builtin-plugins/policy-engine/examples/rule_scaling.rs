//! Rule-count scaling: `cargo run --release -p sysflow-policy-engine --example rule_scaling -- [records] [seconds]`.
//!
//! Generates a trace with `sysflow-tracegen` (mixed scenario, seed 7), resolves it once,
//! then compiles synthetic rule sets of 10, 100 and 1000 rules of the usual shape
//! (`sf.type = X and sf.proc.name in (...) and sf.file.path startswith ...`, varied
//! literals, one rule in ten naming processes the trace has) and evaluates the trace with
//! each on one thread, printing records per second and the cost relative to 10 rules.

use std::time::Instant;

use abi_stable::std_types::RStr;
use sysflow_plugin_api::{Batch, FlatRecord, Host, LogLevel, Processor, SysFlowRecord};
use sysflow_policy_engine::{compile_policy_text, ActionRegistry, CompileOptions, EvalState, Verdict};
use sysflow_reader::SysFlowReader;
use sysflow_tracegen::{generate, GenConfig};

extern "C" fn quiet(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

/// Process names and path prefixes the generated trace contains.
const REAL_NAMES: [&str; 12] = [
    "nginx", "python3.11", "redis-server", "postgres", "coredns", "bash", "sshd", "cron", "containerd", "kubelet",
    "sh", "curl",
];
const REAL_PREFIXES: [&str; 8] = ["/etc/", "/usr/share/nginx/", "/app/", "/lib/", "/proc/", "/var/lib/", "/tmp/", "/usr/local/lib/"];
const TYPES: [&str; 5] = ["PE", "FF", "FE", "NF", "PF"];

/// A deterministic pseudo-random sequence (xorshift), so rule sets are reproducible.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as usize
    }
}

/// `n` rules of the common shape with varied literals.
fn rule_set(n: usize) -> String {
    let mut g = Lcg(0x9e37_79b9_7f4a_7c15);
    let mut out = String::from("- list: shells\n  items: [bash, sh, zsh, dash]\n");
    for i in 0..n {
        let t = TYPES[g.next() % TYPES.len()];
        let names: Vec<String> = (0..3)
            .map(|k| {
                if k == 0 && i % 10 == 0 {
                    REAL_NAMES[g.next() % REAL_NAMES.len()].to_string()
                } else {
                    format!("tool{}_{}", i, g.next() % 1000)
                }
            })
            .collect();
        let prefix = if i % 10 == 0 {
            REAL_PREFIXES[g.next() % REAL_PREFIXES.len()].to_string()
        } else {
            format!("/opt/app{}/d{}/", g.next() % 500, i)
        };
        let cond = match t {
            "NF" | "PF" => format!("sf.type = {t} and sf.proc.name in ({}) and sf.proc.uid = {}", names.join(", "), g.next() % 3),
            "PE" => format!(
                "sf.type = {t} and sf.proc.name in ({}) and sf.opflags = EXEC and sf.proc.cmdline contains {}",
                names.join(", "),
                ["wget", "base64", "/tmp", "http"][g.next() % 4]
            ),
            _ => format!(
                "sf.type = {t} and sf.proc.name in ({}) and sf.file.path startswith {prefix}",
                names.join(", ")
            ),
        };
        out.push_str(&format!(
            "- rule: synthetic rule {i}\n  desc: generated\n  condition: {cond}\n  output: \"%sf.proc.name\"\n  priority: medium\n  tags: [synthetic]\n"
        ));
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let records: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let mut recs: Vec<SysFlowRecord> = Vec::with_capacity(records as usize);
    generate(&GenConfig { records, seed: 7, ..Default::default() }, |r| recs.push(r));
    let mut reader = SysFlowReader::with_host(Host::new(quiet, "reader"));
    let flat: Vec<FlatRecord> = match reader.process(Batch::sysflow(recs)) {
        Ok(Some(Batch::Flat(f))) => f.iter().cloned().collect(),
        _ => Vec::new(),
    };
    println!("{} generated records, {} flat records", records, flat.len());
    let mut base = None;
    for n in [10usize, 100, 1000] {
        let opts = CompileOptions { actions: ActionRegistry::with_builtins(), ..Default::default() };
        let rs = match compile_policy_text(&format!("synthetic-{n}.yaml"), &rule_set(n), &opts) {
            Ok(rs) => rs,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        };
        let mut st = EvalState::default();
        let (mut done, mut matched) = (0u64, 0u64);
        let mut batch = flat.clone();
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < secs {
            for r in batch.iter_mut() {
                r.context.matched.clear();
                if let Verdict::Pass { matched: m } = rs.evaluate(r, &mut st) {
                    matched += (m > 0) as u64;
                }
            }
            done += batch.len() as u64;
        }
        let rate = done as f64 / start.elapsed().as_secs_f64();
        let ns = 1e9 / rate;
        let rel = ns / *base.get_or_insert(ns);
        println!(
            "{n:>5} rules ({} enabled): {:>10.0} records/s, {:>6.0} ns/record, cost x{rel:.2} of 10 rules, {:.2}% records matched",
            rs.enabled_rule_count(),
            rate,
            ns,
            100.0 * matched as f64 / done.max(1) as f64
        );
    }
}
