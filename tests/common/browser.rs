//! One headless Chromium page driven step by step from a test (tests/browser/page.mjs), for the
//! browser client (SPEC 16.2): load a page, add scripts, evaluate expressions, wait for one to
//! hold.
//!
//! Needs /usr/bin/chromium, node, and `npm ci` in tests/browser (scripts/test.sh does all of it).
//! Without them [`Page::open`] gives `None` (the test is skipped), unless
//! RAKIT_REQUIRE_BROWSER=1, which makes a missing piece a failure.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::node::Script;

/// How long one step may take; a `wait` gets this long for its condition.
pub const STEP: Duration = Duration::from_secs(20);

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Whether a browser test must be skipped (said why, or a failure where skipping is not
/// allowed: tests/common/tools.rs).
#[track_caller]
pub fn skip() -> bool {
    !super::tools::have(super::tools::Tool::Browser)
}

pub struct Page {
    script: Script,
    next: u64,
}

impl Page {
    /// A browser with one blank page; `None` when the test is skipped (see [`skip`]).
    pub fn open() -> Option<Page> {
        if skip() {
            return None;
        }
        Some(Page {
            script: Script::start_in(&dir(), "page.mjs", &[]),
            next: 0,
        })
    }

    #[track_caller]
    fn step(&mut self, mut step: Value) -> Value {
        self.next += 1;
        step["id"] = json!(self.next);
        self.script.send(&step.to_string());
        let answer = self.script.json(STEP + Duration::from_secs(10));
        assert_eq!(answer["id"], self.next, "{answer}");
        assert!(answer["ok"] == true, "page step {step} failed: {answer:#}");
        answer["value"].clone()
    }

    #[track_caller]
    pub fn goto(&mut self, url: &str) {
        self.step(json!({"op": "goto", "url": url}));
    }

    /// Adds `<script src=URL>` and waits for it to run.
    #[track_caller]
    pub fn script_url(&mut self, url: &str) {
        self.step(json!({"op": "script", "url": url}));
    }

    /// Adds the file tests/browser/`path` as a script.
    #[track_caller]
    pub fn script_file(&mut self, path: &str) {
        self.step(json!({"op": "script", "path": path}));
    }

    /// The JSON value of the expression `js` (a Promise is awaited).
    #[track_caller]
    pub fn eval(&mut self, js: &str) -> Value {
        self.step(json!({"op": "eval", "js": js}))
    }

    /// Waits, at most [`STEP`], until the expression `js` is truthy; its value.
    #[track_caller]
    pub fn wait(&mut self, js: &str) -> Value {
        self.step(json!({"op": "wait", "js": js, "ms": STEP.as_millis() as u64}))
    }

    /// Replaces the document with `html` and waits for its scripts to load and run.
    #[track_caller]
    pub fn content(&mut self, html: &str) {
        self.step(json!({"op": "content", "html": html}));
    }

    /// The text of every console message so far.
    #[track_caller]
    pub fn console(&mut self) -> Vec<String> {
        serde_json::from_value(self.step(json!({"op": "console"}))).unwrap()
    }

    /// Uncaught errors the page has seen.
    #[track_caller]
    pub fn errors(&mut self) -> Value {
        self.step(json!({"op": "errors"}))
    }

    /// Waits until what the client of tests/browser/client_fixture.js delivered on `channel`,
    /// `g` in the expression `until` (e.g. `g.length >= 3`), satisfies it; each `{"n": N}`
    /// delivered, as (N, offset, epoch), (N, 0, "") when delivered without a position.
    #[track_caller]
    pub fn delivered(&mut self, channel: &str, until: &str) -> Vec<(u64, u64, String)> {
        let got = self.wait(&format!(
            "((g) => ({until}) && g)(T.got[{}])",
            json!(channel)
        ));
        got.as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m[0]["n"].as_u64().unwrap(),
                    m[1]["offset"].as_u64().unwrap_or(0),
                    m[1]["epoch"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}
