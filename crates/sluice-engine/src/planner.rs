//! The planner: streams the model, fingerprints each row and diffs it against the snapshot.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arrow_schema::Schema;
use futures::StreamExt;
use sluice_core::{value_at, AssociationTarget, Change, ChangeOp, FieldSpec, Fingerprint, ScanOptions, SyncMode};

use crate::fingerprint::{key_hash, RowHasher};
use crate::spill::{SpillReader, SpillWriter};
use crate::{EngineError, Progress, SyncJob};

/// Samples kept per kind of change, for `sluice plan` and summaries.
const SAMPLES_PER_OP: usize = 5;
/// Example keys quoted in duplicate- or null-key errors.
const EXAMPLE_KEYS: usize = 5;

/// What the diff found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanCounts {
    /// Model rows read.
    pub rows: u64,
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    /// Rows whose fingerprint matches the snapshot.
    pub unchanged: u64,
    /// Changed rows the sync's mode does not send (updates in `insert` mode).
    pub skipped: u64,
}

impl PlanCounts {
    /// Changes to deliver.
    pub fn changes(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }
}

/// A computed plan: counts, a few sample changes and, for runs, the spilled changes.
pub struct Plan {
    pub counts: PlanCounts,
    /// Destination fields in mapping order, with the model column types.
    pub fields: Vec<FieldSpec>,
    /// The destination field fed by the primary key, if mapped.
    pub key_field: Option<String>,
    pub samples: Vec<Change>,
    pub(crate) spill: Option<SpillReader>,
}

impl Plan {
    /// Field names in mapping order, shared by every batch.
    pub fn field_names(&self) -> Arc<[String]> {
        self.fields.iter().map(|f| f.name.clone()).collect()
    }
}

/// A hasher for keys that are already uniformly distributed hashes.
#[derive(Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

type KeySet = HashSet<u128, BuildHasherDefault<PassThroughHasher>>;

/// The snapshot as a sorted array of (key hash, fingerprint): 32 bytes a record, so 10M
/// records fit in about 320 MB. Keys themselves stay in the state store.
struct SnapshotIndex {
    entries: Vec<(u128, Fingerprint)>,
    seen: Vec<u64>,
    seen_count: u64,
}

impl SnapshotIndex {
    async fn load(job: &SyncJob<'_>, use_snapshot: bool) -> Result<SnapshotIndex, EngineError> {
        let mut entries = Vec::new();
        if use_snapshot {
            entries.reserve(job.store.snapshot_len(job.sync).await? as usize);
            job.store
                .scan_snapshot(job.sync, &mut |key, fingerprint| entries.push((key_hash(key), fingerprint)))
                .await?;
            entries.sort_unstable_by_key(|entry| entry.0);
        }
        let words = entries.len().div_ceil(64);
        Ok(SnapshotIndex { entries, seen: vec![0; words], seen_count: 0 })
    }

    fn find(&self, hash: u128) -> Option<usize> {
        self.entries.binary_search_by_key(&hash, |entry| entry.0).ok()
    }

    fn is_seen(&self, index: usize) -> bool {
        self.seen[index / 64] & (1 << (index % 64)) != 0
    }

    /// Marks a snapshot entry as present in the model; false if it already was.
    fn mark_seen(&mut self, index: usize) -> bool {
        if self.is_seen(index) {
            return false;
        }
        self.seen[index / 64] |= 1 << (index % 64);
        self.seen_count += 1;
        true
    }
}

/// Key problems found while scanning; reported together after the scan.
#[derive(Default)]
struct KeyProblems {
    duplicates: u64,
    duplicate_examples: Vec<String>,
    nulls: u64,
}

/// Diffs the model against the snapshot. With `spill`, the changes are written to a spill
/// file for delivery; without it (a dry run), only counts and samples are kept.
pub async fn plan(
    job: &SyncJob<'_>,
    use_snapshot: bool,
    spill: bool,
    progress: &dyn Progress,
) -> Result<Plan, EngineError> {
    let source_error =
        |error| EngineError::Source { model: job.model.to_string(), source_name: job.source.describe(), error };
    let mut index = SnapshotIndex::load(job, use_snapshot).await?;
    let mut stream = job
        .source
        .scan(job.query, ScanOptions { batch_rows: job.batch_rows, limit: None })
        .await
        .map_err(source_error)?;
    let schema = stream.schema.clone();
    let (key_column, columns) = resolve_columns(job, &schema)?;
    let fields: Vec<FieldSpec> = columns
        .iter()
        .map(|(name, column)| FieldSpec { name: name.clone(), data_type: schema.field(*column).data_type().clone() })
        .collect();
    let key_field = columns.iter().find(|(_, column)| *column == key_column).map(|(name, _)| name.clone());

    let mut writer = if spill {
        Some(SpillWriter::create(&job.spill_dir, job.sync).map_err(|e| spill_error(&job.spill_dir, e))?)
    } else {
        None
    };
    let mut counts = PlanCounts::default();
    let mut samples: Vec<Change> = Vec::new();
    let mut new_keys = KeySet::default();
    let mut problems = KeyProblems::default();
    let mut emit = |change: Change, counts: &mut PlanCounts| -> Result<(), EngineError> {
        match change.op {
            ChangeOp::Insert => counts.inserts += 1,
            ChangeOp::Update => counts.updates += 1,
            ChangeOp::Delete => counts.deletes += 1,
        }
        if samples.iter().filter(|s| s.op == change.op).count() < SAMPLES_PER_OP {
            samples.push(change.clone());
        }
        if let Some(writer) = writer.as_mut() {
            writer.push(&change).map_err(|e| spill_error(&job.spill_dir, e))?;
        }
        Ok(())
    };

    while let Some(batch) = stream.batches.next().await {
        let batch = batch.map_err(source_error)?;
        let arrays = batch.columns();
        let mut hasher = RowHasher::new(
            columns.iter().map(|(name, column)| (name.as_str(), schema.field(*column), &arrays[*column])).collect(),
            (schema.field(key_column), &arrays[key_column]),
        );
        for row in 0..batch.num_rows() {
            counts.rows += 1;
            let Some(hash) = hasher.key_hash(row) else {
                problems.nulls += 1;
                continue;
            };
            let fingerprint = hasher.fingerprint(row);
            let is_new = match index.find(hash) {
                Some(position) => {
                    if !index.mark_seen(position) {
                        problems.duplicate(hasher.key(row).unwrap_or_default());
                        continue;
                    }
                    if index.entries[position].1 == fingerprint {
                        counts.unchanged += 1;
                        continue;
                    }
                    false
                }
                None => {
                    if !new_keys.insert(hash) {
                        problems.duplicate(hasher.key(row).unwrap_or_default());
                        continue;
                    }
                    true
                }
            };
            let op = match (job.mode, is_new) {
                (SyncMode::Insert, false) => {
                    counts.skipped += 1;
                    continue;
                }
                (SyncMode::Update, _) => ChangeOp::Update,
                (_, true) => ChangeOp::Insert,
                (_, false) => ChangeOp::Update,
            };
            let key = hasher.key(row).unwrap_or_default();
            let values = columns
                .iter()
                .map(|(_, column)| value_at(schema.field(*column), arrays[*column].as_ref(), row))
                .collect();
            emit(Change { op, key, fingerprint, values, destination_id: None }, &mut counts)?;
        }
        progress.scanned(counts.rows);
    }
    problems.check(job)?;

    let unseen = index.entries.len() as u64 - index.seen_count;
    if job.mode.removes_leavers() && unseen > 0 {
        let mut failure = None;
        job.store
            .scan_snapshot(job.sync, &mut |key, _| {
                if failure.is_some() {
                    return;
                }
                if let Some(position) = index.find(key_hash(key)) {
                    if !index.is_seen(position) {
                        index.mark_seen(position);
                        let change = Change {
                            op: ChangeOp::Delete,
                            key: key.to_string(),
                            fingerprint: Fingerprint(0),
                            values: Vec::new(),
                            destination_id: None,
                        };
                        if let Err(error) = emit(change, &mut counts) {
                            failure = Some(error);
                        }
                    }
                }
            })
            .await?;
        if let Some(error) = failure {
            return Err(error);
        }
    }
    let spill = match writer {
        Some(writer) => Some(writer.finish().map_err(|e| spill_error(&job.spill_dir, e))?),
        None => None,
    };
    Ok(Plan { counts, fields, key_field, samples, spill })
}

impl KeyProblems {
    fn duplicate(&mut self, key: String) {
        self.duplicates += 1;
        if self.duplicate_examples.len() < EXAMPLE_KEYS && !self.duplicate_examples.contains(&key) {
            self.duplicate_examples.push(key);
        }
    }

    fn check(&self, job: &SyncJob<'_>) -> Result<(), EngineError> {
        let mut messages = Vec::new();
        if self.duplicates > 0 {
            messages.push(format!(
                "primary key `{}` is not unique: {} extra row(s) repeat a key, for example {}; nothing was sent. \
                 Make the key unique in the model (for example with GROUP BY or DISTINCT ON)",
                job.primary_key,
                self.duplicates,
                self.duplicate_examples.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ")
            ));
        }
        if self.nulls > 0 {
            messages.push(format!(
                "primary key `{}` is null in {} row(s); nothing was sent. Filter them out or pick another key",
                job.primary_key, self.nulls
            ));
        }
        if messages.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Model { model: job.model.to_string(), message: messages.join("; ") })
        }
    }
}

/// Finds the key column and the mapped columns in the model's schema.
fn resolve_columns(job: &SyncJob<'_>, schema: &Schema) -> Result<(usize, Vec<(String, usize)>), EngineError> {
    let available = || schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
    let column = |name: &str| schema.index_of(name).ok();
    let key_column = column(job.primary_key).ok_or_else(|| EngineError::Model {
        model: job.model.to_string(),
        message: format!(
            "primary_key `{}` is not a column of the model; its columns are: {}",
            job.primary_key,
            available()
        ),
    })?;
    let mut columns: Vec<(String, usize)> = match job.mapping {
        None => schema.fields().iter().enumerate().map(|(index, field)| (field.name().clone(), index)).collect(),
        Some(mapping) => {
            let mut resolved = Vec::with_capacity(mapping.len());
            for (field, model_column) in mapping {
                let index = column(model_column).ok_or_else(|| EngineError::Model {
                    model: job.model.to_string(),
                    message: format!(
                        "sync `{}` maps `{field}` from column `{model_column}`, which the model does not have; its columns are: {}",
                        job.sync,
                        available()
                    ),
                })?;
                resolved.push((field.clone(), index));
            }
            resolved
        }
    };
    // The match field is sent (and fingerprinted) like any mapped field.
    if let Some((field, model_column)) = job.match_on {
        let index = column(model_column).ok_or_else(|| EngineError::Model {
            model: job.model.to_string(),
            message: format!(
                "sync `{}` matches on `{field}` from column `{model_column}`, which the model does not have; its columns are: {}",
                job.sync,
                available()
            ),
        })?;
        if !columns.iter().any(|(name, _)| name == field) {
            columns.push((field.to_string(), index));
        }
    }
    // Association values travel (and are fingerprinted) as fields of their own.
    for (object, field, model_column) in job.associations {
        let index = column(model_column).ok_or_else(|| EngineError::Model {
            model: job.model.to_string(),
            message: format!(
                "sync `{}` links to {object} by `{field}` from column `{model_column}`, which the model does not have; its columns are: {}",
                job.sync,
                available()
            ),
        })?;
        columns.push((AssociationTarget::value_field_name(object, field), index));
    }
    Ok((key_column, columns))
}

fn spill_error(dir: &std::path::Path, error: std::io::Error) -> EngineError {
    EngineError::Io(format!("cannot write the run's spill file in {}: {error}", dir.display()))
}
