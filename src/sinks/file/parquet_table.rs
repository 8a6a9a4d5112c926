//! The feature table as Parquet, for pandas and polars: the same columns as
//! the CSV form, written in row groups as the rows arrive.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use thiserror::Error;

use crate::atomic::AtomicPath;
use crate::dataflow::FeatureRow;
use crate::features::Contract;

/// Rows buffered per row group.
pub const ROW_GROUP_ROWS: usize = 65_536;

#[derive(Debug, Error)]
pub enum ParquetTableError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parquet { path: String, source: ParquetError },
}

/// Writes `event_id` (string), `step` and `label` (optional int32), then one
/// double column per feature; through a temporary file renamed into place
/// by [`ParquetTable::finish`], so a reader never sees half a file.
pub struct ParquetTable {
    path: PathBuf,
    guard: AtomicPath,
    writer: Option<SerializedFileWriter<BufWriter<File>>>,
    features: usize,
    ids: Vec<ByteArray>,
    steps: (Vec<i32>, Vec<i16>),
    labels: (Vec<i32>, Vec<i16>),
    columns: Vec<Vec<f64>>,
}

impl ParquetTable {
    pub fn create(path: &Path, contract: Contract) -> Result<ParquetTable, ParquetTableError> {
        let io = |source| ParquetTableError::Io {
            path: path.display().to_string(),
            source,
        };
        let pq = |source| ParquetTableError::Parquet {
            path: path.display().to_string(),
            source,
        };
        let columns: String = contract
            .names()
            .iter()
            .map(|n| format!("REQUIRED DOUBLE {n}; "))
            .collect();
        let message = format!(
            "message features {{ REQUIRED BYTE_ARRAY event_id (UTF8); OPTIONAL INT32 step; OPTIONAL INT32 label; {columns}}}"
        );
        let schema = Arc::new(parse_message_type(&message).map_err(pq)?);
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        );
        let (guard, file) = AtomicPath::create(path).map_err(io)?;
        let writer =
            SerializedFileWriter::new(BufWriter::with_capacity(1 << 20, file), schema, props)
                .map_err(pq)?;
        Ok(ParquetTable {
            path: path.to_path_buf(),
            guard,
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
        optional(&mut self.steps, row.step.map(|s| s as i32));
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
        let pq = |source| ParquetTableError::Parquet {
            path: self.path.display().to_string(),
            source,
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
                1 => column.typed::<Int32Type>().write_batch(
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

    /// Writes the last row group and the footer, then renames the file into
    /// place.
    pub fn finish(mut self) -> Result<(), ParquetTableError> {
        self.flush()?;
        let path = self.path.display().to_string();
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let out = writer
            .into_inner()
            .map_err(|source| ParquetTableError::Parquet {
                path: path.clone(),
                source,
            })?;
        let io = |source| ParquetTableError::Io {
            path: path.clone(),
            source,
        };
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        self.guard.commit(file).map_err(io)
    }
}

/// Appends an optional value as Parquet does: the value only when present,
/// and a definition level for every row.
fn optional(column: &mut (Vec<i32>, Vec<i16>), value: Option<i32>) {
    match value {
        Some(v) => {
            column.0.push(v);
            column.1.push(1);
        }
        None => column.1.push(0),
    }
}
