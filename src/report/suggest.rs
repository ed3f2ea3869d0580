//! `pulse taxonomy suggest`: the emerging topics of one community and as_of
//! (docs/metrics.md#emerging_terms) as TOML to paste into the taxonomy config, each term under
//! the category whose posts use it most, or in a commented new category when no category's
//! posts do. Read from the lake like the report ([`super::read`]), so the suggestions are the
//! terms the report shows.

use std::fmt::Write;

use chrono::NaiveDate;

use super::gather::EmergingTerm;
use super::read::Queries;
use crate::config::{CommunitySettings, Config, Taxonomy};
use crate::error::Result;
use crate::lake::Lake;

/// The suggestions for `settings`' community at `as_of` (which must have metrics): the first
/// `top` emerging terms of each taxonomy.
pub async fn suggestions(
    config: &Config,
    lake: &Lake,
    settings: &CommunitySettings,
    as_of: NaiveDate,
    top: u32,
) -> Result<String> {
    let q = Queries::open(config, lake, settings, as_of).await?;
    let terms: Vec<EmergingTerm> = q.rows("emerging", top as i64).await?;
    Ok(to_toml(&settings.id, as_of, &settings.taxonomies, &terms))
}

/// A TOML string literal (quoted and escaped as TOML wants).
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// One keyword line: the term, and why, as a comment.
fn keyword_line(t: &EmergingTerm, prefix: &str) -> String {
    let mut why = format!(
        "{} members ({:+} on the window before), {} posts",
        t.authors,
        t.authors - t.prev_authors,
        t.posts
    );
    if t.category.is_some() {
        let _ = write!(why, ", {} in this category", t.category_posts);
    }
    if let Some(example) = t.examples.first() {
        // A comment ends at the line's end: an example cannot break out of it.
        let _ = write!(why, "; e.g. {}", example.replace(['\n', '\r'], " "));
    }
    format!("{prefix}  {},  # {why}\n", quoted(&t.term))
}

/// The suggestions as a TOML document in the shape of the config's `[[taxonomies]]`:
/// taxonomies and categories in config order, terms in rank order; terms no category uses
/// in a commented-out new category at the end of their taxonomy.
pub fn to_toml(
    community: &str,
    as_of: NaiveDate,
    taxonomies: &[Taxonomy],
    terms: &[EmergingTerm],
) -> String {
    let mut out = format!(
        "# Keyword suggestions for community `{community}`, as_of {as_of} (emerging_terms):\n\
         # words members use that no keyword covers, under the category whose posts use them\n\
         # most. Add each category's keywords to the same category's `keywords` in your config\n\
         # (the [[taxonomies]] of the config, or of the community's [[communities]] entry).\n"
    );
    if terms.is_empty() {
        out.push_str("# No emerging terms: every word used by enough members is covered.\n");
    }
    for taxonomy in taxonomies {
        let of_taxonomy: Vec<&EmergingTerm> = terms
            .iter()
            .filter(|t| t.taxonomy == taxonomy.name)
            .collect();
        if of_taxonomy.is_empty() {
            continue;
        }
        let _ = write!(out, "\n[[taxonomies]]\nname = {}\n", quoted(&taxonomy.name));
        for category in &taxonomy.categories {
            let lines: String = of_taxonomy
                .iter()
                .filter(|t| t.category.as_deref() == Some(category.name.as_str()))
                .map(|t| keyword_line(t, ""))
                .collect();
            if !lines.is_empty() {
                let _ = write!(
                    out,
                    "\n[[taxonomies.categories]]\nname = {}\nkeywords = [\n{lines}]\n",
                    quoted(&category.name)
                );
            }
        }
        let new: String = of_taxonomy
            .iter()
            .filter(|t| t.category.is_none())
            .map(|t| keyword_line(t, "#"))
            .collect();
        if !new.is_empty() {
            let _ = write!(
                out,
                "\n# Used in posts of no category of `{}`: a new category? Name it and uncomment.\n\
                 # [[taxonomies.categories]]\n# name = \"…\"\n# keywords = [\n{new}# ]\n",
                taxonomy.name
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Category;

    fn term(taxonomy: &str, term: &str, category: Option<&str>) -> EmergingTerm {
        EmergingTerm {
            taxonomy: taxonomy.into(),
            rank: 1,
            term: term.into(),
            authors: 3,
            posts: 4,
            prev_authors: 1,
            growth: 2.0,
            category: category.map(str::to_string),
            category_posts: if category.is_some() { 2 } else { 0 },
            examples: vec!["Say \"hi\"\n# not a key = 1".into()],
        }
    }

    #[test]
    fn suggestions_are_toml_in_the_config_shape() {
        let taxonomies = vec![Taxonomy {
            name: "needs".into(),
            categories: ["学习需求", "社交需求"]
                .map(|n| Category {
                    name: n.into(),
                    keywords: vec!["x".into()],
                })
                .to_vec(),
        }];
        let terms = [
            term("needs", "机器学习", Some("学习需求")),
            term("needs", "大模型", None),
            term("needs", "rust \"fast\"", Some("学习需求")),
            term("content", "ignored", None),
        ];
        let text = to_toml("c1", "2026-11-23".parse().unwrap(), &taxonomies, &terms);
        let doc: toml::Value = toml::from_str(&text).unwrap();
        let tax = doc["taxonomies"].as_array().unwrap();
        assert_eq!(tax.len(), 1);
        assert_eq!(tax[0]["name"].as_str(), Some("needs"));
        let categories = tax[0]["categories"].as_array().unwrap();
        assert_eq!(categories.len(), 1);
        assert_eq!(categories[0]["name"].as_str(), Some("学习需求"));
        let keywords: Vec<&str> = categories[0]["keywords"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(keywords, ["机器学习", "rust \"fast\""]);
        assert!(
            text.contains("# keywords = [\n#  \"大模型\",  # 3 members (+2"),
            "{text}"
        );
        assert!(!text.contains("ignored"));
    }
}
