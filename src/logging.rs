//! Logger set-up from the `logging_*` keys (SPEC section 2), with `simplelog`.
//!
//! Logs go to stdout (stderr is kept for the one-line fatal error) or are appended to a file, each
//! line with an RFC 3339 UTC timestamp and its level.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use simplelog::{ConfigBuilder, LevelFilter, WriteLogger};

use crate::config::{Config, LogOutput};

/// Why logging could not be started.
#[derive(Debug)]
pub enum LoggingError {
    /// The log file or its folder could not be created or opened.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A global logger is already installed (the `log` crate allows one per process).
    AlreadySet,
}

impl fmt::Display for LoggingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoggingError::Io { path, error } => {
                write!(f, "logging_file: {}: {error}", path.display())
            }
            LoggingError::AlreadySet => f.write_str("a logger is already installed"),
        }
    }
}

impl std::error::Error for LoggingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoggingError::Io { error, .. } => Some(error),
            LoggingError::AlreadySet => None,
        }
    }
}

/// Installs the process-wide logger described by `config`. With `logging_enabled = false` nothing
/// is installed, so every `log` macro stays a cheap no-op. Calling it again returns
/// [`LoggingError::AlreadySet`] instead of panicking.
pub fn init(config: &Config) -> Result<(), LoggingError> {
    if !config.logging_enabled {
        return Ok(());
    }
    let level = config.logging_level.to_level_filter();
    let format = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        // mio traces every poll at `trace`; that would drown the daemon's own lines.
        .add_filter_ignore_str("mio")
        .build();
    let installed = match config.logging_output {
        LogOutput::Stdout => WriteLogger::init(level, format, std::io::stdout()),
        LogOutput::File => WriteLogger::init(level, format, open_log_file(&config.logging_file)?),
    };
    installed.map_err(|_| LoggingError::AlreadySet)
}

/// Opens `path` for appending, creating it and its parent folders, so a fresh checkout can log to
/// `storage/logs/websocket.log` without a set-up step.
pub fn open_log_file(path: &Path) -> Result<File, LoggingError> {
    let io_error = |error| LoggingError::Io {
        path: path.to_path_buf(),
        error,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("rakit-logging-{}-{name}", std::process::id()))
    }

    #[test]
    fn creates_parent_folders_and_appends() {
        let dir = scratch("parents");
        let file = dir.join("a/b/websocket.log");
        writeln!(open_log_file(&file).unwrap(), "one").unwrap();
        writeln!(open_log_file(&file).unwrap(), "two").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "one\ntwo\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn io_error_names_the_path() {
        let dir = scratch("blocked");
        std::fs::create_dir_all(&dir).unwrap();
        let blocker = dir.join("file");
        std::fs::write(&blocker, "").unwrap();
        let path = blocker.join("websocket.log");
        let e = open_log_file(&path).unwrap_err();
        let line = e.to_string();
        assert!(line.contains(&path.display().to_string()), "{line}");
        assert!(!line.contains('\n'));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn disabled_installs_nothing_and_a_second_init_is_an_error() {
        let disabled = Config {
            logging_enabled: false,
            ..Config::default()
        };
        init(&disabled).unwrap();
        let dir = scratch("init");
        let config = Config {
            logging_output: LogOutput::File,
            logging_file: dir.join("logs/websocket.log"),
            ..Config::default()
        };
        // Another test in this process may have installed a logger first; either way the second
        // call must report it rather than panic.
        let _ = init(&config);
        assert!(matches!(init(&config), Err(LoggingError::AlreadySet)));
        std::fs::remove_dir_all(&dir).ok();
    }
}
