//! Helpers for the operations tests (SPEC section 18): signals, config reloads, and reading
//! how often a log line came.

use std::process::Command;

use super::{Daemon, Output};

/// Sends `signal` (`"HUP"`, `"TERM"`, ...) to `pid` with the `kill` command; `count` times in
/// one `kill` call (a storm: as fast as one process can send them).
#[track_caller]
pub fn signal(pid: u32, name: &str, count: usize) {
    let pid = pid.to_string();
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .args(std::iter::repeat(pid.as_str()).take(count))
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Writes `path` whole and renames it into place, as a careful deployment tool does, so a
/// reload never reads it half-written.
#[track_caller]
pub fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The log line every finished reload writes: applied or refused.
pub const RELOADED: &str = "SIGHUP: config reloaded";
pub const REFUSED: &str = "SIGHUP: config not reloaded";

impl Daemon {
    /// Starts `rakit websocket:run ARGS` in `dir` (its scratch directory, removed with it) and
    /// waits for its listen line.
    #[track_caller]
    pub fn start_in(dir: std::path::PathBuf, args: &[String]) -> Daemon {
        let child = super::rakit()
            .current_dir(&dir)
            .arg("websocket:run")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn rakit");
        super::daemon_from(child, dir)
    }

    /// The config file the daemon was started with (see [`Daemon::start`]).
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.join("websocket.toml")
    }

    /// Sends one SIGHUP.
    #[track_caller]
    pub fn hup(&self) {
        signal(self.child.id(), "HUP", 1);
    }

    /// How many stdout lines so far contain `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.log_lines()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits, at most [`super::WAIT`], until `n` stdout lines contain `needle`; returns the
    /// `n`th.
    #[track_caller]
    pub fn wait_for_nth_line(&self, needle: &str, n: usize) -> String {
        let output: &Output = &self.output;
        let lines = output.wait(&format!("{n} lines with {needle:?}"), |s| {
            s.lines.iter().filter(|l| l.contains(needle)).count() >= n
        });
        lines
            .into_iter()
            .filter(|l| l.contains(needle))
            .nth(n - 1)
            .unwrap()
    }

    /// Waits, at most [`super::WAIT`], until `n` reloads finished (applied or refused).
    #[track_caller]
    pub fn wait_for_reloads(&self, n: usize) {
        self.output.wait(&format!("{n} finished reloads"), |s| {
            s.lines
                .iter()
                .filter(|l| l.contains(RELOADED) || l.contains(REFUSED))
                .count()
                >= n
        });
    }

    /// Replaces the config file with `toml` (atomically), sends SIGHUP and waits for that
    /// reload to finish; returns its line (`RELOADED ...` or `REFUSED ...`) with the restart
    /// warnings logged before it.
    #[track_caller]
    pub fn reload(&self, toml: &str) -> Vec<String> {
        let before = self.log_lines().len();
        let finished = self.count_lines(RELOADED) + self.count_lines(REFUSED);
        write_atomically(&self.config_path(), toml);
        self.hup();
        self.wait_for_reloads(finished + 1);
        let lines = self.log_lines();
        let end = lines
            .iter()
            .enumerate()
            .skip(before)
            .find(|(_, l)| l.contains(RELOADED) || l.contains(REFUSED))
            .map(|(i, _)| i)
            .unwrap();
        lines[before..=end].to_vec()
    }
}
