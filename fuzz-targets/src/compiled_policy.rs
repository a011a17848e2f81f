//! Checks shared by the policy targets: a compiled rule set describes itself consistently
//! and evaluates real records without panicking, reporting exactly the matches it attaches.

use sysflow_policy_engine::{EvalState, PolicyErrors, RuleSet, Verdict};

use crate::sample_records::sample_records;

/// Checks a compiled rule set: its listing (`-listrules`) and its evaluation of the sample records.
pub fn check_compiled(set: &RuleSet) {
    let described = set.describe();
    assert_eq!(described.len(), set.rule_count() + set.filter_count(), "listing vs counts");
    assert!(set.enabled_rule_count() <= set.rule_count());
    for w in set.warnings() {
        assert!(!w.message.is_empty(), "empty warning at {}", w.pos);
    }
    let mut state = EvalState::default();
    for record in sample_records() {
        let mut record = record.clone();
        let before = record.context.matched.len();
        if let Verdict::Pass { matched } = set.evaluate(&mut record, &mut state) {
            assert_eq!(record.context.matched.len() - before, matched as usize, "matches reported vs attached");
        }
    }
}

/// Checks a refusal: at least one error, each with a message and the policy's file name.
pub fn check_refused(errors: &PolicyErrors, file: &str) {
    assert!(!errors.0.is_empty(), "compilation failed without an error");
    for e in &errors.0 {
        assert!(!e.message.is_empty(), "empty error message at {}", e.pos);
        assert_eq!(e.pos.file.to_str(), Some(file), "error does not name the policy file: {e}");
    }
}
