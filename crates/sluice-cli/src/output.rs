//! Terminal output: progress bars, tables and run summaries.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use sluice_engine::{PlanCounts, Progress, RunReport};

/// Whether progress may be drawn: only when a person is watching a terminal.
pub fn interactive() -> bool {
    std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// A progress bar on stderr: a spinner while the model is read, then a bar while changes
/// are delivered.
pub struct TerminalProgress {
    bar: Mutex<ProgressBar>,
}

impl TerminalProgress {
    /// A spinner labelled with the sync's name.
    pub fn new(sync: &str) -> TerminalProgress {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix}: {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(sync.to_string());
        bar.set_message("reading the model");
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        TerminalProgress { bar: Mutex::new(bar) }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.lock().unwrap_or_else(|p| p.into_inner()).finish_and_clear();
    }
}

impl Progress for TerminalProgress {
    fn scanned(&self, rows: u64) {
        self.bar.lock().unwrap_or_else(|p| p.into_inner()).set_message(format!("read {rows} rows"));
    }

    fn planned(&self, counts: &PlanCounts) {
        let bar = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        bar.set_length(counts.changes());
        bar.set_position(0);
        if let Ok(style) = ProgressStyle::with_template("{prefix}: [{bar:30}] {pos}/{len} changes ({per_sec}, {eta})") {
            bar.set_style(style.progress_chars("=> "));
        }
    }

    fn delivered(&self, changes: u64) {
        self.bar.lock().unwrap_or_else(|p| p.into_inner()).set_position(changes);
    }
}

/// Prints rows as an aligned text table.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// Shortens a cell for table display.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max.saturating_sub(1)).collect::<String>())
    }
}

/// One line of human summary for a finished run.
pub fn summary(report: &RunReport) -> String {
    let counts = &report.counts;
    let mut text = format!(
        "{}: run {} {} in {:.1}s: {} inserted, {} updated, {} deleted, {} rejected",
        report.sync,
        report.run_id,
        report.status,
        report.duration.as_secs_f64(),
        counts.inserted,
        counts.updated,
        counts.deleted,
        counts.rejected
    );
    if counts.retryable > 0 {
        text.push_str(&format!(", {} to retry", counts.retryable));
    }
    text.push_str(&format!(" ({} unchanged", report.plan.unchanged));
    if report.plan.skipped > 0 {
        text.push_str(&format!(", {} skipped by the mode", report.plan.skipped));
    }
    text.push(')');
    if report.snapshot_reset {
        text.push_str("\n  note: the destination changed since the last run, so every record was sent again");
    }
    if counts.rejected + counts.retryable > 0 {
        text.push_str(&format!("\n  see why: sluice runs show {}", report.run_id));
    }
    if let Some(error) = &report.error {
        text.push_str(&format!("\n  error: {error}"));
    }
    text
}
