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
        w.write(&RecordBatch::new_empty(schema))?;
    }
    for b in batches {
        w.write(b)?;
    }
    Ok(())
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
