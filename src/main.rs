//! The standalone server: configuration from the environment (and `--flags`), logging, then
//! [`tokio_php::standalone::run`].

use std::process::ExitCode;

use tokio_php::config::{self, Config, Flags, ProcessEnv};

/// The server's own allocations (requests, headers, futures: some 25 per request) go to
/// mimalloc, which is faster than glibc's malloc for these small, short-lived, cross-thread
/// blocks. PHP keeps its own allocator (the Zend memory manager); a Rust application that
/// embeds the library chooses its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", config::help_text());
        return ExitCode::SUCCESS;
    }
    let config = match Flags::parse(&args, ProcessEnv)
        .and_then(|source| Config::from_source(&source).map_err(|e| e.to_string()))
    {
        Ok(config) => config,
        Err(err) => {
            eprintln!("tokio_php: {err}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = tokio_php::logging::init(&config) {
        eprintln!("tokio_php: {err}");
        return ExitCode::from(2);
    }
    tokio_php::standalone::run(config)
}
