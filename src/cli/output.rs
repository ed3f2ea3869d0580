//! Output formatting: aligned text tables for the history commands, and query results as a
//! table, CSV, JSON or Parquet (datafusion-cli's `print_format`).

use std::io::{IsTerminal, Write};

use clap::ValueEnum;
use datafusion::arrow::datatypes::SchemaRef;
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

/// A query result as CSV with a header row (the header alone when there are no rows).
pub fn write_csv(sink: &mut impl Write, schema: SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    let mut w = datafusion::arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(sink);
    if batches.is_empty() {
        w.write(&flat(&RecordBatch::new_empty(schema))?)?;
    }
    for b in batches {
        w.write(&flat(b)?)?;
    }
    Ok(())
}

/// `batch` with its nested columns (lists, such as `emerging_terms.examples`) as text, the way
/// the table format shows them (`[a, b]`): Arrow's CSV writer refuses nested types.
fn flat(batch: &RecordBatch) -> Result<RecordBatch> {
    use datafusion::arrow::array::{Array, ArrayRef, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    if !batch.columns().iter().any(|c| c.data_type().is_nested()) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !column.data_type().is_nested() {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())?;
        let text: StringArray = (0..column.len())
            .map(|i| column.is_valid(i).then(|| formatter.value(i).to_string()))
            .collect();
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(std::sync::Arc::new(text));
    }
    Ok(RecordBatch::try_new(
        std::sync::Arc::new(Schema::new(fields)),
        columns,
    )?)
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
