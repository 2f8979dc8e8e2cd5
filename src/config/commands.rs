//! Flags of `berth gc` and `berth verify`, and how they combine with a settings file.

use std::path::PathBuf;

use clap::{ArgGroup, Args};

use crate::config::gc::GcArgs;
use crate::config::units::{ByteRate, HumanDuration};
use crate::config::{read_file, ConfigError};
use crate::storage::GcOptions;

/// Where a maintenance command works: on a data directory no server holds, or through the
/// admin endpoint of a running registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Data(PathBuf),
    Url {
        url: String,
        ca_cert: Option<PathBuf>,
    },
}

/// `berth gc`.
#[derive(Debug, Clone, Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .multiple(true)
        .args(["data", "url", "config"])
))]
pub struct GcCommand {
    /// Data directory of a stopped registry (or the `data` key of --config).
    #[arg(long, value_name = "DIR", conflicts_with = "url")]
    pub data: Option<PathBuf>,
    /// Base URL of a running registry, e.g. http://127.0.0.1:5000; the collection runs there
    /// with the registry's own [gc] settings, these flags overriding them.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// CA certificate (PEM) that signed the registry's certificate, for an https:// --url.
    #[arg(long, value_name = "FILE", requires = "url", conflicts_with_all = ["data", "config"])]
    pub ca_cert: Option<PathBuf>,
    /// Settings file: its [gc] table (retention rules, grace, threshold, rate) applies, and
    /// its `data` when --data is not given.
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    pub config: Option<PathBuf>,
    /// Report what would be deleted and reclaimed, change nothing.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub dry_run: Option<bool>,
    /// Keep unreferenced blob links younger than this, e.g. 10m [default: 0].
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<HumanDuration>,
    /// Sweep only; leave segments as they are.
    #[arg(long)]
    pub no_compact: bool,
    /// Rewrite sealed segments whose live share fell below this fraction [default: 0.5].
    #[arg(long, value_name = "FRACTION")]
    pub compact_threshold: Option<f64>,
    /// Compaction I/O budget, e.g. 50MB [default: unlimited with --data, since no clients
    /// share the disk; the registry's [gc] rate with --url].
    #[arg(long, value_name = "RATE")]
    pub rate: Option<ByteRate>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl GcCommand {
    /// The flags given, as `[gc]` settings that override a file's.
    pub fn overrides(&self) -> GcArgs {
        GcArgs {
            grace: self.grace,
            compact: self.no_compact.then_some(false),
            compact_threshold: self.compact_threshold,
            rate: self.rate,
            dry_run: self.dry_run,
            ..GcArgs::default()
        }
    }

    /// Where to collect, and (for a data directory) what the collection does: these flags
    /// over the file's `[gc]` table over the defaults, with no rate limit unless one is set.
    pub fn resolve(&self) -> Result<(Target, GcOptions), ConfigError> {
        let file = self.config.as_deref().map(read_file).transpose()?;
        let target =
            match (&self.url, &self.data) {
                (Some(url), _) => Target::Url {
                    url: url.clone(),
                    ca_cert: self.ca_cert.clone(),
                },
                (None, Some(data)) => Target::Data(data.clone()),
                (None, None) => match file.as_ref().and_then(|f| f.data.clone()) {
                    Some(data) => Target::Data(data),
                    None => return Err(ConfigError::Invalid(
                        "no data directory: give --data DIR, or --url URL for a running registry"
                            .into(),
                    )),
                },
            };
        let gc = match file {
            Some(f) => self.overrides().or(f.gc),
            None => self.overrides(),
        };
        Ok((target, gc.options(None)?))
    }
}

/// `berth verify`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["data", "url"])))]
pub struct VerifyCommand {
    /// Data directory of a stopped registry.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Base URL of a running registry, e.g. http://127.0.0.1:5000.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// CA certificate (PEM) that signed the registry's certificate, for an https:// --url.
    #[arg(long, value_name = "FILE", requires = "url", conflicts_with = "data")]
    pub ca_cert: Option<PathBuf>,
    /// Report damaged blobs but leave them in service. By default they are quarantined:
    /// no longer served or reported present, so the next push of each heals it.
    #[arg(long)]
    pub no_quarantine: bool,
    /// Read budget, e.g. 200MB [default: unlimited with --data; the registry's [scrub] rate
    /// with --url].
    #[arg(long, value_name = "RATE")]
    pub rate: Option<ByteRate>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl VerifyCommand {
    pub fn target(&self) -> Target {
        match (&self.url, &self.data) {
            (Some(url), _) => Target::Url {
                url: url.clone(),
                ca_cert: self.ca_cert.clone(),
            },
            (None, data) => Target::Data(data.clone().unwrap_or_default()),
        }
    }
}

/// Where a bundle command works: a data directory no server holds, or a running registry
/// through the distribution API.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["data", "url"])))]
pub struct BundleTarget {
    /// Data directory of a stopped registry.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Base URL of a running registry, e.g. http://127.0.0.1:5000.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// CA certificate (PEM) that signed the registry's certificate, for an https:// --url.
    #[arg(long, value_name = "FILE", requires = "url")]
    pub ca_cert: Option<PathBuf>,
    /// User to log in as when the registry has access control (password from BERTH_PASSWORD).
    #[arg(long, value_name = "NAME", requires = "url")]
    pub username: Option<String>,
}

/// `berth export`.
#[derive(Debug, Clone, Args)]
pub struct ExportCommand {
    #[command(flatten)]
    pub target: BundleTarget,
    /// Images: repo:tag, repo@digest, repo (all its tags) or a glob like docker.io/library/*.
    #[arg(value_name = "REF", required = true)]
    pub refs: Vec<String>,
    /// The bundle to write (`-` for standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Leave out the blobs and manifests this inventory (`berth inventory`) lists.
    #[arg(long, value_name = "FILE", conflicts_with = "since")]
    pub have: Option<PathBuf>,
    /// Leave out what an earlier bundle holds (its contents manifest is the have-list).
    #[arg(long, value_name = "BUNDLE")]
    pub since: Option<PathBuf>,
    /// Sign the contents manifest with this ed25519 private key (PEM, PKCS#8).
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<PathBuf>,
    /// Write the bundle in parts of at most this size: FILE.000, FILE.001, … (e.g. 4GiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub split_size: Option<u64>,
}

/// `berth import`.
#[derive(Debug, Clone, Args)]
pub struct ImportCommand {
    #[command(flatten)]
    pub target: BundleTarget,
    /// Bundles, OCI layouts (directories or tars, gzip or zstd too), oci-archives or
    /// docker-archives. A split bundle is named by its first part or without the suffix.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Import the one image of the input as NAME[:TAG] instead of the name it carries.
    #[arg(long, value_name = "NAME")]
    pub repo: Option<String>,
    /// Refuse bundles whose contents manifest this ed25519 public key (PEM) did not sign.
    #[arg(long, value_name = "PUB")]
    pub verify_key: Option<PathBuf>,
}

/// `berth inventory`.
#[derive(Debug, Clone, Args)]
pub struct InventoryCommand {
    #[command(flatten)]
    pub target: BundleTarget,
    /// Where to write the inventory (`-` for standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

/// A size such as `4GiB` or `500MB`.
fn parse_size(s: &str) -> Result<u64, String> {
    match s.parse::<ByteRate>()? {
        ByteRate(Some(n)) => Ok(n),
        ByteRate(None) => Err(format!("{s:?} is not a size such as 4GiB")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(["berth"].iter().chain(args)).map(|c| c.command)
    }

    fn gc(args: &[&str]) -> GcCommand {
        match parse(&[&["gc"], args].concat()).unwrap() {
            Command::Gc(cmd) => cmd,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gc_on_a_directory_runs_unthrottled_with_the_defaults() {
        let (target, opts) = gc(&["--data", "/srv/berth"]).resolve().unwrap();
        assert_eq!(target, Target::Data("/srv/berth".into()));
        assert_eq!(opts.compact_rate, None);
        assert!(!opts.dry_run && opts.compact);
        let (_, opts) = gc(&[
            "--data",
            "/d",
            "--dry-run",
            "--grace",
            "10m",
            "--no-compact",
            "--compact-threshold",
            "0.3",
            "--rate",
            "50MB",
        ])
        .resolve()
        .unwrap();
        assert!(opts.dry_run && !opts.compact);
        assert_eq!(opts.grace, Duration::from_secs(600));
        assert_eq!(opts.compact_threshold, 0.3);
        assert_eq!(opts.compact_rate, Some(50_000_000));
    }

    #[test]
    fn gc_takes_retention_and_data_from_the_file_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "data = \"/srv/file\"\n[gc]\ndry-run = true\nrate = \"10MB\"\ninterval = \"1h\"\n\
             [[gc.retention]]\nrepositories = \"**\"\nkeep-newest-tags = 5\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let (target, opts) = gc(&["--config", config]).resolve().unwrap();
        assert_eq!(target, Target::Data("/srv/file".into()));
        assert!(opts.dry_run);
        assert_eq!(opts.compact_rate, Some(10_000_000));
        assert_eq!(opts.retention[0].keep_newest_tags, Some(5));
        let (target, opts) = gc(&["--config", config, "--data", "/d", "--dry-run=false"])
            .resolve()
            .unwrap();
        assert_eq!(target, Target::Data("/d".into()));
        assert!(!opts.dry_run);
        let empty = dir.path().join("empty.toml");
        std::fs::write(&empty, "").unwrap();
        let err = gc(&["--config", empty.to_str().unwrap()]).resolve();
        assert!(matches!(err, Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn targets_are_required_and_exclusive() {
        let cmd = gc(&["--url", "http://127.0.0.1:5000", "--dry-run"]);
        let (target, _) = cmd.resolve().unwrap();
        assert_eq!(
            target,
            Target::Url {
                url: "http://127.0.0.1:5000".into(),
                ca_cert: None
            }
        );
        assert!(parse(&["gc"]).is_err());
        assert!(parse(&["gc", "--data", "/d", "--url", "http://x"]).is_err());
        assert!(parse(&["gc", "--url", "http://x", "--config", "/c"]).is_err());
        assert!(parse(&["gc", "--data", "/d", "--ca-cert", "/ca.pem"]).is_err());
        assert!(parse(&["gc", "--config", "/c", "--ca-cert", "/ca.pem"]).is_err());
        assert!(parse(&["verify", "--data", "/d", "--ca-cert", "/ca.pem"]).is_err());
        assert!(parse(&["gc", "--data", "/d", "--rate", "0"]).is_err());
        assert!(parse(&["verify"]).is_err());
        assert!(parse(&["verify", "--data", "/d", "--url", "http://x"]).is_err());
        let Command::Verify(v) = parse(&["verify", "--data", "/d", "--no-quarantine"]).unwrap()
        else {
            panic!("not verify")
        };
        assert_eq!(v.target(), Target::Data("/d".into()));
        assert!(v.no_quarantine && v.rate.is_none());
    }

    #[test]
    fn bundle_commands_parse() {
        let Command::Export(e) = parse(&[
            "export",
            "--data",
            "/d",
            "a:v1",
            "b/*",
            "-o",
            "x.tar",
            "--split-size",
            "4GiB",
        ])
        .unwrap() else {
            panic!("not export")
        };
        assert_eq!(e.refs, vec!["a:v1".to_owned(), "b/*".to_owned()]);
        assert_eq!(e.split_size, Some(4 << 30));
        assert!(parse(&["export", "--data", "/d", "-o", "x.tar"]).is_err());
        assert!(
            parse(&["export", "--data", "/d", "a", "-o", "x", "--have", "h", "--since", "s"])
                .is_err()
        );
        assert!(parse(&["import", "--data", "/d", "--url", "http://x", "b.tar"]).is_err());
        let Command::Import(i) =
            parse(&["import", "--url", "http://x", "b.tar", "--repo", "r"]).unwrap()
        else {
            panic!("not import")
        };
        assert_eq!(i.target.url.as_deref(), Some("http://x"));
        assert!(parse(&["inventory", "--data", "/d", "-o", "-"]).is_ok());
        assert!(parse(&["inventory", "-o", "-"]).is_err());
    }
}
