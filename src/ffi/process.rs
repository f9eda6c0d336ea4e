//! The process calls the supervisor needs, as safe functions: fork, signals, waiting for
//! children, the parent-death signal, and shared anonymous memory.

use std::io;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// What [`fork`] returned, in the process that sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    /// In the parent: the child's process id.
    Parent(i32),
    /// In the new child.
    Child,
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildEnd {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it (a crash: SIGSEGV, SIGABRT, SIGBUS; or SIGKILL).
    Signaled(i32),
}

/// Signal numbers by name, for the supervisor's decisions.
pub(crate) use libc::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};

/// The signals the supervisor waits for.
pub(crate) const WATCHED_SIGNALS: [i32; 5] = [SIGTERM, SIGINT, SIGQUIT, SIGHUP, libc::SIGCHLD];

/// Threads of this process, from `/proc/self/task`.
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

/// Forks the process. Refused unless this process has exactly one thread: a child of a
/// multi-threaded process would inherit locks held by threads that do not exist in it.
pub(crate) fn fork() -> io::Result<Forked> {
    let threads = thread_count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "cannot fork with {threads} threads running; the supervisor forks before any thread starts"
        )));
    }
    // SAFETY: the process has one thread (checked just above), so the child inherits no
    // lock held by another thread; both sides continue in safe Rust.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

fn signal_set(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use, and
    // sigaddset only reads valid signal numbers (ours are libc constants).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks `signals` for the calling thread (and the threads it starts later), so that
/// [`wait_for_signal`] receives them instead of their default action.
pub(crate) fn block_signals(signals: &[i32]) -> io::Result<()> {
    change_signal_mask(libc::SIG_BLOCK, signals)
}

/// Unblocks `signals` for the calling thread: a forked child undoes the supervisor's mask
/// before it starts its runtime, whose signal handlers then work as in a single process.
pub(crate) fn unblock_signals(signals: &[i32]) -> io::Result<()> {
    change_signal_mask(libc::SIG_UNBLOCK, signals)
}

fn change_signal_mask(how: libc::c_int, signals: &[i32]) -> io::Result<()> {
    let set = signal_set(signals);
    // SAFETY: `set` is an initialised sigset_t and `how` a libc constant; the old mask is
    // not asked for (NULL).
    let rc = unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Waits up to `timeout` for one of `signals` (which must be blocked); None on timeout.
pub(crate) fn wait_for_signal(signals: &[i32], timeout: Duration) -> Option<i32> {
    let set = signal_set(signals);
    let spec = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos().min(999_999_999) as i32),
    };
    // SAFETY: `set` and `spec` are initialised and live for the call; the siginfo
    // out-parameter is not asked for (NULL).
    let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &spec) };
    (signal > 0).then_some(signal)
}

/// A child that has ended, if any (never blocks).
pub(crate) fn reap_child() -> Option<(i32, ChildEnd)> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a live out-parameter; WNOHANG makes the call return at once.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid <= 0 {
        return None;
    }
    let end = if libc::WIFSIGNALED(status) {
        ChildEnd::Signaled(libc::WTERMSIG(status))
    } else {
        ChildEnd::Exited(libc::WEXITSTATUS(status))
    };
    Some((pid, end))
}

/// Sends `signal` to process `pid`; an error when it is gone.
pub(crate) fn send_signal(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers; a stale pid is reported as ESRCH.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// In a child: receive `signal` when the parent process dies, and report whether the
/// parent is still `parent` (it may have died before the call).
pub(crate) fn die_with_parent(signal: i32, parent: i32) -> bool {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; getppid cannot fail.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::c_ulong::from(signal as u32));
        libc::getppid() == parent
    }
}

/// The listening socket open as descriptor `fd`, inherited across `exec` from the master
/// before a reload; an error unless it is a listening TCP socket.
pub(crate) fn inherited_listener(fd: i32) -> io::Result<std::net::TcpListener> {
    use std::os::fd::{BorrowedFd, FromRawFd};
    // SAFETY: `fd` is only borrowed to look at it; it is checked to be an open socket
    // (getsockopt fails on anything else) before it is owned below.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    if !rustix::net::sockopt::socket_acceptconn(borrowed)? {
        return Err(io::Error::other(format!(
            "descriptor {fd} is not a listening socket"
        )));
    }
    // SAFETY: the descriptor is an open listening socket (checked above) that nothing else
    // in this process owns: the environment variable that named it is read once.
    Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) })
}

/// `listener` registered with the current tokio runtime for readiness, so that a caller
/// can see a pending connection before it accepts one. Call within a runtime.
pub(crate) fn readiness_listener(
    listener: std::net::TcpListener,
) -> io::Result<tokio::io::unix::AsyncFd<std::net::TcpListener>> {
    // SAFETY: the AsyncFd owns `listener`, so its descriptor stays open and refers to the
    // same socket for as long as it is registered; the listener came out of tokio's own
    // TcpListener (`into_std`), which deregistered it, and nothing else registers it.
    unsafe { tokio::io::unix::AsyncFd::register(listener) }.map_err(io::Error::from)
}

/// This process's id.
pub(crate) fn pid() -> i32 {
    std::process::id() as i32
}

/// The name of `signal` (SIGSEGV), for log lines.
pub(crate) fn signal_name(signal: i32) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local string (or NULL);
    // it is copied out at once.
    let text = unsafe {
        let raw = libc::strsignal(signal);
        (!raw.is_null()).then(|| std::ffi::CStr::from_ptr(raw).to_string_lossy().into_owned())
    };
    let abbrev = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        SIGTERM => "SIGTERM",
        _ => "signal",
    };
    match text {
        Some(text) => format!("{abbrev} {signal} ({text})"),
        None => format!("{abbrev} {signal}"),
    }
}

/// `len` zeroed 64-bit words of memory shared with the children this process forks
/// later, for the life of the process.
pub(crate) fn shared_words(len: usize) -> io::Result<&'static [AtomicU64]> {
    let bytes = len
        .checked_mul(size_of::<AtomicU64>())
        .ok_or_else(|| io::Error::other("shared memory size overflows"))?;
    // SAFETY: an anonymous shared mapping of `bytes` (no file, no fixed address). The
    // kernel zero-fills it and aligns it to a page, so it is a valid, aligned array of
    // `len` AtomicU64 (all-zero is a valid AtomicU64). It is never unmapped, so the
    // 'static lifetime holds; concurrent access from several processes goes through the
    // atomics only.
    unsafe {
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            bytes.max(1),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(std::slice::from_raw_parts(ptr.cast::<AtomicU64>(), len))
    }
}
