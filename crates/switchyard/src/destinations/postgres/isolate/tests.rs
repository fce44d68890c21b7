use std::collections::BTreeSet;

use super::*;
use crate::destinations::postgres::load::copy_field;

#[derive(Debug, PartialEq)]
enum Fake {
    Refused(usize),
    Down,
}

/// Bisects `n` rows of which `bad` fail; `down_after` attempts, the connection "drops".
async fn run(
    n: usize,
    bad: &BTreeSet<usize>,
    down_after: usize,
) -> (Result<Vec<usize>, Fake>, usize) {
    let mut attempts = 0;
    let result = bisect(
        n,
        Fake::Refused(0),
        |e| matches!(e, Fake::Refused(_)),
        |r: Range<usize>| {
            attempts += 1;
            let outcome = if attempts > down_after {
                Err(Fake::Down)
            } else {
                match r.clone().find(|i| bad.contains(i)) {
                    Some(i) => Ok(Err(Fake::Refused(i))),
                    None => Ok(Ok(())),
                }
            };
            async move { outcome }
        },
    )
    .await;
    let found = result.map(|v| {
        v.into_iter()
            .map(|(i, e)| {
                assert_eq!(e, Fake::Refused(i), "each row keeps its own error");
                i
            })
            .collect()
    });
    (found, attempts)
}

#[tokio::test]
async fn one_bad_row_in_ten_thousand_costs_a_few_dozen_attempts() {
    for bad in [0, 4321, 9999] {
        let set = BTreeSet::from([bad]);
        let (found, attempts) = run(10_000, &set, usize::MAX).await;
        assert_eq!(found, Ok(vec![bad]));
        // log2(10,000 / 4) ≈ 11.3 levels, at most 2 attempts each, then 4 single rows.
        assert!(attempts <= 2 * 12 + 4, "{attempts} attempts for row {bad}");
    }
}

#[tokio::test]
async fn a_batch_where_every_row_fails_finishes() {
    let all: BTreeSet<usize> = (0..10_000).collect();
    let (found, attempts) = run(10_000, &all, usize::MAX).await;
    assert_eq!(found, Ok((0..10_000).collect::<Vec<_>>()));
    assert!(attempts <= 18_000, "{attempts} attempts");
    let some: BTreeSet<usize> = [3, 4, 5, 700, 701, 999].into();
    let (found, _) = run(1000, &some, usize::MAX).await;
    assert_eq!(found, Ok(some.into_iter().collect::<Vec<_>>()));
}

#[tokio::test]
async fn a_single_row_and_a_broken_connection() {
    let (found, attempts) = run(1, &BTreeSet::from([0]), usize::MAX).await;
    assert_eq!(
        (found, attempts),
        (Ok(vec![0]), 0),
        "the first error is the row's"
    );
    let (found, _) = run(100, &BTreeSet::from([50]), 3).await;
    assert_eq!(found, Err(Fake::Down), "anything else ends the search");
}

#[test]
fn copy_lines_read_back_into_fields() {
    let mut text = String::new();
    for row in [[Some("id-1"), Some("a\tb\\c\nd\re")], [Some("id-2"), None]] {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                text.push('\t');
            }
            copy_field(&mut text, *v);
        }
        text.push('\n');
    }
    let data = text.as_bytes();
    let ranges = lines(data);
    assert_eq!(ranges.len(), 2);
    assert_eq!(
        fields(&data[ranges[0].clone()]),
        [Some("id-1".to_owned()), Some("a\tb\\c\nd\re".to_owned())]
    );
    assert_eq!(
        fields(&data[ranges[1].clone()]),
        [Some("id-2".to_owned()), None]
    );
    assert_eq!(lines(b"x\ny"), [0..2, 2..3]);
}

#[test]
fn only_data_constraint_and_limit_errors_are_the_rows_fault() {
    // tokio_postgres errors cannot be built here; the classes are checked through SqlState.
    for (code, rows) in [
        (SqlState::CHECK_VIOLATION, true),
        (SqlState::STRING_DATA_RIGHT_TRUNCATION, true),
        (SqlState::CHARACTER_NOT_IN_REPERTOIRE, true),
        (SqlState::PROGRAM_LIMIT_EXCEEDED, true),
        (SqlState::CARDINALITY_VIOLATION, true),
        (SqlState::T_R_SERIALIZATION_FAILURE, false),
        (SqlState::ADMIN_SHUTDOWN, false),
        (SqlState::UNDEFINED_TABLE, false),
        (SqlState::INSUFFICIENT_PRIVILEGE, false),
        (SqlState::CONNECTION_FAILURE, false),
        (SqlState::DISK_FULL, false),
    ] {
        assert_eq!(class_refuses_rows(code.code()), rows, "{}", code.code());
    }
}

#[test]
fn users_upsert_keeps_older_traits_and_respects_order() {
    let cols: Vec<String> = ["id", "received_at", "plan"]
        .into_iter()
        .map(String::from)
        .collect();
    let sql = insert_sql("web", "users", "_sy_stage", &cols, true);
    assert!(
        sql.contains(
            "ON CONFLICT (id) DO UPDATE SET \"received_at\" = COALESCE(EXCLUDED.\"received_at\""
        ),
        "{sql}"
    );
    assert!(
        sql.contains("EXCLUDED.received_at >= \"web\".\"users\".received_at"),
        "{sql}"
    );
    let plain = insert_sql("web", "tracks", "s", &cols, false);
    assert!(
        plain.ends_with("ON CONFLICT (id) DO NOTHING")
            && plain.contains("SELECT \"id\", \"received_at\", \"plan\" FROM s"),
        "{plain}"
    );
}
