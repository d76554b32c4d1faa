//! The watch on the config file: its directory (a Kubernetes ConfigMap
//! replaces the file by swapping the `..data` symlink in it), through
//! inotify, asking the kernel only for the events that end a change to a
//! file: a write closed, a file moved in, a file created.
//!
//! Not for every write: a SQLite store or a spill file often sits beside the
//! config, and each of their writes would be an event to read and throw away
//! (a watch that asked for every write, as the `notify` crate's does, woke
//! its thread on most requests under load). Events are read by the reload
//! task itself, with no thread of their own; a change is reported once the
//! directory has been quiet for the debounce.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt as _;
use inotify::{EventStream, Inotify, WatchMask};

/// What ends a change to a file in the directory.
const CHANGES: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::CREATE);

/// Room for the events of one read (each is 16 bytes and the file's name).
const EVENT_BUFFER: usize = 4096;

/// The config file's directory, watched.
pub(super) struct Watch {
    events: EventStream<Vec<u8>>,
    /// The config file's name.
    name: OsString,
    debounce: Duration,
}

impl Watch {
    /// Watches the directory of `file`. `None`, logged, when it cannot be
    /// watched (SIGHUP and the admin API still reload).
    pub(super) fn start(file: &Path, debounce: Duration) -> Option<Self> {
        let dir: PathBuf = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        let started = Inotify::init().and_then(|inotify| {
            inotify.watches().add(&dir, CHANGES)?;
            inotify.into_event_stream(vec![0; EVENT_BUFFER])
        });
        match started {
            Ok(events) => Some(Self {
                events,
                name: file.file_name().map(OsString::from).unwrap_or_default(),
                debounce,
            }),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "the config file's directory cannot be watched; reload with SIGHUP or POST /admin/reload");
                None
            }
        }
    }

    /// Waits for a change to the config file (or the `..data` symlink), then
    /// for the debounce to pass without another. Never resolves once the
    /// watch has failed (logged).
    pub(super) async fn changed(&mut self) {
        if !self.next_ours().await {
            return std::future::pending().await;
        }
        // Quiet for the debounce: an editor's or a ConfigMap's change is
        // several events; the reload reads the file once they are over. Only
        // the file's own events restart the wait: a store written beside it
        // all the time must not put the reload off.
        while let Ok(true) = tokio::time::timeout(self.debounce, self.next_ours()).await {}
    }

    /// Waits for the next event about the config file; `false` once the
    /// watch has failed (logged) or ended.
    async fn next_ours(&mut self) -> bool {
        loop {
            match self.events.next().await {
                Some(Ok(event)) if self.ours(event.name.as_deref()) => return true,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the config file's watch failed; reload with SIGHUP or POST /admin/reload");
                    return false;
                }
                None => return false,
            }
        }
    }

    /// Whether an event about `name` (the directory's own events have none;
    /// a queue overflow is one of those, and may hide a change) is ours.
    fn ours(&self, name: Option<&std::ffi::OsStr>) -> bool {
        name.is_none_or(|n| n == self.name || n == "..data")
    }
}

/// The next change of `watch` (never, without one).
pub(super) async fn next_change(watch: &mut Option<Watch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file in a directory of its own, and its watch.
    fn watched(debounce: Duration) -> (tempfile::TempDir, PathBuf, Watch) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchyard.yaml");
        std::fs::write(&file, "a: 1\n").unwrap();
        let watch = Watch::start(&file, debounce).unwrap();
        (dir, file, watch)
    }

    #[tokio::test]
    async fn a_write_beside_the_file_is_not_a_change_and_a_rename_onto_it_is() {
        let (dir, file, mut watch) = watched(Duration::from_millis(50));
        let quiet = Duration::from_millis(300);

        // A store beside it, written all the time while kept open.
        let mut store = std::fs::File::create(dir.path().join("switchyard.db-wal")).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..100 {
            std::io::Write::write_all(&mut store, b"page").unwrap();
        }
        assert!(tokio::time::timeout(quiet, watch.changed()).await.is_err());

        // The file written in place.
        std::fs::write(&file, "a: 2\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("a write of the file is a change");

        // A new version renamed onto it, as editors and ConfigMaps do.
        let next = dir.path().join(".switchyard.yaml.tmp");
        std::fs::write(&next, "a: 3\n").unwrap();
        // The temporary file's own events are not ours.
        assert!(tokio::time::timeout(quiet, watch.changed()).await.is_err());
        std::fs::rename(&next, &file).unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("a rename onto the file is a change");
    }

    #[tokio::test]
    async fn a_neighbour_written_all_the_time_does_not_put_a_change_off() {
        let (dir, file, mut watch) = watched(Duration::from_millis(100));
        // A spill file opened, appended to and closed every 20 ms: a closed
        // write each time, well within the debounce.
        let spill = dir.path().join("usage.spill");
        let writing = tokio::spawn(async move {
            loop {
                std::fs::write(&spill, b"record\n").unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        std::fs::write(&file, "a: 2\n").unwrap();
        let took = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("the change is reported while the neighbour goes on writing");
        assert!(
            took.elapsed() < Duration::from_secs(2),
            "{:?}",
            took.elapsed()
        );
        writing.abort();
    }
}
