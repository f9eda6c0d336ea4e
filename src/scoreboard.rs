//! What every serving process is running, in memory shared with the supervisor: per
//! process its pid, and per worker thread the request it runs (id, method, URI, script)
//! and since when. When a process dies, the supervisor reads from here which requests it
//! took with it. Also the supervisor's restart count, for `/health` and `/metrics`.
//!
//! Without a supervisor (a single process, a library user) nothing is installed and every
//! call is a no-op.
//!
//! The open connections of each process are here too: a serving process that holds more
//! than another leaves new connections to it ([accept balancing](crate::server)).
//!
//! Layout, in 64-bit words: a header (restarts, processes, slots per process), then per
//! process a record (pid, busy workers, ready, open connections, the classic pool's
//! counters) and its worker slots. The counters survive a restart of their process, so their sums only grow. A slot is a sequence number
//! (odd while its writer changes it), the start time (ms since the epoch; 0 = idle), the
//! text's length and [`TEXT_BYTES`] of text. A reader copies a slot and keeps the copy
//! only if the sequence number was even and unchanged around it.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ffi::process;

/// Worker slots per process: threads beyond it run untracked.
pub(crate) const SLOTS_PER_PROCESS: usize = 128;
/// Bytes of text per slot ("id=… GET /uri script=…"), cut at a character boundary.
pub(crate) const TEXT_BYTES: usize = 480;

const HEADER_WORDS: usize = 3;
// The words of a process record.
const PID: usize = 0;
const BUSY: usize = 1;
const READY: usize = 2;
const OPEN_CONNECTIONS: usize = 3;
const COUNTERS: usize = 4;
const PROCESS_WORDS: usize = COUNTERS + Counter::ALL.len();
const TEXT_WORDS: usize = TEXT_BYTES / 8;
const SLOT_WORDS: usize = 3 + TEXT_WORDS;

/// The shared board.
#[derive(Debug)]
pub(crate) struct Scoreboard {
    words: &'static [AtomicU64],
    processes: usize,
}

static BOARD: OnceLock<Scoreboard> = OnceLock::new();
/// This process's index on the board (set in each child after the fork).
static PROCESS: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The next free slot of this process.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This worker thread's slot, taken on its first request.
    static SLOT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// A classic-pool counter that `/metrics` and `/health` sum over every serving process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    /// Requests PHP finished.
    Served,
    /// Requests refused because the queue was full.
    Rejected,
    /// Scripts that ended in a fatal error.
    FatalErrors,
    /// Scripts ended by `max_execution_time`.
    Timeouts,
}

impl Counter {
    const ALL: [Self; 4] = [
        Self::Served,
        Self::Rejected,
        Self::FatalErrors,
        Self::Timeouts,
    ];

    fn word(self) -> usize {
        COUNTERS + self as usize
    }
}

/// Counts one `counter` event for this process; no-op without a supervisor.
pub(crate) fn count(counter: Counter) {
    if let (Some(board), Some(process)) = (board(), this_process()) {
        board.words[board.process_base(process) + counter.word()].fetch_add(1, Ordering::Relaxed);
    }
}

/// A request a process was running, read off the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Running {
    /// "id=… GET /uri script=…".
    pub what: String,
    /// How long it had been running.
    pub for_ms: u64,
}

/// Maps the board for `processes` serving processes. Call once, before forking.
pub(crate) fn install(processes: usize) -> std::io::Result<&'static Scoreboard> {
    let len = HEADER_WORDS + processes * (PROCESS_WORDS + SLOTS_PER_PROCESS * SLOT_WORDS);
    let words = process::shared_words(len)?;
    words[1].store(processes as u64, Ordering::Relaxed);
    words[2].store(SLOTS_PER_PROCESS as u64, Ordering::Relaxed);
    Ok(BOARD.get_or_init(|| Scoreboard { words, processes }))
}

/// The board, when a supervisor installed one.
pub(crate) fn board() -> Option<&'static Scoreboard> {
    BOARD.get()
}

/// In a forked child: this process is number `index` on the board, and its slots are free.
pub(crate) fn enter_process(index: usize) {
    PROCESS.store(index, Ordering::Release);
    NEXT_SLOT.store(0, Ordering::Release);
    if let Some(board) = board() {
        for slot in 0..SLOTS_PER_PROCESS {
            board.clear_slot(index, slot);
        }
        board.words[board.process_base(index) + BUSY].store(0, Ordering::Relaxed);
        board.words[board.process_base(index) + OPEN_CONNECTIONS].store(0, Ordering::Relaxed);
        board.words[board.process_base(index) + READY].store(0, Ordering::Release);
    }
}

/// In a serving process: PHP and the router are up, it accepts connections.
pub(crate) fn mark_ready() {
    set_accepting(true);
}

/// In a serving process: it no longer accepts connections (it drains).
pub(crate) fn mark_not_accepting() {
    set_accepting(false);
}

fn set_accepting(accepting: bool) {
    if let (Some(board), Some(process)) = (board(), this_process()) {
        board.words[board.process_base(process) + READY]
            .store(u64::from(accepting), Ordering::Release);
    }
}

/// Serving processes on the board; 0 without a supervisor.
pub(crate) fn serving_processes() -> usize {
    board().map_or(0, Scoreboard::processes)
}

/// One open connection of this process, counted on the board while it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection(Option<&'static AtomicU64>);

impl OpenConnection {
    /// Counts a connection this process accepted; no-op without a supervisor.
    pub(crate) fn opened() -> Self {
        let word = this_process().and_then(|process| {
            let board = board()?;
            Some(&board.words[board.process_base(process) + OPEN_CONNECTIONS])
        });
        if let Some(word) = word {
            word.fetch_add(1, Ordering::Relaxed);
        }
        Self(word)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if let Some(word) = self.0 {
            let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }
}

/// Whether another serving process that accepts holds fewer open connections than this
/// one (then it should take the next connection).
pub(crate) fn another_process_holds_fewer_connections() -> bool {
    let (Some(board), Some(process)) = (board(), this_process()) else {
        return false;
    };
    board.another_holds_fewer(process)
}

/// The calling worker thread starts the request described by `what`.
pub(crate) fn job_started(what: &str) {
    let (Some(board), Some(process)) = (board(), this_process()) else {
        return;
    };
    let Some(slot) = this_slot() else {
        return;
    };
    board.write_slot(process, slot, now_ms().max(1), what);
    board.words[board.process_base(process) + BUSY].fetch_add(1, Ordering::Relaxed);
}

/// The calling worker thread's request has ended.
pub(crate) fn job_ended() {
    let (Some(board), Some(process)) = (board(), this_process()) else {
        return;
    };
    let Some(slot) = SLOT.with(Cell::get) else {
        return;
    };
    board.clear_slot(process, slot);
    let busy = &board.words[board.process_base(process) + BUSY];
    let _ = busy.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

fn this_process() -> Option<usize> {
    let index = PROCESS.load(Ordering::Acquire);
    board()
        .is_some_and(|b| index < b.processes)
        .then_some(index)
}

fn this_slot() -> Option<usize> {
    SLOT.with(|cell| {
        if cell.get().is_none() {
            let next = NEXT_SLOT.fetch_add(1, Ordering::AcqRel);
            cell.set((next < SLOTS_PER_PROCESS).then_some(next));
        }
        cell.get()
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Scoreboard {
    fn process_base(&self, process: usize) -> usize {
        HEADER_WORDS + process * (PROCESS_WORDS + SLOTS_PER_PROCESS * SLOT_WORDS)
    }

    fn slot_base(&self, process: usize, slot: usize) -> usize {
        self.process_base(process) + PROCESS_WORDS + slot * SLOT_WORDS
    }

    /// Serving processes on the board.
    pub(crate) fn processes(&self) -> usize {
        self.processes
    }

    /// Records `pid` as process number `process`.
    pub(crate) fn set_pid(&self, process: usize, pid: i32) {
        self.words[self.process_base(process) + PID].store(pid as u64, Ordering::Relaxed);
    }

    /// The pid of process number `process` (0 while it is not running).
    pub(crate) fn pid(&self, process: usize) -> i32 {
        self.words[self.process_base(process) + PID].load(Ordering::Relaxed) as i32
    }

    /// Whether process number `process` has started and accepts connections.
    pub(crate) fn ready(&self, process: usize) -> bool {
        self.words[self.process_base(process) + READY].load(Ordering::Acquire) == 1
    }

    /// Workers of process number `process` running a request now.
    pub(crate) fn busy(&self, process: usize) -> u64 {
        self.words[self.process_base(process) + BUSY].load(Ordering::Relaxed)
    }

    /// `counter` summed over every serving process.
    pub(crate) fn total(&self, counter: Counter) -> u64 {
        (0..self.processes)
            .map(|p| self.words[self.process_base(p) + counter.word()].load(Ordering::Relaxed))
            .sum()
    }

    /// Open connections of process number `process`.
    pub(crate) fn open_connections(&self, process: usize) -> u64 {
        self.words[self.process_base(process) + OPEN_CONNECTIONS].load(Ordering::Relaxed)
    }

    /// Whether a running, accepting process other than `process` holds fewer open
    /// connections than it.
    fn another_holds_fewer(&self, process: usize) -> bool {
        let mine = self.open_connections(process);
        (0..self.processes).any(|other| {
            other != process
                && self.pid(other) != 0
                && self.ready(other)
                && self.open_connections(other) < mine
        })
    }

    /// Busy workers summed over every serving process.
    pub(crate) fn total_busy(&self) -> u64 {
        (0..self.processes).map(|p| self.busy(p)).sum()
    }

    /// Serving processes the supervisor started again after one ended.
    pub(crate) fn restarts(&self) -> u64 {
        self.words[0].load(Ordering::Relaxed)
    }

    /// Counts one restart.
    pub(crate) fn count_restart(&self) {
        self.words[0].fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the supervisor's figures, in Prometheus text format: restarts, and each
    /// serving process's busy workers.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "# HELP tokio_php_process_restarts_total Serving processes the supervisor started again after one ended.\n\
             # TYPE tokio_php_process_restarts_total counter\ntokio_php_process_restarts_total {}\n\
             # HELP tokio_php_process_busy_workers PHP workers running a request now, per serving process.\n\
             # TYPE tokio_php_process_busy_workers gauge\n",
            self.restarts()
        );
        for process in 0..self.processes {
            let _ = writeln!(
                out,
                "tokio_php_process_busy_workers{{process=\"{process}\"}} {}",
                self.busy(process)
            );
        }
    }

    /// The requests process number `process` is running.
    pub(crate) fn running(&self, process: usize) -> Vec<Running> {
        let now = now_ms();
        (0..SLOTS_PER_PROCESS)
            .filter_map(|slot| self.read_slot(process, slot))
            .map(|(started, what)| Running {
                what,
                for_ms: now.saturating_sub(started),
            })
            .collect()
    }

    fn write_slot(&self, process: usize, slot: usize, started: u64, what: &str) {
        let base = self.slot_base(process, slot);
        let seq = &self.words[base];
        seq.fetch_add(1, Ordering::AcqRel);
        let mut end = what.len().min(TEXT_BYTES);
        while !what.is_char_boundary(end) {
            end -= 1;
        }
        let bytes = &what.as_bytes()[..end];
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.words[base + 3 + i].store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        self.words[base + 2].store(end as u64, Ordering::Relaxed);
        self.words[base + 1].store(started, Ordering::Relaxed);
        seq.fetch_add(1, Ordering::AcqRel);
    }

    fn clear_slot(&self, process: usize, slot: usize) {
        let base = self.slot_base(process, slot);
        let seq = &self.words[base];
        seq.fetch_add(1, Ordering::AcqRel);
        self.words[base + 1].store(0, Ordering::Relaxed);
        seq.fetch_add(1, Ordering::AcqRel);
    }

    /// (start, text) of a busy slot; None when idle or changing (a few tries).
    fn read_slot(&self, process: usize, slot: usize) -> Option<(u64, String)> {
        let base = self.slot_base(process, slot);
        for _ in 0..4 {
            let before = self.words[base].load(Ordering::Acquire);
            if before % 2 == 1 {
                std::thread::sleep(Duration::from_micros(50));
                continue;
            }
            let started = self.words[base + 1].load(Ordering::Relaxed);
            if started == 0 {
                return None;
            }
            let len = (self.words[base + 2].load(Ordering::Relaxed) as usize).min(TEXT_BYTES);
            let mut bytes = Vec::with_capacity(len);
            for i in 0..len.div_ceil(8) {
                bytes.extend_from_slice(
                    &self.words[base + 3 + i]
                        .load(Ordering::Relaxed)
                        .to_le_bytes(),
                );
            }
            bytes.truncate(len);
            if self.words[base].load(Ordering::Acquire) == before {
                return Some((started, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board_of(processes: usize) -> Scoreboard {
        let words: &'static [AtomicU64] = Box::leak(
            (0..HEADER_WORDS + processes * (PROCESS_WORDS + SLOTS_PER_PROCESS * SLOT_WORDS))
                .map(|_| AtomicU64::new(0))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        Scoreboard { words, processes }
    }

    #[test]
    fn a_slot_holds_what_runs_until_it_ends() {
        let board = board_of(2);
        assert!(board.running(1).is_empty());
        let long = format!("id=abc GET /{} script=/x.php", "é".repeat(400));
        board.write_slot(1, 3, now_ms() - 1500, &long);
        board.write_slot(1, 4, now_ms(), "id=def POST /form script=/form.php");
        let running = board.running(1);
        assert_eq!(running.len(), 2);
        assert!(running[0].what.starts_with("id=abc GET /é"));
        assert!(running[0].what.len() <= TEXT_BYTES);
        assert!(running[0].for_ms >= 1500);
        assert_eq!(running[1].what, "id=def POST /form script=/form.php");
        assert!(board.running(0).is_empty());
        board.clear_slot(1, 3);
        assert_eq!(board.running(1).len(), 1);
        board.set_pid(1, 4242);
        assert_eq!(board.pid(1), 4242);
        assert_eq!(board.pid(0), 0);
    }

    #[test]
    fn only_a_running_accepting_process_with_fewer_connections_takes_over() {
        let board = board_of(3);
        let set_open = |process: usize, open: u64| {
            board.words[board.process_base(process) + OPEN_CONNECTIONS]
                .store(open, Ordering::Relaxed);
        };
        let set_ready = |process: usize, ready: u64| {
            board.words[board.process_base(process) + READY].store(ready, Ordering::Relaxed);
        };
        for process in 0..3 {
            board.set_pid(process, 100 + process as i32);
            set_ready(process, 1);
        }
        set_open(0, 3);
        set_open(1, 3);
        set_open(2, 3);
        // Level: everyone accepts at once.
        assert!(!board.another_holds_fewer(0));
        set_open(2, 2);
        assert!(board.another_holds_fewer(0));
        assert!(!board.another_holds_fewer(2));
        // A process that drains, or one that died and is not back yet, does not count.
        set_ready(2, 0);
        assert!(!board.another_holds_fewer(0));
        set_ready(2, 1);
        board.set_pid(2, 0);
        assert!(!board.another_holds_fewer(0));
    }
}
