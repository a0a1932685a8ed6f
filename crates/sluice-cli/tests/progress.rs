//! The progress bar shows on a terminal, and never when output is piped or with --json.

mod common;

use std::process::Command;

use common::*;

#[test]
fn progress_shows_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_warehouse(&dir.path().join("warehouse.db"), 30);
    std::fs::write(
        dir.path().join("sluice.yaml"),
        "version: 1
sources: { w: { type: sqlite, path: warehouse.db } }
destinations: { f: { type: file, path: out.jsonl } }
models: { m: { source: w, primary_key: customer_id, table: customers } }
syncs: { s: { model: m, destination: f, mode: mirror } }
",
    )
    .unwrap();

    let piped = sluice(dir.path(), &["sync", "s"]);
    assert!(piped.status.success(), "{}", text(&piped));
    assert!(!text(&piped).contains("reading the model"), "no progress when piped: {}", text(&piped));

    // `script` gives the command a pseudo-terminal, as a person's shell would.
    if Command::new("script").arg("--version").output().is_err() {
        panic!("util-linux `script` is needed to give sluice a terminal in this test");
    }
    let bin = env!("CARGO_BIN_EXE_sluice");
    let on_terminal = |args: &str| {
        let typescript = dir.path().join("typescript");
        let status = Command::new("script")
            .args(["-qec", &format!("{bin} {args}"), typescript.to_str().unwrap()])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(status.status.success(), "{}", text(&status));
        std::fs::read_to_string(typescript).unwrap()
    };
    let shown = on_terminal("reset s");
    assert!(shown.contains("forgot 30"), "{shown}");
    let shown = on_terminal("sync s");
    assert!(shown.contains("reading the model") || shown.contains("changes"), "a bar on a terminal: {shown}");
    assert!(shown.contains("30 inserted"), "{shown}");
    let json = on_terminal("sync --json s");
    assert!(!json.contains("reading the model") && !json.contains("changes ("), "never with --json: {json}");
}
