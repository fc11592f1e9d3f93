use std::path::PathBuf;

use anyhow::Context;
use chrono::{Offset, TimeZone};
use clap::{Parser, Subcommand};

use callcenter::App;
use callcenter::config::Settings;

// glibc's malloc (its arenas and chunk consolidation) took a large share of the server's
// CPU on a records/list page; mimalloc's thread-local free lists take a fraction (figures
// in bench/RESULTS.md, "Measurements behind the code's shape").
// Built with `no_thp`: transparent huge pages on its arenas doubled the idle RSS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// AI outbound-call callcenter backend.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML file overlaid on the built-in defaults (and on config/default.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and the dialer (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Fill the database with realistic sample data (for benchmarks and demos), then exit.
    Seed {
        /// Call records to add, spread over the last 90 days.
        #[arg(long, default_value_t = 0)]
        records: u64,
        /// Ended tasks to add.
        #[arg(long, default_value_t = 0)]
        tasks: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let loaded = match Settings::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // Held to the end of main: dropping it writes out the lines still queued.
    let _log_writer = callcenter::logging::init(loaded.settings.log.format);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let settings = loaded.settings;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            callcenter::store::connect(
                &settings.database.url,
                callcenter::store::StoreOptions::in_zone(settings.timezone.0),
            )
            .await?;
            tracing::info!("database is up to date");
        }
        Command::Seed { records, tasks } => {
            let store = callcenter::store::connect(
                &settings.database.url,
                callcenter::store::StoreOptions::in_zone(settings.timezone.0),
            )
            .await?;
            let now = chrono::Utc::now();
            let offset =
                settings.timezone.0.offset_from_utc_datetime(&now.naive_utc()).fix().local_minus_utc();
            let started = std::time::Instant::now();
            store.seed(records, tasks, now.timestamp_millis(), offset).await?;
            let secs = started.elapsed().as_secs_f64();
            let rate = (records + tasks) as f64 / secs.max(1e-9);
            tracing::info!(
                records,
                tasks,
                seconds = format!("{secs:.1}"),
                rows_per_sec = rate as u64,
                "seeded"
            );
        }
        Command::Serve => {
            raise_open_file_limit();
            let listener = tokio::net::TcpListener::bind(&settings.server.bind)
                .await
                .with_context(|| format!("binding {}", settings.server.bind))?;
            let loopback = listener.local_addr().map(|a| a.ip().is_loopback()).unwrap_or(false);
            if settings.auth.api_keys.is_empty() && !loopback {
                tracing::warn!(
                    "no auth.api_keys set and listening beyond loopback: anyone who reaches this port can use the API"
                );
            }
            let app = App::build(settings, listener).await?;
            tracing::info!(addr = %app.local_addr(), "listening");
            app.run_until(shutdown_signal()).await?;
            tracing::info!("stopped");
        }
    }
    Ok(())
}

/// Every connection is a file descriptor, and the usual soft limit (1024) is far below
/// what a server meets; the hard limit is what the administrator allows, so take it all.
fn raise_open_file_limit() {
    #[cfg(unix)]
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, hard)) => match rlimit::increase_nofile_limit(hard) {
            Ok(raised) => tracing::info!(soft = raised, was = soft, hard, "open-file limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "open-file limit could not be raised"),
        },
        Err(e) => tracing::warn!(error = %e, "open-file limit unknown"),
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
