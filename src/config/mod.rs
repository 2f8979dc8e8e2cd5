//! Settings of `berth serve`: command-line flags, their `BERTH_*` environment variables and an
//! optional TOML file, resolved in that order of precedence over the embedded defaults.
//!
//! The file's top-level keys are spelled like the flags; the `[gc]`, `[scrub]` (module `gc`)
//! and `[admin]` tables hold the keys of the `--gc-*`, `--scrub-*` and `--admin-*` flags;
//! `[auth]` and `[audit]` (module `access`) those of `--auth-*` and `--audit-*`; each
//! `[[mirror]]` table (file only, `mirror::config`) one upstream served under its `ns`.
//! `commands` holds the flags of `berth gc`, `berth verify` and `berth hosts-toml`, `auth` those of the access
//! model's commands (`berth user`, `project`, …), `units` parses durations and rates.

pub mod access;
pub mod auth;
pub mod commands;
pub mod gc;
pub mod units;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::api::{AdminAccess, Limits, Policy};
use crate::mirror::config::{MirrorSettings, MirrorTable};
use crate::storage::{ReadVerification, StoreOptions};
pub use access::{AuditArgs, AuthArgs, AuthMode, AuthSettings};
pub use commands::{
    ExportCommand, GcCommand, HostsTomlCommand, ImportCommand, InventoryCommand, VerifyCommand,
};
pub use gc::{GcArgs, GcSettings, ScrubArgs, ScrubSettings};
use units::ByteRate;

#[derive(Debug, Parser)]
#[command(name = "berth", version, about = "An embedded OCI registry")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry.
    Serve(Box<ServeArgs>),
    /// Collect garbage once: in a stopped data directory, or through a running registry.
    Gc(GcCommand),
    /// Check every record of the store and take damaged blobs out of service.
    Verify(VerifyCommand),
    /// Make a private CA and a server certificate for --tls-cert/--tls-key; print how to trust it.
    Cert(commands::CertCommand),
    /// Manage users (system administrators and project members).
    #[command(subcommand)]
    User(auth::UserCommand),
    /// Manage projects: visibility and quota.
    #[command(subcommand)]
    Project(auth::ProjectCommand),
    /// Manage the members of a project and their roles.
    #[command(subcommand)]
    Member(auth::MemberCommand),
    /// Manage robot accounts (robot$<project>+<name>).
    #[command(subcommand)]
    Robot(auth::RobotCommand),
    /// Manage immutable tag rules.
    #[command(subcommand)]
    Immutable(auth::ImmutableCommand),
    /// Show the audit trail.
    Audit(auth::AuditCommand),
    /// Write containerd hosts.toml files that make nodes pull through this registry, and
    /// print the docker and podman settings that do the same.
    HostsToml(HostsTomlCommand),
    /// Write images to a bundle for an air-gapped transfer.
    Export(ExportCommand),
    /// Read bundles, OCI layouts and docker-archives into the registry.
    Import(ImportCommand),
    /// List the blobs and manifests held, for `berth export --have`.
    Inventory(InventoryCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags of `berth serve`. Every one is optional so that a value from the TOML file is only
/// overridden by a flag or variable that was actually given.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// TOML file with any of these settings (keys spelled like the flags).
    #[arg(long, env = "BERTH_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<String>,
    /// Data directory [default: ./berth-data].
    #[arg(long, env = "BERTH_DATA")]
    pub data: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key, serve HTTPS.
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Log line format [default: text].
    #[arg(long, env = "BERTH_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Seconds a client may take to send request headers [default: 30].
    #[arg(long, env = "BERTH_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<u64>,
    /// Seconds of silence after which a connection or a request body is dropped [default: 120].
    #[arg(long, env = "BERTH_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
    /// Seconds in-flight requests get to finish on shutdown [default: 30].
    #[arg(long, env = "BERTH_GRACE_PERIOD")]
    pub grace_period: Option<u64>,
    /// Largest request head in bytes [default: 65536].
    #[arg(long, env = "BERTH_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Connections open at once; more are refused [default: 4096].
    #[arg(long, env = "BERTH_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Concurrent HTTP/2 streams (requests) per connection [default: 64].
    #[arg(long, env = "BERTH_MAX_STREAMS_PER_CONNECTION")]
    pub max_streams_per_connection: Option<u32>,
    /// Upload sessions open at once [default: 1024].
    #[arg(long, env = "BERTH_MAX_UPLOADS")]
    pub max_uploads: Option<usize>,
    /// Bytes all upload sessions together may buffer in memory before the least recently
    /// used buffers are written out early; at least one chunk record [default: 67108864].
    #[arg(long, env = "BERTH_MAX_UPLOAD_BUFFER_BYTES")]
    pub max_upload_buffer_bytes: Option<usize>,
    /// Seconds an upload session may sit idle before it is discarded [default: 3600].
    #[arg(long, env = "BERTH_UPLOAD_IDLE_TIMEOUT")]
    pub upload_idle_timeout: Option<u64>,
    /// Largest manifest in bytes [default: 4194304].
    #[arg(long, env = "BERTH_MAX_MANIFEST_BYTES")]
    pub max_manifest_bytes: Option<usize>,
    /// Bytes of request bodies all requests together may hold in memory while they wait for
    /// the rest (manifests, chunks checked against their Content-Range, small single-request
    /// pushes); past it bodies silent for a second are cut off (408), else new ones refused
    /// (503). At least the largest manifest [default: 33554432].
    #[arg(long, env = "BERTH_MAX_BODY_BUFFER_BYTES")]
    pub max_body_buffer_bytes: Option<usize>,
    /// When chunk checksums are checked as blobs are served: always, once (the first read
    /// since the store was opened) or off [default: once].
    #[arg(long, env = "BERTH_READ_VERIFICATION")]
    pub read_verification: Option<ReadVerification>,
    /// Allow DELETE of manifests, tags and blobs; false answers every such DELETE with 405
    /// UNSUPPORTED [default: true].
    #[arg(
        long,
        env = "BERTH_DELETE",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub delete: Option<bool>,
    #[command(flatten)]
    #[serde(default)]
    pub gc: GcArgs,
    #[command(flatten)]
    #[serde(default)]
    pub scrub: ScrubArgs,
    #[command(flatten)]
    #[serde(default)]
    pub admin: AdminArgs,
    #[command(flatten)]
    #[serde(default)]
    pub auth: AuthArgs,
    #[command(flatten)]
    #[serde(default)]
    pub audit: AuditArgs,
    /// Bytes the cached content of mirrors with an upstream may take; past it the least
    /// recently pulled images are dropped [default: unlimited].
    #[arg(long, env = "BERTH_MIRROR_CACHE_SIZE", value_name = "SIZE")]
    pub mirror_cache_size: Option<ByteRate>,
    /// `[[mirror]]` tables: upstream registries served under `<ns>/` (settings file only).
    #[arg(skip)]
    #[serde(default)]
    pub mirror: Vec<MirrorTable>,
}

/// `[admin]`: flags `--admin-*`, variables `BERTH_ADMIN_*`.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdminArgs {
    /// Who may use /admin/: loopback (peers on 127.0.0.0/8 or ::1), any, or off
    /// [default: loopback].
    #[arg(
        id = "admin_allow",
        long = "admin-allow",
        env = "BERTH_ADMIN_ALLOW",
        value_name = "WHO"
    )]
    pub allow: Option<AdminAccess>,
}

impl ServeArgs {
    /// Fills every unset field from `other`.
    fn or(self, other: ServeArgs) -> ServeArgs {
        ServeArgs {
            config: self.config.or(other.config),
            listen: self.listen.or(other.listen),
            data: self.data.or(other.data),
            tls_cert: self.tls_cert.or(other.tls_cert),
            tls_key: self.tls_key.or(other.tls_key),
            log_format: self.log_format.or(other.log_format),
            header_read_timeout: self.header_read_timeout.or(other.header_read_timeout),
            idle_timeout: self.idle_timeout.or(other.idle_timeout),
            grace_period: self.grace_period.or(other.grace_period),
            max_header_bytes: self.max_header_bytes.or(other.max_header_bytes),
            max_connections: self.max_connections.or(other.max_connections),
            max_streams_per_connection: self
                .max_streams_per_connection
                .or(other.max_streams_per_connection),
            max_uploads: self.max_uploads.or(other.max_uploads),
            max_upload_buffer_bytes: self
                .max_upload_buffer_bytes
                .or(other.max_upload_buffer_bytes),
            upload_idle_timeout: self.upload_idle_timeout.or(other.upload_idle_timeout),
            max_manifest_bytes: self.max_manifest_bytes.or(other.max_manifest_bytes),
            max_body_buffer_bytes: self.max_body_buffer_bytes.or(other.max_body_buffer_bytes),
            read_verification: self.read_verification.or(other.read_verification),
            delete: self.delete.or(other.delete),
            gc: self.gc.or(other.gc),
            scrub: self.scrub.or(other.scrub),
            admin: AdminArgs {
                allow: self.admin.allow.or(other.admin.allow),
            },
            auth: self.auth.or(other.auth),
            audit: self.audit.or(other.audit),
            mirror_cache_size: self.mirror_cache_size.or(other.mirror_cache_size),
            mirror: if self.mirror.is_empty() {
                other.mirror
            } else {
                self.mirror
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `place` names the line, its table and the line itself, so the setting at fault is
    /// named even where the parser's message only speaks of types.
    #[error("{path}{place}: {message}")]
    Parse {
        path: PathBuf,
        place: String,
        message: String,
    },
    #[error("--tls-cert and --tls-key must be given together")]
    TlsPair,
    #[error("{0}")]
    Invalid(String),
}

/// Certificate and key files for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Connection handling of the server loop.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub grace_period: Duration,
    pub max_header_bytes: usize,
    /// Connections open at once; more are answered 503 (plain HTTP) or closed (TLS).
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_streams: u32,
}

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServerSettings {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            grace_period: Duration::from_secs(30),
            max_header_bytes: 64 << 10,
            max_connections: 4096,
            max_streams: 64,
        }
    }
}

/// Everything `berth serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub data: PathBuf,
    pub tls: Option<TlsFiles>,
    pub log_format: LogFormat,
    pub server: ServerSettings,
    pub limits: Limits,
    pub store: StoreOptions,
    pub policy: Policy,
    pub gc: GcSettings,
    pub scrub: ScrubSettings,
    pub auth: AuthSettings,
    pub mirrors: MirrorSettings,
}

impl Config {
    /// The embedded default: plain HTTP on 127.0.0.1:5000, data in ./berth-data.
    pub fn with_data(data: &Path) -> Config {
        let store = StoreOptions::default();
        let limits = Limits {
            // Appends of whole chunk records are written by the store without a copy.
            append_batch_bytes: store.chunk_record_bytes,
            ..Limits::default()
        };
        Config {
            listen: "127.0.0.1:5000".to_owned(),
            data: data.to_owned(),
            tls: None,
            log_format: LogFormat::Text,
            server: ServerSettings::default(),
            limits,
            store,
            policy: Policy::default(),
            gc: GcSettings::default(),
            scrub: ScrubSettings::default(),
            auth: AuthSettings::default(),
            mirrors: MirrorSettings::default(),
        }
    }

    /// Resolves flags (already merged with the environment by clap) over the TOML file named
    /// by `--config`, over the defaults.
    pub fn resolve(args: ServeArgs) -> Result<Config, ConfigError> {
        let args = args.with_file()?;
        let mut config = Config::with_data(Path::new("berth-data"));
        if let Some(listen) = args.listen {
            config.listen = listen;
        }
        if let Some(data) = args.data {
            config.data = data;
        }
        config.tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(ConfigError::TlsPair),
        };
        if let Some(f) = args.log_format {
            config.log_format = f;
        }
        let s = &mut config.server;
        if let Some(v) = args.header_read_timeout {
            s.header_read_timeout = Duration::from_secs(v.max(1));
        }
        if let Some(v) = args.idle_timeout {
            s.idle_timeout = Duration::from_secs(v.max(1));
            config.limits.body_idle_timeout = s.idle_timeout;
        }
        if let Some(v) = args.grace_period {
            s.grace_period = Duration::from_secs(v);
        }
        if let Some(v) = args.max_header_bytes {
            s.max_header_bytes = v.max(8192);
        }
        if let Some(v) = args.max_connections {
            s.max_connections = v.max(1);
        }
        if let Some(v) = args.max_streams_per_connection {
            s.max_streams = v.max(1);
        }
        if let Some(v) = args.max_uploads {
            config.store.max_open_uploads = v;
        }
        if let Some(v) = args.max_upload_buffer_bytes {
            // Less than one record would refuse every append that does not fill one.
            config.store.max_upload_buffer_bytes = v.max(config.store.chunk_record_bytes);
        }
        if let Some(v) = args.upload_idle_timeout {
            config.store.upload_max_idle = Duration::from_secs(v.max(60));
        }
        if let Some(v) = args.max_manifest_bytes {
            config.limits.max_manifest_bytes = v;
        }
        if let Some(v) = args.max_body_buffer_bytes {
            // Raised to the largest manifest where it is used (`Limits::body_buffer_bytes`).
            config.limits.max_body_buffer_bytes = v;
        }
        if let Some(v) = args.read_verification {
            config.store.read_verification = v;
        }
        if let Some(v) = args.delete {
            config.policy.deletes = v;
        }
        if let Some(v) = args.admin.allow {
            config.policy.admin = v;
        }
        config.gc = GcSettings::resolve(&args.gc)?;
        config.scrub = ScrubSettings::resolve(&args.scrub);
        config.auth = AuthSettings::resolve(&args.auth, &args.audit)?;
        config.mirrors = MirrorSettings::resolve(&args.mirror, args.mirror_cache_size)
            .map_err(ConfigError::Invalid)?;
        Ok(config)
    }
}

impl ServeArgs {
    /// These flags over the TOML file named by `--config`, if any.
    fn with_file(self) -> Result<ServeArgs, ConfigError> {
        match &self.config {
            Some(path) => {
                let file = read_file(path)?;
                Ok(self.or(file))
            }
            None => Ok(self),
        }
    }
}

/// Reads and parses a settings file.
pub fn read_file(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        place: e
            .span()
            .map(|at| place_in(&text, at.start))
            .unwrap_or_default(),
        message: e.message().trim_end().to_owned(),
    })
}

/// ", line 7 in [gc]: `interval = 5`" for the byte offset `at` of a settings file.
fn place_in(text: &str, at: usize) -> String {
    let before = text.get(..at).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let table = before
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with('['))
        .map(|header| format!(" in {header}"))
        .unwrap_or_default();
    format!(", line {line_no}{table}: `{line}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_registry() {
        let c = Config::resolve(ServeArgs::default()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:5000");
        assert_eq!(c.data, PathBuf::from("berth-data"));
        assert_eq!(c.tls, None);
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn mirror_tables_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            r#"
mirror-cache-size = "20GiB"

[[mirror]]
ns = "index.docker.io"
upstream = "https://registry-1.docker.io"
tag-ttl = "10m"
allow = ["library/*"]
unprefixed = true

[[mirror]]
ns = "quay.io"
"#,
        )
        .unwrap();
        let c = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        })
        .unwrap();
        let m = &c.mirrors;
        assert_eq!(m.cache_size, Some(20 << 30));
        assert_eq!(m.mirrors.len(), 2);
        assert_eq!(m.mirrors[0].ns, "docker.io");
        assert_eq!(m.mirrors[0].tag_ttl, Duration::from_secs(600));
        assert!(m.mirrors[0].unprefixed);
        assert_eq!(m.mirrors[1].upstream, None);
        std::fs::write(&path, "[[mirror]]\nns = \"quay.io\"\nhost = \"x\"\n").unwrap();
        let e = Config::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("host"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:6000\"\ndata = \"/srv/x\"\nlog-format = \"json\"\nmax-uploads = 7\nread-verification = \"off\"\nmax-upload-buffer-bytes = 134217728\nupload-idle-timeout = 600\nmax-body-buffer-bytes = 33554432\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            data: Some("/flag".into()),
            ..ServeArgs::default()
        };
        let c = Config::resolve(args).unwrap();
        assert_eq!(c.listen, "127.0.0.1:6000");
        assert_eq!(c.data, PathBuf::from("/flag"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.store.max_open_uploads, 7);
        assert_eq!(c.store.read_verification, ReadVerification::Off);
        assert_eq!(c.store.max_upload_buffer_bytes, 128 << 20);
        assert_eq!(c.store.upload_max_idle, Duration::from_secs(600));
        assert_eq!(c.limits.max_body_buffer_bytes, 32 << 20);
    }

    #[test]
    fn a_wrong_value_names_its_line_and_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        let error_for = |text: &str| {
            std::fs::write(&path, text).unwrap();
            read_file(&path).unwrap_err().to_string()
        };
        let e = error_for("listen = 5000\n");
        assert!(e.contains("line 1: `listen = 5000`"), "{e}");
        assert!(e.contains("integer"), "{e}");
        let e = error_for("delete = true\n\n[gc]\ncompact = \"yes\"\n");
        assert!(e.contains("line 4 in [gc]: `compact = \"yes\"`"), "{e}");
    }

    #[test]
    fn unknown_file_keys_and_half_tls_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "listne = \"x\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        let e = Config::resolve(args).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }));
        assert!(e.to_string().contains("listne"), "{e}");
        let args = ServeArgs {
            tls_cert: Some("c.pem".into()),
            ..ServeArgs::default()
        };
        assert!(matches!(Config::resolve(args), Err(ConfigError::TlsPair)));
    }

    #[test]
    fn command_line_parses() {
        let cli = Cli::try_parse_from([
            "berth",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(args.log_format, Some(LogFormat::Json));
        let cli = Cli::try_parse_from(["berth", "serve", "--read-verification", "always"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let c = Config::resolve(*args).unwrap();
        assert_eq!(c.store.read_verification, ReadVerification::Always);
        assert!(Cli::try_parse_from(["berth", "serve", "--read-verification", "x"]).is_err());
    }

    #[test]
    fn delete_is_one_setting() {
        let resolve = |flags: &[&str]| {
            let cli = Cli::try_parse_from(["berth", "serve"].iter().chain(flags)).unwrap();
            let Command::Serve(args) = cli.command else {
                panic!("not serve")
            };
            Config::resolve(*args).unwrap().policy.deletes
        };
        assert!(resolve(&[]));
        assert!(!resolve(&["--delete", "false"]));
        assert!(resolve(&["--delete", "true"]));
        assert!(resolve(&["--delete"]));
        for gone in ["--no-delete", "--verify-reads"] {
            assert!(Cli::try_parse_from(["berth", "serve", gone, "false"]).is_err());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "delete = false\n").unwrap();
        let c = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert!(!c.policy.deletes);
        std::fs::write(&path, "delete = true\n").unwrap();
        let c = Config::resolve(ServeArgs {
            config: Some(path),
            delete: Some(false),
            ..ServeArgs::default()
        })
        .unwrap();
        assert!(!c.policy.deletes, "the flag wins over the file");
    }
}
