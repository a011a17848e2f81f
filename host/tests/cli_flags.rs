//! Command-line behaviour of the built binary: Go-style flag forms, `-version`, help,
//! usage errors, log levels, `-test`.

mod common;

use common::{run_in, text, write_pipeline};

const VERSION_LINE: &str =
    "Version: 0.1.0+1, Avro Schema Version: 5, Export Schema Version: 5 (JSON), 8.2 (ECS)";

const READER_EXPORTER: &str = r#"{
  "pipeline": [
    {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
    {"processor": "exporter", "in": "flat flattenerchan", "export": "file", "file.path": "out.json"}
  ]
}"#;

#[test]
fn version_in_every_flag_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    for form in [&["-version"][..], &["--version"], &["-version=true"], &["-log", "quiet", "-version"]] {
        let out = run_in(dir.path(), form, &[]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{form:?}: {stderr}");
        if option_env!("SFPROCESSOR_BUILD_NUMBER").is_none() {
            assert_eq!(stdout.trim_end(), VERSION_LINE, "{form:?}");
        } else {
            assert!(stdout.starts_with("Version: 0.1.0+"), "{form:?}: {stdout}");
        }
    }
}

#[test]
fn help_lists_upstream_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    for form in ["--help", "-h", "-help"] {
        let out = run_in(dir.path(), &[form], &[]);
        let (stdout, _) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{form}");
        for flag in ["--config", "--driver", "--log", "--driverdir", "--plugdir", "--test", "--perflog", "--version"] {
            assert!(stdout.contains(flag), "{form}: help lacks {flag}:\n{stdout}");
        }
    }
}

#[test]
fn config_flag_forms_and_test_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_pipeline(dir.path(), "p.json", READER_EXPORTER);
    let eq = format!("-config={cfg}");
    let forms: Vec<Vec<&str>> = vec![
        vec!["-config", &cfg, "-test"],
        vec![&eq, "-test=true"],
        vec!["--config", &cfg, "--test"],
        vec!["-test", "-log=INFO", "-config", &cfg],
    ];
    for form in forms {
        let out = run_in(dir.path(), &form, &[]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{form:?}\nstdout: {stdout}\nstderr: {stderr}");
        assert!(stderr.contains("Successfully loaded pipeline configuration"), "{form:?}: {stderr}");
        assert!(stderr.contains("[Info] "), "{form:?}: {stderr}");
        assert!(stdout.is_empty(), "{form:?}: logs go to stderr, -test exports nothing: {stdout}");
    }
}

#[test]
fn default_config_is_pipeline_json_in_working_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_in(dir.path(), &["-test"], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("pipeline.json"), "{stderr}");
    write_pipeline(dir.path(), "pipeline.json", READER_EXPORTER);
    let out = run_in(dir.path(), &["-test"], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_in(dir.path(), &["-bogus", "x"], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("bogus") && stderr.contains("Usage"), "{stderr}");
}

#[test]
fn missing_input_path_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_pipeline(dir.path(), "p.json", READER_EXPORTER);
    let out = run_in(dir.path(), &["-config", &cfg], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("missing input path") && stderr.contains("driver (file)"), "{stderr}");
    assert!(stderr.contains("Usage"), "{stderr}");
}

#[test]
fn log_levels_filter_and_unknown_level_falls_back_to_info() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_pipeline(dir.path(), "p.json", READER_EXPORTER);
    let out = run_in(dir.path(), &["-config", &cfg, "-test", "-log", "Verbose"], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr.contains("[Warn]") && stderr.contains("unknown log level 'Verbose'"), "{stderr}");
    assert!(stderr.contains("Successfully loaded pipeline configuration"), "{stderr}");

    let out = run_in(dir.path(), &["-config", &cfg, "-test", "-log", "HEALTH"], &[]);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("[Health]") && !stderr.contains("[Info]"), "{stderr}");

    let out = run_in(dir.path(), &["-config", &cfg, "-test", "-log=quiet"], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.is_empty() && stderr.is_empty(), "{stdout}{stderr}");
}

#[test]
fn errors_go_to_stderr_with_upstream_line_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_in(dir.path(), &["-config", "absent.json", "x.sf"], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout.contains("[Error]"), "{stdout}");
    let line = stderr.lines().find(|l| l.starts_with("[Error] ")).expect("an error line");
    // `[Error] YYYY-MM-DD HH:MM:SS message`
    let ts = &line["[Error] ".len().."[Error] ".len() + 19];
    assert!(ts.as_bytes()[4] == b'-' && ts.as_bytes()[10] == b' ' && ts.as_bytes()[13] == b':', "{line}");
    assert!(line.contains("absent.json"), "{line}");
}

#[test]
fn plugin_directories_load_only_what_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_pipeline(dir.path(), "p.json", READER_EXPORTER);
    std::fs::create_dir(dir.path().join("plugins")).expect("mkdir");
    std::fs::write(dir.path().join("plugins/libcustom.so"), b"").expect("write");
    // -plugdir is searched only for processors the pipeline names and the registry lacks.
    let out = run_in(dir.path(), &["-config", &cfg, "-test", "-plugdir", "plugins", "-driverdir=absent"], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains("libcustom.so") && !stderr.contains("libcustom.so"), "{stdout}{stderr}");
    // Every library in -driverdir is loaded at start-up; one that is no plugin aborts it.
    let out = run_in(dir.path(), &["-config", &cfg, "-test", "-driverdir", "plugins"], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("plugins/libcustom.so"), "{stderr}");
    assert!(!stderr.contains("Successfully loaded"), "{stderr}");
}

#[test]
fn listrules_prints_each_rule_with_its_record_type_bucket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    std::fs::write(
        policies.join("r.yaml"),
        "- rule: Exec in container\n  desc: x\n  condition: sf.type = PE and sf.opflags = EXEC and sf.container.id != \"\"\n  priority: high\n  tags: [mitre:T1059]\n\
         - rule: Any open\n  desc: y\n  condition: sf.opflags = OPEN\n  prefilter: [FF]\n",
    )
    .expect("write policy");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [
            {{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}},
            {{"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "policies": "{}"}},
            {{"processor": "exporter", "in": "evt eventchan", "export": "null"}}]}}"#,
            policies.display()
        ),
    );
    let out = run_in(dir.path(), &["-listrules", "-config", &cfg], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let rules: Vec<&str> = stdout.lines().filter(|l| l.starts_with("rule\t")).collect();
    assert_eq!(rules.len(), 2, "{stdout}");
    assert!(rules[0].starts_with("rule\tExec in container\t[PE]\t") && rules[0].contains("mitre:T1059"), "{}", rules[0]);
    assert!(rules[1].starts_with("rule\tAny open\t[FF]\t"), "{}", rules[1]);

    std::fs::write(policies.join("bad.yaml"), "- rule: Broken\n  desc: z\n  condition: sf.type = = PE\n").expect("write");
    let out = run_in(dir.path(), &["-listrules", "-config", &cfg], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(format!("{stdout}{stderr}").contains("bad.yaml:3:"), "error names file:line: {stdout}{stderr}");
}

#[test]
fn listrules_reads_sigma_rules_as_sigma() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("mkdir");
    std::fs::write(
        rules.join("curl.yml"),
        "title: Curl\nid: curl-1\ndescription: curl run\nlevel: medium\ntags: [attack.t1105]\n\
         detection:\n  selection:\n    Image|endswith: /curl\n  condition: selection\n",
    )
    .expect("write rule");
    let mapping = dir.path().join("sysflow.yml");
    std::fs::write(&mapping, "fieldmappings:\n  Image: sf.proc.exe\n").expect("write config");
    let pipeline = |config: &str| {
        format!(
            r#"{{"pipeline": [
            {{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}},
            {{"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "language": "sigma",
              "policies": "{}", "config": "{config}"}},
            {{"processor": "exporter", "in": "evt eventchan", "export": "null"}}]}}"#,
            rules.display()
        )
    };
    let cfg = write_pipeline(dir.path(), "p.json", &pipeline(&mapping.display().to_string()));
    let out = run_in(dir.path(), &["-listrules", "-config", &cfg], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("(policyengine, sigma)"), "{stdout}");
    let listed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("rule\t")).collect();
    assert_eq!(listed.len(), 1, "{stdout}");
    assert!(listed[0].starts_with("rule\tcurl-1\t") && listed[0].contains("priority=2") && listed[0].contains("enabled"), "{}", listed[0]);

    // A config file that does not exist is an error naming the key, as at start-up.
    let cfg = write_pipeline(dir.path(), "q.json", &pipeline("/nonexistent/sysflow.yml"));
    let out = run_in(dir.path(), &["-listrules", "-config", &cfg], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(format!("{stdout}{stderr}").contains("key 'config'"), "{stdout}{stderr}");
}
