//! The spill file: usage records the store could not take yet, one JSON object
//! per line, appended by the writer and read back once the store answers.
//!
//! Only the writer's task touches the file, one step at a time, so it is read
//! from where the last read ended while appends go on at its end; once read to
//! the end and written to the store it is removed. A record read back twice
//! (the process stopped between the store's commit and the file's removal) is
//! stored once: the store skips ids it has.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::PathBuf;

use switchyard_store::UsageRecord;

/// The spill file at `path`.
#[derive(Debug, Clone)]
pub(super) struct Spill {
    path: PathBuf,
}

/// Records read back, and where the next read starts.
#[derive(Debug)]
pub(super) struct ReadBack {
    pub(super) records: Vec<UsageRecord>,
    /// The offset after the last line read.
    pub(super) next: u64,
    /// Lines that were not a record (a line cut short when the process died).
    pub(super) unreadable: u64,
    /// The file was read to its end.
    pub(super) at_end: bool,
}

impl Spill {
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Where it is, for logs.
    pub(super) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends `records` (each serialized as a [`UsageRecord`] is) and syncs
    /// the file to disk.
    pub(super) fn append(&self, records: &[impl serde::Serialize]) -> io::Result<()> {
        let mut out = Vec::with_capacity(records.len() * 512);
        for record in records {
            serde_json::to_writer(&mut out, record)?;
            out.push(b'\n');
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&out)?;
        file.sync_data()
    }

    /// Whether there is anything to read back from `offset` on.
    pub(super) fn pending(&self, offset: u64) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.len() > offset)
    }

    /// Up to `max` records from `offset` on.
    pub(super) fn read(&self, offset: u64, max: usize) -> io::Result<ReadBack> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut reader = BufReader::new(file);
        let mut back = ReadBack {
            records: Vec::new(),
            next: offset,
            unreadable: 0,
            at_end: false,
        };
        let mut line = Vec::new();
        while back.records.len() < max {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                back.at_end = true;
                break;
            }
            back.next += n as u64;
            match serde_json::from_slice::<UsageRecord>(&line) {
                Ok(record) => back.records.push(record),
                Err(_) => back.unreadable += 1,
            }
        }
        if !back.at_end {
            back.at_end = reader.fill_buf()?.is_empty();
        }
        Ok(back)
    }

    /// Removes the file, all of it having been written to the store.
    pub(super) fn remove(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> UsageRecord {
        let even = n.is_multiple_of(2);
        UsageRecord {
            id: format!("{n:032x}"),
            at: 1_000,
            request_id: format!("req-{n}"),
            key_id: even.then(|| format!("key-{n}")),
            key_name: even.then(|| "k".into()),
            team_id: n.is_multiple_of(3).then(|| "team".into()),
            tags: vec!["t".into()],
            endpoint: "chat_completions".into(),
            model: "m".into(),
            provider: "p".into(),
            deployment: "p/m".into(),
            status: 200,
            error_type: None,
            input_tokens: 1,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            output_tokens: 2,
            cost_micros: 3,
            saved_micros: 0,
            cost_estimated: false,
            latency_us: 10,
            ttft_us: (!even).then_some(7),
            attempts: 1,
            cache: even.then(|| "miss".into()),
            route: (!even).then(|| "p/m=ok".into()),
            stream: even,
        }
    }

    #[test]
    fn records_come_back_in_order_across_reads_and_appends() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let spill = Spill::new(dir.path().join("spill.jsonl"));
        assert!(!spill.pending(0));
        spill.append(&(0..5).map(record).collect::<Vec<_>>())?;
        let first = spill.read(0, 3)?;
        assert_eq!(first.records, (0..3).map(record).collect::<Vec<_>>());
        assert!(!first.at_end);
        // The writer appends its rows: read back as the records they borrow from.
        let (five, six) = (record(5), record(6));
        spill.append(&[five.row(), six.row()])?;
        let rest = spill.read(first.next, 10)?;
        assert_eq!(rest.records, (3..7).map(record).collect::<Vec<_>>());
        assert!(rest.at_end);
        assert!(!spill.pending(rest.next));
        spill.remove()?;
        spill.remove()?;
        assert!(!spill.pending(0));
        Ok(())
    }

    #[test]
    fn a_line_cut_short_is_counted_and_skipped() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let spill = Spill::new(dir.path().join("spill.jsonl"));
        spill.append(&[record(1)])?;
        OpenOptions::new()
            .append(true)
            .open(spill.path())?
            .write_all(b"{\"id\":\"00\n")?;
        spill.append(&[record(2)])?;
        let back = spill.read(0, 10)?;
        assert_eq!(back.records, vec![record(1), record(2)]);
        assert_eq!(back.unreadable, 1);
        Ok(())
    }
}
