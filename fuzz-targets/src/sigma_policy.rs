//! A Sigma rule file: parsed as YAML, lowered with a backend config's field mappings,
//! compiled, then listed and evaluated on real records.

use std::sync::OnceLock;

use sysflow_policy_engine::{compile_sigma_text, sigma::{parse_config, SigmaConfig}, ActionRegistry, CompileOptions};

use crate::compiled_policy::check_compiled;

/// The name the input is given in messages.
const POLICY_NAME: &str = "fuzz-input.yml";

/// The backend config the rules are compiled with: Sigma's process-creation and file
/// fields mapped to SysFlow attributes, as upstream's SysFlow Sigma config does.
pub const SIGMA_FIELD_MAPPINGS: &str = "\
fieldmappings:
  Image: sf.proc.exe
  CommandLine: sf.proc.cmdline
  ParentImage: sf.pproc.exe
  ParentCommandLine: sf.pproc.cmdline
  User: sf.proc.user
  ProcessId: sf.proc.pid
  TargetFilename: sf.file.path
  DestinationPort: sf.net.dport
  DestinationIp: sf.net.dip
  ContainerName: [sf.container.name, sf.container.id]
";

fn config() -> &'static SigmaConfig {
    static CONFIG: OnceLock<SigmaConfig> = OnceLock::new();
    CONFIG.get_or_init(|| match parse_config(SIGMA_FIELD_MAPPINGS) {
        Ok(c) => c,
        Err(e) => panic!("the fuzz targets' Sigma config does not parse: {e}"),
    })
}

/// Compiles `data` as one Sigma rule file (invalid UTF-8 replaced, as the loader does) and
/// checks the result: a file that is not a rule is a warning naming it, never a panic.
pub fn sigma_policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let opts = CompileOptions { actions: ActionRegistry::with_builtins(), ..Default::default() };
    let set = compile_sigma_text(POLICY_NAME, &text, config(), &opts);
    for w in set.warnings() {
        assert_eq!(w.pos.file.to_str(), Some(POLICY_NAME), "warning does not name the rule file: {w}");
    }
    check_compiled(&set);
}
