//! Policies beyond the documented limits (`limits.rs`) are refused with an error naming
//! the item and its position, whatever their shape: none may abort the process (stack
//! overflow, allocation failure) or take minutes. Policies within the limits compile and
//! evaluate on small stacks, and compile time stays near-linear in their size.

use std::{fmt::Write, time::Instant};

use abi_stable::std_types::{RArc, RVec};
use sysflow_plugin_api::{Event, FlatRecord, Header, Process, ProcessEvent};
use sysflow_policy_engine::{
    compile_policy_text, compile_sigma_text,
    limits::{MAX_CONDITION_DEPTH, MAX_CONDITION_NESTING, MAX_EXPANDED_ELEMENTS, MAX_EXPANDED_NODES, MAX_REFERENCE_DEPTH},
    sigma::SigmaConfig,
    ActionRegistry, CompileOptions, EvalState, Verdict,
};

fn opts() -> CompileOptions {
    CompileOptions { actions: ActionRegistry::with_builtins(), ..Default::default() }
}

/// The load error of `text` (compiled as `name`), or a failure if it loads.
fn load_error(name: &str, text: &str) -> String {
    match compile_policy_text(name, text, &opts()) {
        Ok(rs) => panic!("{name} loaded ({} rules) but must be refused", rs.rule_count()),
        Err(e) => e.to_string(),
    }
}

fn rule(name: &str, condition: &str) -> String {
    format!("- rule: {name}\n  desc: d\n  condition: {condition}\n  priority: high\n")
}

#[test]
fn deep_parentheses_and_nots_are_refused_at_their_position() {
    let parens = format!("{}sf.ts > 0{}", "(".repeat(6000), ")".repeat(6000));
    let err = load_error("parens.yaml", &rule("deep parens", &parens));
    assert!(err.contains(&format!("nests deeper than {MAX_CONDITION_NESTING} levels")), "{err}");
    assert!(err.contains("rule 'deep parens'"), "{err}");
    // Line 3, at the first '(' beyond the limit (after "  condition: ").
    assert!(err.contains(&format!("parens.yaml:3:{}:", 14 + MAX_CONDITION_NESTING)), "{err}");

    let nots = format!("{}sf.ts > 0", "not ".repeat(6000));
    let err = load_error("nots.yaml", &rule("deep nots", &nots));
    assert!(err.contains(&format!("nests deeper than {MAX_CONDITION_NESTING} levels")), "{err}");
    assert!(err.contains("nots.yaml:3:") && err.contains("rule 'deep nots'"), "{err}");

    // At the limit: loads.
    let ok = format!("{}sf.ts > 0{}", "(".repeat(MAX_CONDITION_NESTING), ")".repeat(MAX_CONDITION_NESTING));
    assert!(compile_policy_text("ok.yaml", &rule("ok", &ok), &opts()).is_ok());
}

#[test]
fn long_macro_chains_are_refused_naming_the_rule_and_macros() {
    let mut text = String::from("- macro: m0\n  condition: sf.ts > 0\n");
    for i in 1..10_000 {
        writeln!(text, "- macro: m{i}\n  condition: m{}", i - 1).unwrap();
    }
    text.push_str(&rule("chain", "m9999"));
    let err = load_error("chain.yaml", &text);
    assert!(err.contains(&format!("macro references nest deeper than {MAX_REFERENCE_DEPTH} levels")), "{err}");
    assert!(err.contains("rule 'chain'") && err.contains("in macro m9999 -> m9998"), "{err}");
    assert!(err.contains("chain.yaml:"), "{err}");

    // A chain within the limit loads.
    let mut text = String::from("- macro: m0\n  condition: sf.ts > 0\n");
    for i in 1..MAX_REFERENCE_DEPTH {
        writeln!(text, "- macro: m{i}\n  condition: m{}", i - 1).unwrap();
    }
    text.push_str(&rule("chain", &format!("m{}", MAX_REFERENCE_DEPTH - 1)));
    assert!(compile_policy_text("chain.yaml", &text, &opts()).is_ok());
}

#[test]
fn doubling_lists_and_macros_are_refused_quickly() {
    let started = Instant::now();
    let mut text = String::from("- list: l0\n  items: [a, b]\n");
    for i in 1..=40 {
        writeln!(text, "- list: l{i}\n  items: [l{}, l{}]", i - 1, i - 1).unwrap();
    }
    text.push_str(&rule("lists", "sf.proc.name in (l40)"));
    let err = load_error("lists.yaml", &text);
    assert!(err.contains(&format!("expands to more than {MAX_EXPANDED_ELEMENTS} list elements")), "{err}");
    assert!(err.contains("rule 'lists'") && err.contains("lists.yaml:"), "{err}");

    // 40 levels: past the reference depth; 30 levels: 2^30 nodes, past the size limit.
    let doubling = |levels: usize| {
        let mut text = String::from("- macro: m0\n  condition: sf.ts > 0\n");
        for i in 1..=levels {
            writeln!(text, "- macro: m{i}\n  condition: (m{} or m{})", i - 1, i - 1).unwrap();
        }
        text + &rule("macros", &format!("m{levels}"))
    };
    let err = load_error("macros.yaml", &doubling(40));
    assert!(err.contains(&format!("macro references nest deeper than {MAX_REFERENCE_DEPTH} levels")), "{err}");
    let err = load_error("macros.yaml", &doubling(30));
    assert!(err.contains(&format!("expands to more than {MAX_EXPANDED_NODES} nodes")), "{err}");
    assert!(err.contains("rule 'macros'") && err.contains("in macro m30 -> m29"), "{err}");
    // Refused when the limit is reached, not after building 2^40 nodes.
    assert!(started.elapsed().as_secs() < 30, "took {:?}", started.elapsed());
}

#[test]
fn macro_appends_that_nest_too_deep_are_refused() {
    let mut text = String::from("- macro: m\n  condition: sf.ts > 0\n");
    // Alternating `or`/`and` appends nest one level each (same-kind appends do not).
    for i in 0..(MAX_CONDITION_DEPTH + 10) {
        let op = if i % 2 == 0 { "and" } else { "or" };
        writeln!(text, "- macro: m\n  append: true\n  condition: {op} sf.ret = {i}").unwrap();
    }
    text.push_str(&rule("r", "m"));
    let err = load_error("appends.yaml", &text);
    assert!(err.contains("macro 'm': condition nests") && err.contains("after its appends"), "{err}");

    // 10,000 `or` appends stay one flat disjunction.
    let mut text = String::from("- macro: m\n  condition: sf.ts > 0\n");
    for i in 0..10_000 {
        writeln!(text, "- macro: m\n  append: true\n  condition: or sf.ret = {i}").unwrap();
    }
    text.push_str(&rule("r", "m"));
    assert!(compile_policy_text("appends.yaml", &text, &opts()).is_ok());
}

#[test]
fn rule_appends_that_nest_too_deep_are_refused() {
    let base = rule("r", "sf.ts > 0");
    let mut text = base.clone();
    for i in 0..(MAX_CONDITION_DEPTH + 10) {
        let op = if i % 2 == 0 { "and" } else { "or" };
        writeln!(text, "- rule: r\n  append: true\n  condition: {op} sf.ret = {i}").unwrap();
    }
    let err = load_error("rule_appends.yaml", &text);
    assert!(err.contains("rule 'r': condition nests") && err.contains("with its appends"), "{err}");
    assert!(err.contains("rule_appends.yaml:"), "{err}");

    // 10,000 `and` appends stay one flat conjunction.
    let mut text = base;
    for i in 0..10_000 {
        writeln!(text, "- rule: r\n  append: true\n  condition: and sf.ret != {i}").unwrap();
    }
    assert!(compile_policy_text("rule_appends.yaml", &text, &opts()).is_ok());
}

#[test]
fn sigma_condition_with_10000_nots_disables_its_rule() {
    let cond = format!("{}sel", "not ".repeat(10_000));
    let text = format!(
        "title: deep\nid: deep\ndescription: d\nlevel: high\nlogsource:\n  product: linux\n\
         detection:\n  sel:\n    Image: /bin/sh\n  condition: {cond}\n"
    );
    let rs = compile_sigma_text("deep.yml", &text, &SigmaConfig::default(), &opts());
    assert_eq!(rs.enabled_rule_count(), 0);
    let w: Vec<String> = rs.warnings().iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter().any(|w| w.contains("deep.yml:") && w.contains("'deep' disabled") && w.contains("nests deeper than")),
        "{w:?}"
    );
}

fn record(exe: &str) -> FlatRecord {
    let mut r = FlatRecord::new(RArc::new(Header::default()), Event::Process(ProcessEvent { ts: 1, op_flags: 2, ..Default::default() }));
    r.ancestry = RArc::new(RVec::from(vec![RArc::new(Process { exe: exe.into(), ..Default::default() })]));
    r
}

/// Macros `m1`…`m5`, each 98 `not`s around the previous one: a condition
/// `levels` deep after expansion (every `not` is a level).
fn deep_macros(levels: usize) -> String {
    let per = MAX_CONDITION_NESTING - 2;
    let mut text = String::from("- macro: m0\n  condition: sf.proc.name = sh\n");
    let (mut left, mut i) = (levels - 1, 0);
    while left > 0 {
        let n = left.min(per);
        i += 1;
        writeln!(text, "- macro: m{i}\n  condition: {}m{}", "not ".repeat(n), i - 1).unwrap();
        left -= n;
    }
    text + &rule("deep", &format!("m{i}"))
}

#[test]
fn conditions_at_the_depth_limit_compile_and_evaluate_on_a_small_stack() {
    // Even number of `not`s: the rule matches `sh`.
    let text = deep_macros(MAX_CONDITION_DEPTH - 1);
    let rs = compile_policy_text("deep.yaml", &text, &opts()).expect("a condition within the limits loads");
    assert_eq!(rs.enabled_rule_count(), 1);
    // Evaluation and drop run on the engine's threads; 1 MiB is half a default thread stack.
    let verdicts = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let mut st = EvalState::default();
            let v = [rs.evaluate(&mut record("/bin/sh"), &mut st), rs.evaluate(&mut record("/bin/ls"), &mut st)];
            drop(rs);
            v
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(verdicts, [Verdict::Pass { matched: 1 }, Verdict::Pass { matched: 0 }]);

    let err = load_error("deeper.yaml", &deep_macros(MAX_CONDITION_DEPTH + 2));
    assert!(err.contains(&format!("nests deeper than {MAX_CONDITION_DEPTH} levels after macro expansion")), "{err}");
    assert!(err.contains("rule 'deep'") && err.contains("deeper.yaml:"), "{err}");
}

/// Compiles `text` and returns the seconds it took; the rule must load enabled.
fn load_seconds(name: &str, text: &str) -> f64 {
    let started = Instant::now();
    let rs = compile_policy_text(name, text, &opts()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(rs.enabled_rule_count(), 1, "{name}");
    started.elapsed().as_secs_f64()
}

/// Limit test: the bound is ~10× the release time on a loaded 2-core machine; the
/// quadratic code took far longer (a one-line list or value tuple: minutes; a 20,000-term
/// `or` chain on one attribute: 34 s). Figures: `bench/policy_load.sh`.
#[test]
fn large_lists_exceptions_and_or_chains_compile_in_near_linear_time() {
    const BOUND_S: f64 = 10.0;
    let items: Vec<String> = (0..100_000).map(|i| format!("value{i}")).collect();
    let text = format!("- list: big\n  items: [{}]\n{}", items.join(", "), rule("list", "sf.proc.name in (big)"));
    let s = load_seconds("list.yaml", &text);
    assert!(s < BOUND_S, "100,000-item list: {s:.1} s");

    let tuples: Vec<String> = (0..20_000).map(|i| format!("[proc{i}, /path/{i}]")).collect();
    let text = format!(
        "{}  exceptions:\n    - name: known\n      fields: [sf.proc.name, sf.file.path]\n      comps: [=, startswith]\n      values: [{}]\n",
        rule("exceptions", "sf.opflags = EXEC"),
        tuples.join(", ")
    );
    let s = load_seconds("exceptions.yaml", &text);
    assert!(s < BOUND_S, "20,000 exceptions: {s:.1} s");

    let terms: Vec<String> = (0..20_000).map(|i| format!("sf.net.sip = 10.0.{}.{}", i / 256, i % 256)).collect();
    let s = load_seconds("or.yaml", &rule("or chain", &terms.join(" or ")));
    assert!(s < BOUND_S, "20,000-term or chain: {s:.1} s");
}

#[test]
fn sigma_condition_copying_a_large_search_is_refused_before_it_is_built() {
    // 2,000 copies of a 5,000-value search: 10 M nodes (~2 GB) if built.
    let values: Vec<String> = (0..5_000).map(|i| format!("/bin/p{i}")).collect();
    let cond = vec!["sel"; 2_000].join(" or ");
    let text = format!(
        "title: big\nid: big\ndescription: d\nlevel: high\nlogsource:\n  product: linux\n\
         detection:\n  sel:\n    Image: [{}]\n  condition: {cond}\n",
        values.join(", ")
    );
    let started = Instant::now();
    let rs = compile_sigma_text("big.yml", &text, &SigmaConfig::default(), &opts());
    assert_eq!(rs.enabled_rule_count(), 0);
    let w: Vec<String> = rs.warnings().iter().map(|w| w.to_string()).collect();
    assert!(w.iter().any(|w| w.contains("'big' disabled") && w.contains("condition expands to")), "{w:?}");
    assert!(started.elapsed().as_secs() < 10, "took {:?}", started.elapsed());
}

#[test]
fn sigma_rule_with_deeply_nested_yaml_does_not_abort() {
    let nested = format!("{}x{}", "[".repeat(50_000), "]".repeat(50_000));
    let text = format!(
        "title: nested\nid: nested\ndescription: d\nlevel: high\nlogsource:\n  product: linux\n\
         detection:\n  sel:\n    Image: {nested}\n  condition: sel\n"
    );
    let rs = compile_sigma_text("nested.yml", &text, &SigmaConfig::default(), &opts());
    assert_eq!(rs.enabled_rule_count(), 0, "{:?}", rs.warnings());
    assert!(rs.warnings().iter().any(|w| w.to_string().contains("nested.yml:")), "{:?}", rs.warnings());
}
