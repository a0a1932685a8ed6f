//! SQLite state store, the embedded default: one file beside the project.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use sluice_core::{ChangeOp, Fingerprint, OutcomeStatus, RequestCapture};

use crate::{
    holder_description, host_name, CommitBatch, OutcomeRecord, RunCounts, RunId, RunRecord, RunStart, RunStatus,
    StateError, StateStore, SyncLock,
};

/// A lock held from another machine whose heartbeat is older than this is free.
pub const LOCK_LEASE: Duration = Duration::from_secs(60);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
create table if not exists sluice_meta (key text primary key, value text not null);
create table if not exists snapshots (
    sync text not null,
    key text not null,
    fingerprint blob not null,
    destination_id text,
    primary key (sync, key)
) without rowid;
create table if not exists sync_targets (sync text primary key, identity text not null);
create table if not exists runs (
    id integer primary key autoincrement,
    sync text not null,
    status text not null,
    started_at integer not null,
    finished_at integer,
    inserted integer not null default 0,
    updated integer not null default 0,
    deleted integer not null default 0,
    rejected integer not null default 0,
    retryable integer not null default 0,
    unchanged integer not null default 0,
    error text
);
create index if not exists runs_by_sync on runs (sync, id);
create table if not exists outcomes (
    run_id integer not null,
    key text not null,
    op text not null,
    status text not null,
    message text
);
create index if not exists outcomes_by_run on outcomes (run_id, status);
create table if not exists request_captures (
    run_id integer not null,
    method text not null,
    url text not null,
    status integer,
    request_body text not null,
    response_body text not null,
    duration_ms integer not null,
    captured_at integer not null
);
create index if not exists request_captures_by_run on request_captures (run_id);
create table if not exists credentials (
    name text primary key,
    sealed blob not null,
    updated_at integer not null
);
create table if not exists sync_locks (
    sync text primary key,
    owner text not null,
    pid integer not null,
    process_start text,
    host text not null,
    acquired_at integer not null,
    heartbeat_at integer not null
);
";

/// The SQLite state store.
pub struct SqliteStateStore {
    path: PathBuf,
    connection: Arc<Mutex<Connection>>,
}

impl SqliteStateStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStateStore, StateError> {
        let target = format!("sqlite {}", path.display());
        let open_error = |cause: String| StateError::Open { target: target.clone(), cause };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| open_error(format!("cannot create {}: {e}", parent.display())))?;
        }
        let connection = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        connection
            .busy_timeout(Duration::from_secs(30))
            .and_then(|_| connection.pragma_update(None, "journal_mode", "wal"))
            .and_then(|_| connection.pragma_update(None, "synchronous", "normal"))
            .and_then(|_| connection.execute_batch(SCHEMA))
            .map_err(|e| open_error(e.to_string()))?;
        Ok(SqliteStateStore { path: path.to_path_buf(), connection: Arc::new(Mutex::new(connection)) })
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back), so a poisoned mutex is still safe to use.
        self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn error(&self, cause: rusqlite::Error) -> StateError {
        StateError::Query { target: self.describe(), cause: cause.to_string() }
    }
}

fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

fn from_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

/// When process `pid` started, in clock ticks since boot (field 22 of `/proc/PID/stat`), so a
/// pid reused by another process is not mistaken for the lock's holder.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19).map(str::to_string)
}

/// Whether the process that took a lock on this machine is still running.
fn holder_alive(pid: i64, started: Option<&str>) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    if let Some(started) = started {
        return process_start(pid as u32).as_deref() == Some(started);
    }
    // Signal 0 checks existence without sending anything.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

struct SqliteLock {
    connection: Arc<Mutex<Connection>>,
    sync: String,
    owner: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl SyncLock for SqliteLock {}

impl Drop for SqliteLock {
    fn drop(&mut self) {
        self.heartbeat.abort();
        let connection = self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ =
            connection.execute("delete from sync_locks where sync = ?1 and owner = ?2", params![self.sync, self.owner]);
    }
}

fn read_run(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let count = |index: usize| row.get::<_, i64>(index).map(|v| v.max(0) as u64);
    Ok(RunRecord {
        id: row.get(0)?,
        sync: row.get(1)?,
        status: RunStatus::parse(&row.get::<_, String>(2)?),
        started_at: from_millis(row.get(3)?),
        finished_at: row.get::<_, Option<i64>>(4)?.map(from_millis),
        counts: RunCounts {
            inserted: count(5)?,
            updated: count(6)?,
            deleted: count(7)?,
            rejected: count(8)?,
            retryable: count(9)?,
        },
        unchanged: count(10)?,
        error: row.get(11)?,
    })
}

const RUN_COLUMNS: &str =
    "id, sync, status, started_at, finished_at, inserted, updated, deleted, rejected, retryable, unchanged, error";

#[async_trait]
impl StateStore for SqliteStateStore {
    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }

    async fn lock(&self, sync: &str) -> Result<Box<dyn SyncLock>, StateError> {
        let pid = std::process::id();
        let host = host_name();
        let owner = format!("{host}:{pid}:{}", Utc::now().timestamp_nanos_opt().unwrap_or_default());
        {
            let mut connection = self.connection();
            let transaction = connection
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| self.error(e))?;
            let holder: Option<(i64, String, i64, i64, Option<String>)> = transaction
                .query_row(
                    "select pid, host, acquired_at, heartbeat_at, process_start from sync_locks where sync = ?1",
                    [sync],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)),
                )
                .optional()
                .map_err(|e| self.error(e))?;
            if let Some((holder_pid, holder_host, acquired_at, heartbeat_at, started)) = holder {
                // On this machine the process table is the truth, whatever the heartbeat says
                // (a long scan may delay it); elsewhere only the heartbeat's lease can tell.
                let held = if holder_host == host {
                    holder_alive(holder_pid, started.as_deref())
                } else {
                    now_millis() - heartbeat_at < LOCK_LEASE.as_millis() as i64
                };
                if held {
                    return Err(StateError::Locked {
                        sync: sync.to_string(),
                        holder: holder_description(holder_pid as u32, &holder_host, from_millis(acquired_at)),
                    });
                }
            }
            let now = now_millis();
            transaction
                .execute(
                    "insert into sync_locks (sync, owner, pid, process_start, host, acquired_at, heartbeat_at)
                     values (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                     on conflict (sync) do update set owner = excluded.owner, pid = excluded.pid,
                         process_start = excluded.process_start, host = excluded.host,
                         acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at",
                    params![sync, owner, pid, process_start(pid), host, now],
                )
                .map_err(|e| self.error(e))?;
            transaction.commit().map_err(|e| self.error(e))?;
        }
        let connection = self.connection.clone();
        let (beat_sync, beat_owner) = (sync.to_string(), owner.clone());
        let heartbeat = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
            loop {
                ticker.tick().await;
                let connection = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let _ = connection.execute(
                    "update sync_locks set heartbeat_at = ?1 where sync = ?2 and owner = ?3",
                    params![now_millis(), beat_sync, beat_owner],
                );
            }
        });
        Ok(Box::new(SqliteLock { connection: self.connection.clone(), sync: sync.to_string(), owner, heartbeat }))
    }

    async fn target_identity(&self, sync: &str) -> Result<Option<String>, StateError> {
        self.connection()
            .query_row("select identity from sync_targets where sync = ?1", [sync], |row| row.get(0))
            .optional()
            .map_err(|e| self.error(e))
    }

    async fn start_run(&self, sync: &str, target_identity: &str) -> Result<RunStart, StateError> {
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(|e| self.error(e))?;
        let interrupted = transaction
            .execute(
                "update runs set status = 'failed', finished_at = ?2,
                     error = 'interrupted: the process running it stopped before the run finished'
                 where sync = ?1 and status = 'running'",
                params![sync, now_millis()],
            )
            .map_err(|e| self.error(e))? as u64;
        let stored: Option<String> = transaction
            .query_row("select identity from sync_targets where sync = ?1", [sync], |row| row.get(0))
            .optional()
            .map_err(|e| self.error(e))?;
        let snapshot_reset = matches!(&stored, Some(identity) if identity != target_identity);
        if snapshot_reset {
            transaction.execute("delete from snapshots where sync = ?1", [sync]).map_err(|e| self.error(e))?;
        }
        transaction
            .execute(
                "insert into sync_targets (sync, identity) values (?1, ?2)
                 on conflict (sync) do update set identity = excluded.identity",
                params![sync, target_identity],
            )
            .map_err(|e| self.error(e))?;
        transaction
            .execute(
                "insert into runs (sync, status, started_at) values (?1, 'running', ?2)",
                params![sync, now_millis()],
            )
            .map_err(|e| self.error(e))?;
        let run_id = transaction.last_insert_rowid();
        transaction.commit().map_err(|e| self.error(e))?;
        Ok(RunStart { run_id, snapshot_reset, interrupted_runs: interrupted })
    }

    async fn snapshot_len(&self, sync: &str) -> Result<u64, StateError> {
        self.connection()
            .query_row("select count(*) from snapshots where sync = ?1", [sync], |row| row.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.error(e))
    }

    async fn scan_snapshot(
        &self,
        sync: &str,
        visit: &mut (dyn for<'k> FnMut(&'k str, Fingerprint) + Send),
    ) -> Result<(), StateError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached("select key, fingerprint from snapshots where sync = ?1")
            .map_err(|e| self.error(e))?;
        let mut rows = statement.query([sync]).map_err(|e| self.error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let key = row.get_ref(0).map_err(|e| self.error(e))?.as_str().map_err(|e| self.error(e.into()))?;
            let fingerprint = row.get_ref(1).map_err(|e| self.error(e))?.as_blob().map_err(|e| self.error(e.into()))?;
            visit(key, Fingerprint::from_bytes(fingerprint));
        }
        Ok(())
    }

    async fn destination_ids(
        &self,
        sync: &str,
        keys: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StateError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(
                "select destination_id from snapshots where sync = ?1 and key = ?2 and destination_id is not null",
            )
            .map_err(|e| self.error(e))?;
        let mut ids = std::collections::HashMap::new();
        for key in keys {
            if let Some(id) = statement
                .query_row(params![sync, key], |row| row.get::<_, String>(0))
                .optional()
                .map_err(|e| self.error(e))?
            {
                ids.insert(key.clone(), id);
            }
        }
        Ok(ids)
    }

    async fn commit(&self, run: RunId, sync: &str, batch: &CommitBatch) -> Result<(), StateError> {
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(|e| self.error(e))?;
        {
            let mut upsert = transaction
                .prepare_cached(
                    "insert into snapshots (sync, key, fingerprint, destination_id) values (?1, ?2, ?3, ?4)
                     on conflict (sync, key) do update set fingerprint = excluded.fingerprint,
                         destination_id = coalesce(excluded.destination_id, snapshots.destination_id)",
                )
                .map_err(|e| self.error(e))?;
            for (key, fingerprint, destination_id) in &batch.upserts {
                upsert
                    .execute(params![sync, key, &fingerprint.to_bytes()[..], destination_id])
                    .map_err(|e| self.error(e))?;
            }
            let mut delete = transaction
                .prepare_cached("delete from snapshots where sync = ?1 and key = ?2")
                .map_err(|e| self.error(e))?;
            for key in &batch.deletes {
                delete.execute(params![sync, key]).map_err(|e| self.error(e))?;
            }
            let mut outcome = transaction
                .prepare_cached("insert into outcomes (run_id, key, op, status, message) values (?1, ?2, ?3, ?4, ?5)")
                .map_err(|e| self.error(e))?;
            for record in &batch.outcomes {
                outcome
                    .execute(params![run, record.key, record.op.as_str(), record.status.as_str(), record.message])
                    .map_err(|e| self.error(e))?;
            }
            let counts = &batch.counts;
            transaction
                .execute(
                    "update runs set inserted = inserted + ?2, updated = updated + ?3, deleted = deleted + ?4,
                         rejected = rejected + ?5, retryable = retryable + ?6 where id = ?1",
                    params![
                        run,
                        counts.inserted as i64,
                        counts.updated as i64,
                        counts.deleted as i64,
                        counts.rejected as i64,
                        counts.retryable as i64
                    ],
                )
                .map_err(|e| self.error(e))?;
        }
        transaction.commit().map_err(|e| self.error(e))
    }

    async fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        unchanged: u64,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        self.connection()
            .execute(
                "update runs set status = ?2, finished_at = ?3, unchanged = ?4, error = ?5 where id = ?1",
                params![run, status.as_str(), now_millis(), unchanged as i64, error],
            )
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    async fn runs(&self, sync: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let connection = self.connection();
        let sql = format!("select {RUN_COLUMNS} from runs where (?1 is null or sync = ?1) order by id desc limit ?2");
        let mut statement = connection.prepare(&sql).map_err(|e| self.error(e))?;
        let rows = statement.query_map(params![sync, limit as i64], read_run).map_err(|e| self.error(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.error(e))
    }

    async fn run(&self, run: RunId) -> Result<Option<RunRecord>, StateError> {
        self.connection()
            .query_row(&format!("select {RUN_COLUMNS} from runs where id = ?1"), [run], read_run)
            .optional()
            .map_err(|e| self.error(e))
    }

    async fn outcomes(
        &self,
        run: RunId,
        include_applied: bool,
        limit: usize,
    ) -> Result<Vec<OutcomeRecord>, StateError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "select key, op, status, message from outcomes where run_id = ?1 and (?2 or status <> 'applied')
                 order by case status when 'applied' then 1 else 0 end, rowid limit ?3",
            )
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map(params![run, include_applied, limit as i64], |row| {
                Ok(OutcomeRecord {
                    key: row.get(0)?,
                    op: ChangeOp::parse(&row.get::<_, String>(1)?).unwrap_or(ChangeOp::Update),
                    status: OutcomeStatus::parse(&row.get::<_, String>(2)?).unwrap_or(OutcomeStatus::Retryable),
                    message: row.get(3)?,
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.error(e))
    }

    async fn load_credential(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.connection()
            .query_row("select sealed from credentials where name = ?1", [name], |row| row.get(0))
            .optional()
            .map_err(|e| self.error(e))
    }

    async fn save_credential(&self, name: &str, sealed: &[u8]) -> Result<(), StateError> {
        self.connection()
            .execute(
                "insert into credentials (name, sealed, updated_at) values (?1, ?2, ?3)
                 on conflict (name) do update set sealed = excluded.sealed, updated_at = excluded.updated_at",
                params![name, sealed, now_millis()],
            )
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    async fn save_captures(&self, run: RunId, captures: &[RequestCapture]) -> Result<(), StateError> {
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(|e| self.error(e))?;
        {
            let mut insert = transaction
                .prepare_cached(
                    "insert into request_captures (run_id, method, url, status, request_body, response_body, duration_ms, captured_at)
                     values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| self.error(e))?;
            for capture in captures {
                insert
                    .execute(params![
                        run,
                        capture.method,
                        capture.url,
                        capture.status,
                        capture.request_body,
                        capture.response_body,
                        capture.duration_ms as i64,
                        now_millis()
                    ])
                    .map_err(|e| self.error(e))?;
            }
        }
        transaction.commit().map_err(|e| self.error(e))
    }

    async fn captures(&self, run: RunId) -> Result<Vec<RequestCapture>, StateError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "select method, url, status, request_body, response_body, duration_ms from request_captures
                 where run_id = ?1 order by rowid",
            )
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([run], |row| {
                Ok(RequestCapture {
                    method: row.get(0)?,
                    url: row.get(1)?,
                    status: row.get(2)?,
                    request_body: row.get(3)?,
                    response_body: row.get(4)?,
                    duration_ms: row.get::<_, i64>(5)?.max(0) as u64,
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.error(e))
    }

    async fn prune_captures(&self, before: DateTime<Utc>) -> Result<u64, StateError> {
        self.connection()
            .execute("delete from request_captures where captured_at < ?1", [before.timestamp_millis()])
            .map(|n| n as u64)
            .map_err(|e| self.error(e))
    }

    async fn reset(&self, sync: &str) -> Result<u64, StateError> {
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(|e| self.error(e))?;
        let removed =
            transaction.execute("delete from snapshots where sync = ?1", [sync]).map_err(|e| self.error(e))?;
        transaction.execute("delete from sync_targets where sync = ?1", [sync]).map_err(|e| self.error(e))?;
        transaction.commit().map_err(|e| self.error(e))?;
        Ok(removed as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_recognised_and_a_reused_pid_is_not() {
        let me = std::process::id();
        let started = process_start(me).expect("this process has a start time");
        assert!(holder_alive(i64::from(me), Some(&started)));
        assert!(holder_alive(i64::from(me), None));
        assert!(!holder_alive(i64::from(me), Some("0")), "same pid, different start: another process");
        assert!(!holder_alive(0, None));
    }
}
