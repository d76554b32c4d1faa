//! The open-descriptor limit: raised at start-up, and the default limits on
//! client connections and requests in flight sized from it, so that a spike
//! is shed with a 503 instead of running the process out of descriptors
//! (where accepting fails, upstream connects fail, and nothing is answered).

/// Descriptors set aside for all but client and upstream connections: the
/// listener, log files, DNS, health probes, shadow copies.
const RESERVED: u64 = 64;

/// The most requests in flight a default allows, however many descriptors.
const MAX_SIZED_IN_FLIGHT: u64 = 4096;

/// The most client connections a default allows, however many descriptors.
const MAX_SIZED_CONNECTIONS: u64 = 65_536;

/// The limits the configuration leaves to the descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sized {
    /// `admission.max_in_flight`.
    pub(super) max_in_flight: u32,
    /// `server.max_connections`.
    pub(super) max_connections: u32,
}

/// Raises the soft limit on open descriptors to the hard limit; the limit in
/// force.
pub(super) fn raise() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!(limit, "open file descriptor limit");
            limit
        }
        Err(e) => {
            let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
            tracing::warn!(error = %e, limit = soft, "cannot raise the open file descriptor limit");
            soft
        }
    }
}

/// Default limits for a process that may hold `descriptors` open. A request
/// in flight holds two (its client's connection and its upstream one), any
/// other client connection one; a quarter of those left after [`RESERVED`]
/// go to requests in flight, the rest to client connections, so that the
/// two limits together never need more than there are.
pub(super) fn sized(descriptors: u64) -> Sized {
    let spare = descriptors.saturating_sub(RESERVED).max(2);
    let in_flight = (spare / 4).clamp(1, MAX_SIZED_IN_FLIGHT);
    let connections = (spare - in_flight).clamp(1, MAX_SIZED_CONNECTIONS);
    Sized {
        max_in_flight: u32::try_from(in_flight).unwrap_or(u32::MAX),
        max_connections: u32::try_from(connections).unwrap_or(u32::MAX),
    }
}

/// Warns when limits set in the configuration need more descriptors than
/// the process may hold: past them, accepting and connecting upstream fail.
pub(super) fn check(descriptors: u64, max_in_flight: u32, max_connections: u32) {
    let needed = u64::from(max_in_flight) + u64::from(max_connections) + RESERVED;
    if needed > descriptors {
        tracing::warn!(
            descriptors,
            max_in_flight,
            max_connections,
            "admission.max_in_flight and server.max_connections may need more open descriptors than the limit; raise it (ulimit -n) or lower them"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_limits_together_fit_in_the_descriptors() {
        for descriptors in [0, 1, 64, 100, 256, 1024, 4096, 65_536] {
            let sized = sized(descriptors);
            assert!(sized.max_in_flight >= 1 && sized.max_connections >= 1);
            let needed = 2 * u64::from(sized.max_in_flight)
                + (u64::from(sized.max_connections) - u64::from(sized.max_in_flight));
            assert!(
                descriptors < RESERVED + 4 || needed + RESERVED <= descriptors,
                "{descriptors}: {sized:?}"
            );
        }
        assert_eq!(
            sized(1024),
            Sized {
                max_in_flight: 240,
                max_connections: 720
            }
        );
    }

    #[test]
    fn a_large_limit_keeps_the_defaults_bounded() {
        assert_eq!(
            sized(1 << 20),
            Sized {
                max_in_flight: 4096,
                max_connections: 65_536
            }
        );
    }
}
