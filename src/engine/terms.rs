//! The terms of a post, for emerging topics (docs/metrics.md#emerging_terms, SPEC §4.6
//! extended): the SQL function `post_terms(text)` → `List<Utf8>`.
//!
//! - Whitespace-separated chunks that are links or addresses (`://`, `www.`, `@`) are dropped
//!   whole: a URL's pieces are not topics.
//! - Runs of Han characters are segmented by jieba ([`jieba_rs`], with HMM for words missing
//!   from the dictionary — new vocabulary is exactly what emerging topics look for); everything
//!   else is split at Unicode word boundaries (UAX #29). Mixed text is both, run by run.
//! - Words are lowercased; kept if at least 2 characters long, with at least one letter (pure
//!   numbers, dates and versions go), and not a shipped stop word (`config/stopwords/`).
//! - Each term once per post, in byte order: the same text gives the same list.
//!
//! jieba-rs is the maintained Rust port of jieba, the segmenter most Chinese text pipelines use;
//! it is pure Rust, deterministic, and its dictionary and HMM are the ones the Python jieba
//! ships. Heavier options (lindera with a Chinese dictionary, charabia — which wraps jieba-rs)
//! add dictionaries or normalizers Pulse does not need. The community's own extra stop words
//! and the taxonomy's keywords are removed in SQL (`queries/marts/emerging_terms.sql`), where
//! the config's lists are parameter tables.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, ListBuilder, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::cast::as_string_array;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use jieba_rs::Jieba;
use unicode_segmentation::UnicodeSegmentation;

const DICTIONARY: &str = include_str!("terms/jieba_dict.txt");
const USER_DICTIONARY: &str = include_str!("terms/user_dict.txt");
/// The shipped stop word lists, one word a line, `#` comments.
pub const STOPWORDS_ZH: &str = include_str!("../../config/stopwords/zh.txt");
pub const STOPWORDS_EN: &str = include_str!("../../config/stopwords/en.txt");

/// Loaded once per process (~0.3 s): every session and Ballista executor shares it.
static JIEBA: LazyLock<Jieba> = LazyLock::new(|| {
    let mut jieba = Jieba::with_dict(&mut DICTIONARY.as_bytes())
        .expect("the shipped dictionary parses (tested)");
    for phrase in list_lines(USER_DICTIONARY) {
        // No frequency: jieba suggests one high enough to keep the phrase whole.
        jieba.add_word(phrase, None, None);
    }
    jieba
});

static STOPWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    list_lines(STOPWORDS_ZH)
        .chain(list_lines(STOPWORDS_EN))
        .collect()
});

/// The entries of a shipped list: trimmed lines, without blanks and `#` comments.
fn list_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The version of [`terms`]' rules. Bump it when they change (what is dropped, lengths, how
/// runs are cut, a jieba-rs upgrade that segments differently): stored segmentations (the
/// `post_words` rollup) are recomputed when it changes.
const RULES_VERSION: &str = "1";

/// A hash of what [`terms`] depends on besides its text — the rules' version, the shipped
/// dictionaries and stop word lists — so stored segmentations are recomputed when it changes.
pub fn rules_hash() -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for list in [
        RULES_VERSION,
        DICTIONARY,
        USER_DICTIONARY,
        STOPWORDS_ZH,
        STOPWORDS_EN,
    ] {
        h.update(list.as_bytes());
        h.update(&[0]);
    }
    format!("{:016x}", h.digest())
}

/// CJK ideographs (the unified blocks, extension A, the supplementary planes' extensions and
/// the compatibility block): the characters jieba segments.
fn is_han(c: char) -> bool {
    matches!(c,
        '\u{4E00}'..='\u{9FFF}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{3134F}')
}

fn is_link(chunk: &str) -> bool {
    chunk.contains("://") || chunk.starts_with("www.") || chunk.contains('@')
}

/// The terms of `text`, as the module documentation defines them.
pub fn terms(text: &str) -> Vec<String> {
    let mut found = BTreeSet::new();
    let mut keep = |word: &str| {
        let word = word.to_lowercase();
        if word.chars().count() >= 2
            && word.chars().any(char::is_alphabetic)
            && !STOPWORDS.contains(word.as_str())
        {
            found.insert(word);
        }
    };
    for chunk in text.split_whitespace().filter(|c| !is_link(c)) {
        let mut rest = chunk;
        while let Some(first) = rest.chars().next() {
            let han = is_han(first);
            let end = rest
                .char_indices()
                .find(|(_, c)| is_han(*c) != han)
                .map_or(rest.len(), |(i, _)| i);
            let (run, tail) = rest.split_at(end);
            if han {
                JIEBA.cut(run, true).iter().for_each(|t| keep(t.word));
            } else {
                run.unicode_words().for_each(&mut keep);
            }
            rest = tail;
        }
    }
    found.into_iter().collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PostTerms {
    signature: Signature,
}

/// The `post_terms(text)` UDF: [`terms`] of each value; null for null.
pub fn post_terms_udf() -> ScalarUDF {
    ScalarUDF::from(PostTerms {
        signature: Signature::uniform(
            1,
            vec![DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View],
            Volatility::Immutable,
        ),
    })
}

fn list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

impl ScalarUDFImpl for PostTerms {
    fn name(&self) -> &str {
        "post_terms"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(list_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let input: ArrayRef = datafusion::arrow::compute::cast(&input, &DataType::Utf8)?;
        let texts: &StringArray = as_string_array(&input)?;
        let mut out = ListBuilder::new(StringBuilder::new());
        for text in texts.iter() {
            match text {
                Some(text) => {
                    for term in terms(text) {
                        out.values().append_value(term);
                    }
                    out.append(true);
                }
                None => out.append(false),
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        debug_assert_eq!(array.len(), args.number_rows);
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Vec<String> {
        terms(text)
    }

    #[test]
    fn known_chinese_phrases_stay_whole() {
        let found = t("我最近在做数据分析，想转机器学习方向，大模型微调有推荐吗");
        for phrase in ["数据分析", "机器学习", "大模型", "微调", "方向"] {
            assert!(found.contains(&phrase.to_string()), "{phrase}: {found:?}");
        }
        // Single characters and stop words (最近 is a word, 我/在/做/想/有/吗 are not terms).
        assert!(found.iter().all(|w| w.chars().count() >= 2), "{found:?}");
    }

    #[test]
    fn english_words_are_lowercased_at_word_boundaries() {
        assert_eq!(
            t("How do I deploy FastAPI with Docker? Docker-compose, please!"),
            ["compose", "deploy", "docker", "fastapi"]
        );
    }

    #[test]
    fn stop_words_numbers_and_links_are_dropped() {
        assert_eq!(
            t("Thanks for the 2024 release notes v3.12 https://example.com/rust-news www.x.org a@b.cn 的 我们 请问"),
            ["notes", "release", "v3.12"]
        );
    }

    #[test]
    fn mixed_posts_are_segmented_run_by_run() {
        let found = t("用Rust写向量数据库，性能怎么样？Python呢？LangChain还是LlamaIndex");
        for term in [
            "rust",
            "向量数据库",
            "性能",
            "python",
            "langchain",
            "llamaindex",
        ] {
            assert!(found.contains(&term.to_string()), "{term}: {found:?}");
        }
        assert!(!found.contains(&"还是".to_string()));
    }

    #[test]
    fn terms_are_unique_sorted_and_deterministic() {
        let text = "Rust rust RUST 爬虫 爬虫 数据分析 rust";
        let once = t(text);
        assert_eq!(once, ["rust", "数据分析", "爬虫"]);
        assert_eq!(t(text), once);
        assert!(t("").is_empty() && t("的 了 吗 12 3.5").is_empty());
    }

    #[test]
    fn shipped_lists_parse() {
        assert!(STOPWORDS.contains("the") && STOPWORDS.contains("我们"));
        assert!(!STOPWORDS.contains("# english stop words"));
        assert!(list_lines(USER_DICTIONARY).all(|l| l.chars().all(is_han)));
    }

    #[tokio::test]
    async fn the_sql_function_returns_a_list_per_row() {
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_udf(post_terms_udf());
        let batches = ctx
            .sql("SELECT post_terms(t) AS terms FROM (VALUES ('Docker 部署'), (NULL)) AS v(t)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let list = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::ListArray>()
            .unwrap();
        let first = list.value(0);
        let first = first.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(
            first.iter().flatten().collect::<Vec<_>>(),
            ["docker", "部署"]
        );
        assert!(list.is_null(1));
    }
}
