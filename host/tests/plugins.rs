//! Third-party plugin libraries through the binary: each example plugin loads from a
//! directory and does its job in a real pipeline; unsafe directories are refused; a
//! panicking plugin stops only its own branch.

mod common;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use common::{
    expected_counts, lines_of,
    plugin_fixtures::{built_so, cargo_build_with_env, install_example, plugin_target_dir, private_dir, EXAMPLES},
    run_in, shared_data, text, workspace_root, write_pipeline,
};

/// A 0755 directory holding the named example plugins (mode 0644).
fn plugin_dir(parent: &Path, name: &str, packages: &[&str]) -> PathBuf {
    let dir = parent.join(name);
    fs::create_dir_all(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod dir");
    for p in packages {
        let (_, file) = EXAMPLES.iter().find(|(pkg, _)| pkg == p).expect("known example");
        install_example(p, &dir, file);
    }
    dir
}

fn count_for(data: &Path, trace: &str) -> usize {
    expected_counts(data).into_iter().find(|(t, _)| t == trace).map(|(_, n)| n).expect("trace in counts.tsv")
}

const READER: &str =
    r#"{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}"#;

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn example_processor_passes_records_unchanged_and_logs() {
    let Some(data) = shared_data() else { return };
    let dir = private_dir();
    let plugins = plugin_dir(dir.path(), "plugins", &["example-processor"]);
    let trace = s(&data.join("traces/k8s_small.sf"));
    // Reference run without the plugin.
    let direct = write_pipeline(
        dir.path(),
        "direct.json",
        &format!(r#"{{"pipeline": [{READER}, {{"processor": "exporter", "in": "flat flattenerchan", "export": "file", "file.path": "direct.json.out"}}]}}"#),
    );
    let out = run_in(dir.path(), &["-config", &direct, "-log", "warn", &trace], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [{READER},
            {{"processor": "example", "in": "flat flattenerchan", "out": "ex flattenerchan"}},
            {{"processor": "exporter", "in": "ex flattenerchan", "export": "file", "file.path": "via.json.out"}}]}}"#
        ),
    );
    let out = run_in(dir.path(), &["-config", &cfg, "-plugdir", &s(&plugins), &trace], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let via = lines_of(&dir.path().join("via.json.out"));
    assert_eq!(via.len(), count_for(&data, "k8s_small.sf"));
    assert_eq!(via, lines_of(&dir.path().join("direct.json.out")), "the example processor must not change records");
    // Its log lines come through the host's logger, labelled with its block, and its counter is summarised.
    assert!(stderr.contains("example plugin ready"), "{stderr}");
    let events = stderr.lines().filter(|l| l.contains("Process Event: ")).count();
    assert!(events > 0, "{stderr}");
    assert!(stderr.contains(&format!("process_events {events}")) || stderr.contains(&format!("process_events={events}")), "{stderr}");
    assert!(stderr.contains("plugins/example.so"), "the load is logged with its path: {stderr}");
    assert!(stdout.is_empty(), "logs go to stderr: {stdout}");
}

#[test]
fn passthrough_and_printer_handler_from_their_directories() {
    let Some(data) = shared_data() else { return };
    let dir = private_dir();
    let plugins = plugin_dir(dir.path(), "plugins", &["passthrough"]);
    let handlers = plugin_dir(dir.path(), "handlers", &["printer-handler"]);
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [
            {{"processor": "sysflowreader", "handler": "printer", "handlerlibpath": "{}", "printer.types": "NF",
              "in": "sysflow sysflowchan", "out": "flat flattenerchan"}},
            {{"processor": "passthrough", "in": "flat flattenerchan", "out": "p flattenerchan"}},
            {{"processor": "exporter", "in": "p flattenerchan", "export": "file", "file.path": "out.json"}}]}}"#,
            s(&handlers)
        ),
    );
    let trace = s(&data.join("traces/k8s_small.sf"));
    let out = run_in(dir.path(), &["-config", &cfg, "-plugdir", &s(&plugins), &trace], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(lines_of(&dir.path().join("out.json")).len(), count_for(&data, "k8s_small.sf"));
    let printed = stderr.lines().filter(|l| l.contains("NF ts=")).count();
    assert!(printed > 0, "{stderr}");
    assert!(!stderr.lines().any(|l| l.contains("PE ts=")), "printer.types selects NF only");
}

#[test]
fn ndjson_driver_from_driverdir() {
    let dir = private_dir();
    let drivers = plugin_dir(dir.path(), "drivers", &["ndjson-driver"]);
    let input = dir.path().join("in.ndjson");
    let mut text_in = String::from(r#"{"type":"H","version":5,"exporter":"node1","ip":"10.0.0.1","filename":"x"}"#);
    text_in.push('\n');
    text_in.push_str(
        r#"{"type":"P","state":"CREATED","oid":{"createTS":1,"hpid":42},"poid":{"createTS":0,"hpid":1},"ts":1,"exe":"/bin/sh","exeArgs":"-c ls","uid":0,"userName":"root","gid":0,"groupName":"root","tty":false,"containerId":null,"entry":false,"cwd":"/","env":[]}"#,
    );
    text_in.push('\n');
    for i in 0..5 {
        text_in.push_str(&format!(
            r#"{{"type":"PE","procOID":{{"createTS":1,"hpid":42}},"ts":{},"tid":42,"opFlags":1,"args":[],"ret":0}}"#,
            10 + i
        ));
        text_in.push('\n');
    }
    fs::write(&input, text_in).expect("write ndjson");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(r#"{{"pipeline": [{READER}, {{"processor": "exporter", "in": "flat flattenerchan", "export": "file", "file.path": "out.json"}}]}}"#),
    );
    let out = run_in(dir.path(), &["-config", &cfg, "-driver", "ndjson", "-driverdir", &s(&drivers), &s(&input)], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let lines = lines_of(&dir.path().join("out.json"));
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("/bin/sh")), "{lines:?}");
}

#[test]
fn world_writable_plugin_directory_and_file_are_refused() {
    let dir = private_dir();
    let plugins = plugin_dir(dir.path(), "plugins", &["passthrough"]);
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [{READER}, {{"processor": "passthrough", "in": "flat flattenerchan", "out": "p flattenerchan"}},
            {{"processor": "exporter", "in": "p flattenerchan", "export": "null"}}]}}"#
        ),
    );
    let so = plugins.join("passthrough.so");
    fs::set_permissions(&so, fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = run_in(dir.path(), &["-config", &cfg, "-test", "-plugdir", &s(&plugins)], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains(&s(&so)) && stderr.contains("0666"), "{stderr}");
    assert!(stderr.contains("pipeline[1] (passthrough)"), "the error names the block: {stderr}");
    assert!(stderr.contains(&format!("run `chmod go-w {}`", s(&so))), "the fix is named: {stderr}");
    assert!(stderr.contains("`sfprocessor -allowinsecureplugins` skips this check"), "the flag is named: {stderr}");
    // -allowinsecureplugins accepts it (development only).
    let out = run_in(dir.path(), &["-config", &cfg, "-test", "-allowinsecureplugins", "-plugdir", &s(&plugins)], &[]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    fs::set_permissions(&so, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::set_permissions(&plugins, fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = run_in(dir.path(), &["-config", &cfg, "-test", "-plugdir", &s(&plugins)], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains(&s(&plugins)) && stderr.contains("0777"), "{stderr}");
    // The same rule for -driverdir, where any refusal aborts start-up.
    let out = run_in(dir.path(), &["-config", &cfg, "-test", "-driverdir", &s(&plugins), "-plugdir", "absent"], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("0777"), "{stderr}");
}

#[test]
fn missing_plugin_is_not_found_in_plugin_cache() {
    let dir = private_dir();
    let plugins = plugin_dir(dir.path(), "plugins", &[]);
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(r#"{{"pipeline": [{READER}, {{"processor": "nosuch", "in": "flat flattenerchan"}}]}}"#),
    );
    let out = run_in(dir.path(), &["-config", &cfg, "-test", "-plugdir", &s(&plugins)], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pipeline[1] (nosuch): key 'processor': unknown processor 'nosuch'"), "{stderr}");
    assert!(stderr.contains("plugin 'nosuch' not found in plugin cache"), "{stderr}");
}

#[test]
fn duplicate_plugin_names_both_files() {
    let dir = private_dir();
    let drivers = plugin_dir(dir.path(), "drivers", &["ndjson-driver"]);
    fs::copy(drivers.join("ndjson.so"), drivers.join("ndjson2.so")).expect("copy");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(r#"{{"pipeline": [{READER}, {{"processor": "exporter", "in": "flat flattenerchan", "export": "null"}}]}}"#),
    );
    let out = run_in(dir.path(), &["-config", &cfg, "-test", "-driverdir", &s(&drivers)], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ndjson.so") && stderr.contains("ndjson2.so") && stderr.contains("'ndjson'"), "{stderr}");
}

#[test]
fn panicking_plugin_stops_only_its_branch() {
    let Some(data) = shared_data() else { return };
    let dir = private_dir();
    let plugins = plugin_dir(dir.path(), "plugins", &["panicking-processor"]);
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        r#"{"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan",
             "out": ["a flattenerchan", "b flattenerchan"]},
            {"processor": "panicky", "in": "a flattenerchan", "out": "pa flattenerchan"},
            {"processor": "exporter", "in": "pa flattenerchan", "export": "file", "file.path": "a.json"},
            {"processor": "exporter", "in": "b flattenerchan", "export": "file", "file.path": "b.json"}]}"#,
    );
    let trace = s(&data.join("traces/k8s_small.sf"));
    let out = run_in(dir.path(), &["-config", &cfg, "-plugdir", &s(&plugins), &trace], &[]);
    let (stdout, stderr) = text(&out);
    // A failed branch makes the run fail (exit 1), after everything else drained.
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("pipeline[1] (panicky)") && stderr.contains("panic"), "{stderr}");
    let expected = count_for(&data, "k8s_small.sf");
    assert_eq!(lines_of(&dir.path().join("b.json")).len(), expected, "the healthy branch gets every record");
    let a = dir.path().join("a.json");
    let a_lines = if a.exists() { lines_of(&a).len() } else { 0 };
    assert!(a_lines < 1000, "the panicking branch stops before its 1000th record ({a_lines})");
}

#[test]
fn on_error_restart_rebuilds_the_plugin_and_records_keep_flowing() {
    let Some(data) = shared_data() else { return };
    let dir = private_dir();
    let plugins = plugin_dir(dir.path(), "plugins", &["panicking-processor"]);
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [{READER},
            {{"processor": "panicky", "on.error": "restart", "in": "flat flattenerchan", "out": "pa flattenerchan"}},
            {{"processor": "exporter", "in": "pa flattenerchan", "export": "file", "file.path": "a.json"}}]}}"#
        ),
    );
    let trace = s(&data.join("traces/k8s_small.sf"));
    let out = run_in(dir.path(), &["-config", &cfg, "-plugdir", &s(&plugins), &trace], &[]);
    let (stdout, stderr) = text(&out);
    let expected = count_for(&data, "k8s_small.sf");
    // Each new instance panics again at its own 1000th record: 5247 records → several restarts.
    let restarts = stderr.lines().chain(stdout.lines()).filter(|l| l.contains("restarted with the same configuration")).count();
    assert!(restarts >= 2, "stdout: {stdout}\nstderr: {stderr}");
    let exported = lines_of(&dir.path().join("a.json")).len();
    assert!(exported > 1000 && exported < expected, "records after the panicking batch flow: {exported} of {expected}");
    assert!(stderr.contains(&format!("host.restarts={restarts}")), "{stderr}");
    // Lost batches make the run fail, as any loss does.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let dropped: usize = stdout
        .lines()
        .chain(stderr.lines())
        .find_map(|l| l.split("pipeline[1] (panicky): dropped ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drop count: {stdout}{stderr}"));
    assert_eq!(exported + dropped, expected, "every record is either exported or counted as dropped");
}

#[test]
fn on_error_takes_stop_or_restart_only() {
    let dir = private_dir();
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(r#"{{"pipeline": [{READER}, {{"processor": "exporter", "on.error": "retry", "in": "flat flattenerchan", "export": "null"}}]}}"#),
    );
    let out = run_in(dir.path(), &["-config", &cfg, "-test"], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pipeline[1] (exporter): key 'on.error': expected \"stop\" or \"restart\""), "{stderr}");
}

/// `sfprocessor keys` lists the keys of plugins loaded from `-plugdir` and `-driverdir` with
/// the library they came from, beside the built-in ones.
#[test]
fn keys_lists_the_keys_of_loaded_plugins() {
    let dir = private_dir();
    let plugins = plugin_dir(dir.path(), "plugins", &["printer-handler"]);
    let drivers = plugin_dir(dir.path(), "drivers", &["ndjson-driver"]);
    let out = run_in(dir.path(), &["keys", "-plugdir", &s(&plugins), "-driverdir", &s(&drivers)], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&format!("## handler `printer` (library {})", s(&plugins.join("printer.so")))), "{stdout}");
    assert!(stdout.contains("| `printer.types` | comma-separated record types to log"), "{stdout}");
    assert!(stdout.contains(&format!("## driver `ndjson` (library {})", s(&drivers.join("ndjson.so")))), "{stdout}");
    assert!(stdout.contains("## processor `exporter` (built in, sysflow-kafka)"), "{stdout}");
    let out = run_in(dir.path(), &["keys", "printer", "-plugdir", &s(&plugins)], &[]);
    let (stdout, _) = text(&out);
    assert!(stdout.starts_with("## handler `printer`") && !stdout.contains("exporter"), "{stdout}");
}

/// Builds the `tagger` fixture with `TAG=tag` and returns its library, copied aside so the
/// next build (another tag) does not overwrite it.
fn tagger_build(tag: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // Held from the build to the copy, so two tags cannot interleave.
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    cargo_build_with_env(&workspace_root().join("Cargo.toml"), &["tagging-processor"], &[("TAG", tag)]);
    let dest = plugin_target_dir().join(format!("tagger-{tag}.so"));
    fs::copy(built_so("tagging-processor"), &dest).expect("copy tagger");
    dest
}

/// Installs `lib` as `dir/name` by writing a hidden temporary and renaming it into place.
fn install_by_rename(lib: &Path, dir: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::copy(lib, &tmp).expect("copy");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::rename(&tmp, dir.join(name)).expect("rename");
}

/// Starts the binary in `dir` with `args`; returns the child and a reader of its log so far.
fn spawn_logged(dir: &Path, args: &[&str]) -> (std::process::Child, impl Fn() -> String) {
    let mut child = Command::new(common::bin())
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sfprocessor");
    let stdout = collect(child.stdout.take().expect("stdout"));
    let stderr = collect(child.stderr.take().expect("stderr"));
    let log = move || {
        format!("{}{}", stdout.lock().unwrap_or_else(|p| p.into_inner()), stderr.lock().unwrap_or_else(|p| p.into_inner()))
    };
    (child, log)
}

/// A generated stream as socket datums, each marked whether the reader turns it into an
/// exported record (events and flows other than process flows).
fn generated_datums(records: u64) -> Vec<(Vec<u8>, bool)> {
    let config = sysflow_tracegen::GenConfig { records, ..Default::default() };
    let mut datums = Vec::new();
    sysflow_tracegen::generate(&config, |rec| {
        let event = matches!(rec, sysflow_plugin_api::SysFlowRecord::Event(ref e) if !matches!(e, sysflow_plugin_api::Event::ProcessFlow(_)));
        let mut buf = Vec::new();
        sysflow_tracegen::encode_datum(&rec, &mut buf);
        datums.push((buf, event));
    });
    datums
}

/// Reads a child's output on a thread, so a test can wait for a log line while it runs.
fn collect(pipe: impl std::io::Read + Send + 'static) -> std::sync::Arc<std::sync::Mutex<String>> {
    use std::io::BufRead;
    let buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = buf.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut b = sink.lock().unwrap_or_else(|p| p.into_inner());
            b.push_str(&line);
            b.push('\n');
        }
    });
    buf
}

fn wait_until(what: &str, timeout: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A new build of a running processor, renamed into place mid-stream, takes over at a batch
/// boundary: every record is processed exactly once, by the old build up to the swap and by
/// the new one after it.
#[test]
fn hot_reload_swaps_a_processor_between_batches() {
    reload_case(|new_build, plugins, _| install_by_rename(new_build, plugins, "tagger.so"), true);
}

/// The same with a plain copy over the running library's file.
#[test]
fn hot_reload_after_copying_over_the_library() {
    reload_case(
        |new_build, plugins, _| {
            fs::copy(new_build, plugins.join("tagger.so")).expect("cp over");
        },
        true,
    );
}

/// A file that is no plugin, put in place of the running library: logged, the old build keeps running.
#[test]
fn hot_reload_of_a_broken_build_keeps_the_running_instance() {
    reload_case(|_, plugins, _| install_bytes(plugins, "tagger.so", b"not a shared library"), false);
}

/// A refused build, then the running build installed again: the running build is never
/// swapped for itself (its content hash is the running one), as docs/plugins.md §7 says.
#[test]
fn hot_reload_of_the_running_build_after_a_refused_one_swaps_nothing() {
    reload_case(
        |_, plugins, log| {
            install_bytes(plugins, "tagger.so", b"not a shared library");
            wait_until("the broken build to be refused", std::time::Duration::from_secs(20), || {
                log().contains("hot reload of")
            });
            let running = tagger_build("tag-one");
            install_by_rename(&running, plugins, "tagger.so");
            wait_until("the running build to be recognised", std::time::Duration::from_secs(20), || {
                log().contains("is the build already running")
            });
        },
        false,
    );
}

/// A `cp` of a new build caught half-way: the first half is written over the running
/// library's file, left alone past the quiet period, then the rest follows. The half file
/// is refused (the old build keeps running, nothing is mapped) and the complete one is
/// swapped in.
#[test]
fn hot_reload_of_a_half_written_library_waits_for_the_rest() {
    reload_case(
        |new_build, plugins, log| {
            use std::io::Write;
            let bytes = fs::read(new_build).expect("read new build");
            let target = plugins.join("tagger.so");
            let mut file = fs::OpenOptions::new().write(true).truncate(true).open(&target).expect("open over");
            file.write_all(&bytes[..bytes.len() / 2]).expect("write first half");
            wait_until("the half-written file to be refused", std::time::Duration::from_secs(20), || {
                log().lines().any(|l| l.contains(&s(&target)) && l.contains("truncated: "))
            });
            assert!(!log().contains("swapped in the new build"), "{}", log());
            file.write_all(&bytes[bytes.len() / 2..]).expect("write the rest");
        },
        true,
    );
}

/// A new build that stays cut short: refused with the file and the cut named, the old build
/// keeps running.
#[test]
fn hot_reload_of_a_truncated_library_keeps_the_running_instance() {
    reload_case(
        |new_build, plugins, log| {
            let bytes = fs::read(new_build).expect("read new build");
            install_bytes(plugins, "tagger.so", &bytes[..bytes.len() - 1]);
            wait_until("the truncated file to be refused", std::time::Duration::from_secs(20), || {
                log().lines().any(|l| l.contains("tagger.so") && l.contains("truncated: "))
            });
        },
        false,
    );
}

fn install_bytes(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, bytes).expect("write");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::rename(&tmp, dir.join(name)).expect("rename");
}

/// Runs the tagger's `tag-one` build on a socket stream, calls `replace(new build, plugin
/// dir, log so far)` half-way, and checks which build tagged each record.
fn reload_case(replace: impl FnOnce(&Path, &Path, &dyn Fn() -> String), expect_swap: bool) {
    use std::{os::fd::AsRawFd, time::Duration};

    use nix::sys::socket::{connect, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

    let old_build = tagger_build("tag-one");
    let new_build = tagger_build("tag-two");
    let dir = private_dir();
    let plugins = plugin_dir(dir.path(), "plugins", &[]);
    install_by_rename(&old_build, &plugins, "tagger.so");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [{READER},
            {{"processor": "tagger", "in": "flat flattenerchan", "out": "t flattenerchan"}},
            {{"processor": "exporter", "in": "t flattenerchan", "export": "file", "file.path": "out.json"}}]}}"#
        ),
    );
    let sock = dir.path().join("sysflow.sock");
    let (mut child, log) = spawn_logged(dir.path(), &["-config", &cfg, "-plugdir", &s(&plugins), "-driver", "socket", &s(&sock)]);
    wait_until("the socket to be bound", Duration::from_secs(20), || sock.exists());

    // Encode a generated stream; the first half goes before the swap, the rest after.
    let datums = generated_datums(4000);
    let (first, second) = datums.split_at(datums.len() / 2);
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("address")).expect("connect");
    for (d, _) in first {
        send(fd.as_raw_fd(), d, MsgFlags::empty()).expect("send datum");
    }
    // Let the first half through the tagger (the idle exporter flushes it) before the new build arrives.
    let events_first = first.iter().filter(|(_, e)| *e).count();
    let out_path = dir.path().join("out.json");
    let exported = || fs::read_to_string(&out_path).map(|t| t.lines().count()).unwrap_or(0);
    wait_until("the first half to be exported", Duration::from_secs(30), || exported() >= events_first);
    replace(&new_build, &plugins, &log);
    if expect_swap {
        wait_until("the swap", Duration::from_secs(20), || log().contains("swapped in the new build"));
    } else {
        wait_until("the failed reload", Duration::from_secs(20), || log().contains("hot reload of"));
    }
    for (d, _) in second {
        send(fd.as_raw_fd(), d, MsgFlags::empty()).expect("send datum");
    }
    let events = datums.iter().filter(|(_, e)| *e).count();
    wait_until("every record to be exported", Duration::from_secs(30), || exported() >= events);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let status = child.wait().expect("wait");
    std::thread::sleep(Duration::from_millis(200)); // let the readers take the last lines
    let log = log();
    assert_eq!(status.code(), Some(0), "{log}");
    drop(fd);

    let lines = lines_of(&dir.path().join("out.json"));
    assert_eq!(lines.len(), events, "every record exported exactly once\n{log}");
    let tags: Vec<u8> = lines
        .iter()
        .map(|l| match (l.contains("\"tag-one\""), l.contains("\"tag-two\"")) {
            (true, false) => 1,
            (false, true) => 2,
            _ => panic!("a record must carry exactly one tag: {l}"),
        })
        .collect();
    let switch = tags.iter().position(|&t| t == 2).unwrap_or(tags.len());
    assert!(tags[switch..].iter().all(|&t| t == 2), "the tag switches once, never back");
    if expect_swap {
        assert_eq!(switch, events_first, "the old build processed exactly the records sent before the swap");
        assert!(log.contains("plugin library images mapped: 2"), "{log}");
    } else {
        assert_eq!(switch, events, "the old build keeps processing every record\n{log}");
        assert!(log.contains("the running instances are kept"), "{log}");
        assert!(!log.contains("swapped in the new build"), "nothing may be swapped\n{log}");
        assert!(log.contains("plugin library images mapped: 1"), "{log}");
    }
}

/// A handler from `handlerlibpath` is swapped too: the reader's chain flushes, the new
/// handler instance takes the next batch, and every record is exported once. (The new
/// build is the same library with bytes appended: a new content the loader maps anew.)
#[test]
fn hot_reload_swaps_a_handler() {
    use std::{io::Write, os::fd::AsRawFd, time::Duration};

    use nix::sys::socket::{connect, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

    let dir = private_dir();
    let handlers = plugin_dir(dir.path(), "handlers", &["printer-handler"]);
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [
            {{"processor": "sysflowreader", "handler": "printer", "handlerlibpath": "{}", "printer.types": "NF",
              "in": "sysflow sysflowchan", "out": "flat flattenerchan"}},
            {{"processor": "exporter", "in": "flat flattenerchan", "export": "file", "file.path": "out.json"}}]}}"#,
            s(&handlers)
        ),
    );
    let sock = dir.path().join("sysflow.sock");
    let (mut child, log) = spawn_logged(dir.path(), &["-config", &cfg, "-driver", "socket", &s(&sock)]);
    wait_until("the socket to be bound", Duration::from_secs(20), || sock.exists());

    let datums = generated_datums(3000);
    let (first, second) = datums.split_at(datums.len() / 2);
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("address")).expect("connect");
    for (d, _) in first {
        send(fd.as_raw_fd(), d, MsgFlags::empty()).expect("send datum");
    }
    let events_first = first.iter().filter(|(_, e)| *e).count();
    let out_path = dir.path().join("out.json");
    let exported = || fs::read_to_string(&out_path).map(|t| t.lines().count()).unwrap_or(0);
    wait_until("the first half to be exported", Duration::from_secs(30), || exported() >= events_first);
    let mut bytes = fs::read(handlers.join("printer.so")).expect("read printer");
    bytes.write_all(b"\0new build").expect("append");
    install_bytes(&handlers, "printer.so", &bytes);
    wait_until("the swap", Duration::from_secs(20), || log().contains("swapped in the new build"));
    for (d, _) in second {
        send(fd.as_raw_fd(), d, MsgFlags::empty()).expect("send datum");
    }
    let events = datums.iter().filter(|(_, e)| *e).count();
    wait_until("every record to be exported", Duration::from_secs(30), || exported() >= events);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let status = child.wait().expect("wait");
    std::thread::sleep(Duration::from_millis(200));
    let log = log();
    assert_eq!(status.code(), Some(0), "{log}");
    drop(fd);
    assert_eq!(lines_of(&dir.path().join("out.json")).len(), events, "every record exported exactly once\n{log}");
    assert!(log.contains("handlers/printer.so"), "{log}");
    assert!(log.contains("the replaced instance's counters: printed="), "{log}");
}

#[test]
fn now_action_from_actiondir_tags_matched_records() {
    let Some(data) = shared_data() else { return };
    let dir = private_dir();
    let actions = plugin_dir(dir.path(), "actions", &["now-action"]);
    let policies = dir.path().join("policies");
    fs::create_dir_all(&policies).expect("mkdir policies");
    fs::write(
        policies.join("exec.yaml"),
        "- rule: Exec seen\n  desc: every exec\n  condition: sf.type = PE and sf.opflags = EXEC\n  actions: [now]\n  priority: low\n  tags: [test]\n",
    )
    .expect("write policy");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [
            {{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}},
            {{"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "policies": "{}", "actiondir": "{}"}},
            {{"processor": "exporter", "in": "evt eventchan", "export": "file", "file.path": "out.json"}}]}}"#,
            s(&policies),
            s(&actions)
        ),
    );
    let trace = s(&data.join("traces/shellshock.sf"));
    let out = run_in(dir.path(), &["-config", &cfg, &trace], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    // The library's `now` replaces the built-in one of the same name, and says so.
    assert!(
        stderr.contains("Re-declaration of action 'now'") && stderr.contains("now.so"),
        "the action library was not loaded: {stderr}"
    );
    let lines = lines_of(&dir.path().join("out.json"));
    assert!(!lines.is_empty(), "no exec alerts");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
        let tags: Vec<&str> = v["tags"].as_array().expect("tags").iter().filter_map(|t| t.as_str()).collect();
        assert!(tags.first().is_some_and(|t| t.starts_with("now_in_nanos:")), "action tag first: {tags:?}");
        assert_eq!(tags.last(), Some(&"test"), "rule tags after action tags: {tags:?}");
    }
}

#[test]
fn world_writable_action_library_is_refused() {
    let Some(data) = shared_data() else { return };
    let dir = private_dir();
    let actions = plugin_dir(dir.path(), "actions", &["now-action"]);
    fs::set_permissions(actions.join("now.so"), fs::Permissions::from_mode(0o666)).expect("chmod");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [
            {{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}},
            {{"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "mode": "enrich", "policies": "{}", "actiondir": "{}"}},
            {{"processor": "exporter", "in": "evt eventchan", "export": "null"}}]}}"#,
            s(&workspace_root().join("config/policies")),
            s(&actions)
        ),
    );
    let trace = s(&data.join("traces/shellshock.sf"));
    let out = run_in(dir.path(), &["-config", &cfg, &trace], &[]);
    let (stdout, stderr) = text(&out);
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("action plugin not loaded") && all.contains("0666"), "{all}");
    assert!(!all.contains("Re-declaration of action"), "the refused library must not register: {all}");
}

/// A new build of an action library in a running policy engine's `actiondir` queues a
/// pipeline reload (as SIGHUP does): the new engine instance loads it, every record is
/// exported once, and the ones sent after the reload still carry the action's tag. (The new
/// build is the same library with bytes appended: a new content.)
#[test]
fn changed_action_library_reloads_the_pipeline() {
    use std::{io::Write, os::fd::AsRawFd, time::Duration};

    use nix::sys::socket::{connect, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

    let dir = private_dir();
    let actions = plugin_dir(dir.path(), "actions", &["now-action"]);
    let policies = dir.path().join("policies");
    fs::create_dir_all(&policies).expect("mkdir policies");
    fs::write(
        policies.join("all.yaml"),
        "- rule: Any\n  desc: every record\n  condition: sf.type in (PE, NF, FF, FE, NE, KE)\n  actions: [now]\n  priority: low\n  tags: [test]\n",
    )
    .expect("write policy");
    let cfg = write_pipeline(
        dir.path(),
        "p.json",
        &format!(
            r#"{{"pipeline": [
            {{"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"}},
            {{"processor": "policyengine", "in": "flat flattenerchan", "out": "evt eventchan", "mode": "enrich",
              "policies": "{}", "actiondir": "{}"}},
            {{"processor": "exporter", "in": "evt eventchan", "export": "file", "file.path": "out.json"}}]}}"#,
            s(&policies),
            s(&actions)
        ),
    );
    let sock = dir.path().join("sysflow.sock");
    let (mut child, log) = spawn_logged(dir.path(), &["-config", &cfg, "-driver", "socket", &s(&sock)]);
    wait_until("the socket to be bound", Duration::from_secs(20), || sock.exists());

    let datums = generated_datums(3000);
    let (first, second) = datums.split_at(datums.len() / 2);
    let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    connect(fd.as_raw_fd(), &UnixAddr::new(&sock).expect("address")).expect("connect");
    for (d, _) in first {
        send(fd.as_raw_fd(), d, MsgFlags::empty()).expect("send datum");
    }
    let events_first = first.iter().filter(|(_, e)| *e).count();
    let out_path = dir.path().join("out.json");
    let exported = || fs::read_to_string(&out_path).map(|t| t.lines().count()).unwrap_or(0);
    wait_until("the first half to be exported", Duration::from_secs(30), || exported() >= events_first);
    let mut bytes = fs::read(actions.join("now.so")).expect("read now.so");
    bytes.write_all(b"\0new build").expect("append");
    install_bytes(&actions, "now.so", &bytes);
    wait_until("the pipeline reload", Duration::from_secs(20), || log().contains("reload applied"));
    for (d, _) in second {
        send(fd.as_raw_fd(), d, MsgFlags::empty()).expect("send datum");
    }
    let events = datums.iter().filter(|(_, e)| *e).count();
    wait_until("every record to be exported", Duration::from_secs(30), || exported() >= events);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let status = child.wait().expect("wait");
    std::thread::sleep(Duration::from_millis(200));
    let log = log();
    assert_eq!(status.code(), Some(0), "{log}");
    drop(fd);
    assert!(log.contains("now.so changed: reloading the pipeline"), "{log}");
    assert_eq!(log.matches("reload applied").count(), 1, "one change, one reload\n{log}");
    let lines = lines_of(&out_path);
    assert_eq!(lines.len(), events, "every record exported exactly once\n{log}");
    for l in &lines {
        assert!(l.contains("now_in_nanos:"), "a record lacks the action's tag: {l}");
    }
}

/// Builds the ndjson driver labelled `NDJSON_BUILD=label` and returns its library, copied
/// aside so the next build does not overwrite it.
fn ndjson_build(label: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    cargo_build_with_env(&workspace_root().join("Cargo.toml"), &["ndjson-driver"], &[("NDJSON_BUILD", label)]);
    let dest = plugin_target_dir().join(format!("ndjson-{label}.so"));
    fs::copy(built_so("ndjson-driver"), &dest).expect("copy ndjson driver");
    dest
}

/// NDJSON lines of process events with timestamps `from..to`, for the process of `ndjson_process`.
fn ndjson_events(from: i64, to: i64) -> String {
    (from..to)
        .map(|ts| format!("{{\"type\":\"PE\",\"procOID\":{{\"createTS\":1,\"hpid\":42}},\"ts\":{ts},\"tid\":42,\"opFlags\":1,\"args\":[],\"ret\":0}}\n"))
        .collect()
}

/// A header and the process the events of [`ndjson_events`] belong to.
fn ndjson_process() -> String {
    concat!(
        r#"{"type":"H","version":5,"exporter":"node1","ip":"10.0.0.1","filename":"x"}"#, "\n",
        r#"{"type":"P","state":"CREATED","oid":{"createTS":1,"hpid":42},"poid":{"createTS":0,"hpid":1},"ts":1,"exe":"/bin/sh","exeArgs":"","uid":0,"userName":"root","gid":0,"groupName":"root","tty":false,"containerId":null,"entry":false,"cwd":"/","env":[]}"#, "\n",
    )
    .to_string()
}

/// A new build of a running driver library, renamed into place while the driver follows a
/// growing file, takes over between two polls: the old instance hands over its open file and
/// read position, the new build resumes at the first line not yet read, and every record
/// is exported exactly once and in order — including a line half-written at the swap. A
/// SIGHUP whose pipeline changed the driver's block then hands the input over once more.
#[test]
fn hot_reload_hands_a_driver_input_to_its_new_build() {
    use std::{io::Write, time::Duration};

    let old_build = ndjson_build("one");
    let new_build = ndjson_build("two");
    let dir = private_dir();
    let drivers = plugin_dir(dir.path(), "drivers", &[]);
    install_by_rename(&old_build, &drivers, "ndjson.so");
    let input = dir.path().join("in.ndjson");
    fs::write(&input, ndjson_process() + &ndjson_events(100, 3100)).expect("write ndjson");
    let pipeline = |extra: &str| {
        format!(
            r#"{{"drivers": [{{"driver": "ndjson", "out": "sysflow sysflowchan", "path": "{}", "follow": "true"{extra}}}],
            "pipeline": [{READER}, {{"processor": "exporter", "in": "flat flattenerchan", "export": "file", "file.path": "out.json"}}]}}"#,
            s(&input)
        )
    };
    let cfg = write_pipeline(dir.path(), "p.json", &pipeline(""));
    let (mut child, log) = spawn_logged(dir.path(), &["-config", &cfg, "-driverdir", &s(&drivers)]);
    let out_path = dir.path().join("out.json");
    let exported = || fs::read_to_string(&out_path).map(|t| t.lines().count()).unwrap_or(0);
    wait_until("the first records to be exported", Duration::from_secs(30), || exported() >= 3000);
    // Half a line, left by the old build for whoever reads on.
    let rest = ndjson_events(3100, 6100);
    let (head, tail) = rest.split_at(rest.len() / 2 + 7);
    let mut file = fs::OpenOptions::new().append(true).open(&input).expect("open input");
    file.write_all(b"{\"type\":\"PE\",\"procOID\":{\"createTS\":1,").expect("append half a line");
    file.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(200));
    install_by_rename(&new_build, &drivers, "ndjson.so");
    wait_until("the driver swap", Duration::from_secs(20), || log().contains("replaced between two polls"));
    file.write_all(b"\"hpid\":42},\"ts\":9999,\"tid\":42,\"opFlags\":1,\"args\":[],\"ret\":0}\n").expect("complete the line");
    file.write_all(head.as_bytes()).expect("append");
    file.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(100));
    file.write_all(tail.as_bytes()).expect("append");
    file.flush().expect("flush");
    wait_until("every record to be exported", Duration::from_secs(30), || exported() >= 6001);
    // SIGHUP with a changed driver block: handed over again, to an instance with the new block.
    write_pipeline(dir.path(), "p.json", &pipeline(r#", "ndjson.note": "reconfigured""#));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    wait_until("the reload", Duration::from_secs(20), || log().contains("reload applied"));
    file.write_all(ndjson_events(6100, 7100).as_bytes()).expect("append");
    file.flush().expect("flush");
    wait_until("the records after the reload", Duration::from_secs(30), || exported() >= 7001);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let status = child.wait().expect("wait");
    std::thread::sleep(Duration::from_millis(200));
    let log = log();
    assert_eq!(status.code(), Some(0), "{log}");

    let ts: Vec<i64> = lines_of(&out_path)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line")["ts"].as_i64().expect("ts"))
        .collect();
    let mut want: Vec<i64> = (100..3100).collect();
    want.push(9999);
    want.extend(3100..7100);
    assert_eq!(ts.len(), want.len(), "every record exported exactly once\n{log}");
    assert!(ts == want, "records in file order, none lost or repeated\n{log}");
    assert!(log.contains("build two resuming"), "the new build resumed the input\n{log}");
    assert!(log.contains("the replaced instance's counters: records="), "{log}");
    assert!(log.contains("plugin library images mapped: 2"), "{log}");
    assert!(log.contains("replaced between two polls (its configuration changed (SIGHUP))"), "{log}");
    // The driver's own counter runs on across both swaps: the events plus the header and the process.
    assert!(log.contains("records=7003"), "{log}");
}
