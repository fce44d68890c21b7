//! Replay from the log into the warehouse (`destinations/replay.rs` has the run's state):
//! one batch at a time between live batches, read like a live batch but only the records the
//! replay window holds, loaded through the same path. Rows are keyed by `id` and a row already
//! there is left alone (`ON CONFLICT`), so a replay adds no duplicate rows.

use tokio_postgres::Client;

use super::read::read_batch;
use super::runner::WarehouseWorker;
use super::schema::SchemaCache;
use crate::cursor::CursorState;
use crate::destinations::DestinationStatus;
use crate::destinations::replay::LogReplay;

impl WarehouseWorker {
    /// Loads the replay's next batch and saves its progress. `Ok(true)` when it is finished;
    /// an error says why the batch must be tried again.
    pub(super) async fn replay_step(
        &self,
        replay: &mut LogReplay,
        client: &mut Option<Client>,
        cache: &SchemaCache,
        status: &DestinationStatus,
    ) -> Result<bool, String> {
        let from = CursorState {
            position: replay.state.position,
            next_seq: 0,
            done: Vec::new(),
        };
        let (dir, dest, c) = (
            self.tail.log_dir().to_path_buf(),
            self.dest.clone(),
            cache.clone(),
        );
        let (limit, window) = (self.settings.batch_rows, replay.window());
        let end = self.tail.committed().end;
        let batch = tokio::task::spawn_blocking(move || {
            read_batch(&dir, &dest, from, end, limit, &c, Some(window))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("reading the log: {e}"))?;
        // Records this replay could not read were dead-lettered when the live cursor met them.
        let (events, next, last_seq) = (batch.events, batch.next.position, batch.last_seq);
        self.load(client, cache, batch.schemas)
            .await
            .map_err(|e| format!("loading into Postgres: {e}"))?;
        replay
            .advance(last_seq, next, events as u64, status)
            .map_err(|e| format!("saving the replay's progress: {e}"))
    }
}
