//! The two measurements: the broker's ceiling with fraudflow's throughput
//! beside it, and the latency at a steady rate.

use std::time::{Duration, Instant};

use fraudflow::clock::{now_micros, now_millis};
use fraudflow::dataflow::json_event::paysim_event;
use fraudflow::eval::Latency;
use fraudflow::event::STEP_MS;
use fraudflow::generate::{Generator, GeneratorParams};
use rdkafka::producer::Producer;

use crate::broker::{Broker, Topics};
use crate::io::{self, Fraudflow, Seen, Watcher};
use crate::{Config, Error};

/// `n` generated events as (key, JSON payload), named `b0`, `b1`, ...,
/// stamped with their step, as a replay of a PaySim file publishes them.
fn preload_events(n: usize) -> Result<Vec<(String, String)>, Error> {
    let rows = Generator::new(GeneratorParams::new(n as u64, 12).check()?);
    Ok(rows
        .enumerate()
        .map(|(i, t)| {
            let event = paysim_event(&t, &format!("b{i}"), u64::from(t.step) * STEP_MS);
            (t.name_orig.to_string(), event.to_string())
        })
        .collect())
}

/// Waits for the output watcher while checking that the run is alive.
fn finish(run: &mut Fraudflow, watcher: Watcher) -> Result<(Vec<Seen>, usize), Error> {
    let (handle, stop) = watcher;
    while !handle.is_finished() {
        if let Err(e) = run.check_running() {
            let _ = stop.send(());
            let _ = handle.join();
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    handle
        .join()
        .map_err(|_| "the output reader panicked".into())
}

fn per_s(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// Publishes the events to a fresh input topic and reads them back (the
/// broker's ceiling), then runs fraudflow on that topic with `guarantee`
/// and reads every output back (its throughput).
pub fn throughput(
    config: &Config,
    broker: &Broker,
    prefix: &str,
    guarantee: &str,
) -> Result<(), Error> {
    let (name, brokers) = (broker.name(), broker.brokers());
    let n = config.events.min(broker.most_events());
    let topics = Topics::create(broker, prefix)?;
    let events = preload_events(n)?;
    let produced = io::publish(&brokers, &topics.input, &events)?;
    let consumed = io::read_back(&brokers, &topics.input, n)?;
    let ceiling = per_s(n, produced + consumed);
    println!(
        "{name}: ceiling: {n} events produced in {:.2} s ({:.0} ev/s), consumed in {:.2} s \
         ({:.0} ev/s); produce then consume {ceiling:.0} ev/s",
        produced.as_secs_f64(),
        per_s(n, produced),
        consumed.as_secs_f64(),
        per_s(n, consumed)
    );
    let watcher = io::watch_outputs(&brokers, &topics, n, Duration::from_secs(600))?;
    let started = Instant::now();
    let mut run = Fraudflow::start(config, &brokers, &topics, guarantee)?;
    let (seen, again) = finish(&mut run, watcher)?;
    let whole = started.elapsed();
    let distinct = seen.len() - again;
    if distinct < n {
        return Err(format!("{name}: only {distinct} of {n} events came out in 600 s").into());
    }
    let first = seen.iter().map(|s| s.at_us).min().unwrap_or(0);
    let last = seen.iter().map(|s| s.at_us).max().unwrap_or(0);
    let sustained = per_s(n - 1, Duration::from_micros(last - first));
    println!(
        "{name}: fraudflow -w {} {guarantee}: {n} events to the outputs, {distinct} distinct, \
         {again} again; {sustained:.0} ev/s from the first output to the last \
         ({:.0}% of the ceiling), {:.2} s from start to the last",
        config.workers,
        100.0 * sustained / ceiling,
        whole.as_secs_f64()
    );
    Ok(())
}

/// Publishes `n` events at `rate` a second, in steps of a
/// millisecond, each stamped with the time it is sent; when each was sent.
fn publish_paced(config: &Config, n: usize, brokers: &str, topic: &str) -> Result<Vec<u64>, Error> {
    let producer = io::producer(brokers)?;
    let rows = Generator::new(GeneratorParams::new(n as u64, 13).check()?);
    let mut sent = Vec::with_capacity(n);
    let started = Instant::now();
    let per_ms = (config.rate / 1000).max(1) as usize;
    for (i, t) in rows.enumerate() {
        if i % per_ms == 0 {
            let due = started + Duration::from_secs_f64(i as f64 / config.rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            producer.poll(Duration::ZERO);
        }
        let event = paysim_event(&t, &format!("l{i}"), now_millis()).to_string();
        sent.push(now_micros());
        io::send(&producer, topic, &t.name_orig.to_string(), &event)?;
    }
    producer.flush(Duration::from_secs(60))?;
    let took = started.elapsed();
    println!(
        "  published {n} events in {:.2} s ({:.0} ev/s)",
        took.as_secs_f64(),
        per_s(n, took)
    );
    Ok(sent)
}

/// From publish to read back, of the alerts and of everything, leaving out
/// the first second as warm-up.
fn latencies(sent: &[u64], seen: &[Seen]) -> (Vec<u64>, Vec<u64>) {
    let warm = sent.first().map_or(0, |&t| t + 1_000_000);
    let (mut alerts, mut all) = (Vec::new(), Vec::new());
    for s in seen {
        let Some(&at) = s.event.and_then(|e| sent.get(e)) else {
            continue;
        };
        if at >= warm {
            let l = s.at_us.saturating_sub(at);
            all.push(l);
            if s.alert {
                alerts.push(l);
            }
        }
    }
    (alerts, all)
}

/// The broker's own latency at the rate: events published to a topic and
/// read back from it, no fraudflow between (fraudflow's path crosses the
/// broker twice).
pub fn latency_floor(config: &Config, broker: &Broker, prefix: &str) -> Result<(), Error> {
    let (name, brokers) = (broker.name(), broker.brokers());
    let n = ((config.rate * config.seconds) as usize).min(broker.most_events());
    let topics = Topics::create(broker, prefix)?;
    let watcher = io::watch(
        &brokers,
        &[(&topics.input, 8)],
        "",
        n,
        Duration::from_secs(300),
    )?;
    println!(
        "{name}: the broker alone at {} ev/s, {n} events:",
        config.rate
    );
    let sent = publish_paced(config, n, &brokers, &topics.input)?;
    let (seen, _) = watcher
        .0
        .join()
        .map_err(|_| "the reader panicked".to_string())?;
    show("read back", latencies(&sent, &seen).1);
    Ok(())
}

fn show(what: &str, latencies: Vec<u64>) {
    let count = latencies.len();
    match Latency::of(latencies) {
        Some(l) => println!(
            "  produce to {what}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({count} events)",
            l.p50 as f64 / 1e3,
            l.p99 as f64 / 1e3,
            l.max as f64 / 1e3
        ),
        None => println!("  produce to {what}: none read back"),
    }
}

/// Runs fraudflow with `guarantee` on fresh topics, publishes at a steady
/// rate and prints the latency from publish to the output read back.
pub fn latency(
    config: &Config,
    broker: &Broker,
    prefix: &str,
    guarantee: &str,
) -> Result<(), Error> {
    let (name, brokers) = (broker.name(), broker.brokers());
    let n = ((config.rate * config.seconds) as usize).min(broker.most_events());
    let topics = Topics::create(broker, prefix)?;
    let watcher = io::watch_outputs(&brokers, &topics, n, Duration::from_secs(600))?;
    let mut run = Fraudflow::start(config, &brokers, &topics, guarantee)?;
    run.wait_ready()?;
    println!(
        "{name}: fraudflow -w {} {guarantee} at {} ev/s, {n} events:",
        config.workers, config.rate
    );
    let sent = publish_paced(config, n, &brokers, &topics.input)?;
    let (seen, again) = finish(&mut run, watcher)?;
    println!(
        "  {} outputs read back, {again} naming an event again",
        seen.len()
    );
    let (alerts, all) = latencies(&sent, &seen);
    show("alert read back", alerts);
    show("any output read back", all);
    let inside = &run.health()?["latency_us"];
    println!(
        "  inside fraudflow, read to handed to the producer (its last 65,536 events): \
         p50 {:.1} ms, p99 {:.1} ms",
        inside["p50"].as_f64().unwrap_or(f64::NAN) / 1e3,
        inside["p99"].as_f64().unwrap_or(f64::NAN) / 1e3
    );
    Ok(())
}
