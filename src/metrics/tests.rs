use std::rc::Rc;

use super::events::*;
use super::worker;
use super::*;
use crate::dataflow::dead_letter::DeadLetter;
use crate::dataflow::score::{Alert, Outcome};
use crate::ensemble::{Components, Reason};

/// The value of the series `name{labels}` (labels as written, sorted).
fn value(metrics: &Metrics, series: &str) -> Option<f64> {
    metrics.encode().lines().find_map(|l| {
        let (name, v) = l.rsplit_once(' ')?;
        (name == series).then(|| v.parse().ok())?
    })
}

/// The names the original system exposed (DESIGN.md, "Observability").
const ORIGINAL: [&str; 20] = [
    "feedback_requests_total",
    "feedback_published_total",
    "feedback_publish_errors_total",
    "stream_events_in_total",
    "stream_events_valid_total",
    "stream_events_anomaly_total",
    "stream_events_normal_total",
    "stream_events_dlq_total",
    "stream_process_latency_ms_total",
    "stream_last_process_latency_ms",
    "online_feedback_received_total",
    "online_feedback_accepted_total",
    "online_feedback_skipped_total",
    "online_updates_total",
    "online_updater_buffer_size",
    "online_last_update_batch_size",
    "online_update_count",
    "promotion_pass_total",
    "promotion_fail_total",
    "promotion_rollback_total",
];

#[test]
fn every_original_name_and_every_known_label_reads_zero_before_the_first_event() {
    let metrics = Metrics::for_process(Exposed {
        process: 1,
        workers: 2,
        kafka: false,
    });
    let text = metrics.encode();
    for name in ORIGINAL {
        let zero = |l: &str| {
            l.starts_with(name) && l[name.len()..].starts_with([' ', '{']) && l.ends_with(" 0")
        };
        assert!(text.lines().any(zero), "{name} is not 0:\n{text}");
    }
    // Process 1 of two workers a process holds global workers 2 and 3.
    for w in ["2", "3"] {
        let series = format!("stream_events_in_total{{worker=\"{w}\"}}");
        assert_eq!(value(&metrics, &series), Some(0.0), "{series}");
        for code in DEAD_LETTER_CODES {
            let series = format!("fraudflow_dead_letters_total{{code=\"{code}\",worker=\"{w}\"}}");
            assert_eq!(value(&metrics, &series), Some(0.0), "{series}");
        }
    }
    assert_eq!(
        value(&metrics, "stream_events_in_total{worker=\"0\"}"),
        None
    );
    // A run without Kafka has no brokers to report on.
    assert!(!text.contains("fraudflow_kafka_up"), "{text}");
    let kafka = Metrics::for_process(Exposed {
        process: 0,
        workers: 1,
        kafka: true,
    });
    assert_eq!(value(&kafka, "fraudflow_kafka_up"), Some(0.0));
}

fn outcome(received_us: u64, reason: Option<&str>) -> Outcome {
    let alert = reason.map(|r| {
        Box::new(Alert {
            event_id: "e".into(),
            seq: 1,
            event_time: "1970-01-01T00:00:00Z".into(),
            step: None,
            amount: 1.0,
            score: 0.9,
            threshold: 0.5,
            scores: Components::default(),
            reasons: vec![Reason {
                feature: r.to_string(),
                value: 1.0,
                model: "logistic".into(),
                push: 1.0,
            }],
            model_version: "v".into(),
            contract: crate::features::Contract::V2,
            is_fraud: None,
        })
    });
    Outcome {
        id: crate::event::EventId::Row(1),
        seq: 1,
        time_ms: 0,
        place_ms: 0,
        step: None,
        account: crate::paysim::AccountId::from_name("C1"),
        is_fraud: None,
        amount: 1.0,
        components: Components::default(),
        score: 0.9,
        frozen: None,
        threshold: 0.5,
        alert,
        latency_us: 0,
        received_us,
    }
}

#[test]
fn routed_outcomes_count_by_route_and_reason_with_their_latency_summed() {
    let metrics = Metrics::new(1);
    worker::install(Arc::clone(&metrics), 0);
    let now = 10_000_000u64;
    let received = [now - 1_500, now - 20_000, now - 3_000_000];
    let alerts: Vec<_> = received[..2]
        .iter()
        .zip(["amount", "orig_drained"])
        .map(|(r, why)| outcome(*r, Some(why)))
        .collect();
    let normal = vec![outcome(received[2], None)];
    worker::emit(Routed {
        outcomes: &alerts,
        alerts: true,
        now_us: now,
        counted: |_| true,
    });
    worker::emit(Routed {
        outcomes: &normal,
        alerts: false,
        now_us: now,
        counted: |_| true,
    });
    // Nothing reaches the registry before a flush.
    assert_eq!(
        value(&metrics, "stream_events_anomaly_total{worker=\"0\"}"),
        Some(0.0)
    );
    worker::uninstall();
    let v = |s: &str| value(&metrics, s).unwrap_or(f64::NAN);
    assert_eq!(v("stream_events_anomaly_total{worker=\"0\"}"), 2.0);
    assert_eq!(v("stream_events_normal_total{worker=\"0\"}"), 1.0);
    assert_eq!(
        v("fraudflow_alerts_total{reason=\"amount\",worker=\"0\"}"),
        1.0
    );
    assert_eq!(
        v("fraudflow_alerts_total{reason=\"orig_drained\",worker=\"0\"}"),
        1.0
    );
    // Latency in ms, summed: a plain recomputation.
    let total_ms: f64 = received.iter().map(|r| (now - r) as f64 / 1e3).sum();
    assert!((v("stream_process_latency_ms_total{worker=\"0\"}") - total_ms).abs() < 1e-6);
    assert_eq!(v("stream_last_process_latency_ms{worker=\"0\"}"), 3_000.0);
    // 1.5 ms and 20 ms fall at or under 25 ms; 3 s under 5 s.
    let bucket = |le: &str| {
        v(&format!(
            "fraudflow_latency_seconds_bucket{{stage=\"route\",worker=\"0\",le=\"{le}\"}}"
        ))
    };
    assert_eq!(
        (bucket("0.001"), bucket("0.0025"), bucket("0.025")),
        (0.0, 1.0, 2.0)
    );
    assert_eq!((bucket("2.5"), bucket("5")), (2.0, 3.0));
    assert_eq!(
        v("fraudflow_latency_seconds_count{stage=\"route\",worker=\"0\"}"),
        3.0
    );
}

#[test]
fn dead_letters_count_by_code_even_a_code_not_listed() {
    let metrics = Metrics::new(1);
    worker::install(Arc::clone(&metrics), 0);
    let letter = |code: &str| Box::new(DeadLetter::parse(code, "m".into(), b"x", "t".into(), 1));
    let mut letters = vec![
        letter("malformed_json"),
        letter("malformed_json"),
        letter("brand_new"),
    ];
    // The one numbered 2 (a Kafka run's event read again) is left out.
    letters.push(Box::new(DeadLetter::parse(
        "brand_new",
        "m".into(),
        b"x",
        "t".into(),
        2,
    )));
    worker::emit(DeadLettered {
        letters: &letters,
        counted: |seq| seq != 2,
    });
    worker::uninstall();
    let v = |s: &str| value(&metrics, s);
    assert_eq!(v("stream_events_dlq_total{worker=\"0\"}"), Some(3.0));
    assert_eq!(
        v("fraudflow_dead_letters_total{code=\"malformed_json\",worker=\"0\"}"),
        Some(2.0)
    );
    assert_eq!(
        v("fraudflow_dead_letters_total{code=\"brand_new\",worker=\"0\"}"),
        Some(1.0)
    );
}

#[test]
fn a_source_s_counts_reach_the_registry_by_their_changes_and_never_go_back() {
    let metrics = Metrics::new(1);
    worker::install(Arc::clone(&metrics), 0);
    let counts = Rc::new(crate::sources::SourceCounts::default());
    watch_source(Rc::clone(&counts));
    let held = state_gauge(State::Velocity);
    let second = state_gauge(State::Velocity);
    second.set(5);
    let v = |s: &str| value(&metrics, s);
    for (read, valid, late, window) in [(10, 9, 1, 3), (25, 22, 1, 0), (25, 22, 4, 9)] {
        counts.events_in.set(read);
        counts.valid.set(valid);
        counts.late.set(late);
        held.set(window);
        worker::flush();
        assert_eq!(v("stream_events_in_total{worker=\"0\"}"), Some(read as f64));
        assert_eq!(
            v("stream_events_valid_total{worker=\"0\"}"),
            Some(valid as f64)
        );
        assert_eq!(
            v("fraudflow_late_events_total{worker=\"0\"}"),
            Some(late as f64)
        );
        // Two windows on one worker add up.
        assert_eq!(
            v("fraudflow_velocity_state_records{worker=\"0\"}"),
            Some((window + 5) as f64)
        );
    }
    worker::uninstall();
}

#[test]
fn a_new_model_version_moves_the_info_and_counts_but_no_counter_goes_back() {
    let metrics = Metrics::new(1);
    let v = |s: &str| value(&metrics, s);
    metrics.emit(FeedbackRequest);
    metrics.emit(LabelKept::Published(3));
    metrics.emit(LabelKept::InOutbox);
    metrics.emit(LabelKept::Refused);
    let versions = [
        ("b", true, 1.0),
        ("b+online.1", false, 2.0),
        ("b+online.2", false, 3.0),
    ];
    for (n, (version, first, at)) in versions.into_iter().enumerate() {
        metrics.emit(ModelInForce {
            version,
            first,
            unix_seconds: at,
        });
        assert_eq!(
            v(&format!("fraudflow_model_info{{version=\"{version}\"}}")),
            Some(1.0)
        );
        assert_eq!(v("fraudflow_model_versions_total"), Some(n as f64));
        assert_eq!(v("fraudflow_model_promoted_timestamp_seconds"), Some(at));
        // The version before is gone; the counters stand.
        assert_eq!(metrics.encode().matches("fraudflow_model_info{").count(), 1);
        assert_eq!(v("feedback_requests_total"), Some(1.0));
        assert_eq!(v("feedback_published_total"), Some(3.0));
        assert_eq!(v("feedback_publish_errors_total"), Some(2.0));
    }
}

#[test]
fn a_scrape_reads_the_brokers_and_the_outbox() {
    let metrics = Metrics::for_process(Exposed {
        process: 0,
        workers: 1,
        kafka: true,
    });
    let v = |s: &str| value(&metrics, s);
    let lags = [(0, 12), (3, -1)];
    metrics.emit(Scraped {
        kafka: Some((true, &lags)),
        outbox: Some(2),
    });
    assert_eq!(
        v("fraudflow_kafka_consumer_lag{partition=\"0\"}"),
        Some(12.0)
    );
    // An unknown lag (-1) reads 0, never negative.
    assert_eq!(
        v("fraudflow_kafka_consumer_lag{partition=\"3\"}"),
        Some(0.0)
    );
    let up = (
        v("fraudflow_kafka_up"),
        v("fraudflow_feedback_outbox_labels"),
    );
    assert_eq!(up, (Some(1.0), Some(2.0)));
    metrics.emit(Scraped {
        kafka: Some((false, &[])),
        outbox: None,
    });
    assert_eq!(v("fraudflow_kafka_up"), Some(0.0));
}

#[test]
fn a_worker_s_frontier_and_its_delay_follow_its_probe() {
    use timely::dataflow::operators::{Input, Probe};
    let metrics = Metrics::new(1);
    let got = timely::execute_directly(move |worker| {
        worker::install(Arc::clone(&metrics), 0);
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Vec<u64>>();
            (input, stream.probe().0)
        });
        watch_frontier(probe.clone());
        let v = |s: &str| value(&metrics, s);
        let series = [
            "fraudflow_frontier_ms{worker=\"0\"}",
            "fraudflow_frontier_delay_seconds{worker=\"0\"}",
        ];
        worker::flush();
        let before = series.map(v);
        let at = crate::clock::now_millis() - 60_000;
        input.advance_to(at);
        while probe.less_than(&at) {
            worker.step();
        }
        worker::flush();
        let after = series.map(v);
        worker::uninstall();
        (before, after, at)
    });
    let (before, after, at) = got;
    assert_eq!(before, [Some(0.0), Some(0.0)]);
    assert_eq!(after[0], Some(at as f64));
    // A minute behind the clock, and a little more by the flush.
    let delay = after[1].unwrap();
    assert!((60.0..61.0).contains(&delay), "{delay}");
}

#[test]
fn the_learner_and_the_join_move_the_original_counters() {
    let metrics = Metrics::new(1);
    worker::install(Arc::clone(&metrics), 0);
    worker::emit(LabelsTallied {
        received: 5,
        matched: 3,
        unmatched: 1,
        duplicate: 1,
    });
    worker::emit(Learned::Fitted { batch: 4 });
    worker::emit(Learned::Promoted);
    worker::emit(Learned::Fitted { batch: 2 });
    worker::emit(Learned::Refused);
    worker::emit(Learned::RolledBack);
    worker::emit(Learned::Numbered(7));
    worker::emit(LearnerBuffered(6));
    worker::uninstall();
    let v = |s: &str| value(&metrics, s).unwrap_or(f64::NAN);
    let got = [
        "online_feedback_received_total",
        "online_feedback_accepted_total",
        "online_feedback_skipped_total",
        "fraudflow_feedback_duplicate_total",
        "online_updates_total",
        "online_last_update_batch_size",
        "promotion_pass_total",
        "promotion_fail_total",
        "promotion_rollback_total",
        "online_update_count",
        "online_updater_buffer_size",
    ]
    .map(v);
    assert_eq!(got, [5.0, 3.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 1.0, 7.0, 6.0]);
}
