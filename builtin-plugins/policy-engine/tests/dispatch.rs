//! Rule dispatch (type buckets, hash indexes, guard groups) must not change results: a
//! set's matches equal those of each rule compiled alone, in rule order.

use abi_stable::std_types::{RArc, ROption, RVec};
use sysflow_plugin_api::{opflags::*, Event, File, FileFlow, FlatRecord, Header, Oid, Process, ProcessEvent};
use sysflow_policy_engine::{compile_policy_text, CompileOptions, EvalState, RuleSet, Verdict};

fn compile(text: &str) -> RuleSet {
    match compile_policy_text("t.yaml", text, &CompileOptions::default()) {
        Ok(r) => r,
        Err(e) => panic!("compile failed: {e}"),
    }
}

const MACROS: &str = "- macro: open_write\n  condition: (sf.opflags in (WRITE) or (sf.opflags = OPEN and sf.file.openflags in (CREAT)))\n\
- macro: web\n  condition: sf.proc.name in (nginx, httpd)\n";

/// Rules of every dispatch kind, interleaved: 10 indexed on `sf.proc.name`, 6 guarded by
/// `open_write`, 4 guarded by `sf.opflags = EXEC`, and unguarded ones.
fn rules() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for i in 0..10 {
        v.push((format!("idx{i}"), format!("sf.proc.name in (p{i}, nginx{}) and sf.ts > 0", i % 2)));
        if i < 6 {
            v.push((format!("ow{i}"), format!("open_write and sf.file.path startswith /d{}", i % 3)));
        }
        if i < 4 {
            v.push((format!("ex{i}"), format!("sf.opflags = EXEC and sf.proc.exe contains {}", ["p", "x", "nginx", "1"][i])));
        }
        if i % 3 == 0 {
            v.push((format!("any{i}"), format!("web or sf.file.path endswith {i}")));
        }
    }
    v
}

fn policy(rules: &[(String, String)]) -> String {
    let mut s = MACROS.to_string();
    for (n, c) in rules {
        s.push_str(&format!("- rule: {n}\n  desc: d\n  priority: low\n  condition: {c}\n"));
    }
    s
}

fn records() -> Vec<FlatRecord> {
    let mut out = Vec::new();
    for exe in ["/bin/p1", "/usr/sbin/nginx", "/usr/sbin/nginx1", "/x/p7", "/bin/sh"] {
        let anc = RArc::new(RVec::from(vec![RArc::new(Process {
            oid: Oid { create_ts: 1, hpid: 1 },
            exe: exe.into(),
            ..Default::default()
        })]));
        for flags in [OP_EXEC, OP_CLONE] {
            let ev = ProcessEvent { proc_oid: Oid { create_ts: 1, hpid: 1 }, ts: 5, op_flags: flags, ..Default::default() };
            let mut r = FlatRecord::new(RArc::new(Header::default()), Event::Process(ev));
            r.ancestry = anc.clone();
            out.push(r);
        }
        for path in ["/d0/a", "/d1/b3", "/d2/c", "/e/6"] {
            let file = RArc::new(File { path: path.into(), restype: 'f' as i32, ..Default::default() });
            for (flags, open) in [(OP_WRITE_SEND, 1), (OP_OPEN, 0o100), (OP_OPEN | OP_READ_RECV, 0)] {
                let ev = FileFlow { proc_oid: Oid { create_ts: 1, hpid: 1 }, ts: 5, op_flags: flags, open_flags: open, ..Default::default() };
                let mut r = FlatRecord::new(RArc::new(Header::default()), Event::FileFlow(ev));
                r.ancestry = anc.clone();
                r.file = ROption::RSome(file.clone());
                out.push(r);
            }
        }
    }
    out
}

fn names(rs: &RuleSet, st: &mut EvalState, r: &FlatRecord) -> Vec<String> {
    let mut r = r.clone();
    match rs.evaluate(&mut r, st) {
        Verdict::Drop => vec!["<dropped>".into()],
        Verdict::Pass { .. } => r.context.matched.iter().map(|m| m.name.to_string()).collect(),
    }
}

#[test]
fn dispatch_equals_one_rule_at_a_time_in_rule_order() {
    let all = rules();
    let set = compile(&policy(&all));
    let singles: Vec<RuleSet> = all.iter().map(|r| compile(&policy(std::slice::from_ref(r)))).collect();
    let (mut st, mut st1) = (EvalState::default(), EvalState::default());
    let mut total = 0;
    // Twice: the second pass reads the per-entity caches filled by the first.
    for pass in 0..2 {
        for (i, r) in records().iter().enumerate() {
            let want: Vec<String> = singles.iter().flat_map(|s| names(s, &mut st1, r)).collect();
            let got = names(&set, &mut st, r);
            assert_eq!(got, want, "record {i}, pass {pass}");
            total += got.len();
        }
    }
    // The records exercise every kind of rule.
    for prefix in ["idx", "ow", "ex", "any"] {
        assert!(records().iter().any(|r| names(&set, &mut st, r).iter().any(|n| n.starts_with(prefix))), "{prefix}");
    }
    assert!(total > 50, "only {total} matches");
}
