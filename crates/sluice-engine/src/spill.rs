//! The plan's changes, spilled to a temporary file so memory stays bounded and delivery
//! sends exactly what was planned. The file is removed when the run ends.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use sluice_core::Change;
use tempfile::NamedTempFile;

/// Writes changes one after another, each length-prefixed.
pub struct SpillWriter {
    file: BufWriter<NamedTempFile>,
    buffer: Vec<u8>,
    pub len: u64,
}

impl SpillWriter {
    /// A new spill file in `dir`, named after the sync so a later run can clean it up.
    pub fn create(dir: &Path, sync: &str) -> std::io::Result<SpillWriter> {
        std::fs::create_dir_all(dir)?;
        let file = tempfile::Builder::new().prefix(&format!("{sync}.")).suffix(".spill").tempfile_in(dir)?;
        Ok(SpillWriter { file: BufWriter::with_capacity(1 << 20, file), buffer: Vec::new(), len: 0 })
    }

    /// Appends one change.
    pub fn push(&mut self, change: &Change) -> std::io::Result<()> {
        self.buffer.clear();
        self.buffer = postcard::to_extend(change, std::mem::take(&mut self.buffer))
            .map_err(|e| std::io::Error::other(format!("cannot encode change: {e}")))?;
        self.file.write_all(&(self.buffer.len() as u32).to_le_bytes())?;
        self.file.write_all(&self.buffer)?;
        self.len += 1;
        Ok(())
    }

    /// Finishes writing and returns a reader over the changes, in order.
    pub fn finish(self) -> std::io::Result<SpillReader> {
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        let reader = file.reopen()?;
        Ok(SpillReader {
            _file: file,
            reader: BufReader::with_capacity(1 << 20, reader),
            remaining: self.len,
            buffer: Vec::new(),
        })
    }
}

/// Reads spilled changes back.
pub struct SpillReader {
    // Held so the file is deleted when reading is done.
    _file: NamedTempFile,
    reader: BufReader<File>,
    remaining: u64,
    buffer: Vec<u8>,
}

impl SpillReader {
    /// Changes not read yet.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next change, or `None` at the end.
    pub fn next_change(&mut self) -> std::io::Result<Option<Change>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let mut length = [0u8; 4];
        self.reader.read_exact(&mut length)?;
        self.buffer.resize(u32::from_le_bytes(length) as usize, 0);
        self.reader.read_exact(&mut self.buffer)?;
        self.remaining -= 1;
        postcard::from_bytes(&self.buffer)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("spill file is damaged: {e}")))
    }
}

/// Removes spill files a killed run of `sync` left behind. Call with the sync's lock held.
pub fn remove_stale(dir: &Path, sync: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let prefix = format!("{sync}.");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".spill") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::{ChangeOp, Fingerprint, Value};

    use super::*;

    #[test]
    fn changes_round_trip_in_order_and_the_file_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpillWriter::create(dir.path(), "s").unwrap();
        let changes: Vec<Change> = (0..1000)
            .map(|i| Change {
                op: if i % 2 == 0 { ChangeOp::Insert } else { ChangeOp::Delete },
                key: i.to_string(),
                fingerprint: Fingerprint(i as u128),
                values: vec![
                    Value::Int(i),
                    Value::Text(format!("name {i}")),
                    Value::Null,
                    Value::Decimal("1.50".into()),
                ],
                destination_id: (i % 3 == 0).then(|| format!("d-{i}")),
            })
            .collect();
        for change in &changes {
            writer.push(change).unwrap();
        }
        let mut reader = writer.finish().unwrap();
        let mut read = Vec::new();
        while let Some(change) = reader.next_change().unwrap() {
            read.push(change);
        }
        assert_eq!(read, changes);
        drop(reader);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn stale_spills_of_one_sync_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.123.spill"), b"x").unwrap();
        std::fs::write(dir.path().join("ab.123.spill"), b"x").unwrap();
        remove_stale(dir.path(), "a");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("ab.123.spill")]);
    }
}
