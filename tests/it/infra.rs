//! The deployment files agree with the code and with each other, checked
//! without servers: every metric the dashboard and the alert rules name is
//! one the code exports; every alert has its runbook section; the compose
//! file has the services the stack needs, each process scraped by
//! Prometheus on the port it serves. Where Docker Compose is installed,
//! `docker compose config` must accept the file too. (The queries
//! themselves run against a real Prometheus in `prometheus.rs`.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use fraudflow::metrics::events::{ModelInForce, Scraped};
use fraudflow::metrics::{Exposed, Metrics};
use yaml_rust2::{Yaml, YamlLoader};

fn infra(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("infra")
        .join(path)
}

fn yaml(path: &str) -> Yaml {
    let text = std::fs::read_to_string(infra(path)).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1, "{path}");
    docs.remove(0)
}

/// Every family name the code exports, a Kafka run's included.
fn exported() -> BTreeSet<String> {
    let metrics = Metrics::for_process(Exposed {
        process: 0,
        workers: 1,
        kafka: true,
    });
    // The two families without series until something happens: the
    // version in force, and a partition's lag.
    metrics.emit(ModelInForce {
        version: "v",
        first: true,
        unix_seconds: 0.0,
    });
    metrics.emit(Scraped {
        kafka: Some((true, &[(0, 0)])),
        outbox: Some(0),
    });
    metrics
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

/// The alert rules' and recording rules' expressions, by name.
fn rules() -> Vec<(String, String, bool)> {
    let doc = yaml("prometheus/alerts.yml");
    let mut out = Vec::new();
    for group in doc["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            let alert = rule["alert"].as_str();
            let name = alert.or(rule["record"].as_str()).unwrap().to_string();
            out.push((
                name,
                rule["expr"].as_str().unwrap().to_string(),
                alert.is_some(),
            ));
        }
    }
    out
}

#[test]
fn every_metric_the_dashboard_and_the_rules_read_is_one_the_code_exports() {
    let exported = exported();
    let dashboard = std::fs::read_to_string(infra("grafana/dashboards/fraudflow.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut exprs = Vec::new();
    let mut panels = vec![&dashboard];
    while let Some(p) = panels.pop() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
            assert_eq!(t["datasource"]["uid"], "prometheus", "{t}");
        }
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    let recorded: BTreeSet<String> = rules().into_iter().filter(|r| !r.2).map(|r| r.0).collect();
    exprs.extend(rules().into_iter().map(|r| r.1));
    let mut read = BTreeSet::new();
    for e in &exprs {
        for name in fraudflow::demo::readiness::names_in(e) {
            assert!(
                exported.contains(&name) || recorded.contains(&name),
                "{name} (in {e}) is not exported"
            );
            read.insert(name);
        }
    }
    // Nothing is exported that no panel or rule shows.
    let unread: Vec<_> = exported.difference(&read).collect();
    assert!(unread.is_empty(), "never read: {unread:?}");
}

#[test]
fn every_alert_has_a_severity_a_summary_and_its_runbook_section() {
    let doc = yaml("prometheus/alerts.yml");
    let operations =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    let mut alerts = 0;
    for group in doc["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            let Some(name) = rule["alert"].as_str() else {
                continue;
            };
            alerts += 1;
            let severity = rule["labels"]["severity"].as_str();
            assert!(matches!(severity, Some("warning" | "critical")), "{name}");
            assert!(rule["annotations"]["summary"].as_str().is_some(), "{name}");
            let runbook = rule["annotations"]["runbook_url"].as_str().unwrap();
            let anchor = name.to_lowercase();
            assert!(
                runbook.ends_with(&format!("docs/operations.md#{anchor}")),
                "{name}"
            );
            assert!(
                operations.contains(&format!("\n### {name}\n")),
                "{name}: no section"
            );
        }
    }
    assert!(alerts >= 9, "{alerts} alerts");
}

/// A service's `command`, as one string.
fn command(service: &Yaml) -> String {
    let words = service["command"].as_vec().unwrap();
    let words: Vec<&str> = words.iter().map(|w| w.as_str().unwrap()).collect();
    words.join(" ")
}

/// `docker compose config` must accept the file where Docker Compose is
/// installed (this machine's docker has no compose plugin: the structure
/// the test checks is then all that is checked).
fn compose_config_where_compose_is() {
    let compose_ok = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if compose_ok {
        let out = Command::new("docker")
            .args(["compose", "-f"])
            .arg(infra("docker-compose.yml"))
            .args(["config", "-q"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_compose_stack_has_kafka_in_kraft_mode_prometheus_grafana_and_two_processes_scraped() {
    compose_config_where_compose_is();
    let compose = yaml("docker-compose.yml");
    let services = &compose["services"];
    let kafka = &services["kafka"]["environment"];
    assert_eq!(
        kafka["KAFKA_PROCESS_ROLES"].as_str(),
        Some("broker,controller")
    );
    assert!(
        services["zookeeper"].is_badvalue(),
        "no ZooKeeper in KRaft mode"
    );
    for s in ["prometheus", "grafana", "models"] {
        assert!(!services[s].is_badvalue(), "{s} is missing");
    }
    assert!(infra("Dockerfile").exists());
    // Two processes of one cluster, each scraped on its port: --listen's
    // port + its index.
    let scrape = yaml("prometheus/prometheus.yml");
    let job = scrape["scrape_configs"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|j| j["job_name"].as_str() == Some("fraudflow"))
        .unwrap();
    let targets = job["static_configs"][0]["targets"].as_vec().unwrap();
    let targets: Vec<&str> = targets.iter().map(|t| t.as_str().unwrap()).collect();
    for p in 0..2u16 {
        let name = format!("fraudflow-{p}");
        let service = &services[name.as_str()];
        let run = command(service);
        assert!(run.contains(&format!("-n 2 -p {p}")), "{run}");
        assert!(run.contains("--listen 0.0.0.0:8080"), "{run}");
        assert!(
            targets.contains(&format!("{name}:{}", 8080 + p).as_str()),
            "{targets:?}"
        );
    }
    let datasource = yaml("grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        datasource["datasources"][0]["uid"].as_str(),
        Some("prometheus")
    );
}
