//! 128-bit hashing of keys and rows (xxh3), reading Arrow arrays without building values.

use arrow_array::cast::AsArray;
use arrow_array::{types, Array, ArrayRef};
use arrow_schema::{DataType, Field, TimeUnit};
use sluice_core::{value_at, Fingerprint};
use xxhash_rust::xxh3::{xxh3_128, xxh3_128_with_seed, xxh3_64};

/// The hash a key is indexed by in the planner's in-memory snapshot index.
pub fn key_hash(key: &str) -> u128 {
    xxh3_128(key.as_bytes())
}

/// [`key_hash`] of an integer's decimal text, formatted on the stack.
fn integer_key_hash(value: i64) -> u128 {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        let mut text = [0u8; 21];
        text[0] = b'-';
        text[1..=digits.len() - at].copy_from_slice(&digits[at..]);
        return xxh3_128(&text[..=digits.len() - at]);
    }
    xxh3_128(&digits[at..])
}

/// One column of a batch, downcast once so that each row is hashed without dispatch on type.
enum ColumnView<'a> {
    Bool(&'a arrow_array::BooleanArray),
    Int16(&'a arrow_array::Int16Array),
    Int32(&'a arrow_array::Int32Array),
    Int64(&'a arrow_array::Int64Array),
    Float32(&'a arrow_array::Float32Array),
    Float64(&'a arrow_array::Float64Array),
    Utf8(&'a arrow_array::StringArray),
    Binary(&'a arrow_array::BinaryArray),
    Date32(&'a arrow_array::Date32Array),
    Timestamp(&'a arrow_array::TimestampMicrosecondArray),
    Other(&'a Field, &'a dyn Array),
}

impl<'a> ColumnView<'a> {
    fn new(field: &'a Field, array: &'a ArrayRef) -> ColumnView<'a> {
        match array.data_type() {
            DataType::Boolean => ColumnView::Bool(array.as_boolean()),
            DataType::Int16 => ColumnView::Int16(array.as_primitive::<types::Int16Type>()),
            DataType::Int32 => ColumnView::Int32(array.as_primitive::<types::Int32Type>()),
            DataType::Int64 => ColumnView::Int64(array.as_primitive::<types::Int64Type>()),
            DataType::Float32 => ColumnView::Float32(array.as_primitive::<types::Float32Type>()),
            DataType::Float64 => ColumnView::Float64(array.as_primitive::<types::Float64Type>()),
            DataType::Utf8 => ColumnView::Utf8(array.as_string::<i32>()),
            DataType::Binary => ColumnView::Binary(array.as_binary::<i32>()),
            DataType::Date32 => ColumnView::Date32(array.as_primitive::<types::Date32Type>()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                ColumnView::Timestamp(array.as_primitive::<types::TimestampMicrosecondType>())
            }
            _ => ColumnView::Other(field, array.as_ref()),
        }
    }

    /// Appends an unambiguous encoding of row `row`: a type tag, then fixed-width bytes or a
    /// length-prefixed body, so that no two different rows encode the same.
    fn encode(&self, row: usize, out: &mut Vec<u8>) {
        let is_null = match self {
            ColumnView::Other(_, array) => array.is_null(row),
            ColumnView::Bool(a) => a.is_null(row),
            ColumnView::Int16(a) => a.is_null(row),
            ColumnView::Int32(a) => a.is_null(row),
            ColumnView::Int64(a) => a.is_null(row),
            ColumnView::Float32(a) => a.is_null(row),
            ColumnView::Float64(a) => a.is_null(row),
            ColumnView::Utf8(a) => a.is_null(row),
            ColumnView::Binary(a) => a.is_null(row),
            ColumnView::Date32(a) => a.is_null(row),
            ColumnView::Timestamp(a) => a.is_null(row),
        };
        if is_null {
            out.push(0);
            return;
        }
        match self {
            ColumnView::Bool(a) => out.extend_from_slice(&[1, a.value(row) as u8]),
            ColumnView::Int16(a) => push(out, 2, &i64::from(a.value(row)).to_le_bytes()),
            ColumnView::Int32(a) => push(out, 2, &i64::from(a.value(row)).to_le_bytes()),
            ColumnView::Int64(a) => push(out, 2, &a.value(row).to_le_bytes()),
            ColumnView::Float32(a) => push(out, 3, &f64::from(a.value(row)).to_le_bytes()),
            ColumnView::Float64(a) => push(out, 3, &a.value(row).to_le_bytes()),
            ColumnView::Utf8(a) => push_var(out, 4, a.value(row).as_bytes()),
            ColumnView::Binary(a) => push_var(out, 5, a.value(row)),
            ColumnView::Date32(a) => push(out, 6, &a.value(row).to_le_bytes()),
            ColumnView::Timestamp(a) => push(out, 7, &a.value(row).to_le_bytes()),
            ColumnView::Other(field, array) => {
                let text = value_at(field, *array, row).to_text().unwrap_or_default();
                push_var(out, 8, text.as_bytes());
            }
        }
    }
}

fn push(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(bytes);
}

fn push_var(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Hashes rows of one record batch over a fixed set of columns.
pub struct RowHasher<'a> {
    /// Hashed columns, ordered by destination field name so mapping order does not matter.
    columns: Vec<(&'a str, ColumnView<'a>)>,
    key: (&'a Field, &'a ArrayRef),
    /// Hash of the destination field names, folded into every fingerprint as its seed.
    names_seed: u64,
    buffer: Vec<u8>,
}

impl<'a> RowHasher<'a> {
    /// `columns` are (destination field, field, array); `key` is the primary key column.
    pub fn new(columns: Vec<(&'a str, &'a Field, &'a ArrayRef)>, key: (&'a Field, &'a ArrayRef)) -> RowHasher<'a> {
        let mut columns: Vec<(&'a str, ColumnView<'a>)> =
            columns.into_iter().map(|(name, field, array)| (name, ColumnView::new(field, array))).collect();
        columns.sort_by(|a, b| a.0.cmp(b.0));
        let mut names = Vec::new();
        for (name, _) in &columns {
            push_var(&mut names, 9, name.as_bytes());
        }
        RowHasher { columns, key, names_seed: xxh3_64(&names), buffer: Vec::with_capacity(256) }
    }

    /// The hash of the row's key text ([`key_hash`] of [`RowHasher::key`]) without building
    /// the text for integer and text keys: most rows of a run are unchanged and need no more.
    pub fn key_hash(&self, row: usize) -> Option<u128> {
        let (_, array) = self.key;
        if array.is_null(row) {
            return None;
        }
        match array.data_type() {
            DataType::Int64 => Some(integer_key_hash(array.as_primitive::<types::Int64Type>().value(row))),
            DataType::Int32 => Some(integer_key_hash(array.as_primitive::<types::Int32Type>().value(row).into())),
            DataType::Utf8 => Some(key_hash(array.as_string::<i32>().value(row))),
            _ => self.key(row).map(|key| key_hash(&key)),
        }
    }

    /// The row's primary key as text, `None` when it is null.
    pub fn key(&self, row: usize) -> Option<String> {
        let (field, array) = self.key;
        if array.is_null(row) {
            return None;
        }
        match array.data_type() {
            DataType::Int64 => Some(array.as_primitive::<types::Int64Type>().value(row).to_string()),
            DataType::Int32 => Some(array.as_primitive::<types::Int32Type>().value(row).to_string()),
            DataType::Utf8 => Some(array.as_string::<i32>().value(row).to_string()),
            _ => value_at(field, array.as_ref(), row).to_text(),
        }
    }

    /// The row's fingerprint over the hashed columns (names included, so renaming a
    /// destination field re-sends the records).
    pub fn fingerprint(&mut self, row: usize) -> Fingerprint {
        self.buffer.clear();
        for (_, column) in &self.columns {
            column.encode(row, &mut self.buffer);
        }
        Fingerprint(xxh3_128_with_seed(&self.buffer, self.names_seed))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};

    use super::*;

    fn fingerprints(names: Vec<Option<&str>>, ids: Vec<i64>) -> Vec<Fingerprint> {
        let name_field = Field::new("name", DataType::Utf8, true);
        let id_field = Field::new("id", DataType::Int64, true);
        let names: ArrayRef = Arc::new(StringArray::from(names));
        let ids: ArrayRef = Arc::new(Int64Array::from(ids));
        let mut hasher =
            RowHasher::new(vec![("name", &name_field, &names), ("id", &id_field, &ids)], (&id_field, &ids));
        (0..ids.len()).map(|row| hasher.fingerprint(row)).collect()
    }

    #[test]
    fn equal_rows_hash_equal_and_different_rows_differ() {
        let a = fingerprints(vec![Some("x"), Some("x"), Some("y"), None, Some("")], vec![1, 1, 1, 1, 1]);
        assert_eq!(a[0], a[1]);
        assert_ne!(a[0], a[2]);
        assert_ne!(a[3], a[4], "null and empty text must differ");
    }

    #[test]
    fn integer_key_hashes_match_the_hash_of_their_text() {
        for value in [0, 7, -7, 42, 1_000_000, i64::MAX, i64::MIN] {
            assert_eq!(integer_key_hash(value), key_hash(&value.to_string()), "{value}");
        }
    }

    #[test]
    fn renaming_a_field_changes_the_fingerprint() {
        let field = Field::new("v", DataType::Int64, true);
        let values: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        let mut a = RowHasher::new(vec![("a", &field, &values)], (&field, &values));
        let mut b = RowHasher::new(vec![("b", &field, &values)], (&field, &values));
        assert_ne!(a.fingerprint(0), b.fingerprint(0));
        assert_eq!(a.key_hash(0), Some(key_hash("1")));
    }

    #[test]
    fn keys_render_as_text() {
        let id_field = Field::new("id", DataType::Int64, true);
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![Some(42), None]));
        let hasher = RowHasher::new(vec![], (&id_field, &ids));
        assert_eq!(hasher.key(0).as_deref(), Some("42"));
        assert_eq!(hasher.key(1), None);
    }
}
