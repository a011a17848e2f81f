//! Replays the checked-in regression corpus: every file under `corpus/<target>/` through
//! its target. A panic in any input fails the test, naming the input. A stack overflow
//! aborts the whole test binary instead; set `FUZZ_CORPUS_TRACE=1` to have each input
//! named on stderr before it runs, to find which one.

use std::{fs, io::Write, panic, path::Path};

use sysflow_fuzz_targets::TARGETS;

/// Stack of the replaying thread: libFuzzer runs inputs on the main thread (8 MiB under the
/// usual `ulimit -s`), while libtest's threads get 2 MiB; replaying on the same stack size
/// makes "passes under the fuzzer" and "passes here" the same thing.
const REPLAY_STACK_BYTES: usize = 8 << 20;

#[test]
fn every_corpus_input_passes_its_target() {
    let replay = std::thread::Builder::new().stack_size(REPLAY_STACK_BYTES).spawn(replay_corpus);
    match replay.map(|h| h.join()) {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => panic::resume_unwind(panic),
        Err(e) => panic!("cannot start the replay thread: {e}"),
    }
}

fn replay_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut failures = Vec::new();
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = match fs::read_dir(&dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect(),
            Err(e) => panic!("corpus directory {}: {e}", dir.display()),
        };
        inputs.sort();
        assert!(!inputs.is_empty(), "corpus directory {} is empty", dir.display());
        let trace = std::env::var_os("FUZZ_CORPUS_TRACE").is_some();
        for input in &inputs {
            if trace {
                // Straight to the stream, past libtest's capture, so it is seen before an abort.
                let _ = writeln!(std::io::stderr().lock(), "replaying {}", input.display());
            }
            let data = fs::read(input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
            if panic::catch_unwind(|| target(&data)).is_err() {
                failures.push(input.display().to_string());
            }
        }
        println!("{name}: replayed {} corpus inputs", inputs.len());
    }
    assert!(failures.is_empty(), "corpus inputs that panic:\n  {}", failures.join("\n  "));
}
