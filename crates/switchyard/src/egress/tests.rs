use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn default_refusals() {
    for a in [
        "127.0.0.1",
        "127.9.9.9",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "0.1.2.3",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::",
        // Regression: IPv6 forms that reach a private IPv4 address were judged as public.
        "::127.0.0.1",
        "::ffff:0:127.0.0.1",
        "::169.254.169.254",
        "64:ff9b::7f00:1",
        "64:ff9b::10.0.0.1",
        "64:ff9b:1::a",
        "2002:7f00:1::",
        "2002:c0a8:101::1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
    ] {
        assert!(forbidden_reason(ip(a)).is_some(), "{a} must be refused");
    }
    assert_eq!(forbidden_reason(ip("::1")), Some("a loopback address"));
    assert_eq!(
        forbidden_reason(ip("::127.0.0.1")),
        Some("a loopback address")
    );
    assert_eq!(
        forbidden_reason(ip("64:ff9b::a9fe:a9fe")),
        Some("a cloud metadata address")
    );
    for a in [
        "8.8.8.8",
        "172.32.0.1",
        "100.128.0.1",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "1.1.1.1",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "::8.8.8.8",
    ] {
        assert_eq!(forbidden_reason(ip(a)), None, "{a} is public");
    }
    assert_eq!(
        forbidden_reason(ip("169.254.169.254")),
        Some("a cloud metadata address")
    );
}

#[test]
fn policy_and_allow_rules() {
    let strict = EgressPolicy::default();
    assert!(
        strict
            .check("localhost", ip("127.0.0.1"), 80)
            .unwrap_err()
            .contains("loopback")
    );
    assert!(
        strict
            .check("example.com", ip("93.184.216.34"), 443)
            .is_ok()
    );
    let open = EgressPolicy {
        allow_private_networks: true,
        allow: vec![],
    };
    assert!(open.check("localhost", ip("127.0.0.1"), 80).is_ok());
    let allow = EgressPolicy {
        allow_private_networks: false,
        allow: vec![
            AllowRule::parse("127.0.0.1:9000").unwrap(),
            AllowRule::parse("10.0.0.0/8").unwrap(),
            AllowRule::parse("hooks.internal:8080").unwrap(),
        ],
    };
    assert!(allow.check("127.0.0.1", ip("127.0.0.1"), 9000).is_ok());
    assert!(
        allow.check("127.0.0.1", ip("127.0.0.1"), 9001).is_err(),
        "host:port allows only that port"
    );
    assert!(allow.check("x", ip("10.200.0.1"), 1).is_ok());
    assert!(
        allow.check("x", ip("::ffff:10.200.0.1"), 1).is_ok(),
        "mapped addresses match IPv4 rules"
    );
    assert!(
        allow
            .check("hooks.internal", ip("192.168.0.5"), 8080)
            .is_ok()
    );
    assert!(
        allow
            .check("other.internal", ip("192.168.0.5"), 8080)
            .is_err()
    );
}

#[test]
fn parsing_rules() {
    assert_eq!(
        AllowRule::parse("[::1]:9000"),
        Ok(AllowRule::HostPort("::1".into(), 9000))
    );
    assert_eq!(
        AllowRule::parse("fd00::/8"),
        Ok(AllowRule::Cidr(ip("fd00::"), 8))
    );
    for bad in ["10.0.0.0/33", "nohost", "host:notaport", ":80", "1.2.3/8"] {
        assert!(AllowRule::parse(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn the_connector_refuses_at_connect_time() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut c = GuardedConnector {
        policy: Arc::new(EgressPolicy::default()),
        connect_timeout: Duration::from_secs(2),
    };
    let uri: Uri = format!("http://localhost:{port}/").parse().unwrap();
    let err = tower_service::Service::call(&mut c, uri.clone())
        .await
        .expect_err("a name resolving to loopback is refused");
    assert!(
        denied_reason(&err).is_some_and(|r| r.contains("loopback")),
        "{err}"
    );
    let mut open = GuardedConnector {
        policy: Arc::new(EgressPolicy {
            allow_private_networks: true,
            allow: vec![],
        }),
        connect_timeout: Duration::from_secs(2),
    };
    assert!(tower_service::Service::call(&mut open, uri).await.is_ok());
}

/// Regression: a numeric spelling of loopback resolves to 127.0.0.1 and is refused, and IPv6
/// literals that reach 127.0.0.1 are refused at connect time too, naming the reason.
#[tokio::test]
async fn every_spelling_of_loopback_is_refused_at_connect_time() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut c = GuardedConnector {
        policy: Arc::new(EgressPolicy::default()),
        connect_timeout: Duration::from_secs(2),
    };
    for host in [
        "127.1",
        "0x7f000001",
        "2130706433",
        "0177.0.0.1",
        "[::127.0.0.1]",
        "[::ffff:127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
    ] {
        let uri: Uri = format!("http://{host}:{port}/").parse().unwrap();
        let err = tower_service::Service::call(&mut c, uri)
            .await
            .expect_err(host);
        assert!(
            denied_reason(&err).is_some_and(|r| r.contains("loopback")),
            "{host}: {err}"
        );
    }
}

#[test]
fn allow_rules_match_every_form_of_their_address() {
    let allow = EgressPolicy {
        allow_private_networks: false,
        allow: vec![AllowRule::parse("127.0.0.1:9000").unwrap()],
    };
    assert!(allow.check("x", ip("::ffff:127.0.0.1"), 9000).is_ok());
    assert!(allow.check("x", ip("::127.0.0.1"), 9000).is_ok());
    assert!(allow.check("x", ip("::ffff:127.0.0.1"), 9001).is_err());
}
