//! The bounded log queue and its writer thread (SPEC section 1: logging never blocks the event
//! loop).
//!
//! Whoever logs appends a formatted line to one `String` under a mutex and goes on; a writer
//! thread takes the whole string (swapping in an empty one) and writes it with the lock released.
//! So a logging thread waits at most for another thread's append or swap, never for IO. When the
//! queue holds its cap in bytes the line is dropped and counted; the writer reports the count as
//! one `N log lines dropped` line once it gets to write again.
//!
//! States of the writer: *held* (lines queue up, nothing is written: the daemon's first stdout
//! line is its listen line, printed after start-up code may already have logged), *running*, and
//! *closing* (write what is queued, then end the thread).

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use log::Level;

/// A handle on one queue and its writer thread; clones share them.
#[derive(Clone)]
pub(crate) struct Sink {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the writer may have something to do.
    work: Condvar,
    /// Signalled when the writer finished a write.
    idle: Condvar,
    /// Largest queue in bytes.
    cap: usize,
    /// Lines dropped since the start.
    dropped: AtomicU64,
}

#[derive(Default)]
struct State {
    queue: String,
    held: bool,
    closing: bool,
    /// The writer has taken a chunk and not finished writing it.
    writing: bool,
    /// Dropped lines not yet reported in the output.
    unreported: u64,
}

impl State {
    fn has_work(&self) -> bool {
        !self.queue.is_empty() || self.unreported > 0
    }
}

impl Sink {
    /// A queue of at most `cap` bytes written to `out` by a new thread; `held` keeps the writer
    /// from writing until [`Sink::release`].
    pub(crate) fn spawn(out: Box<dyn Write + Send>, cap: usize, held: bool) -> io::Result<Sink> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                held,
                ..State::default()
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
            cap,
            dropped: AtomicU64::new(0),
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("rakit-log".into())
            .spawn(move || write_loop(&writer, out))?;
        Ok(Sink { shared })
    }

    /// Queues `line` (a whole line, newline included) unless the queue is full; returns whether
    /// it was queued. Never waits for IO.
    pub(crate) fn push(&self, line: &str) -> bool {
        let mut state = self.shared.lock();
        let was_idle = !state.has_work();
        let queued = state.queue.len() + line.len() <= self.shared.cap;
        if queued {
            state.queue.push_str(line);
        } else {
            state.unreported += 1;
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        drop(state);
        // A writer with work left looks again before it waits, so only an idle one needs a
        // wake-up (which costs a system call).
        if was_idle {
            self.shared.work.notify_one();
        }
        queued
    }

    /// Lets a held writer write.
    pub(crate) fn release(&self) {
        self.shared.lock().held = false;
        self.shared.work.notify_one();
    }

    /// Ends the writer thread once what is queued is written.
    pub(crate) fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
    }

    /// Releases the writer and waits until everything queued so far is written, at most
    /// `timeout` (the output may be stuck for good: a pipe nobody reads). Returns whether it was.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        self.release();
        self.wait_written(timeout)
    }

    /// Waits, at most `timeout`, until the writer has written what is queued; does not release
    /// a held writer (then it returns false at once).
    pub(crate) fn wait_written(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.has_work() || state.writing {
            let left = deadline.saturating_duration_since(Instant::now());
            let stays_held = state.held && !state.closing && !state.writing;
            if left.is_zero() || stays_held {
                return false;
            }
            state = self
                .shared
                .idle
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Lines dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Shared {
    /// The state, also after a panic elsewhere: a half-written line is better than no logs.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn write_loop(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut chunk = String::new();
    loop {
        let unreported = {
            let mut state = shared.lock();
            loop {
                if state.has_work() && (!state.held || state.closing) {
                    break;
                }
                if state.closing {
                    return;
                }
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            // The old chunk's allocation becomes the next queue.
            chunk.clear();
            std::mem::swap(&mut chunk, &mut state.queue);
            state.writing = true;
            std::mem::take(&mut state.unreported)
        };
        if unreported > 0 {
            super::format_line(
                &mut chunk,
                std::time::SystemTime::now(),
                Level::Warn,
                format_args!("{unreported} log lines dropped (the log output could not keep up)"),
            );
        }
        // Nothing to do about a failed write (stdout closed, disk full): the lines are lost,
        // and there is nowhere to report it.
        let _ = out.write_all(chunk.as_bytes()).and_then(|()| out.flush());
        shared.lock().writing = false;
        shared.idle.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    const WAIT: Duration = Duration::from_secs(10);

    /// Collects what the writer writes.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Collect {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// A writer stuck in its first write until the gate opens, like a pipe nobody reads.
    struct Stuck {
        entered: mpsc::Sender<()>,
        gate: Arc<(Mutex<bool>, Condvar)>,
        out: Collect,
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.entered.send(());
            let (open, opened) = &*self.gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
            self.out.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_order() {
        let out = Collect::default();
        let sink = Sink::spawn(Box::new(out.clone()), 1 << 16, false).unwrap();
        for i in 0..100 {
            assert!(sink.push(&format!("line {i}\n")));
        }
        assert!(sink.flush(WAIT));
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(out.text(), expected);
        assert_eq!(sink.dropped(), 0);
        sink.close();
    }

    #[test]
    fn a_held_writer_writes_nothing_until_released() {
        let out = Collect::default();
        let sink = Sink::spawn(Box::new(out.clone()), 1 << 16, true).unwrap();
        assert!(sink.push("early\n"));
        assert!(!sink.wait_written(Duration::from_millis(50)), "held");
        assert_eq!(out.text(), "");
        sink.release();
        assert!(sink.wait_written(WAIT));
        assert_eq!(out.text(), "early\n");
        sink.close();
    }

    #[test]
    fn a_stuck_output_drops_and_counts_lines_instead_of_blocking() {
        let out = Collect::default();
        let (entered_tx, entered) = mpsc::channel();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let stuck = Stuck {
            entered: entered_tx,
            gate: Arc::clone(&gate),
            out: out.clone(),
        };
        let sink = Sink::spawn(Box::new(stuck), 40, false).unwrap();
        assert!(sink.push("first, being written\n"));
        entered
            .recv_timeout(WAIT)
            .expect("the writer took the line");
        // The writer is stuck; this thread is not. 40 bytes hold four of these lines.
        let started = Instant::now();
        let queued: Vec<bool> = (0..10)
            .map(|i| sink.push(&format!("queued {i}\n")))
            .collect();
        assert!(started.elapsed() < Duration::from_secs(1), "push waited");
        assert_eq!(
            queued,
            [true, true, true, true, false, false, false, false, false, false]
        );
        assert_eq!(sink.dropped(), 6);
        assert!(!sink.flush(Duration::from_millis(20)), "still stuck");

        let (open, opened) = &*gate;
        *open.lock().unwrap() = true;
        opened.notify_all();
        assert!(sink.flush(WAIT));
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..5],
            [
                "first, being written",
                "queued 0",
                "queued 1",
                "queued 2",
                "queued 3"
            ]
        );
        assert_eq!(lines.len(), 6, "{text}");
        assert!(
            lines[5].ends_with("[WARN] 6 log lines dropped (the log output could not keep up)"),
            "{text}"
        );
        // Reported once.
        assert!(sink.push("later\n"));
        assert!(sink.flush(WAIT));
        assert!(out.text().ends_with("could not keep up)\nlater\n"));
        sink.close();
    }

    #[test]
    fn a_line_longer_than_the_queue_is_dropped_and_reported() {
        let out = Collect::default();
        let sink = Sink::spawn(Box::new(out.clone()), 8, false).unwrap();
        assert!(!sink.push("far too long for the queue\n"));
        assert!(sink.flush(WAIT));
        assert!(
            out.text().contains("] 1 log lines dropped"),
            "{}",
            out.text()
        );
        sink.close();
    }

    #[test]
    fn close_writes_what_is_queued_then_ends_the_thread() {
        let out = Collect::default();
        let sink = Sink::spawn(Box::new(out.clone()), 1 << 10, true).unwrap();
        assert!(sink.push("last words\n"));
        sink.close();
        assert!(sink.wait_written(WAIT));
        assert_eq!(out.text(), "last words\n");
        // The thread ended: its clone of the shared state is gone.
        let deadline = Instant::now() + WAIT;
        while Arc::strong_count(&sink.shared) > 1 {
            assert!(Instant::now() < deadline, "writer thread still running");
            std::thread::yield_now();
        }
    }
}
