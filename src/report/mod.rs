//! The emailed report, after the models: [`read`] is the one reader of the metric tables
//! (the report and the ranked-list sinks share it), [`gather`] collects what a report shows,
//! [`render`] and [`charts`] turn it into HTML, text and PNG, [`email`] sends it once
//! (`<state_dir>` remembers what went out). [`suggest`] turns the emerging topics into keyword
//! lines for the taxonomy config (`pulse taxonomy suggest`).

pub mod charts;
pub mod email;
pub mod gather;
pub mod read;
pub mod render;
pub mod suggest;

use std::path::PathBuf;

use chrono::NaiveDate;

use crate::config::{CommunitySettings, Config};
use crate::error::Result;
use crate::lake::Lake;
use render::Templates;

/// The report templates the config asks for (edited ones, or the built-in set).
pub fn templates(config: &Config) -> Result<Templates> {
    match &config.report.templates {
        Some(dir) => Templates::from_dir(dir),
        None => Ok(Templates::built_in()),
    }
}

/// A report written to the lake.
#[derive(Debug, Clone)]
pub struct WrittenReport {
    pub data: gather::ReportData,
    pub rendered: render::Rendered,
    /// `<lake>/reports/<community>/<as_of>` (a path or URL), or the directory asked for.
    pub dir: String,
}

/// Gather and render the report of one community and as_of, and write it (report.html,
/// report.txt, the chart PNGs) to `out`, or to `<lake>/reports/<c>/<as_of>/`, replacing the
/// directory atomically.
pub async fn write_report(
    config: &Config,
    lake: &Lake,
    templates: &Templates,
    settings: &CommunitySettings,
    as_of: NaiveDate,
    out: Option<PathBuf>,
) -> Result<WrittenReport> {
    let queries = read::Queries::open(config, lake, settings, as_of).await?;
    write_report_from(&queries, lake, templates, settings, out, false).await
}

/// [`write_report`] with the queries already open.
pub async fn write_report_from(
    queries: &read::Queries,
    lake: &Lake,
    templates: &Templates,
    settings: &CommunitySettings,
    out: Option<PathBuf>,
    late: bool,
) -> Result<WrittenReport> {
    let as_of = queries.window.as_of;
    let mut data = gather::gather(queries, settings).await?;
    data.late = late;
    if let Some(directory) = crate::privacy::Directory::open_existing(&queries.state_dir)? {
        data.names = directory.names(data.listed_members())?;
    }
    let stage = lake.stage("report")?;
    let staging = stage.path().join("report");
    let rendered = render::render(
        &data,
        settings.locale,
        settings.timezone,
        templates,
        &staging,
    )?;
    crate::lake::write_atomic(&staging.join("report.html"), rendered.html_files.as_bytes())?;
    crate::lake::write_atomic(&staging.join("report.txt"), rendered.text.as_bytes())?;
    // A preview (`--out`) goes to a local directory; a run's report into the lake.
    let dir = match out {
        Some(dir) => {
            crate::lake::replace_dir(&staging, &dir)?;
            dir.display().to_string()
        }
        None => {
            let rel = crate::lake::report_path(&settings.id, as_of);
            lake.replace_dirs(&[(staging, rel.clone())])?;
            lake.display(&rel)
        }
    };
    Ok(WrittenReport {
        data,
        rendered,
        dir,
    })
}
