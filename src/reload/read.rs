//! Reading a configuration file that may be changing under us.
//!
//! An editor or a deployment tool that rewrites the file in place truncates it and then writes
//! it, perhaps in several writes; a reader in between sees nothing, or a beginning. The
//! beginning of a TOML file is often valid TOML, and an empty file is the defaults: applying
//! either would silently undo the operator's settings (an empty `allowed_origins` lets every
//! site in). So the file is read whole into memory, twice, [`GAP`] apart, and used only when
//! both reads agree and it is not empty; otherwise the reload is refused and logged, and the
//! next SIGHUP tries again. Writing the file elsewhere and renaming it over the old one (what
//! `sed -i`, `install` and most deployment tools do) never shows a reader a partial file.

use std::path::Path;
use std::time::Duration;

use crate::config::DEFAULT_PATH;

/// Time between the two reads: long enough for a writer in progress to show.
const GAP: Duration = Duration::from_millis(20);
/// Reads before giving up on a file that keeps changing.
const ATTEMPTS: usize = 5;
/// The largest configuration file read (a real one is a few KiB; a mistaken path to a huge
/// file must not make the daemon allocate it).
pub(super) const MAX_BYTES: u64 = 1 << 20;

/// The file's text once two reads in a row agree; `None` when no `--config` was given and
/// `config/websocket.toml` does not exist (the defaults, as at start).
pub(super) fn settled(file: Option<&Path>) -> Result<Option<String>, String> {
    let path = file.unwrap_or(Path::new(DEFAULT_PATH));
    let mut last = read(path, file.is_none())?;
    for _ in 0..ATTEMPTS {
        std::thread::sleep(GAP);
        let again = read(path, file.is_none())?;
        if again == last {
            return match last {
                Some(text) if text.is_empty() => Err(format!(
                    "{}: the file is empty (being written?)",
                    path.display()
                )),
                other => Ok(other),
            };
        }
        last = again;
    }
    Err(format!(
        "{}: the file kept changing while it was read",
        path.display()
    ))
}

/// One read of the whole file; `None` for a missing default file.
fn read(path: &Path, optional: bool) -> Result<Option<String>, String> {
    use std::io::Read;
    let named = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(named(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(named)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!(
            "{}: larger than {MAX_BYTES} bytes; not a configuration file",
            path.display()
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("{}: not UTF-8 text", path.display()))
}
