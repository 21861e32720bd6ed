//! `websocket:check` and `websocket:run` on a configuration file (SPEC section 1): what check
//! shows, and a config error (exit 2, one line on stderr naming the key, no panic).

use super::{rakit, run_to_exit, scratch_dir};

/// Runs `websocket:check` on `toml`, which must pass; its stdout (the effective values).
#[track_caller]
pub fn shown(toml: &str) -> String {
    let dir = scratch_dir();
    let file = dir.join("check.toml");
    std::fs::write(&file, toml).unwrap();
    let run =
        run_to_exit(rakit().args(["websocket:check", &format!("--config={}", file.display())]));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(run.code, Some(0), "{toml}: {run:?}");
    run.stdout
}

/// Both `websocket:check` and `websocket:run --port=0` refuse `toml`: exit 2 and one line on
/// stderr that names `key` (`key: ...`).
#[track_caller]
pub fn refused_naming(toml: &str, key: &str) {
    let dir = scratch_dir();
    let file = dir.join("bad.toml");
    std::fs::write(&file, toml).unwrap();
    let arg = format!("--config={}", file.display());
    for args in [
        &["websocket:check", arg.as_str()][..],
        &["websocket:run", "--port=0", arg.as_str()],
    ] {
        let run = run_to_exit(rakit().args(args));
        assert_eq!(run.code, Some(2), "{toml}: {run:?}");
        let err = run.stderr.trim_end();
        let named = format!("{key}: ");
        assert!(
            err.contains(&named) && !err.contains('\n') && !err.contains("panicked"),
            "{toml}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
