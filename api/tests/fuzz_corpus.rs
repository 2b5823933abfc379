//! Runs every committed fuzz corpus entry (`api/fuzz/corpus/<target>/`) through the same code as
//! the fuzz targets, so the seeds and any crash reproducers added to them stay fixed on stable
//! Rust without cargo-fuzz.

use std::fs;
use std::path::{Path, PathBuf};

/// Fewer seeds than this means the corpus went missing, not that it shrank on purpose.
const MIN_SEEDS: usize = 10;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= MIN_SEEDS,
        "{} holds only {} files",
        dir.display(),
        files.len()
    );
    files
}

fn run_all(target: &str, body: fn(&[u8])) {
    for path in corpus(target) {
        let data = fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{} fails its fuzz target", path.display());
    }
}

#[test]
fn query_parsing_corpus() {
    run_all("query_parsing", api::protocol::fuzz_query_parsing);
}

#[test]
fn signature_verification_corpus() {
    run_all(
        "signature_verification",
        api::protocol::fuzz_signature_verification,
    );
}
