//! What every command needs, loaded once and only when a command asks for it: the config
//! (`--config`, `PULSE_CONFIG`, or `config/pulse.toml`), the lake (`--lake`, `PULSE_LAKE`, or the
//! config's `lake`) and the async runtime.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use super::GlobalArgs;
use crate::config::Config;
use crate::error::{IoContext, Result};
use crate::lake::Lake;

pub struct Ctx {
    global: GlobalArgs,
    config: OnceCell<(Config, Option<PathBuf>)>,
    lake: OnceCell<Lake>,
    runtime: OnceCell<tokio::runtime::Runtime>,
}

/// `cell`'s value, initialised by `init` the first time (which may fail).
fn get_or_try_init<T>(cell: &OnceCell<T>, init: impl FnOnce() -> Result<T>) -> Result<&T> {
    if let Some(value) = cell.get() {
        return Ok(value);
    }
    let value = init()?;
    Ok(cell.get_or_init(|| value))
}

impl Ctx {
    pub fn new(global: GlobalArgs) -> Ctx {
        Ctx {
            global,
            config: OnceCell::new(),
            lake: OnceCell::new(),
            runtime: OnceCell::new(),
        }
    }

    /// The validated config (the built-in defaults when the default file does not exist).
    pub fn config(&self) -> Result<&Config> {
        Ok(&self.loaded()?.0)
    }

    /// The config file read, if there was one.
    pub fn config_path(&self) -> Result<Option<&Path>> {
        Ok(self.loaded()?.1.as_deref())
    }

    fn loaded(&self) -> Result<&(Config, Option<PathBuf>)> {
        get_or_try_init(&self.config, || {
            let loaded = Config::load(self.global.config.as_deref())?;
            // Process-wide settings the config makes.
            loaded.0.umask.apply();
            crate::event::set_extra_personal_keys(&loaded.0.ingest.scrub_keys);
            Ok(loaded)
        })
    }

    pub fn lake(&self) -> Result<&Lake> {
        get_or_try_init(&self.lake, || {
            let location = match &self.global.lake {
                Some(lake) => lake.as_str(),
                None => self.config()?.lake.as_str(),
            };
            Lake::open(location)
        })
    }

    /// Run `future` to completion on the (multi-threaded) runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> Result<F::Output> {
        let runtime = get_or_try_init(&self.runtime, runtime)?;
        Ok(runtime.block_on(future))
    }

    /// `--quiet`: only warnings and errors.
    pub fn quiet(&self) -> bool {
        self.global.quiet
    }
}

/// The multi-threaded runtime the commands share.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .io_context(|| "starting the async runtime".into())
}

/// The communities with events in the lake, sorted, or only `only`: a usage error when the lake
/// has no event of it (what `--community` means for every command that reads the lake).
pub fn lake_communities(lake: &Lake, only: Option<&str>) -> Result<Vec<String>> {
    let mut communities = lake.communities()?;
    if let Some(only) = only {
        communities.retain(|c| c == only);
        if communities.is_empty() {
            return Err(crate::error::Error::Usage(format!(
                "community `{only}` has no events in the lake"
            )));
        }
    }
    Ok(communities)
}

/// The as_of whose stored metrics a command reads for `community`: `as_of` when given, else the
/// latest one computed; `None` (said on stderr) when there is none yet.
pub fn metrics_day(
    lake: &Lake,
    community: &str,
    as_of: Option<chrono::NaiveDate>,
) -> Result<Option<chrono::NaiveDate>> {
    if as_of.is_some() {
        return Ok(as_of);
    }
    let latest = crate::report::read::metric_dates(lake, community)?
        .last()
        .copied();
    if latest.is_none() {
        eprintln!("{community}: no metrics yet (run `pulse run` first); skipped");
    }
    Ok(latest)
}
