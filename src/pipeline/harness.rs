//! The one place that starts, steps and joins the workers.
//!
//! Why it exists: timely waits for every worker, so a worker that stops on an
//! error (a source that cannot read, a sink that cannot write) used to leave
//! its peers waiting for data that never came, and the process hung. Here
//! every worker steps until its dataflows are done *or the run is aborted*,
//! and the first failure anywhere aborts the run:
//!
//! - an operator calls [`Abort::fail`] with a typed error;
//! - a worker's build or finish step returns an error;
//! - a thread panics (a bug, or timely's network thread losing a peer
//!   process): a panic hook turns it into an abort while a run is active.
//!
//! Within a process, workers see the abort within [`POLL`] and stop; the
//! first error is returned and temporary files are removed as their owners
//! drop. Across processes, a failing process must not let its workers close
//! their connections cleanly (its peers would then wait for ever), so its
//! workers park and the caller exits at once: the peers' network threads
//! see the connection break, panic with "timely communication error", and
//! abort in turn. So with several processes a failed run prints its error
//! and exits the process (status 1 when the data is at fault, else 2)
//! from here, after removing its temporary outputs
//! ([`crate::atomic::remove_pending`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use timely::communication::initialize::WorkerGuards;
use timely::worker::Worker;

use super::agree::{self, Terms};
use super::busy::{BusyClock, WorkerBusy};
use super::error::PipelineError;
use super::stall::Steps;

/// How often an idle worker looks at the abort flag.
pub const POLL: Duration = Duration::from_millis(50);

/// How long, after an abort, the workers of one process get to stop before
/// the run is given up on them (one may be blocked writing to a FIFO).
const GRACE: Duration = Duration::from_secs(2);

/// Where the workers run: threads per process, and the processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Worker threads in each process.
    pub workers: usize,
    /// This process's index, from 0.
    pub process: usize,
    /// `host:port` of every process, in order; one entry for a single
    /// process (unused then).
    pub addresses: Vec<String>,
    /// How long to wait for every process to connect before giving up.
    pub connect_timeout: Duration,
}

/// The default wait for the other processes of a run to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl Cluster {
    /// One process of `workers` threads.
    pub fn local(workers: usize) -> Cluster {
        Cluster {
            workers,
            process: 0,
            addresses: vec![String::new()],
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    pub fn processes(&self) -> usize {
        self.addresses.len().max(1)
    }

    /// Every worker of the run, over all processes.
    pub fn total_workers(&self) -> usize {
        self.workers * self.processes()
    }

    /// Whether this process holds worker 0, which owns the outputs.
    pub fn owns_outputs(&self) -> bool {
        self.process == 0
    }

    fn config(&self) -> timely::Config {
        let communication = if self.processes() == 1 {
            timely::CommunicationConfig::Process(self.workers)
        } else {
            timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses: self.addresses.clone(),
                report: false,
                zerocopy: false,
            }
        };
        timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        }
    }
}

/// What a worker does once its dataflows are complete.
pub type Finish<T> = Box<dyn FnOnce(&mut Worker) -> Result<T, PipelineError>>;

/// The run's shared state: the first failure, and how many workers are done.
#[derive(Default)]
struct State {
    failure: Option<PipelineError>,
    finished: usize,
}

#[derive(Default)]
struct Shared {
    aborted: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

/// A handle every worker and operator holds: `fail` ends the run.
#[derive(Clone, Default)]
pub struct Abort(Arc<Shared>);

impl Abort {
    /// Ends the run with `error`, unless another failure came first.
    pub fn fail(&self, error: PipelineError) {
        let mut state = self.lock();
        if state.failure.is_none() {
            state.failure = Some(error);
        }
        self.0.aborted.store(true, Ordering::SeqCst);
        self.0.changed.notify_all();
    }

    /// Whether the run has been aborted.
    pub fn is_set(&self) -> bool {
        self.0.aborted.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finished_one(&self) {
        self.lock().finished += 1;
        self.0.changed.notify_all();
    }

    /// Waits until `workers` are done or the run is aborted; true if aborted.
    fn wait(&self, workers: usize) -> bool {
        let mut state = self.lock();
        while state.failure.is_none() && state.finished < workers {
            state = self
                .0
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        state.failure.is_some()
    }

    fn take_failure(&self) -> Option<PipelineError> {
        self.lock().failure.take()
    }
}

/// Whether this process has started workers (and so joined the other
/// processes) at least once: a failure after that must not try to join them
/// again (see [`fail_cluster`]).
static STARTED: AtomicBool = AtomicBool::new(false);

/// Whether this process's workers have compared their settings with the
/// other processes' and found them alike: a connection lost before then
/// may be another process ending on a difference it found first.
static AGREED: AtomicBool = AtomicBool::new(false);

/// Whether this process has started its workers.
pub fn started() -> bool {
    STARTED.load(Ordering::SeqCst)
}

/// The run the panic hook reports to, while one is active.
fn active() -> &'static Mutex<Option<Abort>> {
    static ACTIVE: OnceLock<Mutex<Option<Abort>>> = OnceLock::new();
    ACTIVE.get_or_init(|| Mutex::new(None))
}

/// Turns panics into aborts of the active run; other panics go to the hook
/// that was there before.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let abort = active().lock().ok().and_then(|a| a.clone());
            let Some(abort) = abort else {
                return previous(info);
            };
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_string());
            let thread = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_string();
            let error = if message.starts_with("timely communication error") {
                let before = if AGREED.load(Ordering::SeqCst) {
                    ""
                } else {
                    " (before the processes had compared their settings: another may have \
                     found one that differs, or been stopped, and says which in its log)"
                };
                PipelineError::PeerLost {
                    message: format!("{message}{before}"),
                }
            } else {
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                // timely's networking indexes by the peers' worker counts:
                // processes started with another -w or -n break it here,
                // before they can compare their settings.
                let hint = if at.contains("timely_communication") {
                    "; is every process of the run started with the same -w, -n and hostfile?"
                } else {
                    ""
                };
                PipelineError::Panic {
                    thread,
                    message: format!("{message}{at}{hint}"),
                }
            };
            abort.fail(error);
        }));
    });
}

/// Starts `cluster.workers` workers in this process, each building its
/// dataflows with `build`, steps them until done, runs each worker's finish
/// step and returns the results of this process's workers in worker order.
/// The first failure anywhere ends the run promptly (see the module doc).
pub fn execute<T, B>(cluster: &Cluster, terms: Terms, build: B) -> Result<Vec<T>, PipelineError>
where
    T: Send + 'static,
    B: Fn(&mut Worker, &Abort) -> Result<Finish<T>, PipelineError> + Send + Sync + 'static,
{
    execute_failed(cluster, None, terms, build)
}

/// [`execute`], for a run that has `failed` already (see [`fail_cluster`]):
/// that error is the run's whatever the others report as they go.
fn execute_failed<T, B>(
    cluster: &Cluster,
    failed: Option<PipelineError>,
    terms: Terms,
    build: B,
) -> Result<Vec<T>, PipelineError>
where
    T: Send + 'static,
    B: Fn(&mut Worker, &Abort) -> Result<Finish<T>, PipelineError> + Send + Sync + 'static,
{
    install_panic_hook();
    let abort = Abort::default();
    if let Some(error) = failed {
        abort.fail(error);
    }
    *active().lock().unwrap_or_else(|e| e.into_inner()) = Some(abort.clone());
    let result = run(cluster, abort, terms, build);
    if let Err(Failed {
        error,
        exit_now: true,
    }) = &result
    {
        // See the module doc: returning would close the connections cleanly
        // and leave the other processes waiting. The hook stays active: the
        // network threads may panic as the others go. Every way here (a
        // worker's error, a peer gone) removes the temporary outputs first:
        // no destructor runs after `exit`.
        crate::atomic::remove_pending();
        eprintln!("fraudflow: {error}");
        std::process::exit(super::error::exit_status(error.is_data_error()).into())
    }
    *active().lock().unwrap_or_else(|e| e.into_inner()) = None;
    result.map_err(|f| f.error)
}

/// A failed run, and whether the process must exit now.
struct Failed {
    error: PipelineError,
    exit_now: bool,
}

fn run<T, B>(cluster: &Cluster, abort: Abort, terms: Terms, build: B) -> Result<Vec<T>, Failed>
where
    T: Send + 'static,
    B: Fn(&mut Worker, &Abort) -> Result<Finish<T>, PipelineError> + Send + Sync + 'static,
{
    let exit_now = cluster.processes() > 1;
    let worker_abort = abort.clone();
    let busy_file = super::busy::file(cluster.process);
    let busy = busy_file
        .is_some()
        .then(|| Arc::new(Mutex::new(Vec::new())));
    let workers_busy = busy.clone();
    let steps = Steps::new(cluster.workers);
    // Several processes agree on their settings before anything else; the
    // connect deadline holds until they have.
    let agree = exit_now.then(|| (terms, super::connect::deadline(cluster), cluster.process));
    let guards = timely::execute(cluster.config(), move |worker| {
        work(
            worker,
            &worker_abort,
            &build,
            agree.as_ref(),
            workers_busy.as_deref(),
            &steps,
        )
    })
    .map_err(|e| Failed {
        error: PipelineError::Start(match cluster.addresses.get(cluster.process) {
            Some(at) if exit_now => format!("{e} (this process, {}, at {at})", cluster.process),
            _ => e,
        }),
        exit_now: false,
    })?;
    STARTED.store(true, Ordering::SeqCst);

    if !abort.wait(cluster.workers) {
        let out = join_all(guards, &abort, cluster.workers);
        if let (Some(path), Some(busy)) = (busy_file, busy) {
            write_busy(&path, &busy, &abort);
        }
        if !abort.is_set() {
            return Ok(out);
        }
        // With several processes, the connections are gone: end here, so
        // that a caller cannot mistake this for a failure before the start.
        return Err(failed(&abort, exit_now));
    }
    Err(after_abort(guards, &abort, exit_now))
}

/// Every worker's result once all have finished; a worker's error or panic
/// fails the run (through `abort`).
fn join_all<T: Send + 'static>(
    guards: WorkerGuards<Result<T, PipelineError>>,
    abort: &Abort,
    workers: usize,
) -> Vec<T> {
    let mut out = Vec::with_capacity(workers);
    // Joining also joins the network threads, which panic (and timely
    // then panics here) if another process went away without closing
    // its connections: it failed, so this run did too.
    let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guards.join()));
    for joined in joined.unwrap_or_default() {
        match joined {
            Ok(Ok(t)) => out.push(t),
            Ok(Err(e)) => abort.fail(e),
            Err(panic) => abort.fail(PipelineError::Panic {
                thread: "worker".into(),
                message: panic,
            }),
        }
    }
    out
}

/// The end of an aborted run: a worker's own error is the cause
/// (`Aborted` only echoes it). One process alone gives its workers a
/// grace period to finish; workers still running then are left behind,
/// as are those of a run of several processes, which exits at once.
fn after_abort<T: Send + 'static>(
    guards: WorkerGuards<Result<T, PipelineError>>,
    abort: &Abort,
    exit_now: bool,
) -> Failed {
    if exit_now {
        // `execute_failed` removes the temporary outputs as it exits.
        std::mem::forget(guards);
        return failed(abort, true);
    }
    let deadline = Instant::now() + GRACE;
    while guards.guards().iter().any(|g| !g.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if guards.guards().iter().all(|g| g.is_finished()) {
        drop(guards.join());
    } else {
        crate::atomic::remove_pending();
        std::mem::forget(guards);
    }
    failed(abort, false)
}

/// What the processes of a run check before they build: this one's
/// settings, the flag that lifts the connect deadline, and its index.
type Agreement = (Terms, super::connect::Wait, usize);

/// One worker's life: with several processes, first checks that they all
/// were given the same settings ([`agree`]); then builds its dataflows,
/// steps them to their end (or the run's failure), timing its work into
/// `busy` when given, and runs its finish step.
fn work<T, B>(
    worker: &mut Worker,
    abort: &Abort,
    build: &B,
    agreement: Option<&Agreement>,
    busy: Option<&Mutex<Vec<WorkerBusy>>>,
    steps: &Steps,
) -> Result<T, PipelineError>
where
    B: Fn(&mut Worker, &Abort) -> Result<Finish<T>, PipelineError>,
{
    let exit_now = agreement.is_some();
    let clock = busy.and_then(|_| BusyClock::install(worker));
    // A run already failed (another process went, or this one failed before
    // its workers ran) builds nothing: a live source built now would take
    // events that no one will score.
    let agreed = match agreement {
        _ if abort.is_set() => Err(PipelineError::Aborted),
        Some((terms, wait, process)) => agree::check(worker, *process, terms, || wait.connected())
            .inspect(|_| AGREED.store(true, Ordering::SeqCst)),
        None => Ok(()),
    };
    let result = agreed
        .and_then(|_| build(worker, abort))
        .and_then(|finish| {
            super::stall::step_to_end(worker, abort, steps);
            if let (Some(clock), Some(busy)) = (clock, busy) {
                let figures = clock.finish(worker);
                busy.lock().unwrap_or_else(|e| e.into_inner()).push(figures);
            }
            if abort.is_set() {
                return Err(PipelineError::Aborted);
            }
            finish(worker)
        });
    // The cause goes to the run; the worker's own result only echoes it.
    let result = result.map_err(|e| {
        if !matches!(e, PipelineError::Aborted) {
            abort.fail(e);
        }
        PipelineError::Aborted
    });
    if abort.is_set() {
        if exit_now {
            // Never close the connections cleanly: see the module doc.
            loop {
                std::thread::park();
            }
        }
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
    }
    abort.finished_one();
    result
}

/// Writes this process's workers' busy times, in worker order, to `path`;
/// a failure fails the run.
fn write_busy(path: &std::path::Path, busy: &Mutex<Vec<WorkerBusy>>, abort: &Abort) {
    let mut busy = std::mem::take(&mut *busy.lock().unwrap_or_else(|e| e.into_inner()));
    busy.sort_by_key(|w| w.worker);
    if let Err(e) = super::busy::write(path, &busy) {
        abort.fail(e);
    }
}

/// Ends a run of several processes that failed before its workers started:
/// this process still joins the others, so that they learn at once that the
/// run is over instead of waiting for it; then it exits with `error`
/// (status 1 when the data is at fault, else 2). With one process, returns `error`.
pub fn fail_cluster(cluster: &Cluster, error: PipelineError) -> PipelineError {
    if cluster.processes() == 1 || started() {
        return error;
    }
    // Said should the others never come to be told.
    super::connect::failed_before_start(&error);
    // This process's own error comes first: the others may go (and their
    // connections break) before any worker here has run.
    let started = execute_failed::<(), _>(cluster, Some(error), Terms::new(), |_, _| {
        Err(PipelineError::Aborted)
    });
    // Only a failure to start the workers gets here.
    started.err().unwrap_or(PipelineError::Aborted)
}

fn failed(abort: &Abort, exit_now: bool) -> Failed {
    Failed {
        error: abort.take_failure().unwrap_or(PipelineError::Aborted),
        exit_now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::dataflow::operators::{Inspect, Probe, ToStream};

    #[test]
    fn a_worker_that_fails_ends_the_run_and_names_its_error() {
        let cluster = Cluster::local(3);
        let failed = execute(&cluster, Terms::new(), |worker, abort| {
            let index = worker.index();
            let abort = abort.clone();
            worker.dataflow::<u64, _, _>(|scope| {
                (0..10u64)
                    .to_stream(scope)
                    .container::<Vec<_>>()
                    .inspect(move |_| {
                        if index == 1 {
                            abort.fail(PipelineError::Setting {
                                setting: "test",
                                problem: "worker 1 fails".into(),
                            });
                        }
                    })
                    .probe();
            });
            Ok(Box::new(|_: &mut Worker| Ok(())) as Finish<()>)
        })
        .unwrap_err();
        assert_eq!(failed.to_string(), "test: worker 1 fails");
    }

    #[test]
    fn a_build_error_on_one_worker_does_not_leave_the_others_waiting() {
        // Worker 0 fails before building; worker 1's dataflow would wait for
        // it for ever without the abort.
        let cluster = Cluster::local(2);
        let failed = execute(&cluster, Terms::new(), |worker, _| {
            if worker.index() == 0 {
                return Err(PipelineError::io(
                    "/nope/out.csv",
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            worker.dataflow::<u64, _, _>(|scope| {
                use timely::dataflow::channels::pact::Exchange;
                use timely::dataflow::operators::generic::Operator;
                (0..10u64).to_stream(scope).container::<Vec<_>>().sink(
                    Exchange::new(|x: &u64| *x),
                    "Sink",
                    |_| {},
                );
            });
            Ok(Box::new(|_: &mut Worker| Ok(())) as Finish<()>)
        })
        .unwrap_err();
        assert!(failed.to_string().starts_with("/nope/out.csv"));
    }

    #[test]
    fn results_come_back_in_worker_order() {
        let got = execute(&Cluster::local(3), Terms::new(), |worker, _| {
            let index = worker.index();
            Ok(Box::new(move |_: &mut Worker| Ok(index)) as Finish<usize>)
        })
        .unwrap();
        assert_eq!(got, [0, 1, 2]);
    }
}
