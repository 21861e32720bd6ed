//! Tools from outside Cargo that some tests drive (Chromium, the Node and Python libraries,
//! php-cli), and the one rule for a test whose tool is missing:
//!
//! - Under CI (`RAKIT_CI=1`, which `.ci/run` sets whatever the environment says) a missing tool
//!   fails the test, and `RAKIT_SKIP_*` is ignored: CI cannot be made to skip by environment.
//! - `RAKIT_REQUIRE_<GROUP>=1` (scripts/test.sh sets it once it has installed the group) fails
//!   the test too.
//! - Otherwise a test whose tool is missing, or whose group is turned off with
//!   `RAKIT_SKIP_<GROUP>=1`, is skipped, and says so on stdout, past the test harness's output
//!   capture, so a plain `cargo test` shows which tests did not run and why.
//!
//! A test starts with `if !have(Tool::X) { return; }`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// What a test needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// /usr/bin/chromium, node, and playwright-core in tests/browser.
    Browser,
    /// php-cli.
    Php,
    /// node with tests/pusher/node_modules (pusher-js, laravel-echo, pusher).
    PusherNode,
    /// The official Python `pusher` library, 3.3.4.
    PusherPython,
    /// python3 with prometheus-client and websockets (scripts/test.sh installs them).
    Python,
    /// systemd-analyze (Debian's `systemd` package), for the unit file.
    Systemd,
}

impl Tool {
    /// The group of `RAKIT_SKIP_<GROUP>` / `RAKIT_REQUIRE_<GROUP>` (as in scripts/test.sh).
    pub fn group(self) -> &'static str {
        match self {
            Tool::Browser => "BROWSER",
            Tool::Php => "PHP",
            Tool::PusherNode | Tool::PusherPython => "PUSHER",
            Tool::Python => "PYTHON",
            Tool::Systemd => "SYSTEMD",
        }
    }

    /// What is missing, if anything (looked at once per test process).
    pub fn missing(self) -> Option<&'static str> {
        static FOUND: [OnceLock<Option<String>>; 6] = [const { OnceLock::new() }; 6];
        let index = self as usize;
        FOUND[index].get_or_init(|| self.look()).as_deref()
    }

    fn look(self) -> Option<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir_missing = |dir: PathBuf, how: &str| {
            (!dir.is_dir()).then(|| format!("{} missing ({how})", dir.display()))
        };
        match self {
            Tool::Browser => (!Path::new(CHROMIUM).exists())
                .then(|| format!("{CHROMIUM} not found (apt-get install chromium)"))
                .or_else(|| runs("node", &["--version"]))
                .or_else(|| {
                    dir_missing(
                        root.join("tests/browser/node_modules/playwright-core"),
                        "cd tests/browser && npm ci",
                    )
                }),
            Tool::Php => {
                runs("php", &["--version"]).map(|m| format!("{m} (apt-get install php-cli)"))
            }
            Tool::PusherNode => runs("node", &["--version"]).or_else(|| {
                ["laravel-echo", "pusher-js", "pusher"]
                    .iter()
                    .find_map(|m| {
                        dir_missing(
                            root.join("tests/pusher/node_modules").join(m),
                            "cd tests/pusher && npm ci",
                        )
                    })
            }),
            Tool::PusherPython => runs(
                "python3",
                &[
                    "-c",
                    "import importlib.metadata as m, sys; sys.exit(m.version('pusher') != '3.3.4')",
                ],
            )
            .map(|m| format!("{m} (python3 -m pip install pusher==3.3.4)")),
            Tool::Python => runs("python3", &["-c", "import prometheus_client, websockets"])
                .map(|m| format!("{m} (python3 -m pip install prometheus-client websockets)")),
            Tool::Systemd => runs("systemd-analyze", &["--version"])
                .map(|m| format!("{m} (apt-get install systemd)")),
        }
    }
}

/// Where the browser tests expect Chromium (Debian's package).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// `None` when `program args` runs and succeeds; else what went wrong.
fn runs(program: &str, args: &[&str]) -> Option<String> {
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("`{program} {}` failed ({s})", args.join(" "))),
        Err(e) => Some(format!("{program} not found ({e})")),
    }
}

fn env_is_1(name: &str) -> bool {
    std::env::var(name).as_deref() == Ok("1")
}

/// Whether the calling test may use `tool`: true when it is there; false (the test then
/// returns) after printing why it is skipped; a panic where a skip is not allowed (see the
/// module docs).
#[track_caller]
pub fn have(tool: Tool) -> bool {
    let group = tool.group();
    let ci = env_is_1("RAKIT_CI");
    let required = ci || env_is_1(&format!("RAKIT_REQUIRE_{group}"));
    let why = match tool.missing() {
        Some(missing) if required => panic!(
            "{missing}, and this test may not be skipped ({})",
            if ci {
                "RAKIT_CI=1".to_owned()
            } else {
                format!("RAKIT_REQUIRE_{group}=1")
            }
        ),
        Some(missing) => missing.to_owned(),
        None if !ci && env_is_1(&format!("RAKIT_SKIP_{group}")) => {
            format!("RAKIT_SKIP_{group}=1")
        }
        None => return true,
    };
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let line = format!("SKIPPED {}::{test}: {why}\n", env!("CARGO_CRATE_NAME"));
    // Past the harness's capture (it captures `print!`, not writes to the stdout handle), so
    // that a plain `cargo test` lists what it did not run.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
    eprint!("{line}");
    false
}
