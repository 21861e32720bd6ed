//! dist/restart-rakit-websocket.sh, the restart script docs/operations.md shows (SPEC 18), run
//! as an operator runs it, with this build's binary, a config and a run directory of the
//! test's. The daemons it starts are not the test's children: they are stopped (SIGKILL) when
//! the [`RestartScript`] is dropped, by the pids it recorded.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::scratch_dir;

pub struct RestartScript {
    dir: PathBuf,
    /// Every daemon pid the script has recorded.
    pids: Vec<u32>,
}

/// What one run of the script did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The pid in the pid file afterwards.
    pub pid: Option<u32>,
}

/// The script's path in the repository.
pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/restart-rakit-websocket.sh")
}

/// A port nobody listens on now (the config names it: the script takes no flags).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether process `pid` is a running daemon (not gone, not a zombie, not another program).
pub fn running(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.windows(13).any(|w| w == b"websocket:run"))
}

impl RestartScript {
    /// A scratch directory with `toml` as the config file.
    pub fn new(toml: &str) -> RestartScript {
        let dir = scratch_dir();
        std::fs::write(dir.join("websocket.toml"), toml).unwrap();
        RestartScript {
            dir,
            pids: Vec::new(),
        }
    }

    /// Runs the script to its end (it waits for the new daemon and the old one's exit).
    #[track_caller]
    pub fn run(&mut self) -> Run {
        let bin =
            std::env::var_os("RAKIT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_rakit").into());
        let out = Command::new("sh")
            .arg(path())
            .env("RAKIT", bin)
            .env("CONFIG", self.dir.join("websocket.toml"))
            .env("RUN", self.dir.join("run"))
            .current_dir(&self.dir)
            .output()
            .expect("sh");
        let pid = std::fs::read_to_string(self.dir.join("run/pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        self.pids.extend(pid);
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            pid,
        }
    }

    /// The config file the script's daemons read (rewrite it before a run).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("websocket.toml")
    }

    /// What daemon `pid` wrote to stdout (in the run directory).
    pub fn output_of(&self, pid: u32) -> String {
        std::fs::read_to_string(self.dir.join(format!("run/{pid}.out"))).unwrap_or_default()
    }
}

impl Drop for RestartScript {
    fn drop(&mut self) {
        for pid in &self.pids {
            if running(*pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
