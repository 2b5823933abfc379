//! `ledgerstack export` and `ledgerstack verify` (and `bench export`), as an auditor runs them:
//! on a data directory a real server bootstrapped, with history imported on top.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use support::{
    Ids, assert_fails_saying, bootstrapped, digest, import, import_lines, ledgerstack, read_lines,
    stderr, stdout, write_lines,
};

const IDS: Ids = Ids {
    domain: "0d000000-0000-4000-8000-0000000000a1",
    account: "0acc0000-0000-4000-8000-0000000000a1",
    offering: "05e00000-0000-4000-8000-0000000000a1",
    zone: "020e0000-0000-4000-8000-0000000000a1",
    template: "07e00000-0000-4000-8000-0000000000a1",
    vm: "0f000000-0000-4000-8000-0000000000a1",
    event_prefix: "a0000000-0000-4000-8000-",
};

/// Events the tests import on top of the bootstrap's (the last six of the log).
const IMPORTED: usize = 6;

/// A bootstrapped data directory with a domain, an account, an offering and a VM's life
/// imported on top (a display name with non-ASCII text included).
fn data_dir_with_traffic() -> tempfile::TempDir {
    let dir = bootstrapped();
    import_lines(dir.path(), &IDS.history("Petit «s»"));
    dir
}

/// Runs `export` on `dir` with `args`, into `file`.
fn export(dir: &Path, file: &Path, args: &[&str]) -> Output {
    let out = ledgerstack()
        .arg("export")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .arg("-o")
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "export failed: {}", stderr(&out));
    out
}

fn verify(file: &Path) -> Output {
    ledgerstack().arg("verify").arg(file).output().unwrap()
}

/// Runs `ledgerstack export` of `dir` to standard output (no check of the outcome).
fn export_to_stdout(dir: &Path) -> Output {
    ledgerstack()
        .args(["export", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

fn verify_dir(dir: &Path) -> Output {
    ledgerstack()
        .args(["verify", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

/// Asserts `out` is a verification failure (exit 1) whose message contains every fragment.
fn assert_caught(out: &Output, fragments: &[&str]) {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for fragment in fragments {
        assert!(text.contains(fragment), "{fragment:?} not in: {text}");
    }
}

/// The export's events and final line, parsed.
fn parsed(file: &Path) -> (Vec<Value>, Value) {
    let mut all: Vec<Value> = read_lines(file)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let trailer = all.pop().unwrap();
    (all, trailer)
}

#[test]
fn an_export_verifies_and_ends_with_the_chain_head_that_the_data_directory_verifies_to() {
    let dir = data_dir_with_traffic();
    let file = dir.path().join("export.jsonl");
    let out = export(dir.path(), &file, &[]);
    let (events, trailer) = parsed(&file);
    let n = events.len();
    assert!(n > IMPORTED + 8, "{n} events");
    assert!(
        stderr(&out).contains(&format!("Exported {n} events")),
        "{}",
        stderr(&out)
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["position"], json!(i + 1));
    }
    assert_eq!(trailer["events"], json!(n));
    assert_eq!(trailer["position"], json!(n));
    let head = trailer["chain_head"].as_str().unwrap().to_owned();
    assert_eq!(head.len(), 64);

    let out = verify(&file);
    assert!(out.status.success(), "{}", stderr(&out));
    let covered = format!("{n} events (positions 1..{n})");
    assert!(stdout(&out).contains(&covered), "{}", stdout(&out));
    assert!(stdout(&out).contains(&head), "{}", stdout(&out));

    let out = verify_dir(dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&head), "{}", stdout(&out));

    // Written to standard output, the export is the same bytes.
    let out = export_to_stdout(dir.path());
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(&file).unwrap());
}

#[test]
fn a_changed_removed_or_reordered_line_is_caught_naming_its_line() {
    let dir = data_dir_with_traffic();
    let file = dir.path().join("export.jsonl");
    export(dir.path(), &file, &[]);
    let good = read_lines(&file);
    let n = good.len() - 1;
    let bad = dir.path().join("bad.jsonl");

    // One byte of the account's line changed (its name; still valid JSON, still canonical):
    // the next line's prev_hash no longer matches, and the message names the account's line.
    let account = n - IMPORTED + 2;
    let mut changed = good.clone();
    let text = &changed[account - 1];
    assert!(text.contains("\"acme-ops\""), "{text}");
    changed[account - 1] = text.replace("\"acme-ops\"", "\"acme-opz\"");
    write_lines(&bad, &changed);
    assert_caught(
        &verify(&bad),
        &[
            &format!("line {}:", account + 1),
            "hash chain broken",
            &format!("line {account} was altered"),
        ],
    );

    // A byte of line 7's own prev_hash changed: caught at line 7.
    let mut changed = good.clone();
    let at = changed[6].find("\"prev_hash\":\"").unwrap() + 13;
    let mut bytes = changed[6].clone().into_bytes();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    changed[6] = String::from_utf8(bytes).unwrap();
    write_lines(&bad, &changed);
    assert_caught(&verify(&bad), &["line 7:", "hash chain broken"]);

    // A byte that breaks the JSON: caught at its own line as a schema problem.
    let mut changed = good.clone();
    changed[2].replace_range(0..1, "[");
    write_lines(&bad, &changed);
    assert_caught(&verify(&bad), &["line 3:", "not an event line"]);

    // The last event line changed: the final line's chain head catches it.
    let mut changed = good.clone();
    changed[n - 1] = changed[n - 1].replace("\"level\":\"INFO\"", "\"level\":\"WARN\"");
    write_lines(&bad, &changed);
    assert_caught(&verify(&bad), &["final line:", &format!("line {n} ")]);

    // Line 4 deleted: caught at the line that now follows line 3.
    let mut removed = good.clone();
    removed.remove(3);
    write_lines(&bad, &removed);
    assert_caught(&verify(&bad), &["line 4:", "hash chain broken"]);

    // Lines 8 and 9 swapped: caught at line 8.
    let mut swapped = good.clone();
    swapped.swap(7, 8);
    write_lines(&bad, &swapped);
    assert_caught(&verify(&bad), &["line 8:", "hash chain broken"]);

    // The final line removed (an export cut short), or an event after it.
    write_lines(&bad, &good[..good.len() - 1]);
    assert_caught(&verify(&bad), &["final line: missing"]);
    let mut appended = good.clone();
    appended.push(good[3].clone());
    write_lines(&bad, &appended);
    assert_caught(
        &verify(&bad),
        &[
            &format!("line {}:", n + 2),
            "follows the final chain_head line",
        ],
    );

    // A file that is not there is unreadable, not a finding.
    let out = verify(&dir.path().join("missing.jsonl"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Offset in a segment file of the record holding the `n`th event (1-based), walking the
/// record lengths (docs/storage.md: 32-byte header, then length u32 LE | 9-byte header | body |
/// 5-byte trailer per record).
fn record_offset(segment: &[u8], n: usize) -> usize {
    let mut offset = 32;
    for _ in 1..n {
        let len = u32::from_le_bytes(segment[offset..offset + 4].try_into().unwrap()) as usize;
        offset += len + 14;
    }
    offset
}

fn only_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    assert_eq!(segments.len(), 1);
    segments.pop().unwrap()
}

#[test]
fn a_flipped_byte_in_a_segment_file_is_caught_naming_its_position() {
    let dir = data_dir_with_traffic();
    let segment = only_segment(dir.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = record_offset(&bytes, 12) + 9 + 20;
    bytes[at] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();

    assert_caught(
        &verify_dir(dir.path()),
        &["position 12:", "damaged record", "checksum mismatch"],
    );
    // Export refuses too, rather than writing a log with a hole.
    let out = export_to_stdout(dir.path());
    assert_fails_saying(&out, "position 12");
}

#[test]
fn an_export_imported_into_an_empty_data_directory_gives_the_same_digest() {
    let source = data_dir_with_traffic();
    let file = source.path().join("export.jsonl");
    export(source.path(), &file, &[]);
    let n = read_lines(&file).len() - 1;
    let target = tempfile::tempdir().unwrap();
    let out = import(target.path(), &file);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{n} appended")),
        "{}",
        stdout(&out)
    );
    assert_eq!(digest(source.path()), digest(target.path()));
    // A restore keeps recorded-at, so the restored log is the source's, chain head included.
    let restored = target.path().join("export.jsonl");
    export(target.path(), &restored, &[]);
    assert_eq!(read_lines(&restored), read_lines(&file));
}

#[test]
fn from_and_to_slice_by_position_or_recorded_at_and_slices_verify() {
    let dir = data_dir_with_traffic();
    let full = dir.path().join("full.jsonl");
    export(dir.path(), &full, &[]);
    let (events, _) = parsed(&full);
    let n = events.len();

    let slice = dir.path().join("slice.jsonl");
    export(dir.path(), &slice, &["--from", "5", "--to", "9"]);
    let (sliced, trailer) = parsed(&slice);
    assert_eq!(sliced, events[4..9].to_vec());
    assert_eq!(trailer["events"], json!(5));
    assert_eq!(trailer["position"], json!(9));
    let out = verify(&slice);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("starts at position 5"),
        "{}",
        stdout(&out)
    );

    // By recorded-at: the imported events were recorded after the bootstrap's.
    let first_imported = events[n - IMPORTED]["recorded_at"].as_str().unwrap();
    export(dir.path(), &slice, &["--from", first_imported]);
    let (sliced, _) = parsed(&slice);
    assert!(!sliced.is_empty());
    assert!(
        sliced
            .iter()
            .all(|e| e["recorded_at"].as_str().unwrap() >= first_imported)
    );
    assert_eq!(sliced.last(), events.last());
    let out = verify(&slice);
    assert!(out.status.success(), "{}", stderr(&out));
    let last_bootstrap = events[n - IMPORTED - 1]["recorded_at"].as_str().unwrap();
    export(dir.path(), &slice, &["--to", last_bootstrap]);
    let (sliced, _) = parsed(&slice);
    assert!(
        sliced
            .iter()
            .all(|e| e["recorded_at"].as_str().unwrap() <= last_bootstrap)
    );
    assert_eq!(sliced.first(), events.first());

    // A bound that is neither a position nor a time is refused by the argument parser.
    let out = ledgerstack()
        .args(["export", "--from", "yesterday", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("RFC 3339"), "{}", stderr(&out));
}

#[test]
fn a_zstd_export_round_trips_and_verifies() {
    let dir = data_dir_with_traffic();
    let plain = dir.path().join("export.jsonl");
    let packed = dir.path().join("export.jsonl.zst");
    export(dir.path(), &plain, &[]);
    export(dir.path(), &packed, &["--zstd"]);
    let compressed = std::fs::read(&packed).unwrap();
    assert_eq!(&compressed[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    let decoded = zstd_decode(&packed);
    assert_eq!(decoded, std::fs::read(&plain).unwrap());
    let out = verify(&packed);
    assert!(out.status.success(), "{}", stderr(&out));
    let n = read_lines(&plain).len() - 1;
    assert!(
        stdout(&out).contains(&format!("{n} events")),
        "{}",
        stdout(&out)
    );

    // Damage inside the compressed stream is caught too.
    let mut damaged = compressed.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(&packed, damaged).unwrap();
    let out = verify(&packed);
    assert!(!out.status.success(), "{}", stdout(&out));
}

/// Decompresses with the zstd library directly (not through `verify`).
fn zstd_decode(file: &Path) -> Vec<u8> {
    zstd::decode_all(std::fs::File::open(file).unwrap()).unwrap()
}

#[test]
fn bench_export_runs_at_a_tiny_scale() {
    let out = ledgerstack()
        .args(["bench", "export", "--scale", "2000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for figure in [
        "raw replay",
        "export",
        "verify the export",
        "verify the data directory",
    ] {
        assert!(text.contains(figure), "{figure} not in {text}");
    }
}
