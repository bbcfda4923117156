//! The progress views share one stderr: the agent image build and the proxy
//! image pull run at the same time, and two bars drawing on their own would
//! overwrite each other. Every view is added here, and the printer writes
//! its lines through [`above`].

use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(MultiProgress::new)
}

/// A one-line spinner view `{spinner} PREFIX [elapsed] message`, drawn with
/// the other views. Cleared and removed when dropped.
pub struct Line {
    bar: ProgressBar,
}

impl Line {
    pub(super) fn new(prefix: impl Into<String>) -> Self {
        let bar = bars().add(ProgressBar::new_spinner());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
        {
            bar.set_style(style);
        }
        bar.set_prefix(prefix.into());
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar }
    }

    pub fn set_message(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        bars().remove(&self.bar);
    }
}

/// Runs `write` (which writes to stderr) with the views hidden, so its text
/// lands above them.
pub(super) fn above(write: impl FnOnce()) {
    bars().suspend(write);
}
