//! Runs php-src tests as web requests against a [`Target`], the way `run-tests.php` (8.2)
//! runs them: the same php.ini settings, `--SKIPIF--` first, `--INI--` applied, the script
//! written next to its `.phpt` as `NAME.php`, `--CLEAN--` after, conflicting tests alone.
//!
//! `run-tests.php` hands each test its `--INI--` with `-d` flags on a new process; a server
//! gets them from its php.ini, so every distinct `--INI--` gets a server of its own,
//! started with the base settings plus those. Tests without one share the main server.
//!
//! A server that dies is noted, started again, and every test that was in flight then is
//! run again alone on a fresh server: the one that kills it again is [`Outcome::Died`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::{self, Response};
use crate::judge::{Verdict, judge};
use crate::phpt::{TestFile, php_trim};
use crate::request;
use crate::target::{Server, Target};

/// How long one request may take (run-tests.php's default timeout is 60 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server that dropped a connection gets to show it has died.
const DEATH_GRACE: Duration = Duration::from_secs(3);

/// run-tests.php's `$ini_overwrites`, plus its `$no_file_cache`: the settings every test
/// starts from.
pub(crate) const BASE_INI: &[(&str, &str)] = &[
    ("output_handler", ""),
    ("open_basedir", ""),
    ("disable_functions", ""),
    ("output_buffering", "Off"),
    ("error_reporting", "32767"),
    ("display_errors", "1"),
    ("display_startup_errors", "1"),
    ("log_errors", "0"),
    ("html_errors", "0"),
    ("track_errors", "0"),
    ("report_memleaks", "1"),
    ("report_zend_debug", "0"),
    ("docref_root", ""),
    ("docref_ext", ".html"),
    ("error_prepend_string", ""),
    ("error_append_string", ""),
    ("auto_prepend_file", ""),
    ("auto_append_file", ""),
    ("ignore_repeated_errors", "0"),
    ("precision", "14"),
    ("serialize_precision", "-1"),
    ("memory_limit", "128M"),
    ("opcache.fast_shutdown", "0"),
    ("opcache.file_update_protection", "0"),
    ("opcache.revalidate_freq", "0"),
    ("opcache.jit_hot_loop", "1"),
    ("opcache.jit_hot_func", "1"),
    ("opcache.jit_hot_return", "1"),
    ("opcache.jit_hot_side_exit", "1"),
    ("zend.assertions", "1"),
    ("zend.exception_ignore_args", "0"),
    ("zend.exception_string_param_max_len", "15"),
    ("short_open_tag", "0"),
    ("opcache.file_cache", ""),
    ("opcache.file_cache_only", "0"),
    // PHP's own defaults where tokio_php's differ (src/php/engine.rs INI_DEFAULTS) and
    // run-tests.php sets nothing, so both servers run PHP with the same settings.
    ("expose_php", "1"),
    ("register_argc_argv", "1"),
];

/// How one test ended, in run-tests.php's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The output (and headers) matched.
    Pass,
    /// They did not, or no response came; why.
    Fail(String),
    /// `--SKIPIF--` (or a missing extension) skipped it; why.
    Skip(String),
    /// The test itself is unusable; why.
    Bork(String),
    /// It failed, as its `--XFAIL--` section says it does.
    XFail,
    /// It passed with a warning (an `--XFAIL--` test that passes).
    Warn(String),
    /// Running it killed the server; how.
    Died(String),
}

impl Outcome {
    /// PASS, FAIL, SKIP, BORK, XFAIL, WARN or DIED.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail(_) => "FAIL",
            Self::Skip(_) => "SKIP",
            Self::Bork(_) => "BORK",
            Self::XFail => "XFAIL",
            Self::Warn(_) => "WARN",
            Self::Died(_) => "DIED",
        }
    }

    /// The reason, when there is one.
    pub(crate) fn detail(&self) -> &str {
        match self {
            Self::Fail(s) | Self::Skip(s) | Self::Bork(s) | Self::Warn(s) | Self::Died(s) => s,
            Self::Pass | Self::XFail => "",
        }
    }
}

/// Where a run keeps its files.
pub(crate) struct Run<'a> {
    /// The servers.
    pub target: &'a dyn Target,
    /// The document root: a copy of php-src's test tree; scripts are written into it.
    pub root: PathBuf,
    /// `{TMP}` in `--INI--`.
    pub tmp: PathBuf,
    /// Where failures' expected and actual output are written.
    pub report_dir: PathBuf,
    /// Requests in flight on the main server (and its PHP workers).
    pub parallel: usize,
}

/// One test ready to run.
struct Prepared {
    rel: String,
    test: TestFile,
}

/// A test past its SKIPIF, with what the SKIPIF said.
type Queued = (Prepared, SkipFlag);

/// `--INI--` settings, in order.
type Ini = Vec<(String, String)>;

/// Why a run could not go on with a test.
enum Interrupted {
    /// The server died under it.
    ServerDied,
}

impl Run<'_> {
    /// Runs the tests at `tests` (paths relative to the root); results in the same order.
    pub(crate) fn run(&self, tests: &[String]) -> Result<Vec<(String, Outcome)>, String> {
        let started = Instant::now();
        let mut results: HashMap<String, Outcome> = HashMap::new();
        let mut prepared = Vec::new();
        for rel in tests {
            match TestFile::read(&self.root.join(rel)) {
                Ok(test) if test.has("REDIRECTTEST") => {
                    results.insert(
                        rel.clone(),
                        Outcome::Skip("redirect tests are not run".into()),
                    );
                }
                Ok(test) if test.has("PHPDBG") => {
                    results.insert(rel.clone(), Outcome::Skip("phpdbg not available".into()));
                }
                Ok(test) => prepared.push(Prepared {
                    rel: rel.clone(),
                    test,
                }),
                Err(why) => {
                    results.insert(rel.clone(), Outcome::Bork(why));
                }
            }
        }

        let base_ini = self.write_ini("base", &[])?;
        let main = Slot::start(self, base_ini, self.parallel)?;
        let loaded = self.loaded_extensions(&main)?;

        // --EXTENSIONS-- and --SKIPIF--, with the base settings only, as run-tests.php.
        let mut runnable = Vec::new();
        for p in prepared {
            let missing: Vec<String> = p
                .test
                .extensions()
                .into_iter()
                .filter(|e| !loaded.contains(e))
                .collect();
            if missing.is_empty() {
                runnable.push(p);
            } else {
                let s = if missing.len() > 1 { "s" } else { "" };
                let why = format!("Required extension{s} missing: {}", missing.join(", "));
                results.insert(p.rel, Outcome::Skip(why));
            }
        }
        let skips = self.check_skips(&main, &runnable);
        let mut to_run = Vec::new();
        for (p, skip) in runnable.into_iter().zip(skips) {
            match skip {
                SkipCheck::Run(flag) => to_run.push((p, flag)),
                SkipCheck::Done(outcome) => {
                    results.insert(p.rel, outcome);
                }
            }
        }
        eprintln!(
            "phpt: {} tests, {} to run after SKIPIF ({:.1} s)",
            tests.len(),
            to_run.len(),
            started.elapsed().as_secs_f64()
        );

        // Tests with conflict keys run alone at the end; the others by their --INI--.
        let mut serial = Vec::new();
        let mut shared = Vec::new();
        let mut groups: BTreeMap<Ini, Vec<Queued>> = BTreeMap::new();
        for (p, flag) in to_run {
            let ini = p.test.ini(&self.tmp);
            if !p.test.conflicts().is_empty() {
                serial.push((p, flag));
            } else if ini.is_empty() {
                shared.push((p, flag));
            } else {
                groups.entry(ini).or_default().push((p, flag));
            }
        }
        let suspects: Mutex<Vec<Queued>> = Mutex::new(Vec::new());
        let done: Mutex<HashMap<String, Outcome>> = Mutex::new(HashMap::new());
        let group_count = groups.len();
        let groups: Mutex<VecDeque<_>> = Mutex::new(groups.into_iter().enumerate().collect());
        let shared: Mutex<VecDeque<_>> = Mutex::new(shared.into());
        std::thread::scope(|scope| {
            for _ in 0..self.parallel {
                scope.spawn(|| {
                    loop {
                        let Some(item) = lock(&shared).pop_front() else {
                            break;
                        };
                        self.run_on(&main, item, &done, &suspects);
                    }
                });
            }
            // Group servers, one at a time beside the main server's requests.
            scope.spawn(|| {
                loop {
                    let Some((n, (ini, tests))) = lock(&groups).pop_front() else {
                        break;
                    };
                    let slot = match self
                        .write_ini(&format!("group-{n}"), &ini)
                        .and_then(|path| Slot::start(self, path, 1))
                    {
                        Ok(slot) => slot,
                        Err(e) => {
                            // As a php that will not start with these -d flags: each fails.
                            let why =
                                format!("no server starts with this --INI--: {}", last_line(&e));
                            for (p, _) in tests {
                                lock(&done).insert(p.rel, Outcome::Fail(why.clone()));
                            }
                            continue;
                        }
                    };
                    for item in tests {
                        self.run_on(&slot, item, &done, &suspects);
                    }
                }
            });
        });
        eprintln!(
            "phpt: main server and {group_count} --INI-- servers done ({:.1} s)",
            started.elapsed().as_secs_f64()
        );

        // Alone: conflicting tests, then every test that was in flight when a server died.
        let alone = serial
            .into_iter()
            .chain(std::mem::take(&mut *lock(&suspects)));
        for (p, flag) in alone {
            let ini = p.test.ini(&self.tmp);
            let name = if ini.is_empty() { "base" } else { "alone" };
            let slot = match Slot::start(self, self.write_ini(name, &ini)?, 1) {
                Ok(slot) => slot,
                Err(e) => {
                    let why = format!("no server starts with this --INI--: {}", last_line(&e));
                    lock(&done).insert(p.rel, Outcome::Fail(why));
                    continue;
                }
            };
            let outcome = match self.run_test(&p, flag, &*slot.server()) {
                Ok(outcome) => outcome,
                Err(Interrupted::ServerDied) => {
                    let server = slot.server();
                    Outcome::Died(format!(
                        "server {}; its log ends:\n{}",
                        server.death().unwrap_or_else(|| "died".into()),
                        server.log_tail()
                    ))
                }
            };
            lock(&done).insert(p.rel, outcome);
        }
        results.extend(std::mem::take(&mut *lock(&done)));
        for death in lock(&main.deaths).iter() {
            eprintln!("phpt: the main server died: {death}");
        }
        eprintln!("phpt: finished in {:.1} s", started.elapsed().as_secs_f64());
        Ok(tests
            .iter()
            .map(|rel| {
                let outcome = results
                    .remove(rel)
                    .unwrap_or_else(|| Outcome::Bork("not run".into()));
                (rel.clone(), outcome)
            })
            .collect())
    }

    /// Runs one test on `slot`'s server; a death makes it a suspect and restarts the server.
    fn run_on(
        &self,
        slot: &Slot<'_>,
        (p, flag): Queued,
        done: &Mutex<HashMap<String, Outcome>>,
        suspects: &Mutex<Vec<Queued>>,
    ) {
        let (generation, server) = slot.current();
        match self.run_test(&p, flag, &*server) {
            Ok(outcome) => {
                lock(done).insert(p.rel, outcome);
            }
            Err(Interrupted::ServerDied) => {
                eprintln!("phpt: server died while {} ran; it runs again alone", p.rel);
                lock(suspects).push((p, flag));
                slot.restart(generation);
            }
        }
    }

    /// Runs one test: its script, the judgement, `--CLEAN--`.
    fn run_test(
        &self,
        p: &Prepared,
        flag: SkipFlag,
        server: &dyn Server,
    ) -> Result<Outcome, Interrupted> {
        let outcome = self.run_once(p, server)?;
        let flaky = flag == SkipFlag::Flaky || p.test.has("FLAKY");
        let outcome = if flaky && matches!(outcome, Outcome::Fail(_)) {
            self.run_once(p, server)?
        } else {
            outcome
        };
        let xfail = flag == SkipFlag::XFail || p.test.has("XFAIL");
        Ok(match outcome {
            Outcome::Fail(_) if xfail => Outcome::XFail,
            Outcome::Pass if xfail => Outcome::Warn("XFAIL section but test passes".into()),
            other => other,
        })
    }

    fn run_once(&self, p: &Prepared, server: &dyn Server) -> Result<Outcome, Interrupted> {
        let script = script_path(&p.rel, "php");
        let Some(code) = p.test.section("FILE") else {
            return Ok(Outcome::Bork("no --FILE--".into()));
        };
        if let Err(e) = std::fs::write(self.root.join(&script), code) {
            return Ok(Outcome::Bork(format!("cannot write {script}: {e}")));
        }
        let request = match request::build(&p.test, &url_path(&script)) {
            Ok(request) => request,
            Err(why) => return Ok(Outcome::Bork(why)),
        };
        let response = match self.send(server, &request)? {
            Ok(response) => response,
            Err(why) => return Ok(Outcome::Fail(why)),
        };
        let verdict = judge(&p.test, &response.body, &cgi_headers(&response));
        let clean = match p.test.section("CLEAN").map(php_trim) {
            Some(code) if !code.is_empty() => self.run_script(server, &p.rel, "clean.php", code)?,
            _ => None,
        };
        Ok(match verdict {
            Verdict::Pass => match clean {
                Some(output) if !output.is_empty() => Outcome::Bork(format!(
                    "invalid output from CLEAN: {}",
                    String::from_utf8_lossy(&output)
                )),
                _ => Outcome::Pass,
            },
            Verdict::Mismatch { expected, actual } => {
                self.report(&p.rel, &expected, &actual);
                Outcome::Fail(format!("output differs (status {})", response.status))
            }
        })
    }

    /// Writes `code` as the test's `NAME.{suffix}` and GETs it; its trimmed body, or None
    /// when no response came.
    fn run_script(
        &self,
        server: &dyn Server,
        rel: &str,
        suffix: &str,
        code: &[u8],
    ) -> Result<Option<Vec<u8>>, Interrupted> {
        let script = script_path(rel, suffix);
        if std::fs::write(self.root.join(&script), code).is_err() {
            return Ok(None);
        }
        let request = http::Request {
            method: "GET".into(),
            target: url_path(&script),
            ..http::Request::default()
        };
        Ok(self
            .send(server, &request)?
            .ok()
            .map(|r| php_trim(&r.body).to_vec()))
    }

    /// Sends `request`; the inner error is a failure to report, the outer one a dead server.
    fn send(
        &self,
        server: &dyn Server,
        request: &http::Request,
    ) -> Result<Result<Response, String>, Interrupted> {
        match http::send(server.addr(), request, REQUEST_TIMEOUT) {
            Ok(response) => Ok(Ok(response)),
            Err(e) => {
                let deadline = Instant::now() + DEATH_GRACE;
                while Instant::now() < deadline {
                    if server.death().is_some() {
                        return Err(Interrupted::ServerDied);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(Err(format!("no response: {e}")))
            }
        }
    }

    /// Runs every `--SKIPIF--` on the main server (several at once), as run-tests.php
    /// does: one result per distinct code per directory, `nocache` results not kept.
    fn check_skips(&self, main: &Slot<'_>, tests: &[Prepared]) -> Vec<SkipCheck> {
        let cache: Mutex<HashMap<(PathBuf, Vec<u8>), String>> = Mutex::new(HashMap::new());
        let next = Mutex::new(0usize);
        let out: Mutex<Vec<Option<SkipCheck>>> =
            Mutex::new((0..tests.len()).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..self.parallel {
                scope.spawn(|| {
                    loop {
                        let i = {
                            let mut next = lock(&next);
                            let i = *next;
                            *next += 1;
                            i
                        };
                        let Some(p) = tests.get(i) else {
                            break;
                        };
                        let check = self.check_skip(main, p, &cache);
                        lock(&out)[i] = Some(check);
                    }
                });
            }
        });
        out.into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|c| c.unwrap_or(SkipCheck::Run(SkipFlag::None)))
            .collect()
    }

    fn check_skip(
        &self,
        main: &Slot<'_>,
        p: &Prepared,
        cache: &Mutex<HashMap<(PathBuf, Vec<u8>), String>>,
    ) -> SkipCheck {
        let Some(code) = p.test.non_empty("SKIPIF") else {
            return SkipCheck::Run(SkipFlag::None);
        };
        let dir = p.test.path.parent().unwrap_or(Path::new("")).to_path_buf();
        let key = (dir, code.to_vec());
        let cached = lock(cache).get(&key).cloned();
        let output = match cached {
            Some(output) => output,
            None => {
                let (generation, server) = main.current();
                let output = match self.run_script(&*server, &p.rel, "skip.php", code) {
                    Ok(Some(body)) => String::from_utf8_lossy(&body).into_owned(),
                    Ok(None) => {
                        return SkipCheck::Done(Outcome::Bork("SKIPIF got no response".into()));
                    }
                    Err(Interrupted::ServerDied) => {
                        main.restart(generation);
                        return SkipCheck::Done(Outcome::Died(
                            "the server died running SKIPIF".into(),
                        ));
                    }
                };
                if output.starts_with("nocache") {
                    String::new()
                } else {
                    lock(cache).insert(key, output.clone());
                    output
                }
            }
        };
        classify_skip(&output)
    }

    /// The extensions the server has loaded, lower-cased, as run-tests.php lists them.
    fn loaded_extensions(&self, main: &Slot<'_>) -> Result<Vec<String>, String> {
        let code = b"<?php echo implode(',', get_loaded_extensions());";
        let (_, server) = main.current();
        let Ok(Some(body)) = self.run_script(&*server, "phpt-probe.phpt", "php", code) else {
            return Err("the server did not answer the extension probe".into());
        };
        let mut loaded: Vec<String> = String::from_utf8_lossy(&body)
            .split(',')
            .map(|e| e.trim().to_ascii_lowercase())
            .collect();
        if loaded.iter().any(|e| e == "zend opcache") {
            loaded.push("opcache".into());
        }
        Ok(loaded)
    }

    /// A php.ini: the base settings, then `extra` (later lines win), written as PHP's
    /// command line writes `-d name=value` (values that start with an odd character
    /// quoted).
    fn write_ini(&self, name: &str, extra: &[(String, String)]) -> Result<PathBuf, String> {
        let mut text = String::new();
        let base = BASE_INI.iter().map(|&(n, v)| (n, v));
        for (n, v) in base.chain(extra.iter().map(|(n, v)| (n.as_str(), v.as_str()))) {
            text.push_str(&ini_line(n, v));
        }
        let path = self.tmp.join(format!("{name}.ini"));
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    fn report(&self, rel: &str, expected: &[u8], actual: &[u8]) {
        let base = self.report_dir.join(rel);
        if let Some(dir) = base.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(base.with_extension("exp"), expected);
        let _ = std::fs::write(base.with_extension("out"), actual);
    }
}

/// A server that is started again when it dies.
struct Slot<'a> {
    run: &'a Run<'a>,
    php_ini: PathBuf,
    workers: usize,
    current: Mutex<(u64, Arc<dyn Server>)>,
    deaths: Mutex<Vec<String>>,
}

impl<'a> Slot<'a> {
    fn start(run: &'a Run<'a>, php_ini: PathBuf, workers: usize) -> Result<Self, String> {
        let server: Arc<dyn Server> = run.target.start(&run.root, &php_ini, workers)?.into();
        Ok(Self {
            run,
            php_ini,
            workers,
            current: Mutex::new((0, server)),
            deaths: Mutex::new(Vec::new()),
        })
    }

    fn current(&self) -> (u64, Arc<dyn Server>) {
        let current = lock(&self.current);
        (current.0, Arc::clone(&current.1))
    }

    fn server(&self) -> Arc<dyn Server> {
        self.current().1
    }

    /// Starts a new server unless someone already did after `generation` died.
    fn restart(&self, generation: u64) {
        let mut current = lock(&self.current);
        if current.0 != generation {
            return;
        }
        let old = &current.1;
        lock(&self.deaths).push(format!(
            "{}; log:\n{}",
            old.death().unwrap_or_else(|| "died".into()),
            old.log_tail()
        ));
        match self
            .run
            .target
            .start(&self.run.root, &self.php_ini, self.workers)
        {
            Ok(server) => *current = (generation + 1, server.into()),
            Err(e) => eprintln!("phpt: the server could not be started again: {e}"),
        }
    }
}

/// What `--SKIPIF--` said.
enum SkipCheck {
    /// Run the test (with a flag from the SKIPIF output).
    Run(SkipFlag),
    /// No need: skipped or borked.
    Done(Outcome),
}

/// A SKIPIF answer that changes how the test is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SkipFlag {
    None,
    XFail,
    Flaky,
}

/// run-tests.php's reading of SKIPIF output: `skip …`, `info …`, `warn …`, `xfail…`,
/// `flaky…`, nothing; anything else borks the test.
fn classify_skip(output: &str) -> SkipCheck {
    let starts = |word: &str| {
        output
            .get(..word.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(word))
    };
    let rest = |word: &str| &output[word.len()..];
    if starts("skip") {
        return SkipCheck::Done(Outcome::Skip(rest("skip").trim().to_owned()));
    }
    let info = starts("info") && !rest("info").trim_start().is_empty();
    let warn = starts("warn")
        && rest("warn").starts_with(char::is_whitespace)
        && !rest("warn").trim_start().is_empty();
    if output.is_empty() || info || warn {
        return SkipCheck::Run(SkipFlag::None);
    }
    if starts("xfail") {
        return SkipCheck::Run(SkipFlag::XFail);
    }
    if starts("flaky") {
        return SkipCheck::Run(SkipFlag::Flaky);
    }
    SkipCheck::Done(Outcome::Bork(format!(
        "invalid output from SKIPIF: {output}"
    )))
}

/// `name=value` as PHP's `-d` writes it into its ini text.
fn ini_line(name: &str, value: &str) -> String {
    let first = value.bytes().next();
    let plain = first.is_none_or(|b| b.is_ascii_alphanumeric() || b == b'"' || b == b'\'');
    if plain {
        format!("{name}={value}\n")
    } else {
        format!("{name}=\"{value}\"\n")
    }
}

/// `dir/name.phpt` → `dir/name.{suffix}`, as run-tests.php names its scripts.
fn script_path(rel: &str, suffix: &str) -> String {
    let stem = rel.strip_suffix(".phpt").unwrap_or(rel);
    format!("{stem}.{suffix}")
}

/// The URL path of a file under the root, each segment percent-encoded.
fn url_path(rel: &str) -> String {
    let mut out = String::with_capacity(rel.len() + 1);
    for segment in rel.split('/') {
        out.push('/');
        for b in segment.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// The response headers as php-cgi prints them: a `Status` line when it is not 200.
fn cgi_headers(response: &Response) -> Vec<(String, String)> {
    let mut headers = Vec::with_capacity(response.headers.len() + 1);
    if response.status != 200 {
        headers.push((
            "Status".to_owned(),
            format!("{} {}", response.status, response.reason),
        ));
    }
    headers.extend(response.headers.iter().cloned());
    headers
}

/// The last non-empty line of a server's start-up error (where it says why).
fn last_line(error: &str) -> String {
    error
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(error)
        .trim()
        .to_owned()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipif_output_is_read_as_run_tests_reads_it() {
        assert!(
            matches!(classify_skip("skip no mbstring"), SkipCheck::Done(Outcome::Skip(r)) if r == "no mbstring")
        );
        assert!(matches!(
            classify_skip("SKIP"),
            SkipCheck::Done(Outcome::Skip(_))
        ));
        assert!(matches!(classify_skip(""), SkipCheck::Run(SkipFlag::None)));
        assert!(matches!(
            classify_skip("xfail known bug"),
            SkipCheck::Run(SkipFlag::XFail)
        ));
        assert!(matches!(
            classify_skip("warn slow"),
            SkipCheck::Run(SkipFlag::None)
        ));
        assert!(matches!(
            classify_skip("Warning: x"),
            SkipCheck::Done(Outcome::Bork(_))
        ));
        assert!(matches!(
            classify_skip("info"),
            SkipCheck::Done(Outcome::Bork(_))
        ));
        assert!(matches!(
            classify_skip("Fatal error"),
            SkipCheck::Done(Outcome::Bork(_))
        ));
    }

    #[test]
    fn ini_values_are_quoted_as_php_dash_d_quotes_them() {
        assert_eq!(ini_line("a", "1"), "a=1\n");
        assert_eq!(ini_line("a", ""), "a=\n");
        assert_eq!(ini_line("a", "/tmp/x"), "a=\"/tmp/x\"\n");
        assert_eq!(ini_line("a", "\"q\""), "a=\"q\"\n");
    }

    #[test]
    fn scripts_sit_beside_their_test() {
        assert_eq!(
            script_path("Zend/tests/bug1.phpt", "skip.php"),
            "Zend/tests/bug1.skip.php"
        );
        assert_eq!(url_path("a b/c+d.php"), "/a%20b/c%2Bd.php");
    }
}
