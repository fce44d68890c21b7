//! Building, signing and classifying Webhooks (Actions) requests.

use super::*;
use crate::delivery::store::Request;

fn resp(status: u16) -> Result<Response, SendError> {
    Ok(Response {
        status,
        body_prefix: String::new(),
        retry_after: None,
        location: None,
    })
}

#[test]
fn failure_classes() {
    assert_eq!(classify(&resp(204)), Outcome::Delivered);
    for s in [408, 423, 429, 500, 502, 503, 504, 505, 599] {
        assert!(
            matches!(classify(&resp(s)), Outcome::Retry { .. }),
            "{s} retries"
        );
    }
    for s in [301, 400, 401, 403, 404, 410, 413, 422, 501] {
        assert!(
            matches!(classify(&resp(s)), Outcome::Permanent(_)),
            "{s} is permanent"
        );
    }
    assert!(matches!(
        classify(&Err(SendError::Timeout)),
        Outcome::Retry { .. }
    ));
    assert!(matches!(
        classify(&Err(SendError::Egress("no".into()))),
        Outcome::Permanent(_)
    ));
}

#[test]
fn signatures_per_attempt() {
    let http = HttpRequest {
        url: "u".into(),
        method: "POST".into(),
        headers: vec![],
        body: r#"{"cool":true}"#.into(),
        signed: r#"{"cool":true}"#.into(),
    };
    let p = Pending {
        id: 1,
        seq: 1,
        source: "web".into(),
        message_id: "m-1".into(),
        mapping: "Send".into(),
        received_ms: 0,
        request: Request::Http(http.clone()),
        attempts: 0,
        next_at_ms: 0,
        last_status: None,
        last_error: None,
        members: Vec::new(),
    };
    let h = attempt_headers(&p, &http, &Signing::Segment("abc123".into()), "knock", 0);
    assert_eq!(
        h,
        vec![(
            "x-signature".to_owned(),
            "5099cab379b3be52908387457007040cc934ef86".to_owned()
        )]
    );
    let key =
        crate::signing::StandardWebhooks::from_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
            .unwrap();
    let h = attempt_headers(
        &p,
        &http,
        &Signing::StandardWebhooks(key.clone()),
        "knock",
        1_649_367_553_000,
    );
    let get = |k: &str| {
        h.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(
        get("webhook-id"),
        crate::signing::webhook_id("web", "m-1", "knock", "Send")
    );
    assert_eq!(get("webhook-timestamp"), "1649367553");
    assert!(
        key.verify(
            &get("webhook-id"),
            &get("webhook-timestamp"),
            http.body.as_bytes(),
            &get("webhook-signature"),
            1_649_367_553
        )
        .is_ok()
    );
}
