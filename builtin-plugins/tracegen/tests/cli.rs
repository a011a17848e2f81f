//! The `sftracegen` binary: writes readable files and rejects bad arguments.

use std::process::Command;

#[test]
fn writes_the_requested_number_of_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("cli.sf");
    let status = Command::new(env!("CARGO_BIN_EXE_sftracegen"))
        .args(["--records", "1500", "--seed", "3", "--scenario", "attack", "--block-size", "4000", "--out"])
        .arg(&out)
        .status()
        .expect("run sftracegen");
    assert!(status.success());
    let file = std::fs::File::open(&out).expect("output exists");
    let reader = apache_avro::Reader::new(std::io::BufReader::new(file)).expect("valid OCF");
    assert_eq!(reader.count(), 1_500);
}

#[test]
fn rejects_bad_arguments_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("bad.sf");
    for (bad, needle) in [
        (vec!["--scenario", "chaos"], "unknown scenario"),
        (vec!["--block-size", "0"], "--block-size"),
        (vec!["--ip", "10.0.1"], "--ip"),
        (vec!["--records", "many"], "--records"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_sftracegen"))
            .args(&bad)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run sftracegen");
        assert!(!output.status.success(), "{bad:?} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{bad:?}: stderr lacks {needle:?}: {stderr}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_sftracegen"))
        .args(["--records", "10", "--out", "/nonexistent-dir/x.sf"])
        .output()
        .expect("run sftracegen");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent-dir/x.sf"));
}
