//! Compaction (`pulse compact`, and after a run's intake): many small imports merged into one
//! file per partition, with the same rows, the same metrics, dedupe intact, and readers and
//! importers running beside it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::{parquet_files, Scratch};

const AS_OF: &str = "2026-11-23";

/// Generate two communities and import them as `chunks` imports, each holding every
/// `chunks`-th line (so every import touches most partitions). Returns the chunk files.
fn small_imports(s: &Scratch, members: &str, chunks: usize) -> Vec<std::path::PathBuf> {
    let all = s.path("all.ndjson");
    s.ok(&[
        "generate",
        "--members",
        members,
        "--days",
        "20",
        "--communities",
        "2",
        "--seed",
        "5",
        "--end",
        AS_OF,
        "--out",
        all.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&all).unwrap();
    let mut parts = vec![String::new(); chunks];
    for (i, line) in text.lines().enumerate() {
        parts[i % chunks].push_str(line);
        parts[i % chunks].push('\n');
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let f = s.write(&format!("chunk{i}.ndjson"), part);
            s.ok(&["import", f.to_str().unwrap()]);
            f
        })
        .collect()
}

/// Event files per partition directory.
fn files_per_partition(s: &Scratch) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for f in parquet_files(&s.lake().join("events")) {
        let (dir, _) = f.rsplit_once('/').unwrap();
        *out.entry(dir.to_string()).or_default() += 1;
    }
    out
}

/// Every row of `table`, as text, sorted (a multiset).
fn sorted_rows(s: &Scratch, table: &str) -> Vec<Vec<String>> {
    let mut rows = s.rows(&format!("SELECT * FROM {table}"));
    rows.sort();
    rows
}

/// Equal rows, numbers compared to 1e-9 relative (floating-point sums may add in another
/// order when the files are laid out differently).
fn assert_same_rows(table: &str, a: &[Vec<String>], b: &[Vec<String>]) {
    assert_eq!(a.len(), b.len(), "{table}: row counts");
    for (x, y) in a.iter().zip(b) {
        for (u, v) in x.iter().zip(y) {
            let same = match (u.parse::<f64>(), v.parse::<f64>()) {
                (Ok(p), Ok(q)) => (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0),
                _ => u == v,
            };
            assert!(same, "{table}: {x:?} != {y:?}");
        }
    }
}

fn metric_tables() -> Vec<&'static str> {
    pulse::engine::catalog::of_kind(pulse::engine::catalog::TableKind::Metric)
        .iter()
        .map(|t| t.name)
        .collect()
}

#[test]
fn small_imports_compact_to_one_file_per_partition_with_the_same_rows_and_metrics() {
    let s = Scratch::new();
    // Only `pulse compact` compacts here (the run's automatic step is tested below).
    s.config("[compaction]\nmax_files = 0\n");
    let chunks = small_imports(&s, "120", 6);
    let before = files_per_partition(&s);
    assert!(before.len() > 30, "{before:?}");
    assert!(before.values().any(|&n| n == 6), "{before:?}");
    let events = sorted_rows(&s, "events");
    s.compute(AS_OF);
    let metrics: Vec<_> = metric_tables()
        .into_iter()
        .map(|t| (t, sorted_rows(&s, t)))
        .collect();
    assert!(metrics.iter().any(|(_, rows)| rows.len() > 50));

    // An older part first, then the rest: `--before` leaves later days alone.
    let out = s.ok(&["compact", "--before", "2026-11-10"]);
    let partial = files_per_partition(&s);
    for (dir, n) in &partial {
        let day = dir.rsplit_once("event_date=").unwrap().1;
        let expected = if day < "2026-11-10" { 1 } else { before[dir] };
        assert_eq!(*n, expected, "{dir} after `{out}`");
    }
    let out = s.ok(&["compact"]);
    assert!(out.starts_with("compacted "), "{out}");
    let after = files_per_partition(&s);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    assert!(after.values().all(|&n| n == 1), "{after:?}");
    assert_eq!(sorted_rows(&s, "events"), events);
    // Nothing left to do the second time.
    assert!(s.ok(&["compact"]).starts_with("compacted 0 partition(s)"));

    // The rollups see new file names and are recomputed once; the metrics are the same.
    s.compute(AS_OF);
    for (table, rows) in &metrics {
        assert_same_rows(table, rows, &sorted_rows(&s, table));
    }

    // Dedupe still knows every compacted event: importing the input again adds nothing.
    for chunk in &chunks {
        let out = s.ok(&["import", chunk.to_str().unwrap()]);
        assert!(out.contains("imported 0 "), "{out}");
    }
    assert_eq!(files_per_partition(&s), after);
    assert_eq!(sorted_rows(&s, "events"), events);

    // A compacted file is sorted like an import writes it, and says so.
    let first = s.lake().join("events").join(after.keys().next().unwrap());
    let file = std::fs::read_dir(&first)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let reader = datafusion::parquet::file::reader::SerializedFileReader::new(
        std::fs::File::open(file).unwrap(),
    )
    .unwrap();
    let sorting = datafusion::parquet::file::reader::FileReader::metadata(&reader)
        .row_group(0)
        .sorting_columns();
    assert_eq!(sorting.map(|c| c.len()), Some(2));
}

#[test]
fn a_run_compacts_partitions_with_more_files_than_the_config_allows() {
    let s = Scratch::new();
    s.config("[compaction]\nmax_files = 3\n");
    small_imports(&s, "40", 5);
    let before = files_per_partition(&s);
    assert!(before.values().any(|&n| n > 3), "{before:?}");
    let total: usize = before.values().sum();
    let out = s.run(AS_OF);
    let after = files_per_partition(&s);
    for (dir, n) in &after {
        let expected = if before[dir] > 3 { 1 } else { before[dir] };
        assert_eq!(*n, expected, "{dir}: {out}");
    }
    let runs = s.ok(&["runs"]);
    assert!(runs.contains("compaction"), "{runs}");
    assert!(after.values().sum::<usize>() < total);
}

/// A reader querying in a loop while partitions are swapped sees the same count every time,
/// never an error (a file replaced under a query makes it run again).
#[test]
fn a_concurrent_reader_sees_the_same_rows_throughout() {
    let s = Scratch::new();
    s.config("[compaction]\nmax_files = 0\n");
    small_imports(&s, "120", 6);
    let expected = s.scalar("SELECT count(*) FROM events");
    let done = AtomicBool::new(false);
    let seen = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(Ordering::Relaxed) {
                seen.push(s.scalar("SELECT count(*) FROM events"));
            }
            seen
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let out = s.ok(&["compact"]);
        assert!(!out.starts_with("compacted 0 "), "{out}");
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    assert!(seen.len() >= 3, "only {} queries ran", seen.len());
    assert!(
        seen.iter().all(|c| *c == expected),
        "{expected} expected: {seen:?}"
    );
    assert!(files_per_partition(&s).values().all(|&n| n == 1));
}

/// Compaction waits for the lake lock an import holds, and an import started during a
/// compaction waits for it: both finish and nothing is lost.
#[test]
fn compaction_and_import_take_turns_on_the_lake_lock() {
    let s = Scratch::new();
    s.config("[compaction]\nmax_files = 0\n");
    small_imports(&s, "120", 6);
    let before: u64 = s.scalar("SELECT count(*) FROM events").parse().unwrap();
    let late: String = (0..500)
        .map(|i| {
            crate::common::event(
                &format!("late-{i}"),
                &format!("m{}", i % 7),
                "post",
                "2026-11-20T10:00:00Z",
            )
            .replace("\"c1\"", "\"late-community\"")
                + "\n"
        })
        .collect();
    let late = s.write("late.ndjson", &late);

    // Held by "an import": compaction must wait.
    let (_, lake) = s.library_config();
    let lock = lake.lock().unwrap();
    let spawn = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pulse"))
            .current_dir(s.dir.path())
            .env_remove("PULSE_CONFIG")
            .arg("--lake")
            .arg(s.lake())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut compaction = spawn(&["compact"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        compaction.try_wait().unwrap().is_none(),
        "compaction did not wait for the lock"
    );
    // A real import queues behind it too; release and let both run.
    let import = spawn(&["import", late.to_str().unwrap()]);
    drop(lock);
    let compaction = compaction.wait_with_output().unwrap();
    let import = import.wait_with_output().unwrap();
    assert!(
        compaction.status.success(),
        "{}",
        String::from_utf8_lossy(&compaction.stderr)
    );
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert!(String::from_utf8_lossy(&import.stdout).contains("imported 500 "));
    let after: u64 = s.scalar("SELECT count(*) FROM events").parse().unwrap();
    assert_eq!(after, before + 500);
    // Whatever order they ran in, a second compaction leaves one file per partition.
    s.ok(&["compact"]);
    assert!(files_per_partition(&s).values().all(|&n| n == 1));
    assert_eq!(s.scalar("SELECT count(*) FROM events"), after.to_string());
}
