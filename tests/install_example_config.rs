//! The shipped settings file `tools/berth.toml` names every setting of `berth serve`, spelled
//! as its flag and variable are, and the defaults it states are the real ones.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use berth::config::{Cli, Config, ServeArgs};
use clap::CommandFactory;

/// Tables whose keys have the table's name in front of their flag (`[gc] interval` is
/// `--gc-interval`).
const TABLES: [&str; 5] = ["gc", "scrub", "admin", "auth", "audit"];

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/berth.toml")
}

/// `table.key` (or `key` at the top level) of every flag of `berth serve` but `--config`.
fn settings_of_the_command_line() -> BTreeSet<String> {
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").expect("serve");
    serve
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| !["config", "help"].contains(long))
        .map(|long| {
            TABLES
                .iter()
                .find_map(|t| {
                    long.strip_prefix(&format!("{t}-"))
                        .map(|k| format!("{t}.{k}"))
                })
                .unwrap_or_else(|| long.to_owned())
        })
        .collect()
}

/// The example with every `# key = value` line and `# [[table]]` header made real.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| {
            let Some(rest) = line.strip_prefix("# ") else {
                return line.to_owned();
            };
            let key = rest.split(" = ").next().unwrap_or("");
            let is_setting =
                rest.contains(" = ") && key.chars().all(|c| c.is_ascii_lowercase() || c == '-');
            if rest.starts_with("[[") {
                rest.to_owned()
            } else if is_setting {
                // Drop a trailing explanation: values hold no " #".
                rest.split(" #")
                    .next()
                    .unwrap_or(rest)
                    .trim_end()
                    .to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `table.key` of every setting the text sets (tables of tables, like `[[mirror]]`, left out).
fn keys_of(text: &str) -> BTreeSet<String> {
    let mut table = String::new();
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix("[[") {
            table = header.trim_end_matches(']').to_owned();
        } else if let Some(header) = line.strip_prefix('[') {
            table = header.trim_end_matches(']').to_owned();
        } else if let Some((key, _)) = line.split_once(" = ") {
            if !line.starts_with('#') {
                keys.insert(if table.is_empty() {
                    key.to_owned()
                } else {
                    format!("{table}.{key}")
                });
            }
        }
    }
    keys
}

#[test]
fn every_flag_has_its_key_in_the_example() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let keys = keys_of(&uncommented(&text));
    let missing: Vec<_> = settings_of_the_command_line()
        .into_iter()
        .filter(|s| !keys.contains(s))
        .collect();
    assert!(missing.is_empty(), "not in tools/berth.toml: {missing:?}");
    for table_key in ["mirror.ns", "mirror.upstream", "gc.retention.repositories"] {
        assert!(keys.contains(table_key), "{table_key} not shown");
    }
}

#[test]
fn every_flag_has_one_variable_spelled_like_it() {
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").expect("serve");
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" {
            continue;
        }
        let want = format!("BERTH_{}", long.to_uppercase().replace('-', "_"));
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        assert_eq!(env.as_deref(), Some(want.as_str()), "--{long}");
    }
}

#[test]
fn the_example_states_the_real_defaults() {
    let example = Config::resolve(ServeArgs {
        config: Some(example_path()),
        ..ServeArgs::default()
    })
    .unwrap();
    // Only these two are set for the systemd unit rather than left at their defaults.
    let defaults = Config::resolve(ServeArgs {
        listen: Some("0.0.0.0:5000".to_owned()),
        data: Some("/var/lib/berth".into()),
        ..ServeArgs::default()
    })
    .unwrap();
    assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
}

#[test]
fn the_commented_examples_are_valid_settings() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.toml");
    std::fs::write(&path, uncommented(&text)).unwrap();
    let args = berth::config::read_file(&path).unwrap();
    assert_eq!(args.mirror.len(), 1);
    assert!(args.tls_cert.is_some() && args.mirror_cache_size.is_some());
    assert_eq!(args.gc.retention.map(|r| r.len()), Some(1));
}
