//! Reports: the versioned `report.json` (its types are the `report-format` crate; built here), the Markdown table,
//! the terminal table and summary, and live progress. Each consumes the run's records or events.

pub mod build;
pub mod cell_text;
pub mod diff_view;
pub mod history;
pub mod html;
pub mod html_delivery;
pub mod junit;
pub mod markdown;
pub mod merge;
pub mod outputs;
pub mod progress;
pub mod skipped;
pub mod summary;
pub mod terminal;
pub mod write;
