//! Prometheus metrics: the process-wide recorder that collects the HTTP metrics of
//! [`MetricsLayer`](crate::layers::MetricsLayer) (axum-prometheus), and the lock-free
//! [`Histogram`] the PHP pools count into. The pools render their own figures
//! (`src/php/stats.rs`), so they never depend on who owns the recorder.
//!
//! The standalone server calls [`install_recorder`] once at startup. A library user whose
//! application already installed a `metrics` recorder skips it: the HTTP metrics then go to
//! that recorder, and tokio_php's `/metrics` shows the pool's figures only. Nothing here
//! panics when a recorder is already installed.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum_prometheus::AXUM_HTTP_REQUESTS_DURATION_SECONDS;
use axum_prometheus::utils::SECONDS_DURATION_BUCKETS;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The outcome of the first [`install_recorder`]: our handle, or None when another
/// recorder was already installed.
static INSTALLED: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often the recorder folds the samples it holds into its histograms. Without it they
/// pile up until someone scrapes `/metrics`: never, on a server nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs a Prometheus recorder as the process's `metrics` recorder, unless one is
/// already installed (by a host application). Only the first call tries; later ones
/// report its outcome. Returns whether tokio_php's recorder is the installed one.
pub fn install_recorder() -> bool {
    INSTALLED.get_or_init(try_install).is_some()
}

fn try_install() -> Option<PrometheusHandle> {
    let builder = match PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Full(AXUM_HTTP_REQUESTS_DURATION_SECONDS.to_owned()),
        SECONDS_DURATION_BUCKETS,
    ) {
        Ok(builder) => builder,
        Err(err) => {
            tracing::error!(error = %err, "cannot configure the Prometheus recorder; HTTP metrics are off");
            return None;
        }
    };
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    match metrics::set_global_recorder(recorder) {
        Ok(()) => {
            start_upkeep(handle.clone(), UPKEEP_INTERVAL);
            Some(handle)
        }
        Err(_) => {
            tracing::info!(
                "a metrics recorder is already installed (the host application's); HTTP metrics go to it, and /metrics shows the PHP pool's only"
            );
            None
        }
    }
}

/// Runs the recorder's upkeep every `interval` on a thread of its own, for the life of the
/// process, so memory stays flat with or without scrapes.
fn start_upkeep(handle: PrometheusHandle, interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("prometheus-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                handle.run_upkeep();
            }
        });
    if let Err(err) = spawned {
        tracing::error!(error = %err, "cannot start the metrics upkeep thread; histogram samples pile up until /metrics is scraped");
    }
}

/// The handle of the recorder [`install_recorder`] installed, if it did.
pub fn recorder_handle() -> Option<&'static PrometheusHandle> {
    INSTALLED.get().and_then(Option::as_ref)
}

/// The HTTP metrics, in Prometheus text format, when tokio_php's recorder is installed
/// (empty otherwise); `/metrics` appends the PHP pools' own figures to it.
pub fn render_http() -> String {
    let mut out = String::new();
    if let Some(handle) = recorder_handle() {
        handle.run_upkeep();
        out.push_str(&handle.render());
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

// === impl Histogram ===

/// Upper bounds of [`Histogram`] buckets, in seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A lock-free Prometheus histogram over [`DURATION_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or under each bound (not cumulative; `render` sums them).
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    count: AtomicU64,
    /// Sum of observations, in microseconds.
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation of `seconds`.
    pub fn observe(&self, seconds: f64) {
        let seconds = seconds.max(0.0);
        if let Some(i) = DURATION_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends the histogram in Prometheus text format.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
        let mut cumulative = 0;
        for (bound, bucket) in DURATION_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = write!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(0.002);
        h.observe(0.3);
        h.observe(100.0);
        let mut out = String::new();
        h.render(&mut out, "t", "test");
        assert!(out.contains("# TYPE t histogram\n"));
        assert!(out.contains("t_bucket{le=\"0.001\"} 0\n"));
        assert!(out.contains("t_bucket{le=\"0.0025\"} 1\n"));
        assert!(out.contains("t_bucket{le=\"0.5\"} 2\n"));
        assert!(out.contains("t_bucket{le=\"30\"} 2\n"));
        assert!(out.contains("t_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("t_count 3\n"));
        assert!(out.contains("t_sum 100.302\n"), "{out}");
    }

    #[test]
    fn a_second_install_does_not_panic() {
        // Whether or not another test installed one first, both calls agree.
        let first = install_recorder();
        let second = install_recorder();
        assert_eq!(first, second);
        assert_eq!(recorder_handle().is_some(), first);
    }
}
