//! Damaged input through the whole binary: truncated traces, corrupted blocks, non-Avro files
//! and directories mixing good and bad files. The run reports each problem naming the file and
//! block/offset, still exports every readable record, and reports the losses at exit.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use sysflow_avro_drivers::TraceReader;
use sysflow_e2e_tests::{
    output_text, read_json_lines, run_sfprocessor_in, sfprocessor_bin, shared_data, workspace_root, write_pipeline,
};
use sysflow_plugin_api::{Event, SysFlowRecord};

/// A trace with many blocks, so damage in the middle leaves readable blocks on both sides.
const BIG: &str = "mon.1531776682.sf";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    lines: Vec<Value>,
}

fn run(dir: &Path, input: &Path) -> Run {
    run_with(dir, input, &[])
}

/// [`run`] with extra flags before the input path.
fn run_with(dir: &Path, input: &Path, flags: &[&str]) -> Run {
    let out_path = dir.join("out.json");
    let _ = std::fs::remove_file(&out_path);
    let cfg = reader_to_json_file(dir, &out_path);
    let cfg = cfg.to_string_lossy();
    let input = input.to_string_lossy();
    let mut args = vec!["-config", &cfg, "-driver", "file"];
    args.extend_from_slice(flags);
    args.push(&input);
    let out = run_sfprocessor_in(dir, &args, &[]);
    let (stdout, stderr) = output_text(&out);
    let lines = if out_path.is_file() { read_json_lines(&out_path) } else { Vec::new() };
    Run { code: out.status.code(), stdout, stderr, lines }
}

/// Writes the reader → JSON file exporter pipeline (`out_path`) into `dir`.
fn reader_to_json_file(dir: &Path, out_path: &Path) -> PathBuf {
    write_pipeline(
        dir,
        "p.json",
        &json!({"pipeline": [
            {"processor": "sysflowreader", "handler": "flattener", "in": "sysflow sysflowchan", "out": "flat flattenerchan"},
            {"processor": "exporter", "in": "flat flattenerchan", "export": "file", "format": "json",
             "file.path": out_path.to_string_lossy()}]}),
    )
}

/// Flat records (the kinds the reader forwards) the decoder recovers from `path`, and whether
/// it reported any error.
fn readable_flat_records(path: &Path) -> (usize, usize) {
    let mut n = 0;
    let mut errors = 0;
    for rec in TraceReader::open(path).unwrap_or_else(|e| panic!("{e}")) {
        match rec {
            Ok(SysFlowRecord::Event(e)) if !matches!(e, Event::ProcessFlow(_)) => n += 1,
            Ok(_) => {}
            Err(_) => errors += 1,
        }
    }
    (n, errors)
}

fn key(v: &Value) -> (i64, String) {
    (v["ts"].as_i64().unwrap_or(-1), v["type"].as_str().unwrap_or("").to_owned())
}

/// Whether `sub`'s (ts, type) keys appear in order within `full`'s.
fn is_subsequence(sub: &[Value], full: &[Value]) -> bool {
    let mut it = full.iter().map(key);
    sub.iter().map(key).all(|k| it.any(|f| f == k))
}

/// The exit summary line of the file driver.
fn driver_summary(log: &str) -> String {
    log
        .lines()
        .find(|l| l.contains("driver (file): records in"))
        .unwrap_or_else(|| panic!("no file driver summary in\n{log}"))
        .to_owned()
}

/// Value of the counter `name` in a summary line (`…, <owner>name=<value>, …`).
fn counter(summary: &str, name: &str) -> u64 {
    summary
        .split(", ")
        .find_map(|part| part.split_once('=').filter(|(k, _)| k.ends_with(name)).map(|(_, v)| v))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no counter {name} in: {summary}"))
}

fn truncated_copy(src: &Path, dst: &Path, fraction: f64) -> PathBuf {
    let bytes = std::fs::read(src).expect("read trace");
    let cut = (bytes.len() as f64 * fraction) as usize;
    std::fs::write(dst, &bytes[..cut]).expect("write");
    dst.to_path_buf()
}

fn corrupted_copy(src: &Path, dst: &Path) -> PathBuf {
    let mut bytes = std::fs::read(src).expect("read trace");
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xA5;
    }
    std::fs::write(dst, &bytes).expect("write");
    dst.to_path_buf()
}

fn full_output(data: &Path, dir: &Path) -> Vec<Value> {
    let full = run(dir, &data.join("traces").join(BIG));
    assert_eq!(full.code, Some(0), "{}\n{}", full.stdout, full.stderr);
    assert!(full.lines.len() > 10_000, "{BIG} is a large trace");
    full.lines
}

#[test]
fn truncated_trace_exports_the_prefix_and_names_the_damage() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let full = full_output(&data, dir.path());
    let cut = truncated_copy(&data.join("traces").join(BIG), &dir.path().join("cut.sf"), 0.6);
    let (readable, decode_errors) = readable_flat_records(&cut);
    assert!(decode_errors > 0, "the decoder must notice the truncation");
    let r = run(dir.path(), &cut);
    assert_eq!(r.code, Some(0), "a truncated trace is read up to the damage\n{}\n{}", r.stdout, r.stderr);
    assert!(r.lines.len() > full.len() / 3 && r.lines.len() < full.len(), "{} of {}", r.lines.len(), full.len());
    assert_eq!(r.lines.len(), readable, "every readable record is exported");
    assert_eq!(r.lines[..], full[..r.lines.len()], "the truncated trace's records are the full trace's prefix");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.lines().any(|l| l.contains("cut.sf") && l.contains("block") && l.contains("offset")),
        "no message naming the file, block and offset\n{all}"
    );
    let summary = driver_summary(&r.stderr);
    assert_eq!(counter(&summary, "blocks_skipped"), 1, "the cut block is reported as lost: {summary}");
    assert!(counter(&summary, "decode_errors") >= 1, "{summary}");
}

#[test]
fn corrupted_block_is_skipped_and_the_rest_exported() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let full = full_output(&data, dir.path());
    let bad = corrupted_copy(&data.join("traces").join(BIG), &dir.path().join("damaged.sf"));
    let (readable, decode_errors) = readable_flat_records(&bad);
    assert!(decode_errors > 0, "the decoder must notice the damage");
    let r = run(dir.path(), &bad);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.lines.len(), readable, "every readable record is exported");
    // Blocks after the damage are read again: far more than the half before it survives.
    assert!(r.lines.len() > full.len() * 3 / 4 && r.lines.len() < full.len(), "{} of {}", r.lines.len(), full.len());
    assert!(is_subsequence(&r.lines, &full), "the damaged copy must not invent records");
    let all = format!("{}{}", r.stdout, r.stderr);
    let msg = all
        .lines()
        .find(|l| l.contains("damaged.sf") && l.contains("block") && l.contains("offset"))
        .unwrap_or_else(|| panic!("no message naming the file, block and offset\n{all}"));
    assert!(msg.contains("[Error]") || msg.contains("[Warn]"), "{msg}");
    let summary = driver_summary(&r.stderr);
    assert!(counter(&summary, "blocks_skipped") + counter(&summary, "records_skipped") > 0, "{summary}");
    assert!(counter(&summary, "decode_errors") > 0, "{summary}");
    assert!(r.stderr.contains("[Warn]") && r.stderr.contains("skipped"), "losses are warned about at exit\n{}", r.stderr);
}

#[test]
fn non_avro_single_file_fails_at_start_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let notes = dir.path().join("notes.sf");
    std::fs::write(&notes, "this is not an Avro file\n".repeat(20)).expect("write");
    let r = run(dir.path(), &notes);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("notes.sf"), "{}", r.stderr);
    assert!(r.lines.is_empty());
}

#[test]
fn directory_mixing_good_and_bad_files_exports_every_readable_record() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir(&input).expect("mkdir");
    let traces = data.join("traces");
    std::os::unix::fs::symlink(traces.join("k8s_small.sf"), input.join("a_good.sf")).expect("symlink");
    std::os::unix::fs::symlink(traces.join("httpd.sf"), input.join("f_good.sf")).expect("symlink");
    truncated_copy(&traces.join(BIG), &input.join("b_truncated.sf"), 0.5);
    corrupted_copy(&traces.join(BIG), &input.join("c_damaged.sf"));
    std::fs::write(input.join("d_notes.txt"), "not avro at all\n").expect("write");
    std::fs::write(input.join("e_empty.sf"), b"").expect("write");

    let mut expected = 0;
    for f in ["a_good.sf", "b_truncated.sf", "c_damaged.sf", "f_good.sf"] {
        expected += readable_flat_records(&input.join(f)).0;
    }
    let r = run(dir.path(), &input);
    assert_eq!(r.code, Some(0), "readable files make the run succeed\n{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.lines.len(), expected, "every readable record of the directory is exported");
    let all = format!("{}{}", r.stdout, r.stderr);
    for f in ["b_truncated.sf", "c_damaged.sf", "d_notes.txt", "e_empty.sf"] {
        assert!(all.lines().any(|l| l.contains(f) && !l.contains("reading ")), "no problem reported for {f}\n{all}");
    }
    let summary = driver_summary(&r.stderr);
    assert_eq!(counter(&summary, "files_failed"), 2, "{summary}");
    assert_eq!(counter(&summary, "files"), 4, "{summary}");
    assert!(counter(&summary, "decode_errors") >= 2, "{summary}");
    assert!(r.stderr.contains("files_failed"), "{}", r.stderr);
}

#[test]
fn directory_of_only_bad_files_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::write(input.join("x.sf"), "garbage").expect("write");
    std::fs::write(input.join("y.sf"), b"").expect("write");
    let r = run(dir.path(), &input);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("no readable trace file"), "{}", r.stderr);
    assert!(r.stderr.contains("x.sf") && r.stderr.contains("y.sf"), "each bad file is named\n{}", r.stderr);
}

/// The demo trace, and the (start, record count, payload start) of its block 1, found through
/// the file's sync marker (the 16 bytes that end the header and every block).
fn demo_and_block_1() -> (Vec<u8>, usize, u64, usize) {
    let bytes = std::fs::read(workspace_root().join("config/demo.sf")).expect("config/demo.sf");
    let sync_end = |from: usize, sync: &[u8]| -> usize {
        from + bytes[from..].windows(16).position(|w| w == sync).expect("a sync marker") + 16
    };
    let varint = |i: &mut usize| -> u64 {
        let (mut n, mut shift) = (0u64, 0);
        loop {
            let b = bytes[*i];
            *i += 1;
            n |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                return (n >> 1) ^ (n & 1).wrapping_neg();
            }
        }
    };
    // Skip the header's metadata map (after the 4-byte magic): the file's marker follows it.
    let mut i = 4;
    let header_end = {
        loop {
            let n = varint(&mut i) as i64;
            if n == 0 {
                break;
            }
            for _ in 0..n.unsigned_abs() * 2 {
                let len = varint(&mut i) as usize;
                i += len;
            }
        }
        i + 16
    };
    let sync = bytes[header_end - 16..header_end].to_vec();
    let block1 = sync_end(header_end, &sync);
    let mut p = block1;
    let count = varint(&mut p);
    varint(&mut p);
    (bytes.clone(), block1, count, p)
}

/// A damaged block in the middle of the demo trace: exactly its records are counted as
/// skipped, the loss is warned about with the file and byte offset, the final line does not
/// claim that all records were processed, and `-strict` turns it into exit status 1.
#[test]
fn damaged_block_is_counted_warned_and_fails_only_with_strict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bytes, block1, count, payload) = demo_and_block_1();
    let clean = run(dir.path(), &workspace_root().join("config/demo.sf"));
    assert_eq!(clean.code, Some(0), "{}\n{}", clean.stdout, clean.stderr);
    let mut bad = bytes.clone();
    // BFINAL=1, BTYPE=11 (reserved): the block's deflate stream is invalid.
    bad[payload] = 0x07;
    let path = dir.path().join("demo-damaged.sf");
    std::fs::write(&path, &bad).expect("write");
    let r = run(dir.path(), &path);
    assert_eq!(r.code, Some(0), "without -strict a damaged block is not fatal\n{}\n{}", r.stdout, r.stderr);
    let summary = driver_summary(&r.stderr);
    assert_eq!(counter(&summary, "records_skipped"), count, "{summary}");
    assert_eq!(counter(&summary, "blocks_skipped"), 1, "{summary}");
    assert_eq!(counter(&summary, "records"), 3000 - count, "{summary}");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.lines().any(|l| l.contains("demo-damaged.sf") && l.contains(&format!("block 1 at byte offset {block1}"))),
        "the damage is reported with file and byte offset\n{all}"
    );
    assert!(
        r.stderr.lines().any(|l| l.contains("[Warn]") && l.contains("demo-damaged.sf") && l.contains(&format!("{count} records"))),
        "the loss is warned about naming the file and the records skipped\n{}",
        r.stderr
    );
    assert!(!all.contains("all records processed"), "{all}");
    assert!(r.stderr.lines().any(|l| l.contains("[Warn]") && l.contains("not read in full")), "{}", r.stderr);
    assert!(is_subsequence(&r.lines, &clean.lines) && r.lines.len() < clean.lines.len());

    let strict = run_with(dir.path(), &path, &["-strict"]);
    assert_eq!(strict.code, Some(1), "-strict: skipped data fails the run\n{}\n{}", strict.stdout, strict.stderr);
    assert_eq!(strict.lines, r.lines, "-strict still exports everything readable");
    assert!(strict.stderr.contains("-strict"), "{}", strict.stderr);
}

/// One flipped byte in the demo's last sync marker loses nothing: all 3,000 records are read
/// and exported, nothing is counted as skipped, and even `-strict` exits 0.
#[test]
fn flipped_last_byte_of_demo_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut bytes, _, _, _) = demo_and_block_1();
    let clean = run(dir.path(), &workspace_root().join("config/demo.sf"));
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let path = dir.path().join("demo-flipped.sf");
    std::fs::write(&path, &bytes).expect("write");
    let r = run_with(dir.path(), &path, &["-strict"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    let summary = driver_summary(&r.stderr);
    assert_eq!(counter(&summary, "records"), 3000, "{summary}");
    assert_eq!(counter(&summary, "records_skipped") + counter(&summary, "bytes_skipped"), 0, "{summary}");
    assert_eq!(counter(&summary, "damaged_sync_markers"), 1, "{summary}");
    assert_eq!(r.lines, clean.lines, "the same records are exported");
    assert!(r.stderr.lines().any(|l| l.contains("[Warn]") && l.contains("demo-flipped.sf") && l.contains("sync marker")), "{}", r.stderr);
}

/// Starts the binary on `input` (reader → `out.json`) without waiting for it.
fn spawn_file_pipeline(dir: &Path, input: &Path) -> Child {
    let cfg = reader_to_json_file(dir, &dir.join("out.json"));
    Command::new(sfprocessor_bin())
        .current_dir(dir)
        .args(["-config", &cfg.to_string_lossy(), "-driver", "file", &input.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sfprocessor")
}

/// Waits at most `limit` for the exit; kills the process and fails the test otherwise.
fn exit_within(mut child: Child, limit: Duration, what: &str) -> (Option<i32>, String, String) {
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: no exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let (stdout, stderr) = output_text(&out);
    (out.status.code(), stdout, stderr)
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).expect("mkfifo");
}

/// A FIFO nobody writes to, among the traces of a directory: it is skipped with a warning
/// naming it, the other files are exported and the run exits by itself.
#[test]
fn fifo_in_a_trace_directory_is_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::copy(workspace_root().join("config/demo.sf"), input.join("a.sf")).expect("copy");
    mkfifo(&input.join("b.fifo"));
    let clean = run(dir.path(), &workspace_root().join("config/demo.sf"));
    let child = spawn_file_pipeline(dir.path(), &input);
    let (code, stdout, stderr) = exit_within(child, Duration::from_secs(30), "a FIFO in the directory");
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stderr.lines().any(|l| l.contains("[Warn]") && l.contains("b.fifo") && l.contains("FIFO")), "{stderr}");
    assert_eq!(read_json_lines(&dir.path().join("out.json")), clean.lines, "the regular file is exported in full");
    let summary = driver_summary(&stderr);
    assert_eq!((counter(&summary, "files"), counter(&summary, "files_skipped")), (1, 1), "{summary}");
}

/// A FIFO given as the path with no writer: SIGTERM ends the waiting run promptly, exit 0.
#[test]
fn sigterm_ends_a_run_waiting_on_a_fifo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("trace.fifo");
    mkfifo(&fifo);
    let child = spawn_file_pipeline(dir.path(), &fifo);
    // Started: the exporter has created its file (the drivers are built after it).
    let out = dir.path().join("out.json");
    let start = Instant::now();
    while !out.exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "the pipeline never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = i32::try_from(child.id()).expect("pid fits i32");
    let signalled = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let (code, stdout, stderr) = exit_within(child, Duration::from_secs(5), "SIGTERM while waiting on the FIFO");
    assert!(signalled.elapsed() < Duration::from_secs(3), "{:?}", signalled.elapsed());
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
}
