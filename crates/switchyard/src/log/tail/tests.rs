use std::sync::Mutex;

use super::*;

#[derive(Default)]
struct Shown(Mutex<Vec<Option<String>>>);

impl ShowError for Shown {
    fn show_read_error(&self, error: Option<&str>) {
        self.0.lock().unwrap().push(error.map(str::to_owned));
    }
}

fn tail(committed: watch::Receiver<Committed>) -> (Tail, Arc<Readers>, Arc<Shown>, Counter) {
    let (readers, shown, errors) = (
        Arc::new(Readers::default()),
        Arc::new(Shown::default()),
        Counter::default(),
    );
    let t = Tail::new(TailParts {
        name: "hook".into(),
        log_dir: PathBuf::from("/nonexistent"),
        committed,
        backlog: Gauge::default(),
        read_errors: errors.clone(),
        readers: readers.clone(),
        shown: Some(shown.clone()),
    });
    (t, readers, shown, errors)
}

#[test]
fn failed_reads_back_off_and_are_shown_until_a_read_succeeds() {
    let (_tx, rx) = watch::channel(Committed::default());
    let (t, readers, shown, errors) = tail(rx);
    let waits: Vec<Duration> = (0..12).map(|_| t.read_failed(&"disk on fire")).collect();
    assert_eq!(waits[0], BACKOFF_MIN);
    assert_eq!(waits[1], BACKOFF_MIN * 2);
    assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
    assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
    assert_eq!(errors.get(), 12);
    let failing = readers.failing();
    assert!(failing["hook"].starts_with(READ_FAILED), "{failing:?}");
    assert!(failing["hook"].contains("disk on fire"));

    t.read_ok();
    assert!(readers.failing().is_empty());
    assert_eq!(shown.0.lock().unwrap().last(), Some(&None));
    // The next failure starts from the shortest wait again.
    assert_eq!(t.read_failed(&"again"), BACKOFF_MIN);
}

#[test]
fn a_good_read_with_nothing_failing_clears_nothing() {
    let (_tx, rx) = watch::channel(Committed::default());
    let (t, _readers, shown, _) = tail(rx);
    t.read_ok();
    assert!(shown.0.lock().unwrap().is_empty());
}

#[test]
fn the_gauge_counts_committed_records_not_passed() {
    let (tx, rx) = watch::channel(Committed::default());
    let (t, ..) = tail(rx);
    tx.send_modify(|c| c.next_seq = 50);
    t.gauge(20);
    assert_eq!(t.backlog.get(), 30);
    t.gauge(80);
    assert_eq!(t.backlog.get(), 0);
}

#[tokio::test]
async fn waiting_ends_on_new_records_a_wake_up_or_cancellation() {
    let (tx, rx) = watch::channel(Committed::default());
    let (mut t, ..) = tail(rx);
    let cancel = CancellationToken::new();
    let at = Position::default();
    let waiter = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let w = t.wait_past(at, None, &cancel).await;
            (t, w)
        })
    };
    tx.send_modify(|c| c.end.offset = 100);
    let (mut t, w) = waiter.await.unwrap();
    assert_eq!(w, Wait::Ready);

    let wake = Notify::new();
    wake.notify_one();
    let at = t.committed().end;
    assert_eq!(t.wait_past(at, Some(&wake), &cancel).await, Wait::Ready);

    cancel.cancel();
    assert_eq!(t.wait_past(at, None, &cancel).await, Wait::Cancelled);
}
