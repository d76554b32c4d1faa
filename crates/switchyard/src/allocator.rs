//! The process's allocator, and the thread that gives the memory freed after a
//! burst back to the operating system.
//!
//! mimalloc hands pages that fall empty back to its arenas and returns them to
//! the system after a delay — but only when some thread calls into it again,
//! and a tokio worker idle after a burst never does: 2,000 slow requests left
//! about 150 MB resident long after they ended. A forced collection every few
//! seconds, from a thread of its own, returns it (to within a few MB of the
//! idle figure, 3 s after the load; see `bench/inflight.sh`). It costs nothing
//! on the request path; under load it merely decommits what has lain free
//! since the last one.

use std::time::Duration;

/// The request path allocates small objects at a high rate (headers, futures,
/// body chunks); mimalloc serves them faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often freed memory is given back.
const RETURN_EVERY: Duration = Duration::from_secs(2);

/// Starts the thread that gives freed memory back every [`RETURN_EVERY`].
#[expect(
    clippy::disallowed_methods,
    reason = "the thread that sleeps is its own, not a tokio worker"
)]
pub fn return_freed_memory() {
    let started = std::thread::Builder::new()
        .name("memory-return".into())
        .spawn(|| {
            loop {
                std::thread::sleep(RETURN_EVERY);
                collect();
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start the thread that returns freed memory");
    }
}

/// One forced collection: this thread's heap, then every arena's free pages.
#[allow(unsafe_code)]
fn collect() {
    // mimalloc skips the collection for a thread whose heap it has not set
    // up yet, and sets it up on the thread's first allocation.
    drop(std::hint::black_box(Box::new(0u64)));
    // SAFETY: `mi_collect` has no preconditions; it may be called from any
    // thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
