//! The README's first command: the demo syncs everything, then only what changed.

mod common;

use common::*;

#[test]
fn the_demo_shows_a_full_sync_then_only_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let output = sluice(dir.path(), &["demo", "demo"]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("run 1 succeeded") && stdout.contains("100 inserted, 0 updated, 0 deleted"), "{stdout}");
    assert!(
        stdout.contains("run 2 succeeded")
            && stdout.contains("1 inserted, 2 updated, 1 deleted, 0 rejected (97 unchanged)"),
        "{stdout}"
    );
    let appended: Vec<&str> = stdout.lines().filter(|l| l.starts_with("  {\"op\"")).collect();
    assert_eq!(appended.len(), 4, "only the changed rows flow: {stdout}");
    assert!(appended.iter().any(|l| l.contains("\"key\":\"101\"") && l.contains("\"op\":\"insert\"")));
    assert!(appended.iter().any(|l| l.contains("\"key\":\"100\"") && l.contains("\"op\":\"delete\"")));
    // The audience step: repeat buyers are counted in the warehouse itself.
    assert!(stdout.contains("audience `repeat_buyers`: "), "{stdout}");
    let file = std::fs::read_to_string(dir.path().join("demo/out/customers.jsonl")).unwrap();
    assert_eq!(file.lines().count(), 104);

    // Running it again replaces the earlier demo rather than failing.
    let again = sluice(dir.path(), &["demo", "demo"]);
    assert!(again.status.success(), "{}", text(&again));
    // But it never overwrites a folder that is not a demo.
    std::fs::create_dir(dir.path().join("mine")).unwrap();
    std::fs::write(dir.path().join("mine/notes.txt"), "keep").unwrap();
    let refused = sluice(dir.path(), &["demo", "mine"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(dir.path().join("mine/notes.txt").exists());
}
