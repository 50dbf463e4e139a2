//! The stages wired together: the runner's events pass through the judging stage (evidence →
//! outcome → verdict) on their way to the reporters, and the judged cells are collected.

use crate::judge::{CellRecord, Judge};
use crate::runner::Event;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Judge every [`Event::CellRan`] into an [`Event::CellFinished`], forward every event to
/// `reporters`, and return the judged cells sorted by id once the runner's channel closes.
pub async fn judging(
    mut from_runner: mpsc::UnboundedReceiver<Event>,
    judge: Arc<Judge>,
    reporters: mpsc::UnboundedSender<Event>,
) -> Vec<CellRecord> {
    let mut records = Vec::new();
    while let Some(event) = from_runner.recv().await {
        match event {
            Event::CellRan(run) => {
                let record = judge.record(*run);
                let _ = reporters.send(Event::CellFinished(Box::new(record.clone())));
                records.push(record);
            }
            other => {
                let _ = reporters.send(other);
            }
        }
    }
    records.sort_by(|a, b| a.id.cmp(&b.id));
    records
}
