//! Each binary's `--help` describes that binary (not the crate's one line
//! about all of them) and lists its own options.

use std::process::Command;

fn help(bin: &str) -> String {
    let out = Command::new(bin).arg("--help").output().unwrap();
    assert!(out.status.success(), "{bin} --help: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn each_binary_opens_its_help_with_what_it_is() {
    for (bin, first, option) in [
        (
            env!("CARGO_BIN_EXE_ws-server"),
            "A WebSocket chat/echo server",
            "--allow-origin",
        ),
        (
            env!("CARGO_BIN_EXE_ws-client"),
            "An interactive WebSocket client",
            "--proxy",
        ),
        (
            env!("CARGO_BIN_EXE_ws-notify"),
            "An authenticated WebSocket notification feed",
            "--token",
        ),
        (
            env!("CARGO_BIN_EXE_autobahn-client"),
            "Drives the Autobahn fuzzing server",
            "--agent",
        ),
        (
            env!("CARGO_BIN_EXE_hyper-upgrade"),
            "A hyper HTTP server whose `/ws` route upgrades",
            "--addr",
        ),
    ] {
        let text = help(bin);
        let line = text.lines().next().unwrap_or_default();
        assert!(line.starts_with(first), "{bin}: {line:?}");
        assert!(
            !text.contains("Runnable binaries"),
            "{bin}: the crate's description"
        );
        assert!(text.contains(option), "{bin} lists {option}:\n{text}");
    }
}
