//! The log writer: every log line (access lines, bodies lines and the
//! subscriber's events) is appended to a buffer of the thread that made it,
//! and one writer thread writes the buffers to stderr in batches.
//!
//! A line costs its thread an uncontended lock and a copy: no wake-up, no
//! system call. The writer thread wakes every [`FLUSH_INTERVAL`], or sooner
//! when a buffer holds [`WAKE_AT`] bytes, and writes each buffer in one
//! `write`; a burst of a thousand requests is a handful of writes, where a
//! line-per-message channel made the writer thread wake (and write) once per
//! line. Lines are never dropped: a thread whose buffer holds
//! [`BUFFER_LIMIT`] bytes waits for the writer. Each line is appended whole,
//! so lines never interleave; lines of different threads may leave a few
//! milliseconds out of order (each carries its time).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line waits in its buffer at most before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// Bytes in one buffer that wake the writer before its interval is over.
const WAKE_AT: usize = 64 << 10;

/// Bytes in one buffer past which its thread waits for the writer.
const BUFFER_LIMIT: usize = 1 << 20;

/// How long the process's end waits for the last lines to be written.
const LAST_WRITE: Duration = Duration::from_secs(2);

/// How often a thread whose buffer is full looks again for room.
const ROOM_POLL: Duration = Duration::from_millis(1);

/// A buffer emptied by the writer keeps this much room for the next lines;
/// one grown past it by a burst gives the memory back.
const KEEP_CAPACITY: usize = 128 << 10;

/// Where a thread appends its lines: one buffer per thread that logs, up to
/// [`SHARDS`] (threads past that share them).
const SHARDS: usize = 16;

/// The lines of the threads given this shard, padded to a cache line pair so
/// that two workers' appends never share one.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Vec<u8>>);

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // Nothing panics while holding it; a poisoned buffer still holds
        // whole lines.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the threads that log and the writer thread share.
pub(super) struct Shared {
    shards: Box<[Shard]>,
    /// The writer's wake-up call: set by a thread that found its buffer past
    /// [`WAKE_AT`] (once per call), or by the guard at the end.
    wake: Mutex<bool>,
    woken: Condvar,
    /// A wake-up is already asked for: a thread past [`WAKE_AT`] then makes
    /// no system call of its own.
    wake_asked: AtomicBool,
    stopping: AtomicBool,
}

/// The next shard handed to a thread that logs for the first time.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// How lines reach stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Gathered and written in batches by the writer thread: for the
    /// gateway and the mock, where a line must cost a request no system call.
    Batched,
    /// Written at once, each line in one `write`: for one-shot commands,
    /// whose log lines must keep their place among what they print.
    Direct,
}

/// The handle lines are appended through (cheap to clone). Also the
/// subscriber's [`MakeWriter`]: each event is one `write_all` of a whole line.
#[derive(Clone)]
pub(super) enum LogWriter {
    /// To the writer thread's buffers.
    Batched(Arc<Shared>),
    /// Straight to the output, one line at a time.
    Direct(Arc<Mutex<dyn Write + Send>>),
}

/// Writes what is left and stops the writer thread when dropped: keep it
/// alive until the process exits.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    batched: Option<(Arc<Shared>, JoinHandle<()>)>,
}

impl LogWriter {
    /// A writer of `delivery` to `out`, and its guard.
    pub(super) fn new(delivery: Delivery, out: impl Write + Send + 'static) -> (Self, LogGuard) {
        match delivery {
            Delivery::Batched => Self::start(out),
            Delivery::Direct => (
                Self::Direct(Arc::new(Mutex::new(out))),
                LogGuard { batched: None },
            ),
        }
    }

    /// Starts the writer thread, writing to `out`; should the thread not
    /// start, lines are written at once instead (never left to fill the
    /// buffers of a writer that is not there).
    pub(super) fn start(out: impl Write + Send + 'static) -> (Self, LogGuard) {
        let out: Arc<Mutex<dyn Write + Send>> = Arc::new(Mutex::new(out));
        let shared = Arc::new(Shared {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            wake: Mutex::new(false),
            woken: Condvar::new(),
            wake_asked: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        });
        let writer = Arc::clone(&shared);
        let thread_out = Arc::clone(&out);
        let started = std::thread::Builder::new()
            .name("switchyard-log".into())
            .spawn(move || write_until_stopped(&writer, &thread_out));
        match started {
            Ok(thread) => {
                let guard = LogGuard {
                    batched: Some((Arc::clone(&shared), thread)),
                };
                (Self::Batched(shared), guard)
            }
            Err(_) => (Self::Direct(out), LogGuard { batched: None }),
        }
    }

    /// Appends what `line` writes to this thread's buffer, whole (or, direct,
    /// writes it).
    pub(super) fn append(&self, line: impl FnOnce(&mut Vec<u8>)) {
        let shared = match self {
            Self::Batched(shared) => shared,
            Self::Direct(out) => {
                let mut text = Vec::new();
                line(&mut text);
                // A failed write to stderr has nowhere to be told.
                let _ = out
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .write_all(&text);
                return;
            }
        };
        let shard = &shared.shards[SHARD.try_with(|s| *s).unwrap_or(0)];
        let mut buf = shard.lock();
        while buf.len() >= BUFFER_LIMIT && !shared.stopping.load(Ordering::Relaxed) {
            drop(buf);
            shared.ask_wake();
            wait_for_room();
            buf = shard.lock();
        }
        line(&mut buf);
        let full = buf.len() >= WAKE_AT;
        drop(buf);
        if full {
            shared.ask_wake();
        }
    }
}

/// Only when stderr cannot keep up: the thread (a tokio worker, often)
/// waits rather than a line be dropped; also the process's end, waiting for
/// the writer's last pass.
#[allow(clippy::disallowed_methods)]
fn wait_for_room() {
    std::thread::sleep(ROOM_POLL);
}

impl Shared {
    /// Wakes the writer now, unless that is already asked for.
    fn ask_wake(&self) {
        if !self.wake_asked.swap(true, Ordering::AcqRel) {
            *self.wake.lock().unwrap_or_else(PoisonError::into_inner) = true;
            self.woken.notify_one();
        }
    }
}

/// The writer thread: every [`FLUSH_INTERVAL`] (or when woken), takes each
/// buffer's lines and writes them, until the guard is dropped; then writes
/// what is left.
fn write_until_stopped(shared: &Shared, out: &Mutex<dyn Write + Send>) {
    // Only this thread writes to it while batching: the lock is uncontended.
    let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
    let mut taken = Vec::new();
    loop {
        {
            let wake = shared.wake.lock().unwrap_or_else(PoisonError::into_inner);
            let mut wake = shared
                .woken
                .wait_timeout_while(wake, FLUSH_INTERVAL, |woken| !*woken)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            *wake = false;
        }
        shared.wake_asked.store(false, Ordering::Release);
        let stopping = shared.stopping.load(Ordering::Acquire);
        for shard in &shared.shards {
            std::mem::swap(&mut *shard.lock(), &mut taken);
            if !taken.is_empty() {
                // A failed write to stderr has nowhere to be told.
                let _ = out.write_all(&taken);
            }
            taken.clear();
            if taken.capacity() > KEEP_CAPACITY {
                taken = Vec::new();
            }
        }
        let _ = out.flush();
        if stopping {
            return;
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some((shared, thread)) = self.batched.take() else {
            return;
        };
        shared.stopping.store(true, Ordering::Release);
        shared.wake_asked.store(false, Ordering::Release);
        shared.ask_wake();
        // A stderr that does not take writes (a stalled pipe) must not keep
        // the process from exiting: the last lines get a while, not forever.
        let deadline = std::time::Instant::now() + LAST_WRITE;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            wait_for_room();
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// One event's writer for the subscriber: appends each write whole.
pub(super) struct EventWriter<'a>(&'a LogWriter);

impl Write for EventWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.append(|buf| buf.extend_from_slice(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what the writer thread writes, one entry per `write`.
    #[derive(Clone, Default)]
    struct Collected(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Collected {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_of_many_threads_are_written_whole_in_few_writes() {
        let out = Collected::default();
        let (writer, guard) = LogWriter::start(out.clone());
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let writer = writer.clone();
                scope.spawn(move || {
                    for n in 0..1000 {
                        writer.append(|buf| {
                            buf.extend_from_slice(format!("thread={thread} n={n}\n").as_bytes())
                        });
                    }
                });
            }
        });
        drop(guard);
        let writes = out.0.lock().unwrap().clone();
        let text = String::from_utf8(writes.concat()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4000);
        for thread in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("thread={thread} ")))
                .collect();
            let expected: Vec<String> = (0..1000)
                .map(|n| format!("thread={thread} n={n}"))
                .collect();
            assert_eq!(mine, expected, "one thread's lines, whole and in order");
        }
        assert!(writes.len() < 100, "{} writes for 4000 lines", writes.len());
    }

    #[test]
    fn a_line_is_written_within_the_interval_without_a_wake_up() {
        let out = Collected::default();
        let (writer, _guard) = LogWriter::start(out.clone());
        writer.append(|buf| buf.extend_from_slice(b"one line\n"));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.0.lock().unwrap().concat(), b"one line\n");
    }

    #[test]
    fn direct_lines_are_written_at_once_each_in_one_write() {
        let out = Collected::default();
        let (writer, _guard) = LogWriter::new(Delivery::Direct, out.clone());
        writer.append(|buf| buf.extend_from_slice(b"first\n"));
        writer.append(|buf| buf.extend_from_slice(b"second\n"));
        assert_eq!(
            *out.0.lock().unwrap(),
            [b"first\n".to_vec(), b"second\n".to_vec()]
        );
    }

    #[test]
    fn a_full_buffer_waits_for_the_writer_and_loses_nothing() {
        let out = Collected::default();
        let (writer, guard) = LogWriter::start(out.clone());
        let line = vec![b'x'; 64 << 10];
        for _ in 0..(3 * BUFFER_LIMIT / line.len()) {
            writer.append(|buf| {
                buf.extend_from_slice(&line);
                buf.push(b'\n');
            });
        }
        drop(guard);
        let written: usize = out.0.lock().unwrap().iter().map(Vec::len).sum();
        assert_eq!(written, 3 * BUFFER_LIMIT / line.len() * (line.len() + 1));
    }
}
