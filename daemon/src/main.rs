//! The `vigil` command: parses the arguments, sets up logging, runs the
//! subcommand (`vigil::cli`) and maps its failure to the exit status: 0 ok,
//! 1 an integrity failure (or a runtime failure), 2 a usage or configuration
//! error.

use std::process::ExitCode;

use clap::Parser;

use vigil::cli::{Cli, Failure};

/// At most two malloc arenas and a fixed mmap threshold: on a small board,
/// memory an allocator keeps is memory the page cache and the cameras do not get.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called once, first thing.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // Large blocks (argon2's 7 MiB, video buffers) always come from mmap
        // and go back to the system when freed, instead of the threshold
        // growing until such blocks stay in the heap for good.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    match vigil::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("vigil: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Integrity(m)) => {
            eprintln!("vigil: integrity failure: {m}");
            ExitCode::from(1)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("vigil: error: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::OriginNotVerified(m)) => {
            eprintln!("vigil: {m}");
            ExitCode::from(3)
        }
    }
}
