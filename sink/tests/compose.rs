//! Static checks of what cannot run here: docker-compose.yml, the Dockerfile and Grafana's
//! provisioning (datasource, dashboards, alert rules). They parse the files and check that
//! services, topics, healthchecks, dependencies, mounts, the image's files and the datasource uid
//! fit together and point at files that exist. alert_rules.rs runs the alert rules' SQL.

mod alerting;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use alerting::{read, root, str_of, yaml, Threshold, DATASOURCE_UID, EXPRESSION_UID, RULE_FILE};
use chrono::{Duration, Utc};
use serde_norway::Value;
use streamwatch_common::spec::Spec;
use streamwatch_sink::grafana::{expand_macros, panel_queries, template_variables};

fn compose() -> Value {
    yaml("docker-compose.yml")
}

fn services(compose: &Value) -> &serde_norway::Mapping {
    compose["services"].as_mapping().expect("services")
}

/// `environment:` as a map or a list of `KEY=value`.
fn env(service: &Value, key: &str) -> Option<String> {
    match &service["environment"] {
        Value::Mapping(map) => map.get(key).map(|v| match v {
            Value::String(s) => s.clone(),
            other => serde_norway::to_string(other).unwrap().trim().to_owned(),
        }),
        Value::Sequence(items) => items
            .iter()
            .filter_map(Value::as_str)
            .find_map(|item| item.strip_prefix(&format!("{key}=")).map(str::to_owned)),
        _ => None,
    }
}

fn command(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Sequence(items) => items.iter().map(|v| str_of(v).to_owned()).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_stack_has_every_service() {
    let compose = compose();
    let names: BTreeSet<&str> = services(&compose).keys().map(str_of).collect();
    let expected: BTreeSet<&str> = [
        "kafka",
        "topic-init",
        "db",
        "adminer",
        "grafana",
        "producer",
        "scorer",
        "monitor",
        "sink",
    ]
    .into();
    assert_eq!(names, expected);
}

#[test]
fn kafka_runs_in_kraft_mode_and_topics_are_created() {
    let compose = compose();
    let kafka = &compose["services"]["kafka"];
    assert!(str_of(&kafka["image"]).starts_with("apache/kafka:"));
    let roles = env(kafka, "KAFKA_PROCESS_ROLES").unwrap();
    assert!(
        roles.contains("broker") && roles.contains("controller"),
        "{roles}"
    );
    assert!(env(kafka, "KAFKA_ZOOKEEPER_CONNECT").is_none());
    assert!(env(kafka, "KAFKA_ADVERTISED_LISTENERS")
        .unwrap()
        .contains("kafka:9092"));

    let init = serde_norway::to_string(&compose["services"]["topic-init"]["command"]).unwrap();
    for topic in ["trips:", "trips.scored:", "metrics:", "deadletter:"] {
        assert!(init.contains(topic), "topic-init does not create {topic}");
    }
    assert!(
        init.contains("--if-not-exists"),
        "topic-init must be rerunnable"
    );
}

#[test]
fn healthchecks_and_dependencies_fit_together() {
    let compose = compose();
    let services = services(&compose);
    for required in ["kafka", "db", "scorer", "monitor", "sink", "grafana"] {
        let test = &services[required]["healthcheck"]["test"];
        assert!(!test.is_null(), "{required} has no healthcheck");
    }
    for (name, service) in services {
        let name = str_of(name);
        let Some(depends) = service["depends_on"].as_mapping() else {
            assert!(
                service["depends_on"].is_null(),
                "{name}: use the long depends_on form with conditions"
            );
            continue;
        };
        for (target, spec) in depends {
            let target = str_of(target);
            let upstream = services
                .get(target)
                .unwrap_or_else(|| panic!("{name} depends on unknown service {target}"));
            match str_of(&spec["condition"]) {
                // A service with a healthcheck is waited for until it is healthy.
                "service_started" => assert!(
                    upstream["healthcheck"].is_null(),
                    "{name} only waits for {target} to start, but {target} has a healthcheck: \
                     use condition service_healthy"
                ),
                "service_healthy" => {
                    assert!(
                        !upstream["healthcheck"].is_null(),
                        "{name} waits for {target} to be healthy, which has no healthcheck"
                    )
                }
                "service_completed_successfully" => assert_eq!(
                    str_of(&upstream["restart"]),
                    "no",
                    "{target} must be one-shot for {name} to wait for its completion"
                ),
                other => panic!("{name} -> {target}: unknown condition {other:?}"),
            }
        }
    }
    let sink = &services["sink"]["depends_on"];
    assert_eq!(str_of(&sink["db"]["condition"]), "service_healthy");
    assert_eq!(
        str_of(&sink["topic-init"]["condition"]),
        "service_completed_successfully"
    );
    assert_eq!(
        str_of(&services["topic-init"]["depends_on"]["kafka"]["condition"]),
        "service_healthy"
    );
    // Every stage starts after the topics exist; the producer after every stage consumes; Grafana
    // after the sink applied the schema its dashboards and alert rules read.
    for stage in ["producer", "scorer", "monitor", "sink"] {
        assert_eq!(
            str_of(&services[stage]["depends_on"]["topic-init"]["condition"]),
            "service_completed_successfully",
            "{stage}"
        );
    }
    for stage in ["scorer", "monitor", "sink"] {
        assert_eq!(
            str_of(&services["producer"]["depends_on"][stage]["condition"]),
            "service_healthy",
            "the producer must wait for {stage}"
        );
    }
    assert_eq!(
        str_of(&services["grafana"]["depends_on"]["sink"]["condition"]),
        "service_healthy"
    );
    // No cycles: a start order exists.
    let mut started: BTreeSet<&str> = BTreeSet::new();
    while started.len() < services.len() {
        let before = started.len();
        for (name, service) in services {
            let ready = service["depends_on"]
                .as_mapping()
                .into_iter()
                .flatten()
                .all(|(target, _)| started.contains(str_of(target)));
            if ready {
                started.insert(str_of(name));
            }
        }
        assert!(started.len() > before, "depends_on has a cycle");
    }
}

#[test]
fn mounts_volumes_and_networks_exist() {
    let compose = compose();
    let declared_volumes: BTreeSet<&str> = compose["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(str_of).collect())
        .unwrap_or_default();
    let declared_networks: BTreeSet<&str> = compose["networks"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(str_of)
        .collect();
    assert!(declared_networks.contains("front-tier") && declared_networks.contains("back-tier"));
    let mut bind_mounts = 0;
    for (name, service) in services(&compose) {
        let name = str_of(name);
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let spec = str_of(volume);
            let source = spec.split(':').next().unwrap();
            if source.starts_with("./") || source.starts_with("../") {
                bind_mounts += 1;
                assert!(
                    root().join(source).exists(),
                    "{name} mounts {source}, which is not in the repository"
                );
            } else {
                assert!(
                    declared_volumes.contains(source),
                    "{name} uses undeclared volume {source}"
                );
            }
        }
        for network in service["networks"].as_sequence().into_iter().flatten() {
            assert!(
                declared_networks.contains(str_of(network)),
                "{name}: undeclared network {network:?}"
            );
        }
        if let Some(build) = service["build"].as_mapping() {
            let context = root().join(str_of(&build["context"]));
            assert!(context.is_dir(), "{name}: build context missing");
            assert!(
                context.join(str_of(&build["dockerfile"])).is_file(),
                "{name}: Dockerfile missing"
            );
        }
    }
    assert_eq!(bind_mounts, 2, "grafana's provisioning and dashboards");
}

#[test]
fn the_pipeline_services_run_the_image_binaries() {
    let compose = compose();
    let dockerfile = read("Dockerfile");
    for name in ["producer", "scorer", "monitor", "sink"] {
        let service = &compose["services"][name];
        assert_eq!(
            str_of(&service["build"]["dockerfile"]),
            "Dockerfile",
            "{name}"
        );
        assert_eq!(
            command(service).first().map(String::as_str),
            Some(name),
            "{name} runs its own binary"
        );
        assert!(
            dockerfile.contains(&format!("target/release/{name}")),
            "the image lacks {name}"
        );
        assert_eq!(
            env(service, "KAFKA_BROKERS").as_deref(),
            Some("kafka:9092"),
            "{name}"
        );
        let networks = serde_norway::to_string(&service["networks"]).unwrap();
        assert!(networks.contains("back-tier"), "{name} must reach kafka");
    }
    // Files the services read from the image (copied from data/ and models/) must exist.
    for name in ["producer", "scorer", "monitor", "sink"] {
        for arg in command(&compose["services"][name]) {
            if arg.starts_with("data/") || arg.starts_with("models/") {
                assert!(
                    root().join(&arg).is_file(),
                    "{name} reads {arg}, which is not in the repository"
                );
            }
        }
    }
    let producer = command(&compose["services"]["producer"]);
    assert!(
        producer
            .iter()
            .any(|a| a == "data/green_tripdata_2022-02.parquet"),
        "{producer:?}"
    );
    let url = env(&compose["services"]["sink"], "DATABASE_URL").unwrap();
    assert!(url.contains("@db:5432/streamwatch"), "{url}");
    let db = &compose["services"]["db"];
    assert_eq!(env(db, "POSTGRES_DB").as_deref(), Some("streamwatch"));
    assert!(
        url.contains(&format!(":{}@", env(db, "POSTGRES_PASSWORD").unwrap())),
        "sink and db disagree on the password"
    );
}

#[test]
fn the_dockerfile_copies_what_exists() {
    let dockerfile = read("Dockerfile");
    let copies: Vec<&str> = dockerfile
        .lines()
        .filter_map(|line| line.trim().strip_prefix("COPY "))
        .filter(|args| !args.starts_with("--from"))
        .collect();
    assert!(copies.len() >= 3, "{copies:?}");
    for args in copies {
        let parts: Vec<&str> = args.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                root().join(source).exists(),
                "Dockerfile copies {source}, which is not in the repository"
            );
        }
    }
    let ignored = read(".dockerignore");
    assert!(
        ignored.lines().any(|l| l.trim() == "target/"),
        "the build context must not carry target/"
    );
}

#[test]
fn grafana_is_provisioned_with_a_fixed_datasource_uid() {
    let compose = compose();
    let grafana = &compose["services"]["grafana"];
    let mounts: Vec<(String, String)> = grafana["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| {
            let mut parts = str_of(v).split(':');
            (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().to_owned(),
            )
        })
        .collect();
    let target_of = |source: &str| {
        mounts
            .iter()
            .find(|(s, _)| s == source)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("grafana does not mount {source}"))
    };
    assert_eq!(
        target_of("./grafana/provisioning"),
        "/etc/grafana/provisioning"
    );

    let providers = yaml("grafana/provisioning/dashboards/dashboards.yaml");
    let provider = &providers["providers"][0];
    assert_eq!(str_of(&provider["type"]), "file");
    assert_eq!(
        str_of(&provider["options"]["path"]),
        target_of("./grafana/dashboards")
    );

    let sources = yaml("grafana/provisioning/datasources/postgres.yaml");
    let source = &sources["datasources"][0];
    assert_eq!(str_of(&source["uid"]), "streamwatch-postgres");
    assert_eq!(str_of(&source["type"]), "grafana-postgresql-datasource");
    assert_eq!(str_of(&source["jsonData"]["sslmode"]), "disable");
    // Every ${NAME} the file expands must be set in Grafana's environment.
    let text = read("grafana/provisioning/datasources/postgres.yaml");
    let settings: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    for piece in settings.split("${").skip(1) {
        let name = piece.split('}').next().unwrap();
        assert!(
            env(grafana, name).is_some(),
            "grafana's environment lacks {name}"
        );
    }
    assert_eq!(
        env(grafana, "POSTGRES_HOST").as_deref(),
        Some("${POSTGRES_HOST:-db:5432}")
    );

    let dashboard = read("grafana/dashboards/data-drift.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let expected =
        serde_json::json!({"type": "grafana-postgresql-datasource", "uid": "streamwatch-postgres"});
    let panels = json["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for course in [
        "Prediction Drift",
        "Number of Drifted Columns",
        "Share of missing values",
    ] {
        assert!(
            titles.contains(&course),
            "missing the course panel {course}"
        );
    }
    for panel in panels {
        assert_eq!(panel["datasource"], expected, "panel {}", panel["title"]);
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"], expected, "panel {}", panel["title"]);
            assert!(
                target["rawSql"].is_string() && target["format"].is_string(),
                "panel {}",
                panel["title"]
            );
        }
    }
    // One query per panel, then one per query variable.
    let queries = panel_queries(&dashboard).unwrap();
    let (variable_queries, panel_queries): (Vec<_>, Vec<_>) = queries
        .iter()
        .partition(|q| q.panel_title.starts_with("variable "));
    assert_eq!(panel_queries.len(), panels.len());
    let variables = template_variables(&dashboard).unwrap();
    assert_eq!(
        variable_queries.len(),
        variables.iter().filter(|v| v.kind == "query").count()
    );
    assert!(variable_queries.len() >= 4, "{variable_queries:#?}");
    for query in &variable_queries {
        let source = query.datasource.as_ref();
        assert_eq!(
            source.map(|s| (s.kind.as_str(), s.uid.as_str())),
            Some(("grafana-postgresql-datasource", DATASOURCE_UID)),
            "{}",
            query.panel_title
        );
    }
    for query in panel_queries
        .iter()
        .filter(|q| q.panel_title != "Drift per column and window")
    {
        assert_eq!(query.format, "time_series", "{}", query.panel_title);
        assert!(
            query.sql.contains("$__timeFilter("),
            "{}",
            query.panel_title
        );
    }
}

/// `$name`, `${name}`, `${name:format}` and `[[name]]` references in SQL, but not Grafana's
/// globals and macros (`$__...`).
fn variable_references(sql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in sql.match_indices('$') {
        let rest = &sql[i + 1..];
        let rest = rest.strip_prefix('{').unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            names.insert(name);
        }
    }
    for piece in sql.split("[[").skip(1) {
        if let Some((name, _)) = piece.split_once("]]") {
            names.insert(name.split(':').next().unwrap().to_owned());
        }
    }
    names
}

#[test]
fn dashboards_filter_by_their_template_variables() {
    let relations = alerting::migration_relations();
    for expected in ["service_health", "window_latency"] {
        assert!(relations.contains(expected), "{relations:?}");
    }
    let mut dashboards: Vec<PathBuf> = std::fs::read_dir(root().join("grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    dashboards.sort();
    let mut read_by_some_panel: BTreeSet<String> = BTreeSet::new();
    for path in &dashboards {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let variables = template_variables(&text).unwrap();
        let names: Vec<&str> = variables.iter().map(|v| v.name.as_str()).collect();
        for required in ["window_kind", "window_size"] {
            assert!(names.contains(&required), "{file}: no variable {required}");
        }
        for (i, variable) in variables.iter().enumerate() {
            let what = format!("{file} variable {}", variable.name);
            assert_eq!(variable.kind, "query", "{what}");
            let sql = variable
                .sql
                .as_deref()
                .unwrap_or_else(|| panic!("{what}: no SQL"));
            // One value each: the panels quote it themselves (`'$window_kind'`).
            assert!(!variable.multi && !variable.include_all, "{what}");
            assert!(variable.current.is_some(), "{what}: no saved value");
            // A variable may use the ones before it (Grafana refreshes them in order).
            for used in variable_references(sql) {
                assert!(
                    names[..i].contains(&used.as_str()),
                    "{what} uses ${used}, not a variable before it"
                );
            }
            for relation in alerting::referenced_relations(sql) {
                assert!(relations.contains(&relation), "{what} reads {relation}");
            }
        }
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        for variable in json["templating"]["list"].as_array().unwrap() {
            // Loaded when the dashboard opens, so new window shapes and segments show up.
            assert!(
                matches!(variable["refresh"].as_i64(), Some(1 | 2)),
                "{file} variable {}: refresh",
                variable["name"]
            );
        }
        assert_eq!(
            variables[names.iter().position(|n| *n == "window_kind").unwrap()]
                .sql
                .as_deref()
                .map(alerting::referenced_relations),
            Some(["window_metrics".to_owned()].into()),
            "{file}: window kinds come from window_metrics"
        );

        let mut segment_panels = 0;
        for query in panel_queries(&text)
            .unwrap()
            .iter()
            .filter(|q| !q.panel_title.starts_with("variable "))
        {
            let what = format!("{file} panel {:?}", query.panel_title);
            for used in variable_references(&query.sql) {
                assert!(
                    names.contains(&used.as_str()),
                    "{what} uses undefined ${used}"
                );
            }
            let read = alerting::referenced_relations(&query.sql);
            assert!(!read.is_empty(), "{what}: reads no table");
            for relation in &read {
                assert!(
                    relations.contains(relation),
                    "{what} reads {relation}, which no migration creates"
                );
            }
            read_by_some_panel.extend(read.iter().cloned());
            // A panel on windows shows the chosen window shape, none fixed in its SQL.
            if words(&query.sql).contains("window_kind") {
                for filter in [
                    "window_kind = '$window_kind'",
                    "window_size_seconds = $window_size",
                ] {
                    assert!(query.sql.contains(filter), "{what} lacks {filter}");
                }
                assert!(!query.sql.contains("'tumbling'"), "{what}");
            }
            // A panel on segments shows the chosen dimension (and maybe segment).
            if read.contains("segment_drift") || read.contains("segment_performance") {
                segment_panels += 1;
                assert!(
                    query.sql.contains("dimension = '$dimension'"),
                    "{what} lacks the dimension filter"
                );
                let value = if read.contains("segment_drift") {
                    "segment"
                } else {
                    "value"
                };
                if query.sql.contains("$segment") {
                    assert!(
                        query.sql.contains(&format!("{value} = '$segment'")),
                        "{what}: segment filter"
                    );
                }
            }
        }
        if segment_panels > 0 {
            for required in ["dimension", "segment"] {
                assert!(names.contains(&required), "{file}: no variable {required}");
            }
            assert!(
                text.contains("= '$segment'"),
                "{file}: no panel shows the chosen segment"
            );
        }
    }
    for relation in [
        "window_metrics",
        "segment_drift",
        "window_performance",
        "segment_performance",
        "service_health",
        "window_latency",
    ] {
        assert!(
            read_by_some_panel.contains(relation),
            "no dashboard panel reads {relation}"
        );
    }
}

/// The value of `--name value` or `--name=value`.
fn flag(command: &[String], name: &str) -> Option<String> {
    command.iter().enumerate().find_map(|(i, arg)| {
        if arg == name {
            command.get(i + 1).cloned()
        } else {
            arg.strip_prefix(&format!("{name}=")).map(str::to_owned)
        }
    })
}

/// topic-init's `for spec in name:partitions ...; do` list.
fn created_topics(compose: &Value) -> BTreeMap<String, u32> {
    let script = command(&compose["services"]["topic-init"]).join("\n");
    let list = script
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("for spec in "))
        .expect("topic-init creates the topics in a `for spec in name:partitions ...` loop");
    list.split(';')
        .next()
        .unwrap()
        .split_whitespace()
        .map(|pair| {
            let (name, partitions) = pair
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("{pair}: not name:partitions"));
            let partitions = partitions.parse().unwrap_or_else(|e| panic!("{pair}: {e}"));
            (name.to_owned(), partitions)
        })
        .collect()
}

/// Lower-case identifier words of a text (SQL columns, tables, keywords).
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A path under the repository, lexically normalised and relative to it
/// (`<root>/examples/specs/../../data/x` -> `data/x`).
fn repo_relative(path: &Path) -> String {
    let root = root();
    let relative = path.strip_prefix(&root).unwrap_or(path);
    let mut parts: Vec<&str> = Vec::new();
    for component in relative.components() {
        match component {
            Component::ParentDir => {
                assert!(parts.pop().is_some(), "{path:?} leaves the repository");
            }
            Component::CurDir => {}
            Component::Normal(part) => parts.push(part.to_str().unwrap()),
            _ => panic!("{path:?} is outside the repository"),
        }
    }
    parts.join("/")
}

fn taxi_spec(compose: &Value) -> (String, Spec) {
    let path = flag(&command(&compose["services"]["monitor"]), "--spec").expect("monitor --spec");
    let spec = Spec::load(&root().join(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    (path, spec)
}

#[test]
fn topics_are_created_with_partitions_that_fit_the_join() {
    let compose = compose();
    let topics = created_topics(&compose);
    for topic in [
        "trips",
        "trips.scored",
        "completions",
        "metrics",
        "deadletter",
    ] {
        assert!(
            topics.contains_key(topic),
            "topic-init does not create {topic}"
        );
    }
    for (topic, partitions) in &topics {
        assert!(
            (1..=64).contains(partitions),
            "{topic}: {partitions} partitions"
        );
    }
    // The monitor joins a scored trip with its completion per partition: both are keyed by the
    // trip id, so the same partition count puts them on the same partition number.
    assert_eq!(
        topics["completions"], topics["trips.scored"],
        "completions and trips.scored must have the same number of partitions"
    );
    let script = command(&compose["services"]["topic-init"]).join("\n");
    assert!(
        script.contains("PartitionCount") && script.contains("exit 1"),
        "topic-init must fail when existing topics have other partition counts"
    );
    assert!(
        script.contains("--entity-name monitor.alert-state --add-config cleanup.policy=compact"),
        "the alert-state topic keeps the latest state per rule: compacted"
    );

    // The broker creates no topic by itself: every topic a service names must be created.
    assert_eq!(
        env(
            &compose["services"]["kafka"],
            "KAFKA_AUTO_CREATE_TOPICS_ENABLE"
        )
        .as_deref(),
        Some("false")
    );
    let mut used: BTreeSet<String> = [
        "trips",
        "trips.scored",
        "metrics",
        "deadletter",
        "monitor.alert-state",
    ]
    .map(String::from)
    .into(); // the binaries' defaults
    for (_, service) in services(&compose) {
        let command = command(service);
        for name in [
            "--topic",
            "--input-topic",
            "--output-topic",
            "--completions-topic",
            "--dead-letter-topic",
            "--alert-state-topic",
        ] {
            used.extend(flag(&command, name));
        }
        for key in [
            "PRODUCER_TOPIC",
            "PRODUCER_COMPLETIONS_TOPIC",
            "SCORER_INPUT_TOPIC",
            "SCORER_OUTPUT_TOPIC",
            "MONITOR_INPUT_TOPIC",
            "MONITOR_OUTPUT_TOPIC",
            "MONITOR_COMPLETIONS_TOPIC",
            "MONITOR_ALERT_STATE_TOPIC",
            "SINK_TOPIC",
            "DEAD_LETTER_TOPIC",
        ] {
            used.extend(env(service, key));
        }
    }
    for topic in used {
        assert!(
            topics.contains_key(&topic),
            "{topic} is used but topic-init does not create it"
        );
    }
}

#[test]
fn producer_and_monitor_run_with_completions_and_the_spec() {
    let compose = compose();
    let producer = command(&compose["services"]["producer"]);
    let monitor = command(&compose["services"]["monitor"]);
    assert_eq!(producer[..2], ["producer", "replay"]);
    assert_eq!(
        flag(&producer, "--file").as_deref(),
        Some("data/green_tripdata_2022-02.parquet"),
        "the producer replays February 2022"
    );
    let completions =
        flag(&producer, "--completions-topic").expect("producer replay --completions-topic");
    assert_eq!(completions, "completions");

    assert_eq!(monitor[..2], ["monitor", "run"]);
    assert_eq!(
        flag(&monitor, "--completions-topic").as_deref(),
        Some(completions.as_str()),
        "the monitor reads the completions the producer writes"
    );
    let (path, spec) = taxi_spec(&compose);
    assert_eq!(path, "examples/specs/taxi.toml");
    assert!(spec.target.is_some(), "model performance needs the target");
    assert!(!spec.segments.is_empty() && !spec.alerts.is_empty());
    // The spec replaces the mapping, reference, quantile and window options.
    for replaced in [
        "--reference",
        "--window",
        "--prediction",
        "--numerical",
        "--categorical",
        "--quantiles",
    ] {
        assert!(
            flag(&monitor, replaced).is_none(),
            "monitor: {replaced} next to --spec"
        );
    }
    if let Some(horizon) = flag(&monitor, "--label-horizon") {
        assert!(
            alerting::duration_seconds(&horizon).is_some_and(|s| s > 0),
            "--label-horizon {horizon}"
        );
    }
}

#[test]
fn the_image_holds_every_file_the_services_read() {
    let compose = compose();
    let mut files: BTreeSet<String> = BTreeSet::new();
    files.extend(flag(&command(&compose["services"]["producer"]), "--file"));
    files.insert(
        flag(&command(&compose["services"]["scorer"]), "--model")
            .unwrap_or_else(|| "models/trip-duration-linear.json".into()),
    );
    let (path, spec) = taxi_spec(&compose);
    files.insert(path);
    files.insert(repo_relative(Path::new(&spec.reference.path)));
    for lookup in spec.segments.iter().filter_map(|s| s.lookup.as_ref()) {
        files.insert(repo_relative(Path::new(&lookup.path)));
    }
    if let Some(model) = &spec.model {
        files.insert(repo_relative(Path::new(&model.path)));
    }
    for expected in [
        "data/green_tripdata_2022-02.parquet",
        "models/trip-duration-linear.json",
        "examples/specs/taxi.toml",
        "data/reference.parquet",
        "data/taxi_zone_lookup.csv",
    ] {
        assert!(files.contains(expected), "{expected} not among {files:?}");
    }

    // The run stage: files go to WORKDIR/<their repository path>, where the relative paths of
    // the commands and the spec find them.
    let dockerfile = read("Dockerfile");
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    let workdir = runtime
        .lines()
        .filter_map(|l| l.trim().strip_prefix("WORKDIR "))
        .next_back()
        .expect("the run stage sets WORKDIR")
        .trim()
        .trim_end_matches('/')
        .to_owned();
    let copies: Vec<(String, String)> = runtime
        .lines()
        .filter_map(|l| l.trim().strip_prefix("COPY "))
        .filter(|args| !args.starts_with("--from"))
        .map(|args| {
            let parts: Vec<&str> = args.split_whitespace().collect();
            assert_eq!(parts.len(), 2, "COPY {args}: one source and a destination");
            (
                parts[0].trim_end_matches('/').to_owned(),
                parts[1].trim_end_matches('/').to_owned(),
            )
        })
        .collect();
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    for file in &files {
        assert!(
            root().join(file).is_file(),
            "{file} is not in the repository"
        );
        let copied = copies.iter().any(|(source, destination)| {
            (file == source || file.starts_with(&format!("{source}/")))
                && *destination == format!("{workdir}/{source}")
        });
        assert!(
            copied,
            "the image does not copy {file} to {workdir}/{file}: {copies:?}"
        );
        assert!(
            !ignored
                .iter()
                .any(|i| file == i || file.starts_with(&format!("{i}/"))),
            ".dockerignore leaves {file} out of the build context"
        );
    }
}

#[test]
fn grafana_logs_in_as_admin_and_provisions_every_dashboard() {
    let compose = compose();
    let grafana = &compose["services"]["grafana"];
    assert_eq!(
        env(grafana, "GF_SECURITY_ADMIN_USER").as_deref(),
        Some("admin")
    );
    assert_eq!(
        env(grafana, "GF_SECURITY_ADMIN_PASSWORD").as_deref(),
        Some("admin")
    );
    let home = env(grafana, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH").unwrap();
    let home = home
        .strip_prefix("/etc/grafana/dashboards/")
        .expect("the home dashboard is a provisioned one");
    assert!(root().join("grafana/dashboards").join(home).is_file());

    let mut dashboards: Vec<PathBuf> = std::fs::read_dir(root().join("grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    dashboards.sort();
    let names: Vec<String> = dashboards
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "data-drift.json",
        "model-performance.json",
        "service-health.json",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing");
    }
    let mut uids = BTreeSet::new();
    for path in &dashboards {
        let text = std::fs::read_to_string(path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let uid = json["uid"].as_str().unwrap_or_default().to_owned();
        assert!(!uid.is_empty(), "{path:?} has no fixed uid");
        assert!(uids.insert(uid.clone()), "dashboard uid {uid} twice");
        for query in panel_queries(&text).unwrap() {
            if query.panel_title.starts_with("variable ") && query.datasource.is_none() {
                continue;
            }
            let source = query
                .datasource
                .as_ref()
                .unwrap_or_else(|| panic!("{path:?} {}: no datasource", query.panel_title));
            assert_eq!(source.uid, DATASOURCE_UID, "{path:?} {}", query.panel_title);
            assert_eq!(
                source.kind, "grafana-postgresql-datasource",
                "{path:?} {}",
                query.panel_title
            );
        }
    }
}

#[test]
fn alert_rules_are_provisioned_on_the_datasource() {
    let compose = compose();
    let mounts = serde_norway::to_string(&compose["services"]["grafana"]["volumes"]).unwrap();
    assert!(
        mounts.contains("./grafana/provisioning:/etc/grafana/provisioning"),
        "Grafana loads the alert rules from its provisioning folder"
    );
    assert!(RULE_FILE.starts_with("grafana/provisioning/alerting/"));
    let sources = yaml("grafana/provisioning/datasources/postgres.yaml");
    let source = &sources["datasources"][0];
    assert_eq!(str_of(&source["uid"]), DATASOURCE_UID);
    let source_type = str_of(&source["type"]);

    let file = alerting::rule_file();
    assert_eq!(file["apiVersion"].as_i64(), Some(1));
    let groups = file["groups"].as_sequence().expect("groups");
    assert!(!groups.is_empty());
    for group in groups {
        let name = str_of(&group["name"]);
        assert!(!name.is_empty(), "a rule group without a name");
        assert!(!str_of(&group["folder"]).is_empty(), "{name}: no folder");
        assert!(
            alerting::duration_seconds(str_of(&group["interval"])).is_some_and(|s| s >= 10),
            "{name}: interval {:?}",
            group["interval"]
        );
        assert!(
            group["rules"].as_sequence().is_some_and(|r| !r.is_empty()),
            "{name}: no rules"
        );
    }

    let rules = alerting::rules(&file);
    let mut uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for rule in &rules {
        let uid = rule.uid();
        assert!(
            !uid.is_empty()
                && uid.len() <= 40
                && uid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "rule uid {uid:?}: 1 to 40 letters, digits, - and _"
        );
        assert!(uids.insert(uid), "rule uid {uid} twice");
        let title = str_of(&rule.rule["title"]);
        assert!(!title.is_empty(), "{uid}: no title");
        assert!(
            titles.insert((str_of(&rule.group["folder"]), title)),
            "{uid}: title {title:?} twice in its folder"
        );

        let mut ref_ids: Vec<&str> = Vec::new();
        for data in rule.data() {
            let ref_id = str_of(&data["refId"]);
            assert!(!ref_id.is_empty(), "{uid}: a query without refId");
            assert!(!ref_ids.contains(&ref_id), "{uid}: refId {ref_id} twice");
            let model = &data["model"];
            assert_eq!(
                str_of(&model["refId"]),
                ref_id,
                "{uid} {ref_id}: model.refId"
            );
            match str_of(&data["datasourceUid"]) {
                DATASOURCE_UID => {
                    assert_eq!(str_of(&model["datasource"]["uid"]), DATASOURCE_UID, "{uid}");
                    assert_eq!(str_of(&model["datasource"]["type"]), source_type, "{uid}");
                    assert_eq!(
                        str_of(&model["format"]),
                        "time_series",
                        "{uid} {ref_id}: PostgreSQL alert queries are time series"
                    );
                    assert_eq!(model["rawQuery"].as_bool(), Some(true), "{uid}");
                    let range = &data["relativeTimeRange"];
                    let (from, to) = (range["from"].as_i64(), range["to"].as_i64());
                    assert!(
                        matches!((from, to), (Some(f), Some(t)) if f > t && t >= 0),
                        "{uid} {ref_id}: relativeTimeRange {from:?}..{to:?}"
                    );
                }
                EXPRESSION_UID => {
                    assert_eq!(str_of(&model["datasource"]["uid"]), EXPRESSION_UID, "{uid}");
                    let kind = str_of(&model["type"]);
                    assert!(
                        ["reduce", "threshold", "math"].contains(&kind),
                        "{uid} {ref_id}: expression type {kind:?}"
                    );
                    if kind != "math" {
                        let input = str_of(&model["expression"]);
                        assert!(
                            ref_ids.contains(&input),
                            "{uid} {ref_id}: {kind} of {input:?}, which comes before it"
                        );
                    }
                    if kind == "reduce" {
                        assert!(
                            ["last", "mean", "min", "max", "sum", "count"]
                                .contains(&str_of(&model["reducer"])),
                            "{uid} {ref_id}: reducer"
                        );
                    }
                }
                other => panic!("{uid} {ref_id}: datasource {other:?} is not {DATASOURCE_UID}"),
            }
            ref_ids.push(ref_id);
        }
        assert!(
            !rule.sql_queries().is_empty(),
            "{uid}: no query on the datasource"
        );
        let condition = str_of(&rule.rule["condition"]);
        let condition = rule
            .query(condition)
            .unwrap_or_else(|| panic!("{uid}: condition {condition:?} is not a refId"));
        assert_eq!(str_of(&condition["model"]["type"]), "threshold", "{uid}");
        let threshold = rule.threshold();
        assert_eq!(
            Threshold::arity(&threshold.kind),
            Some(threshold.params.len()),
            "{uid}: {threshold:?}"
        );

        assert!(
            ["NoData", "Alerting", "OK", "KeepLast"].contains(&str_of(&rule.rule["noDataState"])),
            "{uid}: noDataState"
        );
        assert!(
            ["Error", "Alerting", "OK", "KeepLast"].contains(&str_of(&rule.rule["execErrState"])),
            "{uid}: execErrState"
        );
        assert!(
            alerting::duration_seconds(str_of(&rule.rule["for"])).is_some(),
            "{uid}: for"
        );
        assert!(
            !str_of(&rule.rule["annotations"]["summary"]).is_empty(),
            "{uid}: no summary"
        );
        assert!(
            !str_of(&rule.rule["labels"]["severity"]).is_empty(),
            "{uid}: no severity label"
        );
    }
}

#[test]
fn alert_rule_sql_is_parameter_free_and_reads_migrated_relations() {
    let relations = alerting::migration_relations();
    for expected in [
        "window_metrics",
        "window_performance",
        "alerts",
        "dummy_metrics",
    ] {
        assert!(relations.contains(expected), "{relations:?}");
    }
    let file = alerting::rule_file();
    let now = Utc::now().naive_utc();
    for rule in alerting::rules(&file) {
        for query in rule.sql_queries() {
            let what = format!("{} {}", query.rule_uid, query.ref_id);
            assert_eq!(query.datasource_uid, DATASOURCE_UID, "{what}");
            let sql = query.sql.trim().trim_end_matches(';');
            assert!(!sql.is_empty(), "{what}: no rawSql");
            assert!(!sql.contains(';'), "{what}: one statement");
            // Alert rules have no template variables: after Grafana's macros nothing is left.
            let expanded = expand_macros(
                sql,
                now - Duration::seconds(query.from_seconds),
                now - Duration::seconds(query.to_seconds),
                &[],
            );
            assert!(
                !expanded.contains('$') && !expanded.contains("[["),
                "{what}: a variable or unknown macro is left: {expanded}"
            );
            let read = alerting::referenced_relations(sql);
            assert!(!read.is_empty(), "{what}: reads no table");
            for relation in &read {
                assert!(
                    relations.contains(relation),
                    "{what} reads {relation}, which no migration creates"
                );
            }
        }
    }
}

#[test]
fn alert_rules_cover_the_spec_metrics() {
    let compose = compose();
    let (_, spec) = taxi_spec(&compose);
    let file = alerting::rule_file();
    let rules = alerting::rules(&file);
    let reading = |table: &str, column: &str| -> Vec<&alerting::Rule<'_>> {
        rules
            .iter()
            .filter(|rule| {
                rule.sql_queries().iter().any(|q| {
                    alerting::referenced_relations(&q.sql).contains(table)
                        && words(&q.sql).contains(column)
                })
            })
            .collect()
    };
    // The spec's own alert metrics, each a column of window_metrics or window_performance.
    for alert in &spec.alerts {
        let table = if ["mae", "rmse", "worst_mae_ratio"].contains(&alert.metric.as_str()) {
            "window_performance"
        } else {
            "window_metrics"
        };
        assert!(
            !reading(table, &alert.metric).is_empty(),
            "no Grafana rule on the spec's alert metric {} ({table})",
            alert.metric
        );
    }
    for (table, column) in [
        ("window_metrics", "prediction_drift_detected"),
        ("window_metrics", "dataset_drift"),
        ("window_performance", "mae"),
        ("window_performance", "worst_mae_ratio"),
        ("alerts", "firing"),
    ] {
        assert!(
            !reading(table, column).is_empty(),
            "no Grafana rule on {table}.{column}"
        );
    }
    // The fairness rule fires outside the spec's band, as the monitor flags unfair segments.
    for rule in reading("window_performance", "worst_mae_ratio") {
        let [low, high] = spec.performance.fairness_band;
        assert_eq!(
            rule.threshold(),
            Threshold {
                kind: "outside_range".into(),
                params: vec![low, high]
            },
            "{}",
            rule.uid()
        );
    }
    // The monitor's own alerts: firing rows of the last day.
    for rule in reading("alerts", "firing") {
        for query in rule.sql_queries() {
            assert_eq!(query.from_seconds, 86_400, "{}", rule.uid());
            assert!(query.sql.contains("$__timeFilter("), "{}", rule.uid());
        }
    }
}

#[test]
fn the_sql_reader_finds_relations() {
    assert_eq!(
        alerting::referenced_relations(
            "SELECT extract(epoch FROM t) FROM (SELECT * FROM public.a JOIN \"B\" ON x) s \
             LEFT JOIN c USING (k) WHERE 'from d' <> '' -- FROM e"
        ),
        ["a", "b", "c"].map(String::from).into()
    );
    assert_eq!(alerting::duration_seconds("1m"), Some(60));
    assert_eq!(alerting::duration_seconds("1h30m"), Some(5400));
    assert_eq!(alerting::duration_seconds("0s"), Some(0));
    assert_eq!(alerting::duration_seconds("5"), None);
    assert_eq!(alerting::duration_seconds("soon"), None);
}
