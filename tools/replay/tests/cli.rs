//! `sfreplay`'s refusals as an operator meets them, through the built binary (which this
//! test also makes `cargo test` build into the target directory, where the end-to-end
//! tests in `tests/` find it).

use std::process::Command;

fn sfreplay(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sfreplay")).args(args).output().expect("spawn sfreplay");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_missing_trace_or_socket_is_named_and_exits_1() {
    let (code, err) = sfreplay(&["--socket", "/nonexistent/sysflow.sock", "/nonexistent/trace.sf"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("trace /nonexistent/trace.sf: No such file or directory"), "{err}");

    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/demo.sf");
    let (code, err) = sfreplay(&["--socket", "/nonexistent/sysflow.sock", demo]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("socket /nonexistent/sysflow.sock does not exist"), "{err}");
    assert!(err.contains("sfprocessor -driver socket /nonexistent/sysflow.sock"), "{err}");
}
