//! Our .proto files against the official P4Runtime and gNMI descriptors
//! (from the `p4runtime` and `pygnmi` PyPI packages), through
//! `check_descriptors.py`.
//!
//! The Python interpreter is `$P4RUNTIME_PYTHON` or `python3`; where it
//! cannot import the packages the test says SKIPPED (CI installs it).

use std::process::Command;

#[test]
fn protos_match_official_descriptors() {
    let dir = std::env::temp_dir().join(format!("p4rt-desc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ours = dir.join("ours.pb");
    std::fs::write(&ours, p4runtime_proto::FILE_DESCRIPTOR_SET).expect("write descriptors");
    let python = std::env::var("P4RUNTIME_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/check_descriptors.py");
    let out = match Command::new(&python).arg(script).arg(&ours).output() {
        Ok(out) => out,
        Err(e) => {
            println!("SKIPPED: cannot run {python}: {e}");
            return;
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    match out.status.code() {
        Some(0) => assert!(stdout.contains(" 0 mismatches"), "unexpected output"),
        Some(3) if std::env::var("CI").is_err() => {
            println!("SKIPPED: python packages missing (pip install p4runtime pygnmi)")
        }
        _ => panic!("proto check failed (see the mismatches above)"),
    }
}
