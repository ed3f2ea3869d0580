//! Writing Arrow batches as the lake's Parquet files (zstd), conformed to a table's schema.
//! Shared by the models (metric tables, rollups), the Ballista scratch space and the Parquet
//! sink, so it lives below all of them.

use std::path::Path;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;

use crate::error::{Error, IoContext, Result};

/// Cast `batch` to `schema` column by column (by name), so stored files have the contract's
/// types whatever type an expression produced (row_number() is UInt64, for instance).
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let column = batch.column_by_name(f.name()).ok_or_else(|| {
                Error::Project(format!(
                    "model output lacks column `{}` (has {:?})",
                    f.name(),
                    batch.schema()
                ))
            })?;
            Ok(if column.data_type() == f.data_type() {
                column.clone()
            } else {
                cast(column, f.data_type())?
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Write `batches` as one zstd Parquet file at `path` (an empty file when there are none).
pub fn write_parquet(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).io_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, parquet_bytes(schema, batches)?)
        .io_context(|| format!("writing {}", path.display()))
}

/// `batches`, conformed to `schema`, as the bytes of one zstd Parquet file.
pub fn parquet_bytes(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    use datafusion::parquet::basic::{Compression, ZstdLevel};
    use datafusion::parquet::file::properties::WriterProperties;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer =
        datafusion::parquet::arrow::ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))?;
    for b in batches {
        writer.write(&conform(b, schema)?)?;
    }
    Ok(writer.into_inner()?)
}
