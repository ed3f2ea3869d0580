//! `pulse init [DIR]`: write `DIR/config/pulse.toml`, the commented reference config with every
//! key and its default, ready to edit. Refuses to overwrite.

use std::path::{Path, PathBuf};

use super::Outcome;
use crate::error::{Error, IoContext, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory pulse will run in
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

pub fn cmd(args: Args) -> Result<Outcome> {
    let path = init(&args.dir)?;
    println!("wrote {}", path.display());
    println!("next:");
    println!("  1. edit it: your communities ([[communities]] id, timezone, locale, report_to), [email], [[sinks]]");
    println!("  2. pulse check-config");
    println!("  3. pulse import your-export.ndjson   (or set up [ingest] and `pulse serve`)");
    println!("  4. pulse run                         (metrics, report, email, ranked lists)");
    Ok(Outcome::Success)
}

/// Write the reference config to `dir/config/pulse.toml`; returns its path.
pub fn init(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(crate::config::DEFAULT_CONFIG_PATH);
    if path.exists() {
        return Err(Error::Usage(format!(
            "{} already exists; edit it, or check it with `pulse check-config`",
            path.display()
        )));
    }
    let parent = path.parent().expect("config path has a parent");
    std::fs::create_dir_all(parent).io_context(|| format!("creating {}", parent.display()))?;
    std::fs::write(&path, crate::config::EXAMPLE_CONFIG)
        .io_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn init_writes_a_valid_config_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = init(dir.path()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        Config::from_toml(&text, &path).unwrap();
        assert!(init(dir.path()).is_err());
    }
}
