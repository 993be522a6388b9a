//! Replays the fuzz corpus (`fuzz/corpus/<target>/*`) through the checks
//! the fuzz targets run (`ws_core::fuzzing`), so that a plain `cargo test`
//! on the stable toolchain re-checks every input the fuzzers kept.

use std::path::{Path, PathBuf};
use ws_core::Role;
use ws_core::fuzzing;

/// The corpus files of `target`, sorted; fails if there are none (a renamed
/// or emptied corpus must not pass silently).
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    files
}

/// Runs `check` on every corpus file of `target`, naming the file that
/// fails.
fn replay(target: &str, check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let mut failed = Vec::new();
    for path in corpus(target) {
        let data = std::fs::read(&path).expect("a readable corpus file");
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: failing inputs {failed:#?}");
}

#[test]
fn server_handshake_corpus() {
    replay("server_handshake", fuzzing::server_handshake);
}

#[test]
fn client_handshake_corpus() {
    replay("client_handshake", fuzzing::client_handshake);
}

#[test]
fn url_corpus() {
    replay("url", fuzzing::url);
}

#[test]
fn proxy_connect_corpus() {
    replay("proxy_connect", fuzzing::proxy_connect);
}

#[test]
fn frames_server_corpus() {
    replay("frames_server", |d| fuzzing::frames(Role::Server, d));
}

#[test]
fn frames_client_corpus() {
    replay("frames_client", |d| fuzzing::frames(Role::Client, d));
}

#[test]
fn session_corpus() {
    replay("session", fuzzing::session);
}

#[test]
fn frames_deflate_server_corpus() {
    replay("frames_deflate_server", |d| {
        fuzzing::frames_deflate(Role::Server, d)
    });
}

#[test]
fn frames_deflate_client_corpus() {
    replay("frames_deflate_client", |d| {
        fuzzing::frames_deflate(Role::Client, d)
    });
}
