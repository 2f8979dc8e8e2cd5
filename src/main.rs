//! `berth` command line: `serve` parses settings, sets up logging, binds and serves until
//! SIGTERM/SIGINT; `gc` and `verify` run one job, `user`, `project`, `member`, `robot`,
//! `immutable` and `audit` change or show the access model, `hosts-toml` writes containerd's
//! mirror settings, `cert` makes a private CA and the certificate of berth's own TLS listener
//! (see `berth::cli`).

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::process::ExitCode;

use berth::config::auth::AuthCommand;
use berth::config::{Cli, Command, Config, LogFormat, ServeArgs};
use berth::log_writer::{self, LogFlusher};
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tune_malloc();
    match Cli::parse().command {
        Command::Serve(args) => serve_main(*args),
        Command::Gc(cmd) => {
            init_command_logging();
            berth::cli::gc(&cmd)
        }
        Command::Verify(cmd) => {
            init_command_logging();
            berth::cli::verify(&cmd)
        }
        Command::Cert(cmd) => {
            init_command_logging();
            berth::cli::cert::run(&cmd)
        }
        Command::User(c) => auth_main(AuthCommand::User(c)),
        Command::Project(c) => auth_main(AuthCommand::Project(c)),
        Command::Member(c) => auth_main(AuthCommand::Member(c)),
        Command::Robot(c) => auth_main(AuthCommand::Robot(c)),
        Command::Immutable(c) => auth_main(AuthCommand::Immutable(c)),
        Command::Audit(c) => auth_main(AuthCommand::Audit(c)),
        Command::HostsToml(cmd) => berth::cli::hosts_toml::run(&cmd),
        Command::Export(c) => {
            init_command_logging();
            berth::cli::bundle::export(&c)
        }
        Command::Import(c) => {
            init_command_logging();
            berth::cli::bundle::import(&c)
        }
        Command::Inventory(c) => {
            init_command_logging();
            berth::cli::bundle::inventory(&c)
        }
    }
}

fn auth_main(cmd: AuthCommand) -> ExitCode {
    init_command_logging();
    berth::cli::auth::run(cmd)
}

fn serve_main(args: ServeArgs) -> ExitCode {
    let config = match Config::resolve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(2);
        }
    };
    let flusher = match init_logging(config.log_format) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("berth: starting the log writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    };
    // Every task has ended with the runtime; then the log writer writes out their last lines.
    drop(runtime);
    flusher.finish();
    code
}

/// Upload bodies pass through short-lived buffers on many runtime threads; glibc would keep an
/// arena per thread (up to 8 per core) full of freed buffers, so 16 concurrent pushes held about
/// 200 MiB of anonymous memory. Two arenas keep that near the real working set (about 4 MiB per
/// upload) at no measurable cost in throughput.
///
/// The store keeps request body frames until it has written them, so hyper allocates fresh read
/// buffers all the time. With glibc's sliding thresholds those come from new mappings or a
/// just-trimmed heap and fault in every page (a fifth of the kernel time of a push); fixed
/// thresholds let freed buffers be reused, holding at most 32 MiB per arena back when idle.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called once at start-up, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

/// Binds the listen address, then hands over to the server, which says when it is serving.
async fn serve(config: Config) -> Result<(), berth::server::ServerError> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| berth::server::ServerError::Listen {
            listen: config.listen.clone(),
            source,
        })?;
    berth::server::run(listener, shutdown_signal(), config).await
}

/// Log lines (one per request among them) go to stdout through a writer thread, so that no
/// request waits for the write.
fn init_logging(format: LogFormat) -> std::io::Result<LogFlusher> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, flusher) = log_writer::stdout(log_writer::DEFAULT_CAPACITY)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(flusher)
}

/// Warnings of the store (recovery, damage) on stderr, which stdout's report does not mix with.
fn init_command_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}
