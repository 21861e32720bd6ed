//! Logger set-up from the `logging_*` keys (SPEC section 2), and a logger that never blocks the
//! event loop (SPEC section 1).
//!
//! Logs go to stdout (stderr is kept for the one-line fatal error) or are appended to a file, each
//! line with an RFC 3339 UTC timestamp and its level:
//! `2024-02-29T12:00:00.000000000Z [INFO] connect: Ab3dEf9h (guest)`.
//!
//! A log call formats its line and hands it to a bounded queue ([`queue`]); a writer thread does
//! the IO. When stdout is a pipe nobody drains, or the disk is slow, lines are dropped and counted
//! ([`dropped`]) instead of stalling every client.
//!
//! The daemon starts the logger *held* ([`init_held`]): lines logged during start-up wait until
//! the listen line is on stdout ([`release`]), so that line is always the first. At exit,
//! [`finish`] writes what is queued, for a bounded time.

mod queue;

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::{Config, LogLevel, LogOutput};
use queue::Sink;

/// The most bytes of log lines waiting for the writer; beyond it lines are dropped.
pub const QUEUE_BYTES: usize = 1 << 20;

/// The installed logger's queue, for [`release`], [`finish`] and [`dropped`].
static SINK: OnceLock<Sink> = OnceLock::new();

/// The installed logger's level (a `LevelFilter` as `usize`), changed by [`set_level`].
static LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Off as usize);

/// Why logging could not be started.
#[derive(Debug)]
pub enum LoggingError {
    /// The log file or its folder could not be created or opened.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The writer thread could not be started.
    Thread(std::io::Error),
    /// A global logger is already installed (the `log` crate allows one per process).
    AlreadySet,
}

impl fmt::Display for LoggingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoggingError::Io { path, error } => {
                write!(f, "logging_file: {}: {error}", path.display())
            }
            LoggingError::Thread(error) => write!(f, "cannot start the logging thread: {error}"),
            LoggingError::AlreadySet => f.write_str("a logger is already installed"),
        }
    }
}

impl std::error::Error for LoggingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoggingError::Io { error, .. } | LoggingError::Thread(error) => Some(error),
            LoggingError::AlreadySet => None,
        }
    }
}

/// Installs the process-wide logger described by `config`; lines are written as they come. With
/// `logging_enabled = false` nothing is installed, so every `log` macro stays a cheap no-op.
/// Calling it again returns [`LoggingError::AlreadySet`] instead of panicking.
pub fn init(config: &Config) -> Result<(), LoggingError> {
    install(config, false)
}

/// [`init`], but nothing is written until [`release`] (or [`finish`]): the lines wait in the
/// queue. The daemon prints its listen line in between.
pub fn init_held(config: &Config) -> Result<(), LoggingError> {
    install(config, true)
}

/// Lets a logger installed with [`init_held`] write.
pub fn release() {
    if let Some(sink) = SINK.get() {
        sink.release();
    }
}

/// Writes what is queued, waiting at most `timeout` (the output may never drain); returns whether
/// everything was written. For the end of the process.
pub fn finish(timeout: Duration) -> bool {
    SINK.get().map_or(true, |sink| sink.flush(timeout))
}

/// Changes the level of the installed logger (SIGHUP, SPEC section 18); without one (logging
/// disabled at start) nothing is logged either way.
pub fn set_level(level: LogLevel) {
    if SINK.get().is_some() {
        let filter = level.to_level_filter();
        LEVEL.store(filter as usize, Ordering::Relaxed);
        log::set_max_level(filter);
    }
}

/// Log lines dropped so far because the output could not keep up.
pub fn dropped() -> u64 {
    SINK.get().map_or(0, Sink::dropped)
}

fn install(config: &Config, held: bool) -> Result<(), LoggingError> {
    if !config.logging_enabled {
        return Ok(());
    }
    if SINK.get().is_some() {
        return Err(LoggingError::AlreadySet);
    }
    let out: Box<dyn Write + Send> = match config.logging_output {
        LogOutput::Stdout => Box::new(std::io::stdout()),
        LogOutput::File => Box::new(open_log_file(&config.logging_file)?),
    };
    let sink = Sink::spawn(out, QUEUE_BYTES, held).map_err(LoggingError::Thread)?;
    let level = config.logging_level.to_level_filter();
    let logger = Logger { sink: sink.clone() };
    // One logger per process, for the rest of it: leaking it is what the `log` crate expects.
    let logger: &'static Logger = Box::leak(Box::new(logger));
    if log::set_logger(logger).is_err() || SINK.set(sink.clone()).is_err() {
        sink.close();
        return Err(LoggingError::AlreadySet);
    }
    LEVEL.store(level as usize, Ordering::Relaxed);
    log::set_max_level(level);
    Ok(())
}

struct Logger {
    sink: Sink,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // mio traces every poll at `trace`; that would drown the daemon's own lines.
        metadata.level() as usize <= LEVEL.load(Ordering::Relaxed)
            && !metadata.target().starts_with("mio")
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let mut line = String::new();
            format_line(&mut line, SystemTime::now(), record.level(), *record.args());
            self.sink.push(&line);
        }
    }

    fn flush(&self) {
        self.sink.wait_written(Duration::from_secs(1));
    }
}

/// Appends `TIMESTAMP [LEVEL] message\n`.
fn format_line(out: &mut String, now: SystemTime, level: Level, args: fmt::Arguments<'_>) {
    write_rfc3339(out, now);
    // Writing into a String cannot fail.
    let _ = writeln!(out, " [{level}] {args}");
}

/// Appends `now` as an RFC 3339 UTC timestamp with nanoseconds.
fn write_rfc3339(out: &mut String, now: SystemTime) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since_epoch.subsec_nanos()
    );
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift to an era-based calendar starting on 0000-03-01, so leap days come last.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
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
    fn timestamps_are_rfc3339_utc() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.000000005Z"),
            (1_234_567_890, 123_456_789, "2009-02-13T23:31:30.123456789Z"),
            (1_709_208_000, 0, "2024-02-29T12:00:00.000000000Z"),
            (4_102_444_799, 999_999_999, "2099-12-31T23:59:59.999999999Z"),
        ];
        for (secs, nanos, expected) in cases {
            let mut out = String::new();
            write_rfc3339(&mut out, UNIX_EPOCH + Duration::new(secs, nanos));
            assert_eq!(out, expected, "{secs}");
        }
    }

    #[test]
    fn a_line_is_timestamp_level_message() {
        let mut out = String::new();
        let at = UNIX_EPOCH + Duration::from_secs(1_709_208_000);
        format_line(
            &mut out,
            at,
            Level::Info,
            format_args!("connect: {}", "abc"),
        );
        format_line(&mut out, at, Level::Debug, format_args!("x"));
        assert_eq!(
            out,
            "2024-02-29T12:00:00.000000000Z [INFO] connect: abc\n\
             2024-02-29T12:00:00.000000000Z [DEBUG] x\n"
        );
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

    /// The one test in this binary that installs the global logger.
    #[test]
    fn init_installs_one_filtered_file_logger() {
        let disabled = Config {
            logging_enabled: false,
            ..Config::default()
        };
        init(&disabled).unwrap();
        let dir = scratch("init");
        let file = dir.join("logs/deep/websocket.log");
        let config = Config {
            logging_output: LogOutput::File,
            logging_file: file.clone(),
            ..Config::default()
        };
        // Succeeds only because the disabled call installed nothing.
        init(&config).expect("the first logger");
        assert!(matches!(init(&config), Err(LoggingError::AlreadySet)));
        assert!(matches!(init_held(&config), Err(LoggingError::AlreadySet)));

        log::info!("hello from the test");
        log::debug!("below the level");
        log::info!(target: "mio::poll", "from mio");
        assert!(finish(Duration::from_secs(10)));
        // Other tests of this binary may log into the file meanwhile.
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.lines()
                .any(|l| l.ends_with("Z [INFO] hello from the test")),
            "{text}"
        );
        assert!(!text.contains("below the level"), "{text}");
        assert!(!text.contains("from mio"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
