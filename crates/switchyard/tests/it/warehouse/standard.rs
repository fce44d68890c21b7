//! Standard columns (docs/destinations.md#standard-columns): every table of a kind has them from
//! its first event, at Segment's types, even when no event so far carried the field, so models
//! written against Segment's schema run on the first day; tables made before lacking them get them.

use hyper::StatusCode;
use serde_json::json;

use super::{columns, fresh_db, wait_rows, yaml};
use crate::harness::*;

const TS: &str = "timestamp with time zone";

/// Every event table's standard columns.
const EVENT: [(&str, &str); 11] = [
    ("received_at", TS),
    ("sent_at", TS),
    ("original_timestamp", TS),
    ("timestamp", TS),
    ("uuid_ts", TS),
    ("anonymous_id", "text"),
    ("user_id", "text"),
    ("context_ip", "text"),
    ("context_library_name", "text"),
    ("context_library_version", "text"),
    ("context_user_agent", "text"),
];

/// The columns the dbt-segment package's `segment_web_page_views` model reads from `pages`.
const DBT_PAGE_VIEWS: &str = "SELECT id, anonymous_id, user_id, received_at, sent_at, timestamp, \
     url, path, title, search, referrer, context_campaign_source, context_campaign_medium, \
     context_campaign_name, context_campaign_term, context_campaign_content, context_ip, \
     context_user_agent FROM web.pages";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_has_its_standard_columns_from_the_first_event() {
    let Some((url, db, _drop)) = fresh_db().await else {
        return;
    };
    // A table an earlier version made, with only the columns its events had.
    db.batch_execute(
        "CREATE SCHEMA web; CREATE TABLE web.identifies (id varchar(1024) PRIMARY KEY, \
         received_at timestamptz, user_id text)",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(dir.path(), &yaml(dir.path(), &url, &["warehouse"])).await;
    // Bare events: no context, no sentAt, no timestamp, no name, no properties.
    let batch = json!({"batch": [
        {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "s-1"},
        {"type": "identify", "userId": "u1", "messageId": "s-2"},
        {"type": "page", "anonymousId": "a1", "messageId": "s-3"},
        {"type": "screen", "anonymousId": "a1", "messageId": "s-4"},
        {"type": "group", "userId": "u1", "groupId": "g1", "messageId": "s-5"},
        {"type": "alias", "userId": "u1", "previousId": "a1", "messageId": "s-6"}
    ]});
    assert_eq!(app.post_json("/v1/batch", &batch).await.0, StatusCode::OK);
    for table in [
        "tracks",
        "signed_up",
        "identifies",
        "pages",
        "screens",
        "groups",
        "aliases",
    ] {
        wait_rows(&db, &format!("web.{table}"), 1).await;
    }
    wait_rows(&db, "web.users", 1).await;
    app.wait_drained().await;
    let track = [("event", "text"), ("event_text", "text")];
    let page = [
        "name",
        "category",
        "path",
        "referrer",
        "search",
        "title",
        "url",
        "context_page_path",
        "context_page_referrer",
        "context_page_search",
        "context_page_title",
        "context_page_url",
        "context_campaign_source",
        "context_campaign_medium",
        "context_campaign_name",
        "context_campaign_term",
        "context_campaign_content",
    ]
    .map(|c| (c, "text"));
    let tables: [(&str, Vec<(&str, &str)>); 7] = [
        ("tracks", track.to_vec()),
        ("signed_up", track.to_vec()),
        ("identifies", vec![]),
        ("pages", page.to_vec()),
        ("screens", vec![("name", "text"), ("category", "text")]),
        ("groups", vec![("group_id", "text")]),
        ("aliases", vec![("previous_id", "text")]),
    ];
    for (table, extra) in tables {
        let have = columns(&db, table).await;
        for (c, t) in EVENT.iter().chain(&extra) {
            assert!(
                have.contains(&((*c).to_owned(), (*t).to_owned())),
                "web.{table} lacks {c} {t}: {have:?}"
            );
        }
    }
    let users = columns(&db, "users").await;
    for (c, t) in [("received_at", TS), ("uuid_ts", TS)] {
        assert!(users.contains(&(c.to_owned(), t.to_owned())), "{users:?}");
    }
    assert!(
        !users.iter().any(|(c, _)| c == "anonymous_id"),
        "users still has no anonymous_id"
    );
    let rows = db.query(DBT_PAGE_VIEWS, &[]).await;
    assert_eq!(
        rows.map(|r| r.len()).ok(),
        Some(1),
        "dbt-segment's page views"
    );
    // A property that comes later with another type does not change a standard column.
    let later = json!({"batch": [
        {"type": "page", "anonymousId": "a1", "messageId": "s-7",
         "properties": {"title": 42}, "context": {"library": {"name": "x", "version": 2}}}
    ]});
    assert_eq!(app.post_json("/v1/batch", &later).await.0, StatusCode::OK);
    wait_rows(&db, "web.pages", 2).await;
    let r = db
        .query_one(
            "SELECT title, context_library_version FROM web.pages WHERE id = 's-7'",
            &[],
        )
        .await
        .unwrap();
    let got: (String, String) = (r.get(0), r.get(1));
    assert_eq!(got, ("42".to_owned(), "2".to_owned()));
    app.stop().await;
}
