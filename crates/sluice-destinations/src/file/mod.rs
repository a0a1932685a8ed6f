//! File destination: appends one JSON line per change (`op`, `key`, `fields`).

mod config;

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
pub use config::FileConfig;
use sluice_core::{ChangeBatch, Destination, DestinationError, ErrorClass, ObjectDescription, Outcome, WriteContext};

/// Appends changes to a JSON-lines file, durably (fsync) before confirming a batch.
pub struct FileDestination {
    path: PathBuf,
    batch_size: usize,
    file: Mutex<Option<File>>,
}

impl FileDestination {
    /// A destination writing `config.path` (relative to `project_root`).
    pub fn new(config: FileConfig, project_root: &Path) -> Result<FileDestination, (&'static str, String)> {
        let batch_size = config.batch_size.unwrap_or(config::DEFAULT_BATCH_SIZE);
        if batch_size == 0 {
            return Err(("batch_size", "expected a positive number of records".into()));
        }
        if config.path.as_os_str().is_empty() {
            return Err(("path", "expected a file path".into()));
        }
        Ok(FileDestination { path: project_root.join(&config.path), batch_size, file: Mutex::new(None) })
    }

    fn io_error(&self, action: &str, error: std::io::Error) -> DestinationError {
        let class = match error.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound => ErrorClass::Config,
            _ => ErrorClass::Transient,
        };
        DestinationError::new(class, format!("cannot {action} {}: {error}", self.path.display()))
    }

    /// Opens for appending, first cutting off a partial last line a killed run may have left,
    /// so every line in the file is a whole change.
    fn open(&self) -> Result<File, DestinationError> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.io_error("create the folder of", e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| self.io_error("open", e))?;
        let length = file.metadata().map_err(|e| self.io_error("read", e))?.len();
        if length > 0 {
            let whole = last_line_end(&mut file, length).map_err(|e| self.io_error("read", e))?;
            if whole != length {
                file.set_len(whole).map_err(|e| self.io_error("repair", e))?;
            }
        }
        Ok(file)
    }
}

/// The length of the file up to and including its last newline.
fn last_line_end(file: &mut File, length: u64) -> std::io::Result<u64> {
    let mut end = length;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..size])?;
        if let Some(position) = chunk[..size].iter().rposition(|&b| b == b'\n') {
            return Ok(start + position as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[async_trait]
impl Destination for FileDestination {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn identity(&self) -> String {
        self.describe()
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    async fn discover(&self, _object: Option<&str>) -> Result<Vec<ObjectDescription>, DestinationError> {
        Ok(vec![sluice_core::open_records_object()])
    }

    async fn check(&self) -> Result<(), DestinationError> {
        self.open().map(|_| ())
    }

    async fn write(&self, _context: &WriteContext, batch: &ChangeBatch) -> Result<Vec<Outcome>, DestinationError> {
        let mut guard = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        let Some(file) = guard.as_mut() else {
            return Err(DestinationError::transient("file was not opened"));
        };
        let mut writer = BufWriter::with_capacity(1 << 20, &*file);
        let mut line = Vec::with_capacity(512);
        for change in &batch.changes {
            line.clear();
            let record = serde_json::json!({
                "op": change.op.as_str(),
                "key": change.key,
                "fields": batch.fields_json(change),
            });
            serde_json::to_writer(&mut line, &record)
                .map_err(|e| DestinationError::new(ErrorClass::Permanent, format!("cannot encode record: {e}")))?;
            line.push(b'\n');
            writer.write_all(&line).map_err(|e| self.io_error("write", e))?;
        }
        writer.flush().map_err(|e| self.io_error("write", e))?;
        drop(writer);
        // Confirm only what is on disk: a crash after this point cannot lose the batch.
        file.sync_data().map_err(|e| self.io_error("sync", e))?;
        Ok(batch.changes.iter().map(|_| Outcome::applied()).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sluice_core::{Change, ChangeOp, Fingerprint, SyncMode, Value};

    use super::*;

    fn batch() -> ChangeBatch {
        ChangeBatch {
            fields: Arc::from(vec!["id".to_string(), "email".to_string()]),
            changes: vec![
                Change {
                    op: ChangeOp::Insert,
                    key: "1".into(),
                    fingerprint: Fingerprint(1),
                    values: vec![Value::Int(1), Value::Text("a@x.io".into())],
                    destination_id: None,
                },
                Change {
                    op: ChangeOp::Delete,
                    key: "2".into(),
                    fingerprint: Fingerprint(0),
                    values: vec![],
                    destination_id: None,
                },
            ],
        }
    }

    fn context() -> WriteContext {
        WriteContext { sync: "s".into(), run_id: 1, mode: SyncMode::Mirror, object: None, capture: None, rate: None }
    }

    #[tokio::test]
    async fn writes_one_json_line_per_change() {
        let dir = tempfile::tempdir().unwrap();
        let config = FileConfig { path: "out/c.jsonl".into(), batch_size: None };
        let destination = FileDestination::new(config, dir.path()).unwrap();
        let outcomes = destination.write(&context(), &batch()).await.unwrap();
        assert_eq!(outcomes, vec![Outcome::applied(), Outcome::applied()]);
        let text = std::fs::read_to_string(dir.path().join("out/c.jsonl")).unwrap();
        assert_eq!(
            text,
            "{\"op\":\"insert\",\"key\":\"1\",\"fields\":{\"id\":1,\"email\":\"a@x.io\"}}\n{\"op\":\"delete\",\"key\":\"2\",\"fields\":{}}\n"
        );
    }

    #[tokio::test]
    async fn a_partial_last_line_from_a_crash_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.jsonl"), "{\"op\":\"insert\"}\n{\"op\":\"ins").unwrap();
        let destination =
            FileDestination::new(FileConfig { path: "c.jsonl".into(), batch_size: None }, dir.path()).unwrap();
        destination.write(&context(), &batch()).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("c.jsonl")).unwrap();
        assert!(text.starts_with("{\"op\":\"insert\"}\n{\"op\":\"insert\",\"key\":\"1\""), "{text}");
        assert_eq!(text.lines().count(), 3);
    }

    #[tokio::test]
    async fn an_unwritable_path_is_a_configuration_error() {
        let config = FileConfig { path: "/proc/nope/c.jsonl".into(), batch_size: None };
        let destination = FileDestination::new(config, Path::new("/")).unwrap();
        let error = destination.check().await.unwrap_err();
        assert!(error.message.contains("/proc/nope"), "{}", error.message);
    }
}
