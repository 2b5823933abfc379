//! The `ledgerstack` command as a user runs it.

mod support;

use std::time::Duration;

use support::{Server, Serving, digest, ledgerstack, sigterm, spawn_serve, stderr};

#[test]
fn help_lists_the_subcommands() {
    let out = ledgerstack().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let listed: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for command in [
        "serve", "admin", "rebuild", "digest", "replay", "state", "import", "usage", "bench",
        "export", "verify", "inspect", "tail", "backup", "restore", "call", "sign",
    ] {
        assert!(
            listed.contains(&command),
            "--help does not mention {command}:\n{text}"
        );
    }
}

#[test]
fn serve_bootstraps_once_stops_cleanly_on_sigterm_and_refuses_a_second_server() {
    let dir = tempfile::tempdir().unwrap();
    let Serving {
        mut child,
        mut stdout,
        printed,
        ..
    } = spawn_serve(dir.path(), false);
    assert!(dir.path().join("log").is_dir() && dir.path().join("index").is_dir());
    assert!(printed.contains("First start"), "{printed}");

    // The keys printed once are the ones `admin keys` prints again.
    let keys = ledgerstack()
        .args(["admin", "keys", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(keys.status.success());
    let api_key_line = |text: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with("api key:"))
            .map(|l| l.split_whitespace().last().unwrap_or_default().to_owned())
    };
    assert_eq!(
        api_key_line(&String::from_utf8_lossy(&keys.stdout)),
        api_key_line(&printed)
    );

    // A second server on the same data directory is refused, clearly.
    let second = ledgerstack()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("locked by another process"), "{stderr}");

    sigterm(&child);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "serve exited with {exit}");
    // The bootstrap's nine events and the usage scheduler's first run, which closes the
    // periods that ended before the first start.
    assert!(rest.contains("Stopped. 10 events in the log"), "{rest}");

    // The log reopens after a clean stop, and the admin is not created again.
    let Serving {
        mut child,
        stdout: _stdout,
        printed,
        ..
    } = spawn_serve(dir.path(), false);
    assert!(!printed.contains("First start"), "{printed}");
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(50));
}

#[test]
fn admin_keys_on_a_fresh_directory_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = ledgerstack()
        .args(["admin", "keys", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("written by the first `ledgerstack serve`"),
        "{stderr}"
    );
}

/// A small run of the append benchmark: it reports every figure and verifies the logs it wrote
/// (a failed verification is a non-zero exit). Timings are not asserted.
#[test]
fn bench_append_smoke_run_reports_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let out = ledgerstack()
        .args([
            "bench",
            "append",
            "--rounds",
            "2",
            "--slice",
            "0.05",
            "--appenders",
            "1,4",
        ])
        .args([
            "--replay-events",
            "3000",
            "--batch-size",
            "10",
            "--json",
            "--dir",
        ])
        .arg(dir.path().join("bench"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for figure in [
        "raw_fsync",
        "batched",
        "raw_read",
        "raw_read_warm",
        "replay",
        "replay_warm",
        "indexing",
    ] {
        let rate = report[figure]["events_per_second"].as_f64().unwrap_or(0.0);
        assert!(rate > 0.0, "{figure} has no rate: {report}");
    }
    assert_eq!(report["appends"].as_array().unwrap().len(), 2);
    assert_eq!(report["replay"]["events"], 9000);
    assert!(
        report["ratios"]["single_appender_vs_raw_fsync"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn bench_append_refuses_bad_arguments_clearly() {
    let out = ledgerstack()
        .args(["bench", "append", "--appenders", "8,64"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--appenders must include 1"));
}

/// A small run of the API benchmark: it starts the real server and the baseline, checks every
/// answer (any wrong answer is a non-zero exit) and reports a rate for both. Timings are not
/// asserted.
#[test]
fn bench_api_smoke_run_answers_every_request_correctly() {
    let out = ledgerstack()
        .args(["bench", "api", "--rounds", "2", "--slice", "0.2"])
        .args(["--connections", "4", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["connections"], 4);
    assert!(report["zones"].as_u64().unwrap() >= 1, "{report}");
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    for round in rounds {
        for side in ["signed", "baseline"] {
            let rate = round[side]["requests_per_second"].as_f64().unwrap_or(0.0);
            assert!(rate > 0.0, "{side} has no rate: {report}");
        }
        assert!(round["ratio"].as_f64().unwrap() > 0.0, "{report}");
    }
    assert!(
        report["ratios"]["median_signed_vs_baseline"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn bench_lifecycle_smoke_run_cycles_vms_and_rebuilds_identically() {
    let out = ledgerstack()
        .args(["bench", "lifecycle", "--cycles", "12", "--clients", "2"])
        .args(["--replay-seconds", "0.1", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cycles"], 12, "{report}");
    assert!(
        report["cycles_per_second"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    // 12 cycles of deploy and destroy write well over a hundred events.
    assert!(report["events"].as_u64().unwrap() > 12 * 8, "{report}");
    assert!(
        report["rebuild_vs_replay"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert_eq!(report["rebuild_digests_equal"], true, "{report}");
}

/// The digest of the read models of `dir`.
fn digest_of(dir: &std::path::Path) -> String {
    digest(dir)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn rebuild_twice_gives_the_digest_of_the_live_read_models() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Server::start_on(dir.path(), true).terminate().success());

    // The read models the server built live...
    let live = digest_of(dir.path());
    assert_eq!(live.len(), 64, "{live}");
    // ... equal those rebuilt from the log, twice.
    for _ in 0..2 {
        let out = ledgerstack()
            .args(["rebuild", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Rebuilt the read models from"), "{text}");
        assert!(text.contains(&format!("digest {live}")), "{text}");
        assert_eq!(digest_of(dir.path()), live);
    }
}
