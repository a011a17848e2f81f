//! Operator, item and error semantics on hand-built flat records.

mod common;
use common::proc;

use abi_stable::std_types::{RArc, ROption, RString, RVec};
use sysflow_plugin_api::{
    opflags::*, Container, Event, File, FileFlow, FlatRecord, Header, K8sEvent, NetworkFlow, Oid,
    ProcessEvent,
};
use sysflow_policy_engine::{compile_policy_text, CompileOptions, EvalState, RuleSet, Verdict};

fn opts() -> CompileOptions {
    CompileOptions { actions: sysflow_policy_engine::ActionRegistry::with_builtins(), ..Default::default() }
}

fn compile(text: &str) -> RuleSet {
    match compile_policy_text("t.yaml", text, &opts()) {
        Ok(r) => r,
        Err(e) => panic!("compile failed: {e}"),
    }
}


fn header() -> RArc<Header> {
    RArc::new(Header { version: 5, exporter: "node1".into(), ip: "10.0.0.1".into(), filename: "/tmp/trace.sf".into() })
}

/// A PE (exec of /usr/bin/python with args) whose parent is bash, in container "node-app".
fn pe_record(flags: i32) -> FlatRecord {
    let mut r = FlatRecord::new(
        header(),
        Event::Process(ProcessEvent { proc_oid: Oid { create_ts: 1010, hpid: 10 }, ts: 50, tid: 10, op_flags: flags, ..Default::default() }),
    );
    r.ancestry = RArc::new(RVec::from(vec![
        proc(10, "/usr/bin/python", "cos-write.py --x a,b", Some(5)),
        proc(5, "/bin/bash", "", Some(1)),
        proc(1, "/sbin/init", "", None),
    ]));
    r.container = ROption::RSome(RArc::new(Container { id: "c1".into(), name: "node-app".into(), ..Default::default() }));
    r
}

fn ff_record(path: &str, flags: i32, open_flags: i32) -> FlatRecord {
    let mut r = FlatRecord::new(
        header(),
        Event::FileFlow(FileFlow {
            proc_oid: Oid { create_ts: 1010, hpid: 10 },
            ts: 60,
            op_flags: flags,
            open_flags,
            fd: 3,
            num_r_recv_bytes: 100,
            ..Default::default()
        }),
    );
    r.ancestry = RArc::new(RVec::from(vec![proc(10, "/usr/sbin/nginx", "-g daemon off;", None)]));
    r.file = ROption::RSome(RArc::new(File { path: path.into(), restype: 'f' as i32, ..Default::default() }));
    r
}

fn nf_record(flags: i32) -> FlatRecord {
    let mut r = FlatRecord::new(
        header(),
        Event::NetworkFlow(NetworkFlow {
            proc_oid: Oid { create_ts: 1010, hpid: 10 },
            ts: 70,
            op_flags: flags,
            sip: 16777343,
            dip: 16777343,
            sport: 4000,
            dport: 80,
            proto: 6,
            num_r_recv_bytes: 10,
            ..Default::default()
        }),
    );
    r.ancestry = RArc::new(RVec::from(vec![proc(10, "/usr/bin/curl", "http://x", None)]));
    r
}

fn ke_record(msg: &str) -> FlatRecord {
    FlatRecord::new(header(), Event::K8s(K8sEvent { kind: 2, action: 0, ts: 80, message: msg.into() }))
}

/// Names of the rules matching `rec`, or None if dropped.
fn run(rs: &RuleSet, mut rec: FlatRecord) -> Option<Vec<String>> {
    let mut st = EvalState::default();
    match rs.evaluate(&mut rec, &mut st) {
        Verdict::Drop => None,
        Verdict::Pass { matched } => {
            assert_eq!(matched as usize, rec.context.matched.len());
            Some(rec.context.matched.iter().map(|m| m.name.to_string()).collect())
        }
    }
}

fn matches(cond: &str, rec: FlatRecord) -> bool {
    let rs = compile(&format!("- rule: r\n  desc: d\n  priority: low\n  condition: {cond}\n"));
    assert_eq!(rs.enabled_rule_count(), 1, "rule disabled: {:?}", rs.warnings());
    !run(&rs, rec).unwrap_or_default().is_empty()
}

#[test]
fn equality_is_multi_valued() {
    assert!(matches("sf.opflags = EXEC", pe_record(OP_EXEC)));
    assert!(!matches("sf.opflags = CLONE", pe_record(OP_EXEC)));
    assert!(matches("sf.opflags = READ", ff_record("/etc/passwd", OP_OPEN | OP_READ_RECV, 1)));
    assert!(!matches("sf.opflags = READ", nf_record(OP_CONNECT | OP_READ_RECV)));
    assert!(matches("sf.opflags = RECV", nf_record(OP_CONNECT | OP_READ_RECV)));
    assert!(matches("sf.opflags in (write_send)\n- list: write_send\n  items: [WRITE, SEND]", nf_record(OP_WRITE_SEND)));
    assert!(matches("sf.proc.aname = bash", pe_record(OP_EXEC)));
    assert!(matches("sf.proc.args = b", pe_record(OP_EXEC)), "args split on commas");
    assert!(matches("sf.proc.name = 'python'", pe_record(OP_EXEC)));
    assert!(matches("sf.proc.uid = 1000", pe_record(OP_EXEC)));
    assert!(!matches("sf.proc.uid = 01000", pe_record(OP_EXEC)));
    assert!(matches("sf.proc.tty = false", pe_record(OP_EXEC)));
    assert!(matches("sf.container.privileged = 0", pe_record(OP_EXEC)));
    assert!(matches("sf.proc.exe = \"x,/usr/bin/python\"", pe_record(OP_EXEC)), "literal split on commas");
}

#[test]
fn not_equal_means_no_pair_equal() {
    assert!(!matches("sf.proc.aname != bash", pe_record(OP_EXEC)));
    assert!(matches("sf.proc.aname != zsh", pe_record(OP_EXEC)));
    assert!(matches("sf.proc.exe != sf.pproc.exe", pe_record(OP_EXEC)));
    assert!(!matches("sf.proc.exe = sf.pproc.exe", pe_record(OP_EXEC)));
}

#[test]
fn string_operators() {
    let r = pe_record;
    assert!(matches("sf.proc.exe contains /bin/py", r(OP_EXEC)));
    assert!(!matches("sf.proc.exe contains /BIN/PY", r(OP_EXEC)));
    assert!(matches("sf.proc.exe icontains /BIN/PY", r(OP_EXEC)));
    assert!(matches("sf.proc.args startswith cos-write.py", r(OP_EXEC)));
    assert!(matches("sf.proc.args startswith b", r(OP_EXEC)), "second piece 'b' starts with b");
    assert!(matches("sf.proc.exe endswith python", r(OP_EXEC)));
    assert!(!matches("sf.proc.exe endswith pyth", r(OP_EXEC)));
    assert!(matches("sf.proc.cmdline = \"/bin/bash \"", {
        let mut x = r(OP_EXEC);
        let mut a: Vec<_> = x.ancestry.iter().cloned().collect();
        a.remove(0);
        x.ancestry = RArc::new(a.into());
        x
    }), "cmdline keeps the trailing space");
    assert!(matches("sf.pproc.cmdline = /bin/bash", r(OP_EXEC)), "parent cmdline has no trailing space");
}

#[test]
fn in_and_pmatch() {
    let lists = "\n- list: shells\n  items: [bash, sh]\n- list: interp\n  items: [shells, python, '\"quoted\"']\n";
    assert!(matches(&format!("sf.proc.name in (interp){lists}"), pe_record(OP_EXEC)));
    assert!(matches(&format!("sf.proc.aname in (shells){lists}"), pe_record(OP_EXEC)));
    assert!(!matches(&format!("sf.proc.name in (shells, perl){lists}"), pe_record(OP_EXEC)));
    assert!(matches(&format!("sf.proc.exe pmatch (shells, yth){lists}"), pe_record(OP_EXEC)), "pmatch is substring");
    assert!(!matches(&format!("sf.proc.exe in (shells, yth){lists}"), pe_record(OP_EXEC)));
    // Many elements: hash set and automaton paths.
    let many: Vec<String> = (0..40).map(|i| format!("tool{i}")).collect();
    let items = many.join(", ");
    assert!(matches(&format!("sf.proc.exe pmatch (big)\n- list: big\n  items: [{items}, thon]"), pe_record(OP_EXEC)));
    assert!(matches(&format!("sf.proc.name in (big)\n- list: big\n  items: [{items}, python]"), pe_record(OP_EXEC)));
    assert!(!matches(&format!("sf.proc.name in (big)\n- list: big\n  items: [{items}]"), pe_record(OP_EXEC)));
}

#[test]
fn integer_operators() {
    assert!(matches("sf.ts > 49", pe_record(OP_EXEC)));
    assert!(!matches("sf.ts > 50", pe_record(OP_EXEC)));
    assert!(matches("sf.ts >= 50 and sf.ts <= 50 and sf.ts < 51", pe_record(OP_EXEC)));
    assert!(matches("sf.ts > \"5\"", pe_record(OP_EXEC)), "quoted literal's integer form is 0");
    assert!(!matches("sf.proc.exe > 0", pe_record(OP_EXEC)), "strings have integer form 0");
    assert!(matches("sf.flow.rbytes = 100 and sf.flow.rbytes < 101", ff_record("/x", OP_READ_RECV, 1)), "real counters");
    assert!(matches("sf.net.dport = 80 and sf.net.sip = 127.0.0.1 and sf.net.ip = 127.0.0.1 and sf.net.port = 4000", nf_record(OP_CONNECT)));
    assert!(matches("fd.sport > 3999 and fd.proto = 6", nf_record(OP_CONNECT)));
}

#[test]
fn exists_and_literals() {
    assert!(matches("sf.pproc.name exists", pe_record(OP_EXEC)));
    assert!(!matches("sf.pproc.name exists", nf_record(OP_CONNECT)));
    assert!(matches("sf.ts exists", pe_record(OP_EXEC)));
    assert!(!matches("sf.ret exists", pe_record(OP_EXEC)));
    assert!(!matches("python = sf.proc.exe", pe_record(OP_EXEC)));
    assert!(matches("python = python", pe_record(OP_EXEC)));
}

#[test]
fn file_attributes() {
    let f = || ff_record("/etc/cron.d/job", OP_OPEN | OP_WRITE_SEND, 2 | 4);
    assert!(matches("sf.file.directory = /etc/cron.d and sf.file.name = job", f()));
    assert!(matches("sf.file.is_open_write = true and sf.file.is_open_read = false", f()));
    assert!(matches("sf.file.openflags = CREAT and sf.file.type = f and fd.typechar = f", f()));
    assert!(matches("fd.directory in (/etc/cron.d)", f()));
    assert!(!matches("sf.file.path exists", pe_record(OP_EXEC)));
    assert!(matches("sf.file.path = /run/x.sock and sf.file.symlink = 'ff->1'", ff_record("00ff->0001 /run/x.sock", OP_OPEN, 0)));
}

#[test]
fn type_tests_bucket_rules() {
    let rs = compile(
        "- rule: pe only\n  desc: d\n  condition: sf.type = PE and sf.proc.name = python\n\
         - rule: ff by pf\n  desc: d\n  condition: sf.proc.name = nginx\n  prefilter: [FF]\n\
         - rule: any\n  desc: d\n  condition: sf.ts > 0\n\
         - rule: not ke\n  desc: d\n  condition: sf.type in (PE, FF) or sf.type = NF\n",
    );
    let info = rs.describe();
    assert_eq!(info[0].record_types, vec!["PE"]);
    assert_eq!(info[1].record_types, vec!["FF"]);
    assert_eq!(info[2].record_types, vec!["PE", "NF", "FF", "FE", "NE", "PF", "KE"]);
    assert_eq!(info[3].record_types, vec!["PE", "NF", "FF"]);
    assert_eq!(run(&rs, pe_record(OP_EXEC)).unwrap(), vec!["pe only", "any", "not ke"]);
    assert_eq!(run(&rs, ff_record("/a", OP_OPEN, 0)).unwrap(), vec!["ff by pf", "any", "not ke"]);
    assert_eq!(run(&rs, ke_record("{}")).unwrap(), vec!["any"]);
}

#[test]
fn macros_filters_and_rule_items() {
    let rs = compile(
        "- macro: is_py\n  condition: sf.proc.exe contains python\n\
         - macro: py_in_node\n  condition: is_py and sf.container.name contains node\n\
         - filter: noisy\n  condition: sf.proc.name = nginx\n\
         - drop: off\n  condition: sf.ts > 0\n  enabled: false\n\
         - rule: Rule \"A\"  with  spaces\n  desc: first\n  condition: py_in_node\n  priority: High\n  tags: [a, 'b:c', mitre:T1059]\n\
         - rule: Alert prio\n  desc: second\n  condition: not (not py_in_node)\n  priority: alert\n  tags: []\n",
    );
    assert_eq!(run(&rs, ff_record("/x", OP_OPEN, 0)), None, "dropped by filter");
    let mut rec = pe_record(OP_EXEC);
    let mut st = EvalState::default();
    assert_eq!(rs.evaluate(&mut rec, &mut st), Verdict::Pass { matched: 2 });
    let m = &rec.context.matched;
    assert_eq!(m[0].name.as_str(), "Rule \"A\"  with  spaces");
    assert_eq!(m[0].desc.as_str(), "first");
    assert_eq!(m[0].priority, 3);
    let tags: Vec<&str> = m[0].tags.iter().map(|t| t.as_str()).collect();
    assert_eq!(tags, vec!["a", "b:c", "mitre:T1059"]);
    assert_eq!(m[1].priority, 1, "alert maps to low, as upstream");
    assert!(m[1].tags.is_empty());
    assert!(rs.warnings().iter().any(|w| w.message.contains("Deferring to low")));
}

#[test]
fn priorities() {
    for (w, p) in [("debug", 1), ("INFO", 1), ("notice", 1), ("warning", 2), ("Medium", 2), ("error", 3), ("critical", 3), ("emergency", 3)] {
        let rs = compile(&format!("- rule: r\n  desc: d\n  condition: sf.ts > 0\n  priority: {w}\n"));
        assert_eq!(rs.rules()[0].matched.priority, p, "{w}");
    }
}

#[test]
fn json_path_on_k8s_message() {
    let msg = r#"{"kind":"Pod","items":[{"namespace":"robot-shop","name":"web"}]}"#;
    assert!(matches("sf.ke.message[items.0.namespace] = 'robot-shop'", ke_record(msg)));
    assert!(!matches("sf.ke.message[items.0.namespace] = other", ke_record(msg)));
    assert!(matches("sf.ke.kind = K8S_PODS and sf.ke.action = K8S_COMPONENT_ADDED", ke_record(msg)));
    assert!(!matches("sf.ke.kind = K8S_PODS", pe_record(OP_EXEC)));
}

#[test]
fn falco_extensions() {
    assert!(matches("proc.aname[1] = bash", pe_record(OP_EXEC)));
    assert!(!matches("proc.aname[2] = bash", pe_record(OP_EXEC)));
    assert!(matches("sf.proc.exe glob '/usr/*/py*'", pe_record(OP_EXEC)));
    let rs = compile(
        "- required_plugin_versions:\n  - name: json\n    version: 0.2.0\n\
         - list: l\n  items: [perl]\n\
         - list: l\n  items: [python]\n  append: true\n\
         - macro: m\n  condition: sf.proc.name = perl\n\
         - macro: m\n  condition: or sf.proc.name = python\n  append: true\n\
         - rule: r\n  desc: |\n    multi line\n  condition: >-\n    m and sf.proc.name in (l)\n  output: x %proc.name\n  priority: WARNING\n  source: syscall\n\
         - rule: r\n  condition: and sf.proc.uid = 1000\n  append: true\n\
         - rule: audit\n  desc: k8s audit\n  condition: ka.verb = create\n  source: k8s_audit\n\
         - rule: exc\n  desc: with exceptions\n  condition: sf.opflags = EXEC\n  exceptions:\n    - name: known\n      fields: [proc.name, proc.pname]\n      comps: [=, =]\n      values:\n        - [python, bash]\n    - name: single\n      fields: proc.name\n      values: [perl]\n\
         - rule: exc2\n  desc: d\n  condition: sf.opflags = EXEC\n  exceptions:\n    - name: other\n      fields: [proc.name, proc.pname]\n      values: [[python, zsh]]\n",
    );
    assert_eq!(rs.rule_count(), 3, "{:?}", rs.describe());
    assert_eq!(run(&rs, pe_record(OP_EXEC)).unwrap(), vec!["r", "exc2"]);
}

#[test]
fn syntax_error_reports_position() {
    let err = compile_policy_text("bad.yaml", "- rule: r\n  desc: d\n  condition: sf.ts > 0 sf.x\n", &opts()).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("bad.yaml:3:24"), "{msg}");
    assert!(msg.contains("'sf.x'"), "{msg}");
    let err = compile_policy_text("bad.yaml", "- rule: r\n  desc: d\n  condition: (sf.ts > 0\n- rule: s\n", &opts()).err().unwrap();
    // At the end of the incomplete condition, not at the next item.
    assert!(err.to_string().contains("bad.yaml:3:24: unclosed '('"), "{err}");
}

#[test]
fn undefined_macro_fails() {
    let err = compile_policy_text("m.yaml", "- rule: r\n  desc: d\n  condition: sf.ts > 0 and nope\n", &opts()).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("m.yaml:3:28") && msg.contains("undefined macro 'nope'"), "{msg}");
}

#[test]
fn recursive_macro_fails() {
    let err = compile_policy_text("m.yaml", "- macro: a\n  condition: b\n- macro: b\n  condition: a\n- rule: r\n  desc: d\n  condition: a\n", &opts())
        .err()
        .unwrap();
    assert!(err.to_string().contains("refers to itself"), "{err}");
}

#[test]
fn unknown_attribute_disables_only_its_rule() {
    let rs = compile(
        "- rule: bad\n  desc: d\n  condition: sf.proc.username = root\n\
         - rule: good\n  desc: d\n  condition: sf.proc.name = python\n  actions: [nosuch, now]\n",
    );
    assert_eq!(rs.enabled_rule_count(), 1);
    let w: Vec<String> = rs.warnings().iter().map(|w| w.to_string()).collect();
    assert!(w.iter().any(|w| w.contains("t.yaml:1:1") && w.contains("'bad'") && w.contains("sf.proc.username")), "{w:?}");
    assert!(w.iter().any(|w| w.contains("Unknown action identifier 'nosuch'")), "{w:?}");
    let typo = compile("- rule: r\n  desc: d\n  condition: sf.proc.name in (shell_binaries, python)\n");
    assert!(typo.warnings().iter().any(|w| w.message.contains("'shell_binaries' is not a defined list")));
    assert!(!typo.warnings().iter().any(|w| w.message.contains("'python'")));
    let mut rec = pe_record(OP_EXEC);
    let mut st = EvalState::default();
    rs.evaluate(&mut rec, &mut st);
    assert_eq!(rec.context.matched.len(), 1);
    assert!(rec.context.tags.iter().any(|t| t.starts_with("now_in_nanos:")), "action ran");
    // Upstream's behaviour on request: the unknown name is a literal.
    let lit = compile_policy_text(
        "t.yaml",
        "- rule: bad\n  desc: d\n  condition: sf.proc.username != root\n",
        &CompileOptions { unknown_attributes: sysflow_policy_engine::UnknownAttributes::Literal, ..opts() },
    )
    .unwrap();
    assert_eq!(run(&lit, pe_record(OP_EXEC)).unwrap(), vec!["bad"]);
}

#[test]
fn upstream_quirks_kept() {
    // Keywords and severities cannot be bare values.
    assert!(compile_policy_text("q.yaml", "- rule: r\n  desc: d\n  condition: sf.proc.name = info\n", &opts()).is_err());
    // `desc` is mandatory; `description` is not a key.
    assert!(compile_policy_text("q.yaml", "- rule: r\n  description: d\n  condition: sf.ts > 0\n", &opts()).is_err());
    // Tabs and a leading space before the dash are fine.
    let rs = compile(" - rule: r\n\tdesc: d\n\tcondition: sf.ts > 0 and\n\t\t sf.ts < 100\n");
    assert_eq!(run(&rs, pe_record(OP_EXEC)).unwrap(), vec!["r"]);
    // `evt.dir` is always both directions.
    assert!(matches("evt.dir = < and evt.dir = >", pe_record(OP_EXEC)));
    let _ = RString::from("");
}

#[test]
fn dispatch_indexes_match_like_rule_by_rule() {
    // Enough rules keyed on `sf.proc.aname` (multi-valued: python,bash,init) and on
    // `sf.proc.name` to build indexes, interleaved with rules no index covers; the
    // matches and their order must equal evaluating each rule on its own.
    let mut rules = Vec::new();
    for i in 0..40 {
        let cond = match i % 4 {
            0 => format!("sf.proc.aname in (x{i}, {})", if i % 8 == 0 { "bash" } else { "zsh" }),
            1 => format!("sf.proc.name = {} and sf.proc.args contains b", if i % 3 == 0 { "python" } else { "perl" }),
            2 => format!("sf.proc.args contains {}", if i % 6 == 2 { "'a,b'" } else { "nope" }),
            _ => format!("sf.proc.aname = init and sf.proc.name in (y{i}, python, '') and sf.opflags = EXEC"),
        };
        rules.push(format!("- rule: r{i}\n  desc: d\n  priority: low\n  condition: {cond}\n"));
    }
    let all = compile(&rules.concat());
    let singles: Vec<RuleSet> = rules.iter().map(|r| compile(r)).collect();
    for rec in [pe_record(OP_EXEC), pe_record(OP_CLONE), ff_record("/etc/passwd", OP_OPEN, 1), nf_record(OP_CONNECT)] {
        let expect: Vec<String> =
            singles.iter().flat_map(|rs| run(rs, rec.clone()).unwrap_or_default()).collect();
        assert_eq!(run(&all, rec.clone()).unwrap_or_default(), expect);
    }
    let got = run(&all, pe_record(OP_EXEC)).unwrap_or_default();
    assert!(got.len() > 10 && got.contains(&"r0".to_string()) && got.contains(&"r3".to_string()), "{got:?}");
}

/// Whether `cond` matches `rec` in the given dialect.
fn matches_in(dialect: sysflow_policy_engine::dialect::Dialect, cond: &str, rec: FlatRecord) -> bool {
    let opts = CompileOptions { dialect, ..opts() };
    let rs = compile_policy_text("t.yaml", &format!("- rule: r\n  desc: d\n  priority: low\n  condition: {cond}\n"), &opts)
        .unwrap_or_else(|e| panic!("compile failed: {e}"));
    assert_eq!(rs.enabled_rule_count(), 1, "rule disabled: {:?}", rs.warnings());
    !run(&rs, rec).unwrap_or_default().is_empty()
}

#[test]
fn falco_dialect_gives_falcos_meanings() {
    use sysflow_policy_engine::dialect::Dialect::{Falco, Sysflow};
    let ff = || ff_record("/etc/nginx/nginx.conf", OP_OPEN | OP_READ_RECV, 0);
    // pmatch: Falco's path prefix (the path itself or below it), upstream's substring.
    assert!(matches_in(Falco, "fd.name pmatch (/etc/nginx)", ff()));
    assert!(matches_in(Falco, "fd.name pmatch (/etc/)", ff()));
    assert!(matches_in(Falco, "fd.name pmatch (/var, /etc/nginx/nginx.conf)", ff()));
    assert!(!matches_in(Falco, "fd.name pmatch (/etc/ngi)", ff()), "a prefix of a name is no parent directory");
    assert!(!matches_in(Falco, "fd.name pmatch (nginx)", ff()));
    assert!(matches_in(Sysflow, "sf.file.path pmatch (/etc/ngi)", ff()), "upstream's pmatch is a substring match");
    // fd.name: the full path under Falco, the base name by default.
    assert!(matches_in(Falco, "fd.name = /etc/nginx/nginx.conf", ff()));
    assert!(matches_in(Sysflow, "fd.name = nginx.conf", ff()));
    // evt.type: system call names under Falco; SysFlow operation names still match.
    assert!(matches_in(Falco, "evt.type in (open, openat)", ff()));
    assert!(matches_in(Falco, "evt.type = OPEN", ff()));
    assert!(!matches_in(Falco, "evt.type = execve", ff()));
    assert!(matches_in(Falco, "evt.type = execveat", pe_record(OP_EXEC)));
    assert!(!matches_in(Sysflow, "evt.type = execve", pe_record(OP_EXEC)));
    assert!(matches_in(Falco, "evt.type = clone and proc.exepath = /usr/bin/python", pe_record(OP_CLONE)));
}
