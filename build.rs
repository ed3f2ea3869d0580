//! Discovers the SQL project in `queries/` (dbt-style: the folder says what a file is) and
//! generates `$OUT_DIR/queries.rs`, a table of `(folder, name, include_str!(path))` sorted by
//! path, which `src/models/project.rs` includes. Adding a model is adding a file: nobody keeps a
//! list. What each folder means is the project module's business, not this script's.
//!
//! It also sets `PULSE_GIT_COMMIT` for `pulse --version`: the short commit of the checkout being
//! built (or the variable `PULSE_GIT_COMMIT`, for builds without `.git`), or `unknown` outside
//! a git checkout (a source archive, a crate download).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    git_commit();
    // Read at run time: a build script binary reused from a clone elsewhere (a shared
    // CARGO_TARGET_DIR) must read this checkout's queries.
    let root =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("queries");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();

    let mut out = String::from(
        "/// Every `queries/<folder>/<name>.sql` as (folder, name, SQL), sorted by path.\n\
         pub(crate) const FILES: &[(&str, &str, &str)] = &[\n",
    );
    for path in &files {
        let rel = path.strip_prefix(&root).expect("under queries/");
        let folder = rel
            .parent()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        let name = rel
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let valid = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !valid(&name) || name.is_empty() || !valid(&folder.replace('/', "_")) {
            panic!(
                "queries/{}: names of SQL files and folders must be lowercase ASCII letters, digits and `_` (they are table names)",
                rel.display()
            );
        }
        let path = path.to_str().unwrap_or_else(|| {
            panic!("queries/{}: path is not UTF-8", rel.display());
        });
        writeln!(out, "    ({folder:?}, {name:?}, include_str!({path:?})),").expect("write");
    }
    out.push_str("];\n");

    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("queries.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
}

/// Every `.sql` file under `dir`, recursively; each directory is watched for added files.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "sql") {
            files.push(path);
        }
    }
}

/// `PULSE_GIT_COMMIT`: the variable of that name when it is set (a container build, which
/// has no `.git`), else `git rev-parse --short HEAD` of the manifest's checkout, else `unknown`.
/// Rebuilds when HEAD moves: HEAD itself (a checkout) and the branch it names (a commit).
fn git_commit() {
    println!("cargo:rerun-if-env-changed=PULSE_GIT_COMMIT");
    if let Some(commit) = std::env::var("PULSE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
    {
        println!("cargo:rustc-env=PULSE_GIT_COMMIT={commit}");
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    println!(
        "cargo:rustc-env=PULSE_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    if commit.is_some() {
        let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(git(&["rev-parse", "--git-path", &branch]));
            watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
        }
        for path in watched.into_iter().flatten() {
            let path = Path::new(&dir).join(path);
            // A path that does not exist would make cargo run this script on every build.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
