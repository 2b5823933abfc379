//! The CloudStack API end to end through a real client: runs the pytest suites of
//! `tests/python/` (`test_*.py`, sharing the server that `conftest.py` starts: the `ledgerstack`
//! binary with `--demo`), which drive it with `cs` from PyPI (signing, paging, job polling as
//! that client does them) and with hand-built requests signed by their own signer; some start
//! servers of their own (SIGKILL and restart while jobs wait on the hypervisor).
//!
//! Like the auditor check, it runs the Python named by `LEDGERSTACK_PYTHON` (scripts/test sets
//! it to the `.venv` it fills from `tests/python/requirements.txt`), else `python3`. A Python
//! without `cs` or `pytest` fails this test with instructions: it never passes without having
//! run the suite.
//!
//! The server binary is `LEDGERSTACK_BIN` when set, else the `ledgerstack` next to this test's
//! own target directory, built first with the same cargo and profile (so a `cargo test -p tests`
//! never runs a stale server).

use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> String {
    std::env::var("LEDGERSTACK_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_owned()
}

/// The `ledgerstack` binary to test: `LEDGERSTACK_BIN`, else built now in this test's target
/// directory and profile.
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LEDGERSTACK_BIN") {
        return PathBuf::from(path);
    }
    // This test runs as <target>/<profile dir>/deps/python_cs-<hash>.
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in <target>/<profile>/deps");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(workspace())
        .args([
            "build",
            "--quiet",
            "--profile",
            &profile,
            "-p",
            "tools",
            "--bin",
            "ledgerstack",
        ])
        .status()
        .unwrap_or_else(|e| panic!("running `{cargo} build` for the server binary: {e}"));
    assert!(
        status.success(),
        "`{cargo} build -p tools --bin ledgerstack` failed: {status}"
    );
    let binary = profile_dir.join(format!("ledgerstack{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "cargo built no server binary at {}",
        binary.display()
    );
    binary
}

#[test]
fn the_cs_client_suite_passes_against_the_server() {
    let python = python();
    // Every `test_*.py` of the directory: they share one server (conftest.py).
    let suite = workspace().join("tests/python");
    let probe = Command::new(&python)
        .args(["-c", "import cs, pytest"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        other => {
            let why = match other {
                Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                Err(e) => e.to_string(),
            };
            panic!(
                "\n\n*** The `cs` API suite did NOT run: `{python}` cannot import `cs` and `pytest` \
                 ({why}).\n*** Run scripts/test (it creates .venv from tests/python/requirements.txt \
                 and sets LEDGERSTACK_PYTHON), or:\n***   python3 -m venv .venv && .venv/bin/pip \
                 install -r tests/python/requirements.txt\n***   LEDGERSTACK_PYTHON=$PWD/.venv/bin/python \
                 cargo test -p tests --test python_cs\n"
            );
        }
    }
    let binary = server_binary();
    let output = Command::new(&python)
        .current_dir(workspace())
        .args(["-m", "pytest", "-x", "-q", "-rs", "-p", "no:cacheprovider"])
        .arg(&suite)
        .env("LEDGERSTACK_BIN", &binary)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {python} -m pytest: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pytest {} failed ({}) against {}:\n{stdout}\n{stderr}",
        suite.display(),
        output.status,
        binary.display()
    );
    // Say what ran (and what was skipped, with why) in `cargo test -- --nocapture`.
    println!("{stdout}");
}
