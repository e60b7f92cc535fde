//! Standard output for the commands: everything they print goes through
//! here ([`outln!`](crate::outln), [`out!`](crate::out)), never `println!`,
//! so a reader that goes away (`orchestrator sessions show ID | head`) ends
//! the output quietly, as `ls | head` does, instead of panicking.
//!
//! After the first failed write nothing more is written; [`reader_gone`]
//! tells `main` to exit with 141 (what a shell reports for SIGPIPE), and
//! [`closed`] lets a running session stop after its current turn.

use std::io::{ErrorKind, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// The exit code of a command whose reader went away (128 + SIGPIPE).
pub const EXIT_READER_GONE: u8 = 141;

/// Whether a write failed: nothing more is written.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether the failure was the reader going away (a broken pipe).
static READER_GONE: AtomicBool = AtomicBool::new(false);

/// Tells waiters that output is closed.
fn closed_signal() -> &'static watch::Sender<bool> {
    static SIGNAL: OnceLock<watch::Sender<bool>> = OnceLock::new();
    SIGNAL.get_or_init(|| watch::channel(false).0)
}

/// Writes `text` as it is, in one piece; after a failed write, nothing.
pub fn write(text: &str) {
    if CLOSED.load(Ordering::Acquire) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let result = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if let Err(error) = result {
        close(&error);
    }
}

/// Writes `text` and a newline.
pub fn line(text: &str) {
    write(&format!("{text}\n"));
}

/// Marks output closed after `error`; only a failure other than the reader
/// going away is worth a word on stderr.
fn close(error: &std::io::Error) {
    if CLOSED.swap(true, Ordering::AcqRel) {
        return;
    }
    if error.kind() == ErrorKind::BrokenPipe {
        READER_GONE.store(true, Ordering::Release);
    } else {
        eprintln!("error: cannot write to standard output: {error}");
    }
    closed_signal().send_replace(true);
}

/// Whether standard output's reader went away (the command should exit
/// with [`EXIT_READER_GONE`], saying nothing).
pub fn reader_gone() -> bool {
    READER_GONE.load(Ordering::Acquire)
}

/// Resolves once output is closed (at once if it already is).
pub async fn closed() {
    let mut receiver = closed_signal().subscribe();
    // The sender lives in a static: `wait_for` can only end when it is true.
    let _ = receiver.wait_for(|closed| *closed).await;
}

/// Prints a formatted line through [`stdout::line`](crate::stdout::line).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stdout::line("")
    };
    ($($arg:tt)*) => {
        $crate::stdout::line(&format!($($arg)*))
    };
}

/// Prints formatted text through [`stdout::write`](crate::stdout::write).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write(&format!($($arg)*))
    };
}
