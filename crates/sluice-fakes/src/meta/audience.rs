//! Upload payloads and sessions as Meta documents them, and audience membership.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Audience, Session};

/// One member as uploaded: schema key → value, blanks left out.
pub type Row = BTreeMap<String, String>;

/// The multi-key schema keys Meta lists for `/users` and `/usersreplace`.
pub const IDENTIFIER_KEYS: [&str; 15] = [
    "EXTERN_ID",
    "EMAIL",
    "PHONE",
    "GEN",
    "DOBY",
    "DOBM",
    "DOBD",
    "LN",
    "FN",
    "FI",
    "CT",
    "ST",
    "ZIP",
    "MADID",
    "COUNTRY",
];

/// Keys whose values must be SHA-256 digests ("Hashing required"); not MADID ("Do not hash") nor
/// EXTERN_ID ("you don't need to hash").
pub const HASHED_KEYS: [&str; 13] =
    ["EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD", "LN", "FN", "FI", "CT", "ST", "ZIP", "COUNTRY"];

/// Keys that identify one person on their own; removals match members by them.
pub const STRONG_KEYS: [&str; 4] = ["EMAIL", "PHONE", "MADID", "EXTERN_ID"];

/// Schema keys that carry options rather than identifiers.
const OPTION_KEYS: [&str; 4] =
    ["LOOKALIKE_VALUE", "DATA_PROCESSING_OPTIONS", "DATA_PROCESSING_OPTIONS_COUNTRY", "DATA_PROCESSING_OPTIONS_STATE"];

/// How long a session accepts batches after its first one.
const SESSION_WINDOW: Duration = Duration::from_secs(90 * 60);

/// Most invalid entries named in an answer ("Up to 100 samples").
const MAX_SAMPLES: usize = 100;

/// A checked upload.
#[derive(Debug, Default)]
pub(crate) struct Upload {
    /// Valid rows, in order.
    pub(crate) rows: Vec<Row>,
    /// Rows received, valid or not.
    pub(crate) received: usize,
    /// Rows counted invalid.
    pub(crate) invalid: usize,
    /// Up to 100 invalid values (or rows, when a row has no value at all).
    pub(crate) samples: Vec<Value>,
}

/// The `session` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionSpec {
    pub(crate) id: u64,
    pub(crate) seq: u64,
    pub(crate) last: bool,
}

/// A refusal with Graph's code, subcode and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: u64,
    pub(crate) subcode: Option<u64>,
    pub(crate) message: String,
}

impl Refusal {
    fn invalid(message: impl Into<String>) -> Refusal {
        Refusal { code: 100, subcode: None, message: format!("(#100) {}", message.into()) }
    }

    fn session(subcode: u64, message: &str) -> Refusal {
        Refusal { code: 2650, subcode: Some(subcode), message: message.to_owned() }
    }
}

fn canonical_key(schema_key: &str) -> Option<&'static str> {
    match schema_key {
        "EMAIL_SHA256" => Some("EMAIL"),
        "PHONE_SHA256" => Some("PHONE"),
        "MOBILE_ADVERTISER_ID" => Some("MADID"),
        other => IDENTIFIER_KEYS.iter().chain(OPTION_KEYS.iter()).copied().find(|k| *k == other),
    }
}

fn is_lower_hex_digest(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_lower_uuid(value: &str) -> bool {
    value.len() == 36
        && value.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_digit() || ('a'..='f').contains(&c)
            }
        })
}

/// Whether a value is acceptable for a key ("invalid entries" otherwise).
fn valid_value(key: &str, value: &str) -> bool {
    match key {
        "MADID" => is_lower_uuid(value),
        "EXTERN_ID" => !value.trim().is_empty(),
        _ => is_lower_hex_digest(value),
    }
}

/// Checks `payload` (an object) and sorts its rows into valid ones and invalid entries. `Err` is
/// a malformed payload, refused as a whole.
pub(crate) fn parse_payload(payload: &Value, limit: usize) -> Result<Upload, Refusal> {
    let object = payload.as_object().ok_or_else(|| Refusal::invalid("param payload must be a JSON object"))?;
    for key in object.keys() {
        if !matches!(key.as_str(), "schema" | "data" | "is_raw" | "app_ids" | "page_ids" | "data_source") {
            return Err(Refusal::invalid(format!("payload has an unknown field `{key}`")));
        }
    }
    match object.get("is_raw") {
        None | Some(Value::Bool(_)) => {}
        Some(Value::String(s)) if s == "true" || s == "false" => {}
        Some(_) => return Err(Refusal::invalid("payload.is_raw must be a boolean")),
    }
    let (keys, single) = match object.get("schema") {
        Some(Value::String(key)) => (vec![key.clone()], true),
        Some(Value::Array(keys)) if !keys.is_empty() => (
            keys.iter()
                .map(|k| k.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Refusal::invalid("payload.schema must hold strings"))?,
            false,
        ),
        _ => return Err(Refusal::invalid("payload.schema is required: a key or an array of keys")),
    };
    let mut canonical = Vec::with_capacity(keys.len());
    for key in &keys {
        let known = canonical_key(key).ok_or_else(|| Refusal::invalid(format!("Invalid schema key `{key}`")))?;
        if canonical.contains(&known) {
            return Err(Refusal::invalid(format!("schema key `{key}` appears twice")));
        }
        canonical.push(known);
    }
    if !canonical.iter().any(|k| IDENTIFIER_KEYS.contains(k)) {
        return Err(Refusal::invalid("payload.schema has no identifier key"));
    }
    let data = object
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| Refusal::invalid("payload.data is required: an array of rows"))?;
    if data.len() > limit {
        return Err(Refusal::invalid(format!(
            "Too many users in one request: {} rows sent, at most {limit} are allowed; split them into batches of a session",
            data.len()
        )));
    }
    let mut upload = Upload { received: data.len(), ..Upload::default() };
    for (index, entry) in data.iter().enumerate() {
        let cells: Vec<&Value> = match entry {
            Value::Array(cells) => cells.iter().collect(),
            // A single-key schema also takes bare values.
            scalar if single => vec![scalar],
            _ => return Err(Refusal::invalid(format!("payload.data[{index}] must be an array"))),
        };
        if cells.len() != canonical.len() {
            return Err(Refusal::invalid(format!(
                "payload.data[{index}] has {} values for {} schema keys",
                cells.len(),
                canonical.len()
            )));
        }
        let mut row = Row::new();
        let mut bad: Option<Value> = None;
        for (key, cell) in canonical.iter().zip(cells) {
            if OPTION_KEYS.contains(key) {
                let ok = match *key {
                    "DATA_PROCESSING_OPTIONS" => cell.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                    "LOOKALIKE_VALUE" => cell.is_number(),
                    _ => cell.is_i64() || cell.is_u64(),
                };
                if !ok {
                    return Err(Refusal::invalid(format!("payload.data[{index}] has a malformed {key}")));
                }
                continue;
            }
            let value = match cell {
                Value::String(s) => s.as_str(),
                Value::Null => "",
                _ => return Err(Refusal::invalid(format!("payload.data[{index}]: {key} must be a string"))),
            };
            if value.is_empty() {
                continue;
            }
            if valid_value(key, value) {
                row.insert((*key).to_owned(), value.to_owned());
            } else {
                bad.get_or_insert_with(|| Value::String(value.to_owned()));
            }
        }
        if bad.is_none() && row.is_empty() {
            bad = Some(entry.clone());
        }
        match bad {
            Some(sample) => {
                upload.invalid += 1;
                if upload.samples.len() < MAX_SAMPLES {
                    upload.samples.push(sample);
                }
            }
            None => upload.rows.push(row),
        }
    }
    Ok(upload)
}

fn positive_integer(value: Option<&Value>) -> Option<u64> {
    value.and_then(Value::as_u64).filter(|n| *n > 0 && *n <= i64::MAX as u64)
}

/// Checks `session` (an object): session_id, batch_seq, last_batch_flag, estimated_num_total.
pub(crate) fn parse_session(session: &Value) -> Result<SessionSpec, Refusal> {
    let object = session.as_object().ok_or_else(|| Refusal::invalid("param session must be a JSON object"))?;
    for key in object.keys() {
        if !matches!(key.as_str(), "session_id" | "batch_seq" | "last_batch_flag" | "estimated_num_total") {
            return Err(Refusal::invalid(format!("session has an unknown field `{key}`")));
        }
    }
    let id = positive_integer(object.get("session_id"))
        .ok_or_else(|| Refusal::invalid("session.session_id must be a positive 64-bit integer"))?;
    let seq = positive_integer(object.get("batch_seq"))
        .ok_or_else(|| Refusal::invalid("session.batch_seq must be a positive integer"))?;
    let last = object
        .get("last_batch_flag")
        .and_then(Value::as_bool)
        .ok_or_else(|| Refusal::invalid("session.last_batch_flag is required: a boolean"))?;
    match object.get("estimated_num_total") {
        None => {}
        Some(v) if v.is_u64() => {}
        Some(_) => return Err(Refusal::invalid("session.estimated_num_total must be an integer")),
    }
    Ok(SessionSpec { id, seq, last })
}

impl Audience {
    /// Accepts a batch into its session (creating it at `batch_seq` 1). Returns the session's rows
    /// received so far, this batch included.
    pub(crate) fn accept_batch(
        &mut self,
        spec: SessionSpec,
        rows: usize,
        replace: Option<&[Row]>,
    ) -> Result<u64, Refusal> {
        match self.replacing {
            Some(open) if !(replace.is_some() && open == spec.id) => {
                return Err(Refusal::session(
                    1870145,
                    "Audience Update In Progress: a replace operation is running on this audience; wait until it finishes",
                ));
            }
            _ => {}
        }
        let now = Instant::now();
        let session = match self.sessions.get_mut(&spec.id) {
            Some(session) => {
                if session.finished {
                    return Err(Refusal::session(
                        1870159,
                        "Session Finished: a batch with last_batch_flag true was already received for this session",
                    ));
                }
                if now.duration_since(session.started) > SESSION_WINDOW {
                    return Err(Refusal::session(1870158, "Session Timed Out: sessions take batches for 90 minutes"));
                }
                if spec.seq != session.last_seq && spec.seq != session.last_seq + 1 {
                    return Err(Refusal::session(
                        1870147,
                        "Invalid Upload Batch: batch_seq must follow the session's previous batch",
                    ));
                }
                session
            }
            None => {
                if spec.seq != 1 {
                    return Err(Refusal::session(
                        1870147,
                        "Invalid Upload Batch: the first batch_seq was not detected; start batch_seq at 1",
                    ));
                }
                if replace.is_some() {
                    self.replacing = Some(spec.id);
                }
                self.sessions.entry(spec.id).or_insert(Session {
                    started: now,
                    last_seq: 0,
                    finished: false,
                    received: 0,
                    replacement: replace.map(|_| Vec::new()),
                })
            }
        };
        session.last_seq = spec.seq;
        session.received += rows as u64;
        if let (Some(collected), Some(rows)) = (session.replacement.as_mut(), replace) {
            collected.extend(rows.iter().cloned());
        }
        let received = session.received;
        if spec.last {
            session.finished = true;
            if let Some(rows) = session.replacement.take() {
                self.replacing = None;
                self.clear();
                for row in rows {
                    self.add(row);
                }
            }
        }
        Ok(received)
    }

    /// Adds a member; `false` when an equal row is already stored.
    pub(crate) fn add(&mut self, row: Row) -> bool {
        if self.by_row.contains_key(&row) {
            return false;
        }
        let id = self.next_member;
        self.next_member += 1;
        for (key, value) in row.iter().filter(|(k, _)| STRONG_KEYS.contains(&k.as_str())) {
            self.by_key.entry((key.clone(), value.clone())).or_default().insert(id);
        }
        self.by_row.insert(row.clone(), id);
        self.members.insert(id, row);
        true
    }

    /// Removes the members the row matches; returns how many.
    pub(crate) fn remove(&mut self, row: &Row) -> usize {
        let strong: Vec<(String, String)> = row
            .iter()
            .filter(|(k, _)| STRONG_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let ids: Vec<u64> = if strong.is_empty() {
            self.members
                .iter()
                .filter(|(_, m)| row.iter().all(|(k, v)| m.get(k) == Some(v)))
                .map(|(id, _)| *id)
                .collect()
        } else {
            let mut ids: Vec<u64> = strong.iter().filter_map(|key| self.by_key.get(key)).flatten().copied().collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        for id in &ids {
            if let Some(member) = self.members.remove(id) {
                for (key, value) in member.iter().filter(|(k, _)| STRONG_KEYS.contains(&k.as_str())) {
                    if let Some(set) = self.by_key.get_mut(&(key.clone(), value.clone())) {
                        set.remove(id);
                    }
                }
                self.by_row.remove(&member);
            }
        }
        ids.len()
    }

    fn clear(&mut self) {
        self.members.clear();
        self.by_row.clear();
        self.by_key.clear();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn digest(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn payloads_are_checked_and_bad_values_are_invalid_entries() {
        let payload = json!({
            "schema": ["EMAIL", "PHONE", "MADID"],
            "is_raw": true,
            "data": [
                [digest(1), digest(2), "6d92078a-8246-4ba4-ae5b-76104861e7dc"],
                [digest(3), "", ""],
                ["plain@example.com", "", ""],
                [digest(0xab).to_uppercase(), "", ""],
                ["", "", "6D92078A-8246-4BA4-AE5B-76104861E7DC"],
                ["", "", ""],
            ]
        });
        let upload = parse_payload(&payload, 10_000).unwrap();
        assert_eq!(upload.received, 6);
        assert_eq!(upload.rows.len(), 2);
        assert_eq!(upload.invalid, 4);
        assert_eq!(upload.samples[0], json!("plain@example.com"));
        assert!(
            parse_payload(&json!({"schema": "EMAIL_SHA256", "data": [digest(1), [digest(2)]]}), 10).unwrap().invalid
                == 0
        );
        for bad in [
            json!({"schema": ["EMAIL", "EMAIL"], "data": []}),
            json!({"schema": ["EMAIL", "NOPE"], "data": []}),
            json!({"schema": ["EMAIL"], "data": [[digest(1), digest(2)]]}),
            json!({"schema": ["EMAIL"], "data": [digest(1)]}),
            json!({"schema": ["EMAIL"], "data": [[1]]}),
            json!({"schema": ["EMAIL"], "data": [], "extra": 1}),
            json!({"schema": ["EMAIL"], "data": [], "is_raw": "yes"}),
            json!({"schema": ["LOOKALIKE_VALUE"], "data": []}),
            json!({"data": []}),
        ] {
            assert!(parse_payload(&bad, 10).is_err(), "{bad}");
        }
        let too_many = json!({"schema": "EMAIL_SHA256", "data": vec![digest(1); 11]});
        assert!(parse_payload(&too_many, 10).unwrap_err().message.contains("at most 10"));
    }

    #[test]
    fn sessions_are_typed_and_ordered() {
        assert!(parse_session(
            &json!({"session_id": 9778993, "batch_seq": 10, "last_batch_flag": true, "estimated_num_total": 99996})
        )
        .is_ok());
        for bad in [
            json!({"session_id": 0, "batch_seq": 1, "last_batch_flag": true}),
            json!({"session_id": "9", "batch_seq": 1, "last_batch_flag": true}),
            json!({"session_id": 9, "batch_seq": 1}),
            json!({"session_id": 9, "batch_seq": 1, "last_batch_flag": "true"}),
            json!({"session_id": 9, "batch_seq": 1, "last_batch_flag": true, "estimated_num_total": 1.5}),
            json!({"session_id": 9, "batch_seq": 1, "last_batch_flag": true, "other": 1}),
        ] {
            assert!(parse_session(&bad).is_err(), "{bad}");
        }
        let mut audience = Audience::default();
        let spec = |seq, last| SessionSpec { id: 7, seq, last };
        assert_eq!(audience.accept_batch(spec(2, false), 5, None).unwrap_err().subcode, Some(1870147));
        assert_eq!(audience.accept_batch(spec(1, false), 5, None), Ok(5));
        assert_eq!(audience.accept_batch(spec(1, false), 5, None), Ok(10), "a batch may be sent again");
        assert_eq!(audience.accept_batch(spec(3, false), 5, None).unwrap_err().subcode, Some(1870147));
        assert_eq!(audience.accept_batch(spec(2, true), 5, None), Ok(15));
        assert_eq!(audience.accept_batch(spec(3, false), 5, None).unwrap_err().subcode, Some(1870159));
    }

    #[test]
    fn removals_match_members_by_strong_keys() {
        let row = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<Row>();
        let mut audience = Audience::default();
        assert!(audience.add(row(&[("EMAIL", digest(1)), ("PHONE", digest(2))])));
        assert!(!audience.add(row(&[("EMAIL", digest(1)), ("PHONE", digest(2))])));
        assert!(audience.add(row(&[("EMAIL", digest(3)), ("FN", digest(9))])));
        assert!(audience.add(row(&[("FN", digest(9)), ("LN", digest(8))])));
        assert_eq!(audience.remove(&row(&[("PHONE", digest(2))])), 1);
        assert_eq!(audience.remove(&row(&[("FN", digest(9)), ("LN", digest(8))])), 1, "no strong key: all values");
        assert_eq!(audience.members.len(), 1);
        assert_eq!(audience.remove(&row(&[("EMAIL", digest(4))])), 0);
    }
}
