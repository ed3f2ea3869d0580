//! The SQL project in `queries/`, discovered when the binary is built (see `build.rs`): every
//! `queries/<folder>/<name>.sql` is compiled in, so the binary runs anywhere, and adding a model
//! is adding a file. The folder says what a file is (dbt's layout):
//!
//! - `rollups/`: incremental per-month tables of the events, stored in the lake
//!   (`<lake>/rollups/<name>/`, see [`super::rollups`]);
//! - `intermediate/`: helper models the marts read, never written to the lake;
//! - `marts/`: the metric tables (SPEC §5), written to `<lake>/metrics/<name>/`; a mart's name
//!   must be a metric table of the catalog ([`crate::engine::catalog`]);
//! - `report/`: the report's read-back queries ([`crate::deliver::report`]).

use crate::error::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/queries.rs"));

/// What a SQL file of the project is, by its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Rollup,
    Intermediate,
    Mart,
    Report,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Rollup, Kind::Intermediate, Kind::Mart, Kind::Report];

    /// The folder of `queries/` holding this kind.
    pub fn folder(self) -> &'static str {
        match self {
            Kind::Rollup => "rollups",
            Kind::Intermediate => "intermediate",
            Kind::Mart => "marts",
            Kind::Report => "report",
        }
    }

    fn of_folder(folder: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.folder() == folder)
    }
}

/// One SQL file of the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlFile {
    pub kind: Kind,
    /// The file name without `.sql`: the table a model or rollup produces.
    pub name: &'static str,
    pub sql: &'static str,
}

impl SqlFile {
    /// `queries/<folder>/<name>.sql`, for messages.
    pub fn path(&self) -> String {
        format!("queries/{}/{}.sql", self.kind.folder(), self.name)
    }
}

/// Every SQL file of the project, sorted by path. Fails, naming the file, on a file outside
/// the known folders, on a name used twice by models (intermediate and mart), and on a mart or
/// rollup without a lake table in the catalog (where its schema is).
pub fn files() -> Result<Vec<SqlFile>> {
    let files = FILES
        .iter()
        .map(|(folder, name, sql)| match Kind::of_folder(folder) {
            Some(kind) => Ok(SqlFile { kind, name, sql }),
            None => Err(Error::Project(format!(
                "queries/{folder}/{name}.sql: `queries/` holds SQL only in {}",
                Kind::ALL.map(|k| format!("`{}/`", k.folder())).join(", ")
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let catalog = crate::engine::catalog::tables();
    let lake_table = |name: &str, kind: crate::engine::catalog::TableKind| {
        catalog.iter().any(|t| t.name == name && t.kind == kind)
    };
    for f in &files {
        let missing = match f.kind {
            Kind::Mart => !lake_table(f.name, crate::engine::catalog::TableKind::Metric),
            Kind::Rollup => !lake_table(f.name, crate::engine::catalog::TableKind::Rollup),
            Kind::Intermediate | Kind::Report => false,
        };
        if missing {
            return Err(Error::Project(format!(
                "{}: `{}` is not a {} table of the lake catalog (src/engine/catalog.rs): add its schema there",
                f.path(),
                f.name,
                if f.kind == Kind::Mart { "metric" } else { "rollup" },
            )));
        }
        let is_model = |k: Kind| matches!(k, Kind::Intermediate | Kind::Mart);
        if is_model(f.kind)
            && files
                .iter()
                .any(|g| is_model(g.kind) && g.name == f.name && g.kind != f.kind)
        {
            return Err(Error::Project(format!(
                "model `{}` is both in queries/intermediate/ and queries/marts/",
                f.name
            )));
        }
    }
    Ok(files)
}

/// The SQL files of one kind, sorted by name.
pub fn of_kind(kind: Kind) -> Result<Vec<SqlFile>> {
    Ok(files()?.into_iter().filter(|f| f.kind == kind).collect())
}

/// The SQL of `queries/<kind>/<name>.sql`, if there is such a file.
pub fn sql(kind: Kind, name: &str) -> Option<&'static str> {
    FILES
        .iter()
        .find(|(folder, n, _)| *folder == kind.folder() && *n == name)
        .map(|(_, _, sql)| *sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_is_discovered_by_folder() {
        let names = |kind| -> Vec<&str> { of_kind(kind).unwrap().iter().map(|f| f.name).collect() };
        assert_eq!(
            names(Kind::Rollup),
            [
                "content_authors",
                "member_day_types",
                "member_edges",
                "member_months",
                "membership_events",
                "payment_events",
                "post_words"
            ]
        );
        assert_eq!(
            names(Kind::Intermediate),
            [
                "answered_posts",
                "checkin_streaks",
                "engagement_edges",
                "member_state",
                "member_tiers",
                "member_window",
                "pagerank_edges",
                "paid_spells",
                "paid_status",
                "post_categories",
                "post_engagement",
                "purchase_terms",
                "term_candidates"
            ]
        );
        assert_eq!(
            names(Kind::Mart),
            [
                "category_health",
                "community_influence",
                "demand_categories",
                "emerging_terms",
                "kpis",
                "member_activity",
                "member_influence",
                "membership",
                "ranked_members",
                "retention_cohorts",
                "revenue_cohorts",
                "tier_transitions",
                "top_content"
            ]
        );
        assert!(names(Kind::Report).contains(&"unanswered_posts"));
        assert!(sql(Kind::Report, "kpis").is_some() && sql(Kind::Mart, "nope").is_none());
    }

    #[test]
    fn every_model_has_a_header_naming_it_and_its_spec_section() {
        for f in files().unwrap() {
            if f.kind == Kind::Report {
                continue;
            }
            let header: String = f.sql.lines().take_while(|l| l.starts_with("--")).collect();
            assert!(
                header.contains(f.name),
                "{}: header must name the model",
                f.path()
            );
            assert!(
                header.contains("SPEC §"),
                "{}: header must cite the SPEC section",
                f.path()
            );
        }
    }

    #[test]
    fn every_report_query_has_a_header() {
        for f in of_kind(Kind::Report).unwrap() {
            let header = f.sql.lines().next().unwrap_or("");
            assert!(
                header.starts_with(&format!("-- report {}:", f.name)),
                "{}: {header}",
                f.path()
            );
        }
    }

    #[test]
    fn every_mart_is_a_metric_table_of_the_catalog() {
        use crate::engine::catalog::{tables, TableKind};
        let marts: Vec<&str> = of_kind(Kind::Mart)
            .unwrap()
            .iter()
            .map(|f| f.name)
            .collect();
        for t in tables() {
            if t.kind == TableKind::Metric {
                assert!(
                    marts.contains(&t.name),
                    "metric table `{}` has no mart",
                    t.name
                );
            }
        }
    }
}
