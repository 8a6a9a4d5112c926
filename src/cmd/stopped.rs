//! A batch command (`generate`, `features`, `train`, `backtest`) stopped by
//! SIGTERM or Ctrl-C removes its temporary outputs and scratch directories
//! before it exits, as a failed run does, and exits with 128 + the
//! signal's number, as a shell reports a process the signal killed.
//!
//! Why: the signal's default action ended the process where it stood and
//! left its temporary files, and a backtest's evaluation records (hundreds
//! of megabytes), until the next run into the same place. The outputs
//! under their final names are as a kill would leave them: the last
//! complete set, unless the signal comes while a finished run's files take
//! their names, when no manifest names them (see the README's Outputs).

use tokio::signal::unix::{signal, SignalKind};

/// Catches SIGTERM and SIGINT from now on, on a thread of its own.
pub fn clean_up_when_stopped() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Registered here, before the work starts: a signal from now on is
    // caught, even before the thread below waits for it.
    let (mut term, mut int) = runtime.block_on(async {
        let term = signal(SignalKind::terminate())?;
        let int = signal(SignalKind::interrupt())?;
        Ok::<_, std::io::Error>((term, int))
    })?;
    std::thread::Builder::new()
        .name("stopped".into())
        .spawn(move || {
            let (name, number) = runtime.block_on(async {
                tokio::select! {
                    _ = term.recv() => ("SIGTERM", 15),
                    _ = int.recv() => ("SIGINT", 2),
                }
            });
            fraudflow::atomic::remove_pending();
            eprintln!("fraudflow: stopped by {name}: its temporary outputs are removed");
            std::process::exit(128 + number);
        })?;
    Ok(())
}
