//! Output formatting: aligned text tables for the history commands, and query results as a
//! table, CSV, JSON or Parquet (datafusion-cli's `print_format`).

use std::io::{IsTerminal, Write};

use clap::ValueEnum;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    Table,
    Csv,
    /// A JSON array of objects
    Json,
    Parquet,
}

/// Print rows as aligned columns under `header` (cells cut at 90 characters).
pub fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count()).min(90);
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| {
                let cut: String = c.chars().take(w).collect();
                let pad = w - cut.chars().count();
                format!("{cut}{}", " ".repeat(pad))
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(header.to_vec()));
    for row in rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// A query result as CSV with a header row (the header alone when there are no rows). Nested
/// columns (lists such as `tier_transitions.member_ids`), which CSV has no type for, are
/// written as their display text (`[a, b]`).
pub fn write_csv(sink: &mut impl Write, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    let mut w = datafusion::arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(sink);
    if batches.is_empty() {
        w.write(&RecordBatch::new_empty(flat_schema(&schema)))?;
    }
    for b in batches {
        w.write(&flatten(b)?)?;
    }
    Ok(())
}

/// `schema` with every nested column as Utf8.
fn flat_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type().is_nested() {
                true => Field::new(f.name(), DataType::Utf8, f.is_nullable()),
                false => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ))
}

/// `batch` with every nested column replaced by its display text.
fn flatten(batch: &RecordBatch) -> Result<RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| f.data_type().is_nested())
    {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .map(|c| -> Result<ArrayRef> {
            if !c.data_type().is_nested() {
                return Ok(c.clone());
            }
            let formatter = ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default())?;
            Ok(Arc::new(StringArray::from_iter((0..c.len()).map(|i| {
                c.is_valid(i).then(|| formatter.value(i).to_string())
            }))))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(flat_schema(&batch.schema()), columns)?)
}

/// Print or save a query result.
pub fn write_result(
    schema: SchemaRef,
    batches: &[RecordBatch],
    format: QueryFormat,
    output: Option<&std::path::Path>,
) -> Result<()> {
    use datafusion::arrow::{json, util::pretty};
    let mut sink: Box<dyn Write + Send> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).io_context(|| format!("creating {}", path.display()))?,
        )),
        None if format == QueryFormat::Parquet => {
            return Err(Error::Usage("--format parquet needs --output FILE".into()));
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    match format {
        QueryFormat::Table => {
            let table = pretty::pretty_format_batches(batches)?;
            writeln!(sink, "{table}").io_context(|| "writing the result".into())?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if output.is_none() && std::io::stdout().is_terminal() {
                eprintln!("{rows} row(s)");
            }
        }
        QueryFormat::Csv => write_csv(&mut sink, schema, batches)?,
        QueryFormat::Json => {
            let mut w = json::ArrayWriter::new(&mut sink);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            writeln!(sink).io_context(|| "writing the result".into())?;
        }
        QueryFormat::Parquet => {
            let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(&mut sink, schema, None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
    }
    sink.flush().io_context(|| "writing the result".into())
}
