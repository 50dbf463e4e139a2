//! The published report reads back with this crate alone, and writes back to the same data.

use report_format::Report;

#[test]
fn the_published_report_reads_back() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../results/report.json");
    let text = std::fs::read_to_string(path).expect("results/report.json is committed");
    let report: Report = serde_json::from_str(&text).expect("report.json parses with report-format");
    assert!(!report.cells.is_empty());
    let again: Report = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(again, report);
}
