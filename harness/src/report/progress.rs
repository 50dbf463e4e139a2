//! Live progress while a run goes: a bar on a terminal, one line per finished cell otherwise.
//! Written to stderr, so stdout keeps the table or the JSON.

use crate::runner::Event;
use indicatif::{ProgressBar, ProgressStyle};
use report_format::Availability;
use std::io::IsTerminal;

/// Consumes the runner's events.
pub struct Progress {
    bar: Option<ProgressBar>,
    done: usize,
    total: usize,
    quiet: bool,
}

impl Progress {
    /// `quiet` prints nothing (e.g. `--format json` into a pipe still gets no noise on stdout;
    /// progress is on stderr either way).
    pub fn new(quiet: bool) -> Progress {
        Progress { bar: None, done: 0, total: 0, quiet }
    }

    pub fn on_event(&mut self, event: &Event) {
        if self.quiet {
            return;
        }
        match event {
            Event::RunStarted { cells } => {
                self.total = *cells;
                if std::io::stderr().is_terminal() {
                    let bar = ProgressBar::new(*cells as u64);
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} [{pos}/{len}] {elapsed_precise} {wide_msg}")
                            .expect("a valid template"),
                    );
                    self.bar = Some(bar);
                }
            }
            Event::StackResolved { id, availability } => {
                let line = match availability {
                    Availability::Ready => return,
                    Availability::Skipped(why) => format!("client {id}: skipped ({why})"),
                    Availability::Unsupported(why) => format!("client {id}: unsupported ({why})"),
                    Availability::Rejected(why) | Availability::Broken(why) => format!("client {id}: BROKEN ({why})"),
                };
                self.line(&line);
            }
            Event::ServerStarted { .. } => {}
            Event::ServerNotStarted { id, why } => {
                let line = match why {
                    Availability::Ready => return,
                    Availability::Skipped(why) => format!("server {id}: skipped ({why})"),
                    Availability::Unsupported(why) => format!("server {id}: unsupported ({why})"),
                    Availability::Rejected(why) => format!("server {id}: refused its own configuration ({why})"),
                    Availability::Broken(why) => format!("server {id}: DID NOT START ({why})"),
                };
                self.line(&line);
            }
            Event::CellRan(_) => {}
            Event::CellStarted { id } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(id.to_string());
                }
            }
            Event::CellFinished(record) => {
                self.done += 1;
                let mark = if record.verdict.is_as_expected() { "" } else { " (!)" };
                let line = format!(
                    "[{}/{}] {} {}{} ({} ms)",
                    self.done,
                    self.total,
                    record.id,
                    record.outcome.label(),
                    mark,
                    record.duration.as_millis()
                );
                match &self.bar {
                    Some(bar) => {
                        bar.inc(1);
                        if !record.verdict.is_as_expected() {
                            bar.println(line);
                        }
                    }
                    None => eprintln!("{line}"),
                }
            }
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
