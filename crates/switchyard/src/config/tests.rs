use super::*;

fn compile(text: &str) -> (Option<Config>, Vec<String>) {
    let env = |k: &str| (k == "KEY").then(|| "wk_from_env".to_owned());
    let (c, problems) = compile_str(text, "test.yaml", &env);
    (c, problems.iter().map(ToString::to_string).collect())
}

#[test]
fn a_full_valid_config() {
    let (c, problems) = compile(
        r#"
server: { listen: 127.0.0.1:9000, data_dir: /tmp/sy, shutdown_timeout: 5s, recent_events: 50 }
storage: { retention: { max_age: 2d, max_bytes: 1GiB }, commit_window: 2ms, max_profiles: 1000 }
dedupe: { window: 1h30m, max_keys: 1000 }
sources:
  - id: web
    type: http_api
    write_keys: { production: "${KEY}", development: wk_dev }
destinations:
  - id: archive
    type: file
    sources: [web]
    environments: [production]
    settings: { path: /tmp/sy/events.jsonl, max_bytes: 1MiB, keep: 3 }
"#,
    );
    assert!(problems.is_empty(), "{problems:?}");
    let c = c.expect("compiles");
    assert_eq!(c.server.listen.port(), 9000);
    assert_eq!(c.dedupe.window, Duration::from_secs(5400));
    assert!(c.storage.profiles, "profiles are on by default");
    assert_eq!(c.storage.max_profiles, 1000);
    assert_eq!(
        c.write_keys.get("wk_from_env"),
        Some(&("web".to_owned(), "production".to_owned()))
    );
    assert_eq!(
        c.write_keys.get("wk_dev"),
        Some(&("web".to_owned(), "development".to_owned()))
    );
    let d = &c.destinations[0];
    assert!(
        d.wants("web", "production")
            && !d.wants("web", "development")
            && !d.wants("app", "production")
    );
    let DestinationKind::File(f) = &d.kind else {
        panic!("a file destination")
    };
    assert_eq!((f.max_bytes, f.keep), (1 << 20, 3));
}

#[test]
fn json_is_accepted_too() {
    let (c, problems) = compile(
        "{\"sources\":[{\"id\":\"web\",\"type\":\"http_api\",\"write_keys\":{\"production\":\"k\"}}]}",
    );
    assert!(c.is_some(), "{problems:?}");
}

#[test]
fn every_error_is_reported_with_its_path() {
    let (c, problems) = compile(
        r#"
server: { listen: "nope", shutdown_timeout: 10, bogus: 1, egress_allow: ["127.0.0.1:9000", "nonsense"] }
dedupe: { window: 5x }
storage: { max_profiles: 0 }
extra: true
sources:
  - id: Web
    type: http_api
    write_keys: { production: "${UNSET}" }
  - id: app
    type: carrier_pigeon
  - id: dup
    type: http_api
    write_keys: { production: k1 }
  - id: dup
    type: http_api
    write_keys: { production: k1 }
destinations:
  - id: archive
    type: file
    sources: [nowhere]
    settings: { path: /tmp/x.jsonl, colour: blue }
"#,
    );
    assert!(c.is_none());
    let expect = [
        "error extra unknown key",
        "error server.listen invalid address",
        "error server.shutdown_timeout duration 10 needs a unit",
        "error server.bogus unknown field",
        "error server.egress_allow[1] \"nonsense\": expected a CIDR or host:port",
        "error dedupe.window invalid duration",
        "error storage.max_profiles must be at least 1",
        "error sources[Web].id id \"Web\" must match",
        "error sources[Web].write_keys.production environment variable UNSET is not set",
        "error sources[app].type unknown source type \"carrier_pigeon\"",
        "error sources[dup].id duplicate id",
        "error sources[dup].write_keys.production this write key is already used",
        "error destinations[archive].sources unknown source \"nowhere\"",
        "error destinations[archive].settings",
    ];
    for e in expect {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {problems:#?}"
        );
    }
}

#[test]
fn non_loopback_listen_needs_a_token() {
    let (_, problems) = compile("server: { listen: 0.0.0.0:8088 }");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("error server.admin_token")),
        "{problems:?}"
    );
    let (c, problems) = compile("server: { listen: 0.0.0.0:8088, admin_token: 0123456789abcdef }");
    assert!(c.is_some() && problems.is_empty(), "{problems:?}");
}

#[test]
fn a_short_admin_token_is_refused_off_loopback_and_warned_on_it() {
    for listen in ["0.0.0.0:8088", "10.1.2.3:8088", "[::]:8088"] {
        let (c, problems) = compile(&format!(
            "server: {{ listen: \"{listen}\", admin_token: t }}"
        ));
        assert!(c.is_none(), "{listen}");
        assert!(
            problems.iter().any(|p| p.starts_with(
                "error server.admin_token must be at least 16 characters when listen"
            )),
            "{listen}: {problems:?}"
        );
    }
    // 15 characters is one short; multi-byte characters count once.
    let (c, _) = compile("server: { listen: 0.0.0.0:8088, admin_token: 0123456789abcde }");
    assert!(c.is_none());
    let (c, _) = compile("server: { listen: 0.0.0.0:8088, admin_token: ééééééééééééééée }");
    assert!(c.is_some());

    let (c, problems) = compile("server: { listen: 127.0.0.1:8088, admin_token: t }");
    assert!(c.is_some(), "loopback with a short token still starts");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("warning server.admin_token shorter than 16")),
        "{problems:?}"
    );
    assert!(
        public_admin_token_problem("0.0.0.0:1".parse().unwrap(), Some("t")).is_some(),
        "serve --listen applies the same rule"
    );
}

#[test]
fn listener_limits_have_defaults_and_parse() {
    let (c, problems) = compile("");
    assert!(problems.is_empty(), "{problems:?}");
    let limits = c.unwrap().server.limits;
    assert_eq!(
        limits,
        ListenerLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
        }
    );
    let (c, problems) = compile(
        "server: { header_read_timeout: 500ms, body_read_timeout: 2s, idle_timeout: 1m30s, max_connections: 5 }",
    );
    assert!(problems.is_empty(), "{problems:?}");
    let limits = c.unwrap().server.limits;
    assert_eq!(limits.header_read_timeout, Duration::from_millis(500));
    assert_eq!(limits.body_read_timeout, Duration::from_secs(2));
    assert_eq!(limits.idle_timeout, Duration::from_secs(90));
    assert_eq!(limits.max_connections, 5);
}

#[test]
fn bad_listener_limits_are_reported_with_their_path() {
    let (c, problems) = compile(
        "server: { header_read_timeout: 10, body_read_timeout: 0s, idle_timeout: 2h, max_connections: 0 }",
    );
    assert!(c.is_none());
    let expect = [
        "error server.header_read_timeout duration 10 needs a unit",
        "error server.body_read_timeout must be between 100ms and 1h",
        "error server.idle_timeout must be between 100ms and 1h",
        "error server.max_connections must be between 1 and 1000000",
    ];
    for want in expect {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
    let (_, problems) = compile("server: { max_connections: -1, idle_timeout: soon }");
    for want in [
        "error server.max_connections invalid value",
        "error server.idle_timeout invalid duration",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
    let (_, problems) = compile("server: { max_connections: 2000000 }");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("error server.max_connections must be between")),
        "{problems:?}"
    );
}

#[test]
fn yaml_syntax_errors_carry_line_and_column() {
    let (c, problems) = compile("server:\n  listen: [unclosed\n");
    assert!(c.is_none());
    assert!(problems[0].starts_with("error test.yaml:"), "{problems:?}");
}

#[test]
fn demo_config_compiles_and_keeps_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = demo::config(dir.path(), "127.0.0.1:0").unwrap();
    let b = demo::config(dir.path(), "127.0.0.1:0").unwrap();
    assert_eq!(
        a.write_keys.keys().collect::<Vec<_>>(),
        b.write_keys.keys().collect::<Vec<_>>()
    );
    assert_eq!(a.sources[0].id, demo::DEMO_SOURCE);
}

#[test]
fn the_shipped_example_config_compiles_cleanly() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/switchyard.example.yaml");
    let (config, warnings) = load(&path).unwrap_or_else(|p| panic!("{p:?}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.sources[0].id, "web");
    let defaults = compile("").0.expect("an empty config compiles");
    assert_eq!(
        config.server.limits, defaults.server.limits,
        "the example lists the listener limits' defaults"
    );
}

#[test]
fn webhook_sources_report_every_problem_with_its_path() {
    let (c, problems) = compile(
        r#"
functions: { workers: 0, memory: 1MiB }
sources:
  - { id: open, type: webhook }
  - { id: short, type: webhook, token: abc }
  - { id: sig, type: webhook, verify: { scheme: hmac_sha256, secret: s, encoding: b32 } }
  - { id: sw, type: webhook, verify: { scheme: standard_webhooks, secret: nope, prefix: "x" } }
  - { id: odd, type: webhook, public: true, verify: { scheme: md5, secret: s } }
  - { id: cfg, type: webhook, public: true, settings: { a: 1 }, write_keys: { production: k } }
  - { id: idem, type: webhook, public: true, idempotency: { key: "a..b", window: 5 } }
  - { id: fn, type: webhook, public: true, function: /nonexistent/fn.js }
"#,
    );
    assert!(c.is_none());
    let expect = [
        "error functions.workers must be at least 1",
        "error functions.memory must be at least 4MiB",
        "error sources[open] a webhook source needs verify, a token, or an explicit public: true",
        "error sources[short].token a token must be at least 16 characters",
        "error sources[sig].verify.header hmac_sha256 needs the header",
        "error sources[sw].verify.prefix only scheme hmac_sha256 takes this key",
        "error sources[sw].verify.secret a Standard Webhooks secret must be whsec_",
        "error sources[odd].verify.scheme unknown scheme \"md5\"",
        "error sources[cfg].write_keys only http_api sources take this key",
        "error sources[cfg].settings settings are passed to a function; this source has none",
        "error sources[idem].idempotency.key must be a dot path",
        "error sources[idem].idempotency.window duration 5 needs a unit",
        "error sources[fn].function cannot read function file /nonexistent/fn.js",
    ];
    for want in expect {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
}

#[test]
fn a_webhook_source_compiles_with_its_defaults() {
    let (c, problems) = compile(
        "sources:\n  - { id: hook, type: webhook, verify: { scheme: segment, secret: s3cr3t } }\n",
    );
    assert!(problems.is_empty(), "{problems:?}");
    let c = c.unwrap();
    let SourceKind::Webhook(w) = &c.sources[0].kind else {
        panic!("not a webhook source");
    };
    assert_eq!(w.environment, "production");
    let idem = w.idempotency.as_ref().expect("on by default");
    assert_eq!(
        (idem.key.clone(), idem.window),
        (vec!["messageId".to_owned()], Duration::from_secs(86_400))
    );
    assert!(matches!(
        w.verify,
        Some(Verify::Segment {
            allow_unsigned_batch_tail: false,
            ..
        })
    ));
    assert_eq!((c.functions.workers, c.functions.retry.attempts), (2, 6));
    assert_eq!(c.functions.limits.deadline, Duration::from_secs(5));
    assert!(
        format!("{w:?}").contains("Segment(***)"),
        "secrets stay out of Debug"
    );
}

#[test]
fn backlog_caps_default_on_every_destination_type_and_are_validated_with_paths() {
    let (c, problems) = compile(
        r#"
sources:
  - { id: web, type: http_api, write_keys: { production: wk_1 } }
destinations:
  - { id: a, type: file, settings: { path: /tmp/a.jsonl } }
  - id: b
    type: webhook
    backlog: { max_bytes: 64KiB, max_age: 2s }
    mappings: [{ subscribe: 'type = "track"', url: "https://example.com/x" }]
  - { id: c, type: postgres, backlog: { max_age: 1h }, settings: { url: "postgres://x@127.0.0.1/db" } }
  - { id: d, type: nats, backlog: { max_bytes: 1GiB }, settings: { subject: events } }
  - { id: e, type: segment, backlog: {}, settings: { endpoint: "https://api.segment.io", write_key: k } }
"#,
    );
    assert!(problems.is_empty(), "{problems:?}");
    let c = c.unwrap();
    let caps: Vec<(u64, u64)> = c
        .destinations
        .iter()
        .map(|d| (d.backlog.max_bytes, d.backlog.max_age.as_secs()))
        .collect();
    let week = 7 * 86_400;
    assert_eq!(
        caps,
        [
            (10 << 30, week),
            (64 << 10, 2),
            (10 << 30, 3600),
            (1 << 30, week),
            (10 << 30, week)
        ]
    );
    let (_, problems) = compile(
        r#"
sources:
  - { id: web, type: http_api, write_keys: { production: wk_1 } }
destinations:
  - { id: a, type: file, backlog: { max_bytes: 10, max_age: 0s, max_events: 5 }, settings: { path: /tmp/a.jsonl } }
  - { id: b, type: file, backlog: { max_bytes: lots, max_age: 500ms }, settings: { path: /tmp/b.jsonl } }
"#,
    );
    for want in [
        "error destinations[a].backlog.max_events",
        "error destinations[a].backlog.max_bytes must be at least 4KiB",
        "error destinations[a].backlog.max_age must be at least 1s",
        "error destinations[b].backlog.max_bytes",
        "error destinations[b].backlog.max_age must be at least 1s",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
}

/// An invalid URL is echoed in the problem without its user-info or query values (found by
/// the attack suite: `check` printed the password).
#[test]
fn an_invalid_url_is_reported_without_its_secrets() {
    let (_, problems) = compile(
        r#"
server: { listen: 127.0.0.1:8088, data_dir: /tmp/x }
sources: [{ id: web, type: http_api, write_keys: { production: wk_1 } }]
destinations:
  - id: hook
    type: webhook
    mappings:
      - { name: M, subscribe: 'type = "track"', url: "http://user:hunter2-secret@ho st/x?token=qsecret" }
"#,
    );
    let text = problems.join("\n");
    assert!(text.contains("is not a valid URL"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("qsecret"),
        "{text}"
    );
}
