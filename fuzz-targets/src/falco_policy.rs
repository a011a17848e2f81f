//! A Falco-syntax policy file: parsed, lists and macros resolved, compiled (as `-test`
//! does), then listed and evaluated on real records.

use sysflow_policy_engine::{compile_policy_text, ActionRegistry, CompileOptions};

use crate::compiled_policy::{check_compiled, check_refused};

/// The name the input is given in messages.
const POLICY_NAME: &str = "fuzz-input.yaml";

/// Compiles `data` as one Falco-syntax policy file (bytes decoded as the loader does,
/// invalid UTF-8 replaced) and checks the result.
pub fn falco_policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let opts = CompileOptions { actions: ActionRegistry::with_builtins(), ..Default::default() };
    match compile_policy_text(POLICY_NAME, &text, &opts) {
        Ok(set) => check_compiled(&set),
        Err(errors) => check_refused(&errors, POLICY_NAME),
    }
}
