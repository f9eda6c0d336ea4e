//! Memory of the HTTP metrics stays flat when nobody scrapes `/metrics`: the recorder the
//! server installs folds its histogram samples on a timer, not only when rendered. Before,
//! every request's latency sample was kept until a scrape (RSS grew 45 → 153 MiB over
//! 5.3 M requests on a server whose `/metrics` nobody read).
//!
//! Measured in-process, with the recorder the binary installs and a counting allocator.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

use std::alloc::System;
use std::time::{Duration, Instant};

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not yet freed.
fn live() -> isize {
    let stats = ALLOCATOR.stats();
    stats.bytes_allocated as isize + stats.bytes_reallocated - stats.bytes_deallocated as isize
}

fn record_requests(n: usize) {
    for i in 0..n {
        metrics::histogram!(
            axum_prometheus::AXUM_HTTP_REQUESTS_DURATION_SECONDS,
            "method" => "GET",
            "status" => "200",
            "endpoint" => "fallback",
        )
        .record((i % 1000) as f64 / 1e6);
    }
}

#[test]
fn unscraped_histogram_samples_do_not_pile_up() {
    assert!(tokio_php::metrics::install_recorder());
    record_requests(10_000);
    std::thread::sleep(tokio_php::metrics::UPKEEP_INTERVAL + Duration::from_secs(1));
    let before = live();
    // A million requests' worth of samples: 8 MB and more if they were all kept.
    record_requests(1_000_000);
    let deadline = Instant::now() + tokio_php::metrics::UPKEEP_INTERVAL * 3;
    loop {
        let grown = live() - before;
        if grown < 1 << 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{grown} bytes of samples still held {:?} after recording them",
            tokio_php::metrics::UPKEEP_INTERVAL * 3
        );
        // A server keeps serving: a trickle of requests (whose recording also lets the
        // recorder's epoch-based reclamation free what upkeep let go).
        record_requests(20);
        std::thread::sleep(Duration::from_millis(20));
    }
}
