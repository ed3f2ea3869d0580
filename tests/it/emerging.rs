//! Emerging topics (docs/metrics.md#emerging_terms): hand-made posts in Chinese, English and
//! both, in W and W′; window_days = 10, as_of = 2026-11-11 in UTC, so W = 2026-11-01 … 11-10
//! and W′ = 2026-10-22 … 10-31.

use crate::common::{approx, e, Scratch, E};

const CONFIG: &str = r#"
[defaults]
window_days = 10
emerging = { extra_stopwords = ["Pulse"] }

[[taxonomies]]
name = "needs"
categories = [
  { name = "learning", keywords = ["Course", "学习"] },
  { name = "social", keywords = ["meetup"] },
]

[[taxonomies]]
name = "tools"
categories = [ { name = "infra", keywords = ["kube"] } ]
"#;

fn post(member: &str, at: &str, title: &str, body: &str) -> E {
    e(member, "post", at).set("title", title).set("body", body)
}

fn scratch() -> Scratch {
    let s = Scratch::new();
    s.config(CONFIG);
    s.import(&[
        // W′
        post("a", "2026-10-25T10:00:00Z", "Docker basics", ""),
        post("p", "2026-10-26T10:00:00Z", "Python tips", ""),
        post("q", "2026-10-27T10:00:00Z", "python question", ""),
        // W
        post(
            "a",
            "2026-11-02T10:00:00Z",
            "Docker course for beginners",
            "",
        ),
        post(
            "b",
            "2026-11-03T10:00:00Z",
            "用Docker部署大模型",
            "pulse 社区 course 有推荐吗",
        ),
        post("c", "2026-11-04T10:00:00Z", "Docker meetup in Shanghai", ""),
        post("b", "2026-11-05T10:00:00Z", "Rust async", "kubernetes llm"),
        post("b", "2026-11-06T10:00:00Z", "Rust again", ""),
        post(
            "d",
            "2026-11-07T10:00:00Z",
            "Rust and 大模型",
            "kubernetes courses LLM",
        ),
        post("p", "2026-11-08T10:00:00Z", "python packaging", "Pulse"),
        post(
            "q",
            "2026-11-08T11:00:00Z",
            "python typing",
            "https://docs.python.org/3/ 2024",
        ),
        // 机器学习 contains the keyword 学习, meet is part of the keyword meetup.
        post("e", "2026-11-09T10:00:00Z", "机器学习 meet", ""),
        post("f", "2026-11-09T11:00:00Z", "机器学习 meet", ""),
    ]);
    s.compute("2026-11-11");
    s
}

#[test]
fn emerging_terms_rank_exclude_keywords_and_grow_against_the_previous_window() {
    let s = scratch();
    let rows = s.records(
        "SELECT taxonomy, rank, term, authors, posts, prev_authors, growth, category, \
         category_posts, array_to_string(examples, ' | ') AS examples \
         FROM emerging_terms ORDER BY taxonomy, rank",
    );
    let of = |tax: &str| -> Vec<&std::collections::HashMap<String, String>> {
        rows.iter().filter(|r| r["taxonomy"] == tax).collect()
    };
    let terms = |tax: &str| -> Vec<String> { of(tax).iter().map(|r| r["term"].clone()).collect() };
    // docker: 3 authors (growth 2 against a in W′); rust, llm, 大模型: 2 authors, growth 2,
    // rust with 3 posts first, then the 2-post tie in byte order; python: 2 authors, both seen
    // in W′ (growth 0). Single-author terms (部署, shanghai, …), keywords of any taxonomy and
    // what contains or is contained in them (course, courses, 机器学习, meet, kubernetes ⊃
    // kube), the extra stop word pulse, the URL and the number are not terms.
    assert_eq!(
        terms("needs"),
        ["docker", "rust", "llm", "大模型", "python"]
    );
    assert_eq!(terms("tools"), terms("needs"));
    let needs = of("needs");
    let docker = needs[0];
    assert_eq!(
        (
            &*docker["rank"],
            &*docker["authors"],
            &*docker["posts"],
            &*docker["prev_authors"]
        ),
        ("1", "3", "3", "1")
    );
    assert!(approx(&docker["growth"], 2.0));
    // Posts 1 and 2 are in `learning` (course), post 3 in `social` (meetup).
    assert_eq!(
        (&*docker["category"], &*docker["category_posts"]),
        ("learning", "2")
    );
    assert_eq!(
        docker["examples"],
        "Docker meetup in Shanghai | 用Docker部署大模型 | Docker course for beginners"
    );
    let python = needs[4];
    assert!(approx(&python["growth"], 0.0));
    assert_eq!(python["prev_authors"], "2");
    assert_eq!(python["category"], "", "python's posts are in no category");
    assert_eq!(
        needs[1]["examples"],
        "Rust and 大模型 | Rust again | Rust async"
    );
    assert_eq!(needs[3]["category_posts"], "2");
    // The category is the taxonomy's own: kube matches posts 4 and 6.
    let tools = of("tools");
    assert_eq!(
        (&*tools[1]["category"], &*tools[1]["category_posts"]),
        ("infra", "2")
    );
    assert_eq!(tools[0]["category"], "");

    // The same input gives the same table.
    s.compute("2026-11-11");
    assert_eq!(
        s.records(
            "SELECT taxonomy, rank, term, authors, posts, prev_authors, growth, category, \
             category_posts, array_to_string(examples, ' | ') AS examples \
             FROM emerging_terms ORDER BY taxonomy, rank",
        ),
        rows
    );
}

#[test]
fn taxonomy_suggest_prints_pasteable_toml_and_the_report_lists_the_terms() {
    let s = scratch();
    let out = s.ok(&[
        "taxonomy",
        "suggest",
        "--community",
        "c1",
        "--as-of",
        "2026-11-11",
    ]);
    let doc: toml::Value = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let taxonomies = doc["taxonomies"].as_array().unwrap();
    assert_eq!(taxonomies[0]["name"].as_str(), Some("needs"));
    let categories = taxonomies[0]["categories"].as_array().unwrap();
    assert_eq!(categories.len(), 1, "{out}");
    assert_eq!(categories[0]["name"].as_str(), Some("learning"));
    let keywords: Vec<&str> = categories[0]["keywords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keywords, ["docker", "rust", "llm", "大模型"]);
    // python's posts are in no category: a commented new category.
    assert!(out.contains("# keywords = [\n#  \"python\","), "{out}");
    assert_eq!(taxonomies[1]["name"].as_str(), Some("tools"));
    let infra = &taxonomies[1]["categories"][0];
    assert_eq!(infra["name"].as_str(), Some("infra"));
    assert_eq!(infra["keywords"].as_array().unwrap().len(), 3, "{out}");

    let dir = s.path("preview");
    s.ok(&[
        "report",
        "--as-of",
        "2026-11-11",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(dir.join("c1/2026-11-11/report.txt")).unwrap();
    let needs = &text[text.find("Needs:").expect("needs section")..];
    let order = [
        "1. learning:",
        "2. social:",
        "- Uncategorized:",
        "tools:",
        "- Uncategorized:",
        "Emerging topics",
        "* docker: Members 3",
    ];
    // Each after the one before.
    let mut from = 0;
    for o in order {
        from += needs[from..]
            .find(o)
            .unwrap_or_else(|| panic!("{o} missing after byte {from}:\n{needs}"));
    }
    assert!(
        needs.contains("Example \"Docker meetup in Shanghai\""),
        "{needs}"
    );
    let html = std::fs::read_to_string(dir.join("c1/2026-11-11/report.html")).unwrap();
    assert!(html.contains("Emerging topics") && html.contains("大模型"));
}
