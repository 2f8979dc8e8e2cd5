//! Flags of `berth gc` and `berth verify`, and how they combine with a settings file; the flags
//! of `berth hosts-toml` and `berth cert`.

use std::net::IpAddr;
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

/// `berth hosts-toml`.
#[derive(Debug, Clone, Args)]
pub struct HostsTomlCommand {
    /// Registry to mirror through berth (docker.io, quay.io, …); repeat for more. Each gets
    /// `<out>/<registry>/hosts.toml`, and berth serves it only with a `[[mirror]]` table of
    /// that `ns`.
    #[arg(
        long = "upstream",
        value_name = "REGISTRY",
        required_unless_present = "default"
    )]
    pub upstreams: Vec<String>,
    /// berth's base URL as the nodes reach it; its scheme decides plain HTTP or TLS.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:5000")]
    pub server: String,
    /// CA certificate (PEM) that signed berth's certificate, for an https:// --server; copied
    /// beside each hosts.toml.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Directory to write into, laid out as containerd's certs.d.
    #[arg(long, value_name = "DIR", default_value = "./certs.d")]
    pub out: PathBuf,
    /// How long containerd tries to connect to berth before it goes to the registry itself
    /// (containerd 2.1 and later; older ones ignore the key and wait 30s).
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub dial_timeout: HumanDuration,
    /// Write one `<out>/_default/hosts.toml` that sends every registry's pulls to berth first,
    /// instead of one file per --upstream.
    #[arg(long)]
    pub default: bool,
    /// Replace hosts.toml files (and CA copies) that already exist.
    #[arg(long)]
    pub force: bool,
}

/// `berth cert`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("names").required(true).multiple(true).args(["host", "ip"])))]
pub struct CertCommand {
    /// Data directory: the CA is kept in DIR/tls (ca.crt, ca.key), and so is the server
    /// certificate unless --out-cert/--out-key say otherwise.
    #[arg(long, value_name = "DIR", env = "BERTH_DATA")]
    pub data: PathBuf,
    /// DNS name clients use for the registry; repeat for more.
    #[arg(long, value_name = "NAME")]
    pub host: Vec<String>,
    /// IP address clients use for the registry; repeat for more.
    #[arg(long, value_name = "ADDR")]
    pub ip: Vec<IpAddr>,
    /// Days the server certificate is valid.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 397,
        value_parser = clap::value_parser!(u32).range(1..=36500)
    )]
    pub days: u32,
    /// Issue a new server certificate (and key) even if the one there still fits; the CA stays.
    #[arg(long)]
    pub renew: bool,
    /// Where to write the server certificate [default: DIR/tls/server.crt].
    #[arg(long, value_name = "FILE", requires = "out_key")]
    pub out_cert: Option<PathBuf>,
    /// Where to write the server key, mode 0600 [default: DIR/tls/server.key].
    #[arg(long, value_name = "FILE", requires = "out_cert")]
    pub out_key: Option<PathBuf>,
    /// Port the registry listens on, for the printed instructions only.
    #[arg(long, value_name = "PORT", default_value_t = 5000)]
    pub port: u16,
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
    fn hosts_toml_flags() {
        let Command::HostsToml(h) = parse(&[
            "hosts-toml",
            "--upstream",
            "docker.io",
            "--upstream",
            "quay.io",
        ])
        .unwrap() else {
            panic!("not hosts-toml")
        };
        assert_eq!(h.upstreams, ["docker.io", "quay.io"]);
        assert_eq!(h.server, "http://127.0.0.1:5000");
        assert_eq!(h.out, PathBuf::from("./certs.d"));
        assert_eq!(h.dial_timeout.0, Duration::from_secs(2));
        assert!(!h.default && !h.force && h.ca.is_none());
        let Command::HostsToml(h) = parse(&["hosts-toml", "--default"]).unwrap() else {
            panic!("not hosts-toml")
        };
        assert!(h.default && h.upstreams.is_empty());
        assert!(parse(&["hosts-toml"]).is_err());
        assert!(parse(&["hosts-toml", "--default", "--dial-timeout", "5"]).is_err());
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
    fn cert_needs_a_name_and_both_out_files() {
        let Command::Cert(c) = parse(&["cert", "--data", "/d", "--ip", "127.0.0.1"]).unwrap()
        else {
            panic!("not cert")
        };
        assert_eq!((c.days, c.port, c.renew), (397, 5000, false));
        assert!(c.host.is_empty() && c.out_cert.is_none());
        assert!(parse(&["cert", "--data", "/d"]).is_err());
        assert!(parse(&["cert", "--data", "/d", "--host", "h", "--out-cert", "c"]).is_err());
        assert!(parse(&["cert", "--data", "/d", "--host", "h", "--days", "0"]).is_err());
        assert!(parse(&["cert", "--data", "/d", "--ip", "localhost"]).is_err());
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
