//! PHP's engine for the life of the process: started once on a thread of its own (which
//! keeps the start-up TSRM context), stopped on that same thread after the workers end.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::config::JitMode;
use crate::ffi::{self, StartupError, StartupSettings};

/// Settings PHP starts with; php.ini (or `PHP_INI`) may override every one of them.
///
/// OPcache is on, sized for an application server (a long-lived process shares one cache
/// among all workers), and checks files for changes every 2 seconds so edits show up
/// during development. In production set `opcache.validate_timestamps=0` in php.ini (see
/// the repository's `php.ini`) and restart to deploy.
pub(crate) const INI_DEFAULTS: &[(&str, &str)] = &[
    ("display_errors", "0"),
    ("display_startup_errors", "0"),
    ("log_errors", "1"),
    ("html_errors", "0"),
    ("max_execution_time", "30"),
    ("register_argc_argv", "0"),
    ("expose_php", "0"),
    ("implicit_flush", "0"),
    ("opcache.enable", "1"),
    ("opcache.memory_consumption", "128"),
    ("opcache.interned_strings_buffer", "16"),
    ("opcache.max_accelerated_files", "20000"),
    ("opcache.validate_timestamps", "1"),
    ("opcache.revalidate_freq", "2"),
];

/// The SAPI name OPcache is shown while it starts (it enables itself only for a fixed list
/// of server SAPIs); PHP scripts see `tokio_php`.
pub(crate) const OPCACHE_STARTUP_SAPI_NAME: &str = "apache2handler";

/// Where the linked PHP keeps its shared extensions (from php-config at build time).
pub(crate) const EXTENSION_DIR: &str = env!("TOKIO_PHP_EXTENSION_DIR");

/// The running engine. Dropping it without [`PhpEngine::shutdown`] leaves PHP running until
/// the process exits.
#[derive(Debug)]
pub(crate) struct PhpEngine {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Started on the calling thread ([`PhpEngine::start_here`]): shut down there too.
    here: bool,
}

impl PhpEngine {
    /// Starts PHP with `ini_file` (None: PHP's own search) and `ini_entries` (php.ini
    /// syntax) applied after it; OPcache is loaded unless php.ini loads it. Fails with [`StartupError::AlreadyStarted`] the second time in a process.
    pub(crate) fn start(
        ini_file: Option<&Path>,
        ini_entries: String,
    ) -> Result<Self, StartupError> {
        let ini_file: Option<PathBuf> = ini_file.map(Path::to_path_buf);
        let (started_tx, started_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("php-engine".into())
            .spawn(move || {
                let opcache = opcache_extension();
                let settings = StartupSettings {
                    ini_path: ini_file.as_deref(),
                    ini_defaults: INI_DEFAULTS,
                    ini_entries: &ini_entries,
                    startup_sapi_name: OPCACHE_STARTUP_SAPI_NAME,
                    opcache: opcache.as_deref(),
                };
                let result = ffi::startup(&settings);
                let started = result.is_ok();
                let _ = started_tx.send(result);
                if started {
                    // Wait for shutdown (or for the engine handle to be dropped).
                    let _ = stop_rx.recv();
                    ffi::shutdown();
                }
            })
            .map_err(|_| StartupError::ModuleStartup)?;
        match started_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                stop: Some(stop_tx),
                thread: Some(thread),
                here: false,
            }),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => Err(StartupError::ModuleStartup),
        }
    }

    /// Starts PHP on the calling thread, which keeps the start-up context and must be the
    /// one that calls [`PhpEngine::shutdown`]: the supervisor starts PHP once, before it
    /// forks, so that every serving process shares its OPcache. No thread is started.
    pub(crate) fn start_here(
        ini_file: Option<&Path>,
        ini_entries: &str,
    ) -> Result<Self, StartupError> {
        let opcache = opcache_extension();
        ffi::startup(&StartupSettings {
            ini_path: ini_file,
            ini_defaults: INI_DEFAULTS,
            ini_entries,
            startup_sapi_name: OPCACHE_STARTUP_SAPI_NAME,
            opcache: opcache.as_deref(),
        })?;
        Ok(Self {
            stop: None,
            thread: None,
            here: true,
        })
    }

    /// Shuts PHP down. Every worker thread must have ended.
    pub(crate) fn shutdown(mut self) {
        if self.here {
            ffi::shutdown();
            return;
        }
        self.stop.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("PHP engine thread panicked while shutting down");
        }
    }
}

impl Drop for PhpEngine {
    fn drop(&mut self) {
        // Without an explicit shutdown the workers may still run: leave PHP up, detached.
        if let Some(stop) = self.stop.take() {
            // Forgotten, not dropped: a dropped sender would tell the engine thread to shut
            // PHP down under the running workers.
            #[allow(clippy::mem_forget)]
            std::mem::forget(stop);
        }
    }
}

/// The linked PHP's shared OPcache, loaded at start-up unless php.ini already loads it.
pub(crate) fn opcache_extension() -> Option<PathBuf> {
    let so = Path::new(EXTENSION_DIR).join("opcache.so");
    so.is_file().then_some(so)
}

/// The `opcache.jit` and `opcache.jit_buffer_size` entries for `jit`; none when unset.
pub(crate) fn jit_entries(jit: Option<JitMode>, jit_buffer_size: u64) -> String {
    match jit {
        None => String::new(),
        Some(JitMode::Off) => "opcache.jit=disable\nopcache.jit_buffer_size=0\n".to_owned(),
        Some(mode) => format!(
            "opcache.jit={}\nopcache.jit_buffer_size={jit_buffer_size}\n",
            mode.ini_value()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jit_entries_follow_the_mode() {
        assert_eq!(jit_entries(None, 1), "");
        assert_eq!(
            jit_entries(Some(JitMode::Tracing), 64 << 20),
            "opcache.jit=tracing\nopcache.jit_buffer_size=67108864\n"
        );
        assert_eq!(
            jit_entries(Some(JitMode::Crto(1205)), 1024),
            "opcache.jit=1205\nopcache.jit_buffer_size=1024\n"
        );
        assert!(jit_entries(Some(JitMode::Off), 1024).contains("opcache.jit=disable"));
    }
}
