//! The feature table as Parquet, for pandas and polars: the same columns as
//! the CSV form, written in row groups as the rows arrive.

use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use thiserror::Error;

use crate::atomic::OutputFile;
use crate::dataflow::FeatureRow;
use crate::features::Contract;

/// Rows buffered per row group.
pub const ROW_GROUP_ROWS: usize = 65_536;

#[derive(Debug, Error)]
pub enum ParquetTableError {
    // `error`, not `source`: the message holds it, and as `source()` an
    // error chain would print it twice.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: {error}")]
    Parquet { path: String, error: ParquetError },
}

/// Writes `event_id` (string), `step` (optional int64: a step is any u32,
/// past int32's range), `label` (optional int32, 0 or 1), then one double
/// column per feature, into a file of the run's output group, so a reader
/// never sees half a file.
pub struct ParquetTable {
    path: PathBuf,
    writer: Option<SerializedFileWriter<BufWriter<OutputFile>>>,
    features: usize,
    ids: Vec<ByteArray>,
    steps: (Vec<i64>, Vec<i16>),
    labels: (Vec<i32>, Vec<i16>),
    columns: Vec<Vec<f64>>,
}

impl ParquetTable {
    pub fn create(file: OutputFile, contract: Contract) -> Result<ParquetTable, ParquetTableError> {
        let path = file.path().to_path_buf();
        let pq = |error| ParquetTableError::Parquet {
            path: path.display().to_string(),
            error,
        };
        let columns: String = contract
            .names()
            .iter()
            .map(|n| format!("REQUIRED DOUBLE {n}; "))
            .collect();
        let message = format!(
            "message features {{ REQUIRED BYTE_ARRAY event_id (UTF8); OPTIONAL INT64 step; OPTIONAL INT32 label; {columns}}}"
        );
        let schema = Arc::new(parse_message_type(&message).map_err(pq)?);
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        );
        let writer =
            SerializedFileWriter::new(BufWriter::with_capacity(1 << 20, file), schema, props)
                .map_err(pq)?;
        Ok(ParquetTable {
            path,
            writer: Some(writer),
            features: contract.names().len(),
            ids: Vec::new(),
            steps: (Vec::new(), Vec::new()),
            labels: (Vec::new(), Vec::new()),
            columns: vec![Vec::new(); contract.names().len()],
        })
    }

    pub fn push(&mut self, row: &FeatureRow) -> Result<(), ParquetTableError> {
        self.ids
            .push(ByteArray::from(row.id.to_string().into_bytes()));
        optional(&mut self.steps, row.step.map(i64::from));
        optional(&mut self.labels, row.label.map(|l| i32::from(l.is_fraud)));
        for (column, v) in self.columns.iter_mut().zip(row.values.iter()) {
            column.push(*v);
        }
        if self.ids.len() >= ROW_GROUP_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ParquetTableError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let pq = |error| ParquetTableError::Parquet {
            path: self.path.display().to_string(),
            error,
        };
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let mut group = writer.next_row_group().map_err(pq)?;
        let mut index = 0;
        while let Some(mut column) = group.next_column().map_err(pq)? {
            match index {
                0 => column
                    .typed::<ByteArrayType>()
                    .write_batch(&self.ids, None, None),
                1 => column.typed::<Int64Type>().write_batch(
                    &self.steps.0,
                    Some(&self.steps.1),
                    None,
                ),
                2 => column.typed::<Int32Type>().write_batch(
                    &self.labels.0,
                    Some(&self.labels.1),
                    None,
                ),
                i => column
                    .typed::<DoubleType>()
                    .write_batch(&self.columns[i - 3], None, None),
            }
            .map_err(pq)?;
            column.close().map_err(pq)?;
            index += 1;
        }
        group.close().map_err(pq)?;
        debug_assert_eq!(index, 3 + self.features);
        self.ids.clear();
        self.steps.0.clear();
        self.steps.1.clear();
        self.labels.0.clear();
        self.labels.1.clear();
        self.columns.iter_mut().for_each(Vec::clear);
        Ok(())
    }

    /// Writes the last row group and the footer, then flushes and syncs the
    /// file (its group renames it).
    pub fn finish(mut self) -> Result<(), ParquetTableError> {
        self.flush()?;
        let path = self.path.display().to_string();
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let out = writer
            .into_inner()
            .map_err(|error| ParquetTableError::Parquet {
                path: path.clone(),
                error,
            })?;
        let io = |error| ParquetTableError::Io {
            path: path.clone(),
            error,
        };
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.finish().map(|_| ()).map_err(io)
    }
}

/// Appends an optional value as Parquet does: the value only when present,
/// and a definition level for every row.
fn optional<T>(column: &mut (Vec<T>, Vec<i16>), value: Option<T>) {
    match value {
        Some(v) => {
            column.0.push(v);
            column.1.push(1);
        }
        None => column.1.push(0),
    }
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;

    use super::*;
    use crate::atomic::OutputGroup;
    use crate::event::{EventId, Label};
    use crate::features::FeatureVec;

    #[test]
    fn no_column_narrows_a_value_it_is_given() {
        // Every step a u32 holds, at its extremes and past int32's range,
        // and every label; read back as written.
        let steps = [
            None,
            Some(0),
            Some(1),
            Some(i32::MAX as u32),
            Some(i32::MAX as u32 + 1),
            Some(3_000_000_000),
            Some(u32::MAX),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let group = OutputGroup::new();
        let mut table = ParquetTable::create(group.create(&path).unwrap(), Contract::V1).unwrap();
        let width = Contract::V1.names().len();
        let rows: Vec<FeatureRow> = steps
            .iter()
            .enumerate()
            .map(|(i, &step)| FeatureRow {
                account: crate::paysim::AccountId::from_name("C1"),
                id: EventId::Row(u64::MAX - i as u64),
                seq: i as u64,
                time_ms: 0,
                place_ms: 0,
                step,
                received_us: 0,
                label: (i % 3 != 0).then_some(Label {
                    is_fraud: i % 2 == 0,
                    is_flagged_fraud: false,
                }),
                values: FeatureVec::from_slice(&vec![f64::MAX / (i as f64 + 1.0); width]),
            })
            .collect();
        for row in &rows {
            table.push(row).unwrap();
        }
        table.finish().unwrap();
        group.commit().unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let got: Vec<_> = reader
            .get_row_iter(None)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got.len(), rows.len());
        for (row, want) in got.iter().zip(&rows) {
            assert_eq!(row.get_string(0).unwrap(), &want.id.to_string());
            let step = row.get_long(1).ok().map(|s| u32::try_from(s).unwrap());
            assert_eq!(step, want.step);
            let label = row.get_int(2).ok();
            assert_eq!(label, want.label.map(|l| i32::from(l.is_fraud)));
            for (k, v) in want.values.iter().enumerate() {
                assert_eq!(row.get_double(3 + k).unwrap(), *v);
            }
        }
    }
}
