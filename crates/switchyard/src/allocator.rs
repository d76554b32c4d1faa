//! The process's allocator, and giving the memory freed after a burst back
//! to the operating system.
//!
//! mimalloc keeps the pages of each thread's heap with that thread: a page
//! whose blocks were all freed goes back to the shared arenas (and from there,
//! after a short delay, to the system) only when its own thread next calls
//! into the allocator's slower paths — and a tokio worker idle after a burst
//! never does. 2,000 slow requests left about 150 MB resident long after they
//! ended. So each worker, when it runs out of work, collects its heap and
//! purges the arenas, at most once per [`COLLECT_EVERY`]: the cost falls only
//! on a thread that has nothing else to do, never on a request.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The request path allocates small objects at a high rate (headers, futures,
/// body chunks); mimalloc serves them faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often at most a worker collects.
const COLLECT_EVERY: Duration = Duration::from_secs(2);

thread_local! {
    /// When this thread last collected.
    static COLLECTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// For the runtime's `on_thread_park`: called by a worker about to sleep for
/// want of work, it collects if it has not lately.
pub fn on_worker_idle() {
    let now = Instant::now();
    let due = COLLECTED.with(|last| {
        let due = last
            .get()
            .is_none_or(|at| now.saturating_duration_since(at) >= COLLECT_EVERY);
        if due {
            last.set(Some(now));
        }
        due
    });
    if due {
        collect();
    }
}

/// One forced collection: this thread's heap (pages whose blocks were all
/// freed, by this thread or others, go back to the arenas), then the arenas'
/// free pages back to the system.
#[allow(unsafe_code)]
fn collect() {
    // SAFETY: `mi_collect` has no preconditions; any thread may call it at
    // any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
