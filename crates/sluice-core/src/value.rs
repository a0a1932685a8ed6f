//! One model value, read out of an Arrow array, and its JSON and text forms.

use arrow_array::{cast::AsArray, types, Array};
use arrow_schema::{DataType, Field, TimeUnit};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Arrow field metadata key that records a logical type carried in a Utf8 column
/// (decimals, JSON, UUIDs and other types that Arrow has no exact home for).
pub const LOGICAL_TYPE_KEY: &str = "sluice.logical_type";

/// Logical types carried as text inside Arrow Utf8 columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogicalType {
    /// An exact decimal number, kept as its canonical text.
    Decimal,
    /// A JSON document.
    Json,
    /// Any other type, rendered as text by the source.
    Text,
}

impl LogicalType {
    /// Reads the logical type recorded on a field, if any.
    pub fn of(field: &Field) -> LogicalType {
        match field.metadata().get(LOGICAL_TYPE_KEY).map(String::as_str) {
            Some("decimal") => LogicalType::Decimal,
            Some("json") => LogicalType::Json,
            _ => LogicalType::Text,
        }
    }
}

/// A single value of a model row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Exact decimal, canonical text such as `123.45`.
    Decimal(String),
    Text(String),
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since the Unix epoch; `utc` is true for zoned timestamps.
    Timestamp {
        micros: i64,
        utc: bool,
    },
    /// A JSON document as text.
    Json(String),
}

impl Value {
    /// The value as JSON, as sent to webhooks and written to files.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
            Value::Decimal(d) => {
                d.parse::<serde_json::Number>().map(J::Number).unwrap_or_else(|_| J::String(d.clone()))
            }
            Value::Text(s) => J::String(s.clone()),
            Value::Bytes(b) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Date(_) | Value::Timestamp { .. } => J::String(self.to_text().unwrap_or_default()),
            Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| J::String(s.clone())),
        }
    }

    /// The value as text in the form SQL databases accept as input, `None` for null.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Decimal(s) | Value::Text(s) | Value::Json(s) => s.clone(),
            Value::Bytes(b) => {
                let mut out = String::with_capacity(2 + b.len() * 2);
                out.push_str("\\x");
                for byte in b {
                    out.push_str(&format!("{byte:02x}"));
                }
                out
            }
            Value::Date(days) => chrono::NaiveDate::from_num_days_from_ce_opt(*days + 719_163)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| days.to_string()),
            Value::Timestamp { micros, utc } => match chrono::DateTime::from_timestamp_micros(*micros) {
                Some(ts) if *utc => ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                Some(ts) => ts.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
                None => micros.to_string(),
            },
        })
    }
}

/// Reads row `row` of `array` (whose field is `field`) as a [`Value`].
///
/// Arrow types that sources do not produce read as their debug text rather than failing:
/// the engine never panics on an unexpected column type.
pub fn value_at(field: &Field, array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Value::Int(array.as_primitive::<types::Int8Type>().value(row).into()),
        DataType::Int16 => Value::Int(array.as_primitive::<types::Int16Type>().value(row).into()),
        DataType::Int32 => Value::Int(array.as_primitive::<types::Int32Type>().value(row).into()),
        DataType::Int64 => Value::Int(array.as_primitive::<types::Int64Type>().value(row)),
        DataType::Float32 => Value::Float(array.as_primitive::<types::Float32Type>().value(row).into()),
        DataType::Float64 => Value::Float(array.as_primitive::<types::Float64Type>().value(row)),
        DataType::Utf8 => {
            let text = array.as_string::<i32>().value(row).to_string();
            match LogicalType::of(field) {
                LogicalType::Decimal => Value::Decimal(text),
                LogicalType::Json => Value::Json(text),
                LogicalType::Text => Value::Text(text),
            }
        }
        DataType::Binary => Value::Bytes(array.as_binary::<i32>().value(row).to_vec()),
        DataType::Date32 => Value::Date(array.as_primitive::<types::Date32Type>().value(row)),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => Value::Timestamp {
            micros: array.as_primitive::<types::TimestampMicrosecondType>().value(row),
            utc: tz.is_some(),
        },
        other => Value::Text(format!("<unsupported arrow type {other}>")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps_render_iso8601() {
        assert_eq!(Value::Date(0).to_text().unwrap(), "1970-01-01");
        assert_eq!(Value::Date(19_723).to_text().unwrap(), "2024-01-01");
        let ts = Value::Timestamp { micros: 1_704_067_200_000_001, utc: true };
        assert_eq!(ts.to_text().unwrap(), "2024-01-01T00:00:00.000001Z");
    }

    #[test]
    fn decimals_stay_exact_numbers_in_json() {
        let json = Value::Decimal("12345678901234567890.12".into()).to_json();
        assert_eq!(json.to_string(), "12345678901234567890.12");
    }
}
