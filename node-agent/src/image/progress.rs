//! A pull's progress for whoever watches it from elsewhere (the agent API's
//! `Pull` stream, and through it `berth pull`'s bars): the pull sends events
//! on a channel, `PullTracker` folds them into one row per layer.

use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::ProgressBar;
use serde::Serialize;

use super::digest::Digest;

/// Where a layer is in its pull.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum LayerState {
    #[default]
    Waiting,
    Downloading,
    /// The store had the blob already.
    Exists,
    Unpacking,
    Done,
    Failed,
}

/// What a pull reports, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullEvent {
    /// The image's layers (digest, size), bottom first: sent once, before any other.
    Layers(Vec<(Digest, u64)>),
    /// Bytes of layer `layer` (an index into `Layers`) downloaded so far.
    Bytes {
        layer: usize,
        done: u64,
    },
    State {
        layer: usize,
        state: LayerState,
    },
}

/// The sending half `PullOptions::progress_to` holds.
pub type PullProgress = tokio::sync::mpsc::UnboundedSender<PullEvent>;

/// One layer's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerRow {
    pub digest: Digest,
    pub done: u64,
    pub total: u64,
    pub state: LayerState,
}

/// The rows of every layer, as the events so far make them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullTracker {
    pub layers: Vec<LayerRow>,
}

impl PullTracker {
    /// Applies one event; an index the layer list lacks is ignored.
    pub fn apply(&mut self, event: PullEvent) {
        match event {
            PullEvent::Layers(layers) => {
                self.layers = layers
                    .into_iter()
                    .map(|(digest, total)| LayerRow {
                        digest,
                        done: 0,
                        total,
                        state: LayerState::Waiting,
                    })
                    .collect();
            }
            PullEvent::Bytes { layer, done } => {
                if let Some(row) = self.layers.get_mut(layer) {
                    row.done = done.min(row.total);
                    row.state = LayerState::Downloading;
                }
            }
            PullEvent::State { layer, state } => {
                if let Some(row) = self.layers.get_mut(layer) {
                    if matches!(state, LayerState::Exists | LayerState::Done) {
                        row.done = row.total;
                    }
                    row.state = state;
                }
            }
        }
    }
}

/// One layer's reporting during a pull: the local bar (hidden unless the
/// pull draws on a terminal) and the events for a remote watcher.
pub(super) struct LayerReport {
    pub bar: ProgressBar,
    pub sink: Option<PullProgress>,
    pub index: usize,
    done: AtomicU64,
}

impl LayerReport {
    pub fn new(bar: ProgressBar, sink: Option<PullProgress>, index: usize) -> LayerReport {
        LayerReport {
            bar,
            sink,
            index,
            done: AtomicU64::new(0),
        }
    }

    /// `n` more bytes downloaded.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        self.send(PullEvent::Bytes {
            layer: self.index,
            done,
        });
    }

    pub fn state(&self, state: LayerState) {
        match state {
            LayerState::Exists => {
                self.bar.set_position(self.bar.length().unwrap_or(0));
                self.bar.set_message("already there");
            }
            LayerState::Unpacking => self.bar.set_message("unpacking"),
            LayerState::Done => self.bar.finish_with_message("done"),
            LayerState::Failed => self.bar.finish_with_message("failed"),
            LayerState::Waiting | LayerState::Downloading => {}
        }
        self.send(PullEvent::State {
            layer: self.index,
            state,
        });
    }

    fn send(&self, event: PullEvent) {
        if let Some(sink) = &self.sink {
            // A watcher that left does not stop the pull.
            let _ = sink.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fold_into_one_row_per_layer() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let mut t = PullTracker::default();
        // Before the list, an event has no row to land in.
        t.apply(PullEvent::Bytes { layer: 0, done: 5 });
        assert!(t.layers.is_empty());
        t.apply(PullEvent::Layers(vec![(a.clone(), 100), (b.clone(), 10)]));
        t.apply(PullEvent::Bytes { layer: 0, done: 40 });
        t.apply(PullEvent::State {
            layer: 1,
            state: LayerState::Exists,
        });
        t.apply(PullEvent::Bytes { layer: 7, done: 1 });
        assert_eq!(
            t.layers,
            vec![
                LayerRow {
                    digest: a.clone(),
                    done: 40,
                    total: 100,
                    state: LayerState::Downloading
                },
                LayerRow {
                    digest: b,
                    done: 10,
                    total: 10,
                    state: LayerState::Exists
                },
            ]
        );
        // More bytes than the blob claims never show more than all of it.
        t.apply(PullEvent::Bytes {
            layer: 0,
            done: 500,
        });
        t.apply(PullEvent::State {
            layer: 0,
            state: LayerState::Unpacking,
        });
        assert_eq!(
            (t.layers[0].done, t.layers[0].state),
            (100, LayerState::Unpacking)
        );
        t.apply(PullEvent::State {
            layer: 0,
            state: LayerState::Done,
        });
        assert_eq!(t.layers[0].state, LayerState::Done);
    }
}
