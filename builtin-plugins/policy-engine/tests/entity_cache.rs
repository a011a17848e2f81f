//! Process- and file-scoped test results are cached per entity across records: these
//! tests pin down when a cached result must not be reused.

use abi_stable::std_types::{RArc, ROption, RVec};
use sysflow_plugin_api::{Container, Event, File, FileFlow, FlatRecord, Header, Oid, Process, ProcessEvent};
use sysflow_policy_engine::{compile_policy_text, CompileOptions, EvalState, RuleSet, Verdict};

fn compile(text: &str) -> RuleSet {
    match compile_policy_text("t.yaml", text, &CompileOptions::default()) {
        Ok(r) => r,
        Err(e) => panic!("compile failed: {e}"),
    }
}

fn rule(name: &str, cond: &str) -> String {
    format!("- rule: {name}\n  desc: d\n  priority: low\n  condition: {cond}\n")
}

fn ancestry(exe: &str) -> RArc<RVec<RArc<Process>>> {
    RArc::new(RVec::from(vec![RArc::new(Process {
        oid: Oid { create_ts: 1, hpid: 10 },
        exe: exe.into(),
        ..Default::default()
    })]))
}

fn container(name: &str) -> ROption<RArc<Container>> {
    ROption::RSome(RArc::new(Container { id: "c1".into(), name: name.into(), ..Default::default() }))
}

fn pe(anc: &RArc<RVec<RArc<Process>>>, cont: &ROption<RArc<Container>>) -> FlatRecord {
    let event = Event::Process(ProcessEvent { proc_oid: Oid { create_ts: 1, hpid: 10 }, ..Default::default() });
    let mut r = FlatRecord::new(RArc::new(Header::default()), event);
    r.ancestry = anc.clone();
    r.container = cont.clone();
    r
}

fn ff(anc: &RArc<RVec<RArc<Process>>>, file: &RArc<File>, op_flags: i32) -> FlatRecord {
    let event = Event::FileFlow(FileFlow { proc_oid: Oid { create_ts: 1, hpid: 10 }, op_flags, ..Default::default() });
    let mut r = FlatRecord::new(RArc::new(Header::default()), event);
    r.ancestry = anc.clone();
    r.file = ROption::RSome(file.clone());
    r
}

fn matched(rs: &RuleSet, st: &mut EvalState, mut r: FlatRecord) -> Vec<String> {
    match rs.evaluate(&mut r, st) {
        Verdict::Drop => vec!["<dropped>".into()],
        Verdict::Pass { .. } => r.context.matched.iter().map(|m| m.name.to_string()).collect(),
    }
}

#[test]
fn a_new_process_context_is_evaluated_afresh() {
    let rs = compile(&rule("shell", "sf.proc.name in (bash, sh) and sf.container.name = web"));
    let mut st = EvalState::default();
    let bash = ancestry("/bin/bash");
    let web = container("web");
    for _ in 0..3 {
        assert_eq!(matched(&rs, &mut st, pe(&bash, &web)), ["shell"]);
    }
    // The reader builds a new ancestry list when the process is modified (exec).
    let python = ancestry("/usr/bin/python");
    assert!(matched(&rs, &mut st, pe(&python, &web)).is_empty());
    assert_eq!(matched(&rs, &mut st, pe(&bash, &web)), ["shell"]);
    // Same ancestry list paired with another container: not the cached context.
    assert!(matched(&rs, &mut st, pe(&bash, &container("db"))).is_empty());
    assert!(matched(&rs, &mut st, pe(&bash, &ROption::RNone)).is_empty());
    assert_eq!(matched(&rs, &mut st, pe(&bash, &web)), ["shell"]);
}

#[test]
fn file_results_are_per_file_and_event_tests_per_record() {
    let rs = compile(&rule("write etc", "sf.file.path startswith /etc and sf.opflags = WRITE"));
    let mut st = EvalState::default();
    let p = ancestry("/bin/vi");
    let etc = RArc::new(File { path: "/etc/passwd".into(), restype: 'f' as i32, ..Default::default() });
    let tmp = RArc::new(File { path: "/tmp/x".into(), restype: 'f' as i32, ..Default::default() });
    use sysflow_plugin_api::opflags::{OP_READ_RECV, OP_WRITE_SEND};
    assert_eq!(matched(&rs, &mut st, ff(&p, &etc, OP_WRITE_SEND)), ["write etc"]);
    assert!(matched(&rs, &mut st, ff(&p, &etc, OP_READ_RECV)).is_empty());
    assert!(matched(&rs, &mut st, ff(&p, &tmp, OP_WRITE_SEND)).is_empty());
    assert_eq!(matched(&rs, &mut st, ff(&p, &etc, OP_WRITE_SEND)), ["write etc"]);
}

#[test]
fn a_new_rule_set_does_not_read_the_old_sets_results() {
    // Slot 0 holds "is bash" in the first set and "is python" in the second.
    let a = compile(&rule("bash", "sf.proc.exe = /bin/bash and sf.proc.name != x"));
    let b = compile(&rule("python", "sf.proc.exe = /usr/bin/python and sf.proc.name != x"));
    let mut st = EvalState::default();
    let bash = ancestry("/bin/bash");
    assert_eq!(matched(&a, &mut st, pe(&bash, &ROption::RNone)), ["bash"]);
    assert!(matched(&b, &mut st, pe(&bash, &ROption::RNone)).is_empty());
    assert_eq!(matched(&a, &mut st, pe(&bash, &ROption::RNone)), ["bash"]);
}

#[test]
fn many_live_processes_overflow_the_cache_without_wrong_results() {
    let rs = compile(&rule("odd", "sf.proc.exe endswith 1 or sf.proc.exe endswith 3"));
    let mut st = EvalState::default();
    // Keep every context alive so no address is reused: the cache must start over, not
    // confuse entries, when more than its capacity are live.
    let all: Vec<_> = (0..10_000).map(|i| ancestry(&format!("/bin/p{i}"))).collect();
    for round in 0..2 {
        for (i, a) in all.iter().enumerate() {
            let want = i % 10 == 1 || i % 10 == 3;
            let got = !matched(&rs, &mut st, pe(a, &ROption::RNone)).is_empty();
            assert_eq!(got, want, "process {i}, round {round}");
        }
    }
}
