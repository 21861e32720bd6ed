//! A minimal Rakit application for the tests of the Rakit drop-in (SPEC section 18): the
//! stand-in framework of tests/php/rakit-app copied into a scratch directory, with an
//! `application/boot.php` that registers `RakitWebSocketCommand` as SPEC.md shows, and an
//! `application/config/websocket.php` the test writes. `php rakit websocket:run` there starts
//! this build's daemon (through `RAKIT_WS_BIN`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{daemon_from, scratch_dir, wait_exit, Daemon};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The daemon binary under test (as [`super::rakit`] picks it).
pub fn daemon_binary() -> PathBuf {
    std::env::var_os("RAKIT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rakit")))
}

/// False (after saying why) when php is missing and may be (tests/common/tools.rs).
#[track_caller]
pub fn have_php() -> bool {
    super::tools::have(super::tools::Tool::Php)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A Rakit application directory.
pub struct RakitApp {
    pub dir: PathBuf,
}

impl RakitApp {
    /// A new application whose websocket.php returns `config` (PHP source of an expression).
    pub fn new(config: &str) -> RakitApp {
        let dir = scratch_dir();
        copy_dir(&root().join("tests/php/rakit-app"), &dir);
        std::fs::create_dir_all(dir.join("application/config")).unwrap();
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        let command = root().join("clients/php/RakitWebSocketCommand.php");
        std::fs::write(
            dir.join("application/boot.php"),
            format!(
                "<?php\n\nrequire_once '{}';\nSystem\\Container::singleton('command: websocket', \
                 function () {{ return new RakitWebSocketCommand(); }});\n",
                command.display()
            ),
        )
        .unwrap();
        let app = RakitApp { dir };
        app.config(config);
        app
    }

    /// Rewrites application/config/websocket.php to return `config` (whole, then renamed).
    pub fn config(&self, config: &str) {
        self.config_file("application/config/websocket.php", config);
    }

    /// Writes a config file of the application (`application/config/local/websocket.php`, ...).
    pub fn config_file(&self, path: &str, config: &str) {
        let path = self.dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text =
            format!("<?php\n\ndefined('DS') or exit('No direct access.');\n\nreturn {config};\n");
        super::ops::write_atomically(&path, &text);
    }

    /// `php rakit ARGS` in the application, with `RAKIT_WS_BIN` set to this build's daemon.
    pub fn php(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("php");
        cmd.current_dir(&self.dir)
            .arg("rakit")
            .args(args)
            .env("RAKIT_WS_BIN", daemon_binary())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `php rakit websocket:run --port=0 ARGS`, once the daemon's listen line is out.
    #[track_caller]
    pub fn run(self, args: &[&str]) -> PhpDaemon {
        let child = self
            .php(&["websocket:run", "--port=0"])
            .args(args)
            .spawn()
            .expect("spawn php");
        PhpDaemon(daemon_from(child, self.dir))
    }
}

/// The daemon started by `php rakit websocket:run`: [`Daemon::child`] is the php process.
/// Dropped: SIGTERM to php (which passes it on), so no daemon outlives the test.
pub struct PhpDaemon(pub Daemon);

impl PhpDaemon {
    /// The daemon's own pid (php's one child).
    pub fn daemon_pid(&self) -> u32 {
        let pid = self.0.child.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .expect("/proc children");
        let mut pids = children.split_whitespace();
        let child = pids.next().expect("php has a child").parse().unwrap();
        assert_eq!(pids.next(), None, "php has one child");
        child
    }
}

impl std::ops::Deref for PhpDaemon {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.0
    }
}

impl std::ops::DerefMut for PhpDaemon {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.0
    }
}

impl Drop for PhpDaemon {
    fn drop(&mut self) {
        if matches!(self.0.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.child.id().to_string()])
                .status();
            let _ = wait_exit(&mut self.0.child, Duration::from_secs(5));
        }
    }
}
