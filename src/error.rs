//! The library's one error type. Variants keep their sources so the binary edge (`main.rs`)
//! can print the whole chain with `anyhow`.

use std::path::PathBuf;

/// Everything that can go wrong inside the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file that cannot be used. `key` is the dotted TOML path (empty for
    /// file-level problems such as a syntax error).
    #[error("{file}: {}{message}", if key.is_empty() { String::new() } else { format!("key `{key}`: ") })]
    Config {
        file: PathBuf,
        key: String,
        message: String,
    },

    /// An input file that cannot be imported at all (as opposed to single bad lines, which go
    /// to quarantine).
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },

    /// A user request that makes no sense (bad SQL for a read-only query, unknown community, ...).
    #[error("{0}")]
    Usage(String),

    /// A report that cannot be gathered, rendered or emailed.
    #[error("{0}")]
    Report(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// An object-store lake (s3://, gs://, az://) that could not be read or written.
    #[error("{context}: {source}")]
    ObjectStore {
        context: String,
        #[source]
        source: object_store::Error,
    },

    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),

    #[error(transparent)]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),

    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a human context ("writing /lake/events/...") to an `io::Error`.
pub trait IoContext<T> {
    fn io_context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}
