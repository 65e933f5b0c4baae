//! Placeholder for the WAL suite; the real one replaces this file.

use crate::harness::{Machine, Report};

/// Runs the WAL suite.
pub fn run(opts: &crate::Opts) -> Result<Report, Box<dyn std::error::Error>> {
    let mut report = Report::new("wal", Machine::detect(opts.dir.as_deref()));
    report.note("wal suite missing");
    Ok(report)
}
