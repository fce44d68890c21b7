use super::*;

fn taken(s: &str) -> (String, Vec<(String, String)>) {
    take_params(s, &["sslmode", "sslrootcert"])
}

fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

#[test]
fn sslmode_and_sslrootcert_come_out_of_urls() {
    let (rest, t) = taken("postgres://u:p%3Fq@db:5432/a?sslmode=verify-full&application_name=x");
    assert_eq!(rest, "postgres://u:p%3Fq@db:5432/a?application_name=x");
    assert_eq!(t, [pair("sslmode", "verify-full")]);
    let (rest, t) = taken("postgresql://db/a?sslrootcert=%2Fetc%2Fca%20x.pem&sslmode=require");
    assert_eq!(rest, "postgresql://db/a");
    assert_eq!(
        t,
        [
            pair("sslrootcert", "/etc/ca x.pem"),
            pair("sslmode", "require")
        ]
    );
    // A `?` in the password is not the query.
    let (rest, t) = taken("postgres://u:a?b@db/x?sslmode=disable");
    assert_eq!((rest.as_str(), t.len()), ("postgres://u:a?b@db/x", 1));
    assert_eq!(taken("postgres://db/x").0, "postgres://db/x");
}

#[test]
fn sslmode_and_sslrootcert_come_out_of_key_value_strings() {
    let (rest, t) =
        taken("host=db sslmode = verify-ca  user=u sslrootcert='/a b/c\\'d.pem' dbname=x");
    assert_eq!(rest, "host=db  user=u dbname=x");
    assert_eq!(
        t,
        [
            pair("sslmode", "verify-ca"),
            pair("sslrootcert", "/a b/c'd.pem")
        ]
    );
    let (rest, t) = taken("sslmode=require");
    assert_eq!((rest.as_str(), t), ("", vec![pair("sslmode", "require")]));
}

#[test]
fn targets_carry_the_mode_and_the_ca() {
    let t = Target::parse("postgres://u@db/a?sslmode=verify-full", None).unwrap();
    assert_eq!(t.mode, SslMode::VerifyFull);
    assert_eq!(t.config.get_ssl_mode(), PgSslMode::Require);
    let t = Target::parse("host=db user=u", Some(Path::new("/ca.pem"))).unwrap();
    assert_eq!(
        (t.mode, t.config.get_ssl_mode()),
        (SslMode::Prefer, PgSslMode::Prefer)
    );
    assert_eq!(t.ca_file.as_deref(), Some(Path::new("/ca.pem")));
    let t = Target::parse("postgres://db/a?sslmode=disable", None).unwrap();
    assert_eq!(t.config.get_ssl_mode(), PgSslMode::Disable);
    let bad = Target::parse("postgres://db/a?sslmode=verify_full", None).unwrap_err();
    assert!(
        bad.to_string().contains("\"verify_full\" is not one of"),
        "{bad}"
    );
    let two = Target::parse(
        "postgres://db/a?sslrootcert=/x.pem",
        Some(Path::new("/y.pem")),
    );
    assert!(matches!(two, Err(ConnectError::TwoCaFiles)));
    // Unsupported TLS parameters are refused by name (found by an outside check: they were
    // "invalid connection string").
    for url in [
        "postgres://db/a?sslmode=require&sslcert=/c.pem",
        "host=db sslcrl=/x",
    ] {
        let unsupported = Target::parse(url, None).unwrap_err().to_string();
        assert!(unsupported.contains("is not supported"), "{unsupported}");
        assert!(unsupported.starts_with("sslc"), "{unsupported}");
    }
    let twice = Target::parse("postgres://db/a?sslmode=require&sslmode=disable", None);
    assert!(matches!(twice, Err(ConnectError::Repeated("sslmode"))));
    let same = Target::parse("postgres://db/a?sslmode=require&sslmode=require", None).unwrap();
    assert_eq!(same.mode, SslMode::Require);
    // libpq 16's sslrootcert=system: the system's roots.
    let system = Target::parse(
        "postgres://db/a?sslmode=verify-full&sslrootcert=system",
        None,
    );
    assert_eq!(system.unwrap().ca_file, None);
}

#[test]
fn ca_files_that_cannot_be_used_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let target =
        |file: &Path| Target::parse("postgres://db/a?sslmode=verify-full", Some(file)).unwrap();
    let missing = target(&dir.path().join("nope.pem")).tls().unwrap_err();
    assert!(
        missing.to_string().contains("cannot read the CA file"),
        "{missing}"
    );
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let none = target(&empty).tls().unwrap_err();
    assert!(none.to_string().contains("no PEM certificate"), "{none}");
    // Without a CA file, verify-full trusts the system's roots; prefer needs none.
    assert!(
        Target::parse("postgres://db/a?sslmode=verify-full", None)
            .unwrap()
            .tls()
            .is_ok()
    );
    assert!(
        Target::parse("postgres://db/a", None)
            .unwrap()
            .tls()
            .is_ok()
    );
}

#[test]
fn the_config_compiler_reports_every_tls_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let yaml = format!(
        "server: {{ data_dir: /tmp/sy }}\ndestinations:\n\
         - {{ id: a, type: postgres, settings: {{ url: \"postgres://db/x?sslmode=verify_full\", ca_file: \"{m}\" }} }}\n\
         - {{ id: b, type: postgres, settings: {{ url: \"host=db sslmode=require sslrootcert={m}\" }} }}\n\
         - {{ id: c, type: postgres, settings: {{ url: \"postgres://db/x\", ca_file: \"{m}\" }} }}\n",
        m = missing.display()
    );
    let (_, problems) = crate::config::compile_str(&yaml, "test.yaml", &|_: &str| None);
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let has = |path: &str, text: &str| {
        problems
            .iter()
            .any(|p| p.contains(path) && p.contains(text))
    };
    assert!(
        has(
            "destinations[a].settings.url",
            "\"verify_full\" is not one of"
        ),
        "{problems:?}"
    );
    assert!(
        has(
            "destinations[a].settings.ca_file",
            "cannot read the CA file"
        ),
        "{problems:?}"
    );
    assert!(
        has("destinations[b].settings.url", "cannot read the CA file"),
        "{problems:?}"
    );
    assert!(
        has(
            "destinations[c].settings.ca_file",
            "cannot read the CA file"
        ),
        "{problems:?}"
    );
}
