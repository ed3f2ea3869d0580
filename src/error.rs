//! The library's one error type. Variants keep their sources so the binary edge (`main.rs`)
//! can print the whole chain with `anyhow`, and each says which exit status it means
//! ([`Error::exit_code`]).

use std::path::PathBuf;

/// A boxed error from a library whose error type pulse does not name (lettre, reqwest,
/// plotters, Ballista).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

    /// The member directory (`<state_dir>/members.sqlite`) cannot be read or written.
    #[error("member directory {}: {message}", path.display())]
    Directory { path: PathBuf, message: String },

    /// A request that cannot be done as given: an unknown community, an as_of without
    /// metrics, SQL that is not a query, arguments that contradict each other.
    #[error("{0}")]
    Usage(String),

    /// Another run holds `<state_dir>/run.lock`.
    #[error("another pulse run is in progress ({holder}); not starting a second one. Try again when it has finished (`pulse runs` shows it)")]
    RunInProgress { holder: String },

    /// A run failed (its record in the run history says the same).
    #[error("{community} as_of {as_of}: {message}")]
    RunFailed {
        community: String,
        as_of: chrono::NaiveDate,
        message: String,
    },

    /// The SQL project compiled into pulse (`queries/`) does not hold together: a file in an
    /// unknown folder, a cycle, a mart without a catalog table, output that lacks a column.
    #[error("the SQL project (queries/): {0}")]
    Project(String),

    /// A metric model (a `queries/` SQL model or PageRank) failed.
    #[error("model `{model}` ({community})")]
    Model {
        model: String,
        community: String,
        #[source]
        source: Box<Error>,
    },

    /// A model's output broke one of its declared data tests: nothing was written.
    #[error("model `{model}` ({community}) failed its test `{test}`: {failing} offending row(s); nothing was written")]
    DataTest {
        model: String,
        community: String,
        test: String,
        failing: i64,
    },

    /// A report read-back query failed or returned rows the report cannot read.
    #[error("report query `{query}`")]
    ReportQuery {
        query: String,
        #[source]
        source: Box<Error>,
    },

    /// A report template that does not compile or render.
    #[error("report template {template}")]
    Template {
        template: String,
        #[source]
        source: minijinja::Error,
    },

    /// A chart that could not be drawn.
    #[error("drawing a chart")]
    Chart(#[source] BoxError),

    /// An email that cannot be built or sent (address, message, SMTP connection).
    #[error("{context}")]
    Email {
        context: String,
        #[source]
        source: BoxError,
    },

    /// A ranked-list sink that cannot be used (secret, client, list).
    #[error("sink {sink}: {message}")]
    Sink {
        sink: String,
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// A Ballista scheduler, executor or cluster that could not be started or reached.
    #[error("{context}")]
    Ballista {
        context: String,
        #[source]
        source: BoxError,
    },

    /// The spool's appender could not make a batch durable.
    #[error("spool: {0}")]
    Spool(String),

    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// An object-store lake (s3://, gs://, az://) that could not be read or written.
    #[error("{context}")]
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

/// Every exit status of `pulse`, in one place (the README's table says the same).
pub mod exit {
    /// Done.
    pub const SUCCESS: u8 = 0;
    /// An error (the message says what).
    pub const FAILURE: u8 = 1;
    /// The command cannot run as given: bad arguments, a bad config, an unknown community.
    pub const USAGE: u8 = 2;
    /// `pulse import`: some lines were quarantined; everything else was imported.
    pub const QUARANTINED: u8 = 3;
    /// `pulse run`: the metrics were computed but something could not be delivered (the next
    /// run retries what is still queued).
    pub const DELIVERY_FAILED: u8 = 4;
    /// `pulse run` / `pulse backfill`: another run holds the run lock.
    pub const RUN_IN_PROGRESS: u8 = 5;
}

impl Error {
    /// The process exit status this error means (the README's table): 2 for a command that
    /// cannot run as given (usage, configuration), 5 when another run holds the lock, 1 for
    /// everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Config { .. } => exit::USAGE,
            Error::RunInProgress { .. } => exit::RUN_IN_PROGRESS,
            _ => exit::FAILURE,
        }
    }
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

/// Displays an error with its sources, `outer: inner: innermost`: for messages that outlive
/// the error (run records, logs, delivery summaries).
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
