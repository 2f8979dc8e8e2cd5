//! The `[gc]` and `[scrub]` tables of the TOML file and their `--gc-*` / `--scrub-*` flags:
//! when the server collects garbage and scrubs, and what a collection does.

use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::config::units::{ByteRate, HumanDuration, Interval};
use crate::config::ConfigError;
use crate::storage::{GcOptions, RetentionRule};

/// Compaction I/O budget of the server when none is configured. Compaction reads and rewrites
/// live bytes while pushes and pulls go on; 100 MB/s is about a tenth of the 1.1–1.5 GB/s the
/// development VM's disk writes (README, Performance) and a fifth of a SATA SSD, so a
/// collection leaves most of the disk to clients and still moves 6 GB a minute. Slow flash
/// (SD cards, eMMC) wants less, e.g. `rate = "20MB"`.
pub const DEFAULT_GC_RATE: u64 = 100_000_000;

/// Scrub read budget when none is configured, by the same reasoning as [`DEFAULT_GC_RATE`]: a
/// scrub only reads, but it reads everything.
pub const DEFAULT_SCRUB_RATE: u64 = 100_000_000;

/// `[gc]`: flags `--gc-*`, variables `BERTH_GC_*`.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GcArgs {
    /// Collect garbage this often, e.g. 1h or 7d; off disables [default: off].
    #[arg(
        id = "gc_interval",
        long = "gc-interval",
        env = "BERTH_GC_INTERVAL",
        value_name = "DURATION"
    )]
    pub interval: Option<Interval>,
    /// Keep unreferenced blob links younger than this [default: 0].
    #[arg(
        id = "gc_grace",
        long = "gc-grace",
        env = "BERTH_GC_GRACE",
        value_name = "DURATION"
    )]
    pub grace: Option<HumanDuration>,
    /// Compact segments after sweeping [default: true].
    #[arg(
        id = "gc_compact",
        long = "gc-compact",
        env = "BERTH_GC_COMPACT",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub compact: Option<bool>,
    /// Rewrite sealed segments whose live share fell below this fraction [default: 0.5].
    #[arg(
        id = "gc_compact_threshold",
        long = "gc-compact-threshold",
        env = "BERTH_GC_COMPACT_THRESHOLD",
        value_name = "FRACTION"
    )]
    pub compact_threshold: Option<f64>,
    /// Compaction I/O budget, e.g. 50MB or unlimited [default: 100MB].
    #[arg(
        id = "gc_rate",
        long = "gc-rate",
        env = "BERTH_GC_RATE",
        value_name = "RATE"
    )]
    pub rate: Option<ByteRate>,
    /// Scheduled collections only report what they would delete [default: false].
    #[arg(
        id = "gc_dry_run",
        long = "gc-dry-run",
        env = "BERTH_GC_DRY_RUN",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub dry_run: Option<bool>,
    /// `[[gc.retention]]` tables (TOML only).
    #[arg(skip)]
    pub retention: Option<Vec<RetentionArgs>>,
}

impl GcArgs {
    /// Fills every unset field from `other`.
    pub fn or(self, other: GcArgs) -> GcArgs {
        GcArgs {
            interval: self.interval.or(other.interval),
            grace: self.grace.or(other.grace),
            compact: self.compact.or(other.compact),
            compact_threshold: self.compact_threshold.or(other.compact_threshold),
            rate: self.rate.or(other.rate),
            dry_run: self.dry_run.or(other.dry_run),
            retention: self.retention.or(other.retention),
        }
    }

    /// What a collection does with these settings; `default_rate` applies when no `rate` is
    /// set (the server shares the disk, an offline run need not).
    pub fn options(&self, default_rate: Option<u64>) -> Result<GcOptions, ConfigError> {
        let defaults = GcOptions::default();
        let compact_threshold = self.compact_threshold.unwrap_or(defaults.compact_threshold);
        if !(0.0..=1.0).contains(&compact_threshold) {
            return Err(ConfigError::Invalid(format!(
                "compact-threshold must be between 0 and 1, not {compact_threshold}"
            )));
        }
        let retention = self
            .retention
            .iter()
            .flatten()
            .map(RetentionArgs::rule)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GcOptions {
            dry_run: self.dry_run.unwrap_or(defaults.dry_run),
            grace: self.grace.map_or(defaults.grace, |g| g.0),
            compact: self.compact.unwrap_or(defaults.compact),
            compact_threshold,
            compact_rate: self.rate.map_or(default_rate, |r| r.0),
            retention,
        })
    }
}

/// One `[[gc.retention]]` table.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetentionArgs {
    pub repositories: String,
    pub delete_untagged_after: Option<HumanDuration>,
    pub keep_newest_tags: Option<usize>,
    #[serde(default)]
    pub protect_tags: Vec<String>,
}

impl RetentionArgs {
    fn rule(&self) -> Result<RetentionRule, ConfigError> {
        let bad = |what: &str| {
            ConfigError::Invalid(format!(
                "[[gc.retention]] for {:?}: {what}",
                self.repositories
            ))
        };
        if self.repositories.trim().is_empty() {
            return Err(bad("repositories must be a glob such as \"ci/**\""));
        }
        if self.keep_newest_tags == Some(0) {
            // Almost certainly a mistake, and it would delete every unprotected tag.
            return Err(bad("keep-newest-tags must be at least 1"));
        }
        if self.protect_tags.iter().any(|t| t.trim().is_empty()) {
            return Err(bad("protect-tags holds an empty glob"));
        }
        Ok(RetentionRule {
            repositories: self.repositories.clone(),
            delete_untagged_after: self.delete_untagged_after.map(|d| d.0),
            keep_newest_tags: self.keep_newest_tags,
            protect_tags: self.protect_tags.clone(),
        })
    }
}

/// `[scrub]`: flags `--scrub-*`, variables `BERTH_SCRUB_*`.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScrubArgs {
    /// Re-read and check every record this often, e.g. 7d; off disables [default: off].
    #[arg(
        id = "scrub_interval",
        long = "scrub-interval",
        env = "BERTH_SCRUB_INTERVAL",
        value_name = "DURATION"
    )]
    pub interval: Option<Interval>,
    /// Scrub read budget, e.g. 50MB or unlimited [default: 100MB].
    #[arg(
        id = "scrub_rate",
        long = "scrub-rate",
        env = "BERTH_SCRUB_RATE",
        value_name = "RATE"
    )]
    pub rate: Option<ByteRate>,
}

impl ScrubArgs {
    pub fn or(self, other: ScrubArgs) -> ScrubArgs {
        ScrubArgs {
            interval: self.interval.or(other.interval),
            rate: self.rate.or(other.rate),
        }
    }
}

/// Resolved `[gc]` for the server: how often, and what each run (scheduled or asked for on
/// the admin endpoint without overrides) does.
#[derive(Debug, Clone)]
pub struct GcSettings {
    pub interval: Option<Duration>,
    pub options: GcOptions,
}

/// Resolved `[scrub]`.
#[derive(Debug, Clone)]
pub struct ScrubSettings {
    pub interval: Option<Duration>,
    /// Bytes per second; `None` reads as fast as the disk goes.
    pub rate: Option<u64>,
}

impl Default for GcSettings {
    fn default() -> GcSettings {
        GcSettings {
            interval: None,
            options: GcOptions {
                compact_rate: Some(DEFAULT_GC_RATE),
                ..GcOptions::default()
            },
        }
    }
}

impl Default for ScrubSettings {
    fn default() -> ScrubSettings {
        ScrubSettings {
            interval: None,
            rate: Some(DEFAULT_SCRUB_RATE),
        }
    }
}

impl GcSettings {
    pub fn resolve(args: &GcArgs) -> Result<GcSettings, ConfigError> {
        Ok(GcSettings {
            interval: args.interval.and_then(|i| i.0),
            options: args.options(Some(DEFAULT_GC_RATE))?,
        })
    }
}

impl ScrubSettings {
    pub fn resolve(args: &ScrubArgs) -> ScrubSettings {
        ScrubSettings {
            interval: args.interval.and_then(|i| i.0),
            rate: args.rate.map_or(Some(DEFAULT_SCRUB_RATE), |r| r.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use crate::api::{AdminAccess, Policy};
    use crate::config::{Cli, Command, Config, ConfigError, ServeArgs};
    use crate::storage::RetentionRule;

    const FULL: &str = r#"
delete = false

[gc]
interval = "1h"
grace = "10m"
compact = false
compact-threshold = 0.25
rate = "50MB"
dry-run = true

[[gc.retention]]
repositories = "ci/**"
delete-untagged-after = "7d"
keep-newest-tags = 10
protect-tags = ["v*", "latest"]

[[gc.retention]]
repositories = "prod/*"

[scrub]
interval = "7d"
rate = "unlimited"

[admin]
allow = "any"
"#;

    fn file(text: &str) -> (tempfile::TempDir, ServeArgs) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, text).unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        (dir, args)
    }

    fn serve_flags(flags: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(["berth", "serve"].iter().chain(flags)).unwrap();
        match cli.command {
            Command::Serve(args) => *args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_collect_and_scrub_never_and_allow_deletes() {
        let c = Config::resolve(ServeArgs::default()).unwrap();
        assert_eq!(c.gc.interval, None);
        assert_eq!(c.gc.options.compact_rate, Some(super::DEFAULT_GC_RATE));
        assert_eq!(c.gc.options.grace, Duration::ZERO);
        assert!(c.gc.options.compact && !c.gc.options.dry_run);
        assert_eq!(c.gc.options.compact_threshold, 0.5);
        assert!(c.gc.options.retention.is_empty());
        assert_eq!(c.scrub.interval, None);
        assert_eq!(c.scrub.rate, Some(super::DEFAULT_SCRUB_RATE));
        assert_eq!(c.policy, Policy::default());
        assert!(c.policy.deletes);
        assert_eq!(c.policy.admin, AdminAccess::Loopback);
    }

    #[test]
    fn every_key_of_the_file() {
        let (_dir, args) = file(FULL);
        let c = Config::resolve(args).unwrap();
        assert_eq!(c.gc.interval, Some(Duration::from_secs(3600)));
        let o = &c.gc.options;
        assert_eq!(o.grace, Duration::from_secs(600));
        assert!(!o.compact);
        assert_eq!(o.compact_threshold, 0.25);
        assert_eq!(o.compact_rate, Some(50_000_000));
        assert!(o.dry_run);
        assert_eq!(
            o.retention,
            vec![
                RetentionRule {
                    repositories: "ci/**".into(),
                    delete_untagged_after: Some(Duration::from_secs(7 * 86_400)),
                    keep_newest_tags: Some(10),
                    protect_tags: vec!["v*".into(), "latest".into()],
                },
                RetentionRule {
                    repositories: "prod/*".into(),
                    ..RetentionRule::default()
                },
            ]
        );
        assert_eq!(c.scrub.interval, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(c.scrub.rate, None);
        assert!(!c.policy.deletes);
        assert_eq!(c.policy.admin, AdminAccess::Any);
    }

    #[test]
    fn flags_override_the_tables() {
        let (_dir, file_args) = file(FULL);
        let mut args = serve_flags(&[
            "--gc-interval",
            "off",
            "--gc-grace",
            "30s",
            "--gc-compact",
            "--gc-dry-run=false",
            "--gc-rate",
            "1GiB",
            "--gc-compact-threshold",
            "0.75",
            "--scrub-interval",
            "12h",
            "--scrub-rate",
            "20MB/s",
            "--admin-allow",
            "off",
            "--delete",
            "true",
        ]);
        args.config = file_args.config;
        let c = Config::resolve(args).unwrap();
        assert_eq!(c.gc.interval, None);
        assert_eq!(c.gc.options.grace, Duration::from_secs(30));
        assert!(c.gc.options.compact);
        assert!(!c.gc.options.dry_run);
        assert_eq!(c.gc.options.compact_rate, Some(1 << 30));
        assert_eq!(c.gc.options.compact_threshold, 0.75);
        // Retention rules come from the file only.
        assert_eq!(c.gc.options.retention.len(), 2);
        assert_eq!(c.scrub.interval, Some(Duration::from_secs(12 * 3600)));
        assert_eq!(c.scrub.rate, Some(20_000_000));
        assert_eq!(c.policy.admin, AdminAccess::Off);
        assert!(c.policy.deletes);
    }

    #[test]
    fn bad_values_are_refused() {
        for text in [
            "[gc]\ninterval = \"often\"\n",
            "[gc]\ngrace = \"10\"\n",
            "[gc]\nrate = \"fast\"\n",
            "[gc]\nrate = 0\n",
            "[gc]\nevery = \"1h\"\n",
            "[scrub]\ninterval = \"1 day\"\n",
            "[admin]\nallow = \"everyone\"\n",
            "[[gc.retention]]\nrepositories = \"a\"\nkeep-last = 3\n",
            "[[gc.retention]]\nkeep-newest-tags = 3\n",
            "delete = \"no\"\n",
        ] {
            let (_dir, args) = file(text);
            assert!(
                matches!(Config::resolve(args), Err(ConfigError::Parse { .. })),
                "{text}"
            );
        }
        for text in [
            "[gc]\ncompact-threshold = 1.5\n",
            "[[gc.retention]]\nrepositories = \"a\"\nkeep-newest-tags = 0\n",
            "[[gc.retention]]\nrepositories = \"\"\n",
            "[[gc.retention]]\nrepositories = \"a\"\nprotect-tags = [\"\"]\n",
        ] {
            let (_dir, args) = file(text);
            assert!(
                matches!(Config::resolve(args), Err(ConfigError::Invalid(_))),
                "{text}"
            );
        }
        for flags in [
            &["--gc-interval", "10"][..],
            &["--gc-rate", "0"],
            &["--admin-allow", "all"],
        ] {
            let parsed = Cli::try_parse_from(["berth", "serve"].iter().chain(flags));
            assert!(parsed.is_err(), "{flags:?}");
        }
    }
}
