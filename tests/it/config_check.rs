//! `pulse check-config`: every error names the file, the key and the problem.

use crate::common::Scratch;

#[test]
fn example_config_passes() {
    let s = Scratch::new();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/pulse.example.toml");
    let out = s.ok(&["--config", example, "check-config"]);
    assert!(out.contains("OK (1 communities configured)"), "{out}");
}

#[test]
fn errors_name_file_key_and_problem() {
    let s = Scratch::new();
    let bad = s.write(
        "bad.toml",
        "lake = \"./lake\"\n[defaults]\nwindow_days = -3\n",
    );
    let out = s.pulse(&["--config", bad.to_str().unwrap(), "check-config"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad config is a usage error (exit 2)"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("defaults.window_days"),
        "{err}"
    );

    let unknown = s.write("unknown.toml", "[engine]\nthreads = 4\n");
    let err = String::from_utf8_lossy(
        &s.pulse(&["--config", unknown.to_str().unwrap(), "check-config"])
            .stderr,
    )
    .to_string();
    assert!(
        err.contains("unknown.toml") && err.contains("unknown field `threads`"),
        "{err}"
    );

    let missing = s.pulse(&["--config", "nope.toml", "check-config"]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("nope.toml: cannot read the config file")
    );
}

#[test]
fn without_a_config_file_the_defaults_apply() {
    let s = Scratch::new();
    let out = s.ok(&["check-config"]);
    assert!(out.contains("built-in defaults"), "{out}");
}
