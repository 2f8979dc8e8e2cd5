//! berth-load: a load generator for any OCI registry over plain HTTP. Each subcommand prints one
//! `name key=value ...` line per result so that scripts (tools/bench) can parse it.
//!
//! Layout: `data` makes seeded incompressible bytes, `client` talks HTTP, `report` formats
//! units and results, and one module per subcommand.

mod client;
mod data;
mod hash_rate;
mod latency;
mod manifest;
mod pull;
mod push_chunked;
mod push_small;
mod report;
mod rollout;
mod sink;
mod sync_rate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use client::{LoadError, Registry};
use report::parse_size;

#[derive(Parser)]
#[command(name = "berth-load", about = "Load generator for OCI registries")]
struct Cli {
    /// Registry base URL (plain HTTP).
    #[arg(long, global = true, default_value = "http://127.0.0.1:5000")]
    registry: String,
    /// Worker threads of the client runtime; one keeps the client off the registry's cores.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Push one blob (or several at once) in chunks: POST, PATCH with Content-Range, PUT ?digest=.
    PushChunked {
        #[arg(long, default_value = "1GiB", value_parser = parse_size)]
        size: u64,
        #[arg(long, default_value = "16MiB", value_parser = parse_size)]
        chunk: u64,
        #[arg(long, default_value = "load/chunked")]
        repo: String,
        /// Concurrent pushes of distinct blobs of `size` each.
        #[arg(long, default_value_t = 1)]
        parallel: usize,
        /// Seed of the data (default: fresh each run, so every run pushes new blobs).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// GET a blob, verify its digest, print MB/s.
    Pull {
        #[arg(long)]
        digest: String,
        #[arg(long, default_value = "load/chunked")]
        repo: String,
        /// Do not hash what arrives (measures the registry, not the client's sha256).
        #[arg(long)]
        no_verify: bool,
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    /// Many monolithic pushes of distinct small blobs from concurrent clients.
    PushSmall {
        #[arg(long, default_value_t = 2000)]
        count: u64,
        #[arg(long, default_value = "4KiB", value_parser = parse_size)]
        size: u64,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long, default_value = "load/small")]
        repo: String,
        #[arg(long, value_enum, default_value = "auto")]
        mode: push_small::Mode,
    },
    /// Push a small OCI image under a tag and print the manifest URL (for wrk).
    PushManifest {
        #[arg(long, default_value = "load/manifest")]
        repo: String,
        #[arg(long, default_value = "latest")]
        tag: String,
        #[arg(long, default_value = "4KiB", value_parser = parse_size)]
        layer_size: u64,
    },
    /// GET blobs and manifests from a targets file with concurrent clients until a duration
    /// passes or a stop file appears; print p50/p90/p99/max latency per kind.
    Latency {
        /// Lines `blob <repo> <digest>` and `manifest <repo> <tag-or-digest>`.
        #[arg(long)]
        targets: std::path::PathBuf,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Longest run; the stop file, once it exists, ends it earlier.
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        #[arg(long)]
        stop_file: Option<std::path::PathBuf>,
        /// Copied into the result lines (e.g. idle, compacting).
        #[arg(long, default_value = "run")]
        label: String,
    },
    /// Push one image, then let `clients` pull it at once, each on its own connection:
    /// HEAD the tag, GET the manifest, the config and every layer, digests checked; print
    /// p50/p99/max time per client and the wall time of the whole rollout.
    Rollout {
        #[arg(long, default_value_t = 200)]
        clients: usize,
        /// Sizes of the image's layers.
        #[arg(long, value_delimiter = ',', default_value = "1MiB,8MiB,64MiB", value_parser = parse_size)]
        layers: Vec<u64>,
        #[arg(long, default_value = "load/rollout")]
        repo: String,
        #[arg(long, default_value = "v1")]
        tag: String,
    },
    /// Serve as a stand-in registry that only checks the sha256 of chunked pushes and keeps
    /// nothing: the push rate no digest-verifying registry can beat on this machine.
    HashSink {
        #[arg(long, default_value = "127.0.0.1:5099")]
        listen: String,
    },
    /// sha256 of this many bytes on one core, from memory: the rate no digest-verifying
    /// import or push can beat on this machine.
    HashRate {
        #[arg(long, default_value = "2GiB", value_parser = parse_size)]
        size: u64,
    },
    /// Append and fdatasync a file in DIR from one thread for a while: the disk's durable
    /// small-append rate, the reference for small pushes.
    SyncRate {
        #[arg(long)]
        dir: std::path::PathBuf,
        #[arg(long, default_value = "4KiB", value_parser = parse_size)]
        size: u64,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), LoadError> {
    let reg = Registry::new(&cli.registry)?;
    match cli.command {
        Command::PushChunked {
            size,
            chunk,
            repo,
            parallel,
            seed,
        } => {
            let opts = push_chunked::Options {
                repo,
                size,
                chunk,
                parallel,
                seed,
            };
            push_chunked::run(&reg, &opts).await
        }
        Command::Pull {
            digest,
            repo,
            no_verify,
            repeat,
        } => {
            let opts = pull::Options {
                repo,
                digest,
                verify: !no_verify,
                repeat,
            };
            pull::run(&reg, &opts).await
        }
        Command::PushSmall {
            count,
            size,
            concurrency,
            repo,
            mode,
        } => {
            let opts = push_small::Options {
                repo,
                count,
                size,
                concurrency,
                mode,
            };
            push_small::run(&reg, &opts).await
        }
        Command::PushManifest {
            repo,
            tag,
            layer_size,
        } => {
            let opts = manifest::Options {
                repo,
                tag,
                layer_size,
            };
            manifest::run(&reg, &opts).await
        }
        Command::Latency {
            targets,
            clients,
            seconds,
            stop_file,
            label,
        } => {
            let opts = latency::Options {
                targets,
                clients,
                seconds,
                stop_file,
                label,
            };
            latency::run(&reg, &opts).await
        }
        Command::Rollout {
            clients,
            layers,
            repo,
            tag,
        } => {
            if clients == 0 {
                return Err(LoadError::BadArgument(
                    "--clients must be at least 1".into(),
                ));
            }
            let opts = rollout::Options {
                repo,
                tag,
                clients,
                layer_sizes: layers,
            };
            rollout::run(&reg, &opts).await
        }
        Command::HashSink { listen } => Ok(tokio::task::block_in_place(|| sink::run(&listen))?),
        Command::HashRate { size } => {
            hash_rate::run(size);
            Ok(())
        }
        Command::SyncRate { dir, size, seconds } => {
            let opts = sync_rate::Options { dir, size, seconds };
            tokio::task::block_in_place(|| sync_rate::run(&opts))
        }
    }
}
