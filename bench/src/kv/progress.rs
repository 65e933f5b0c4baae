//! The progress line on stderr: a bar redrawn in place about once a second
//! while a phase runs. Off when stderr is not a terminal or the report is
//! JSON, so logs and pipes get nothing.

use std::io::{IsTerminal, Write};

/// Width of the bar, in characters.
const BAR: usize = 30;

/// Where progress goes.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Progress on stderr, unless `json` or stderr is not a terminal.
    pub fn for_stderr(json: bool) -> Self {
        Self { enabled: !json && std::io::stderr().is_terminal() }
    }

    /// No progress at all.
    #[cfg(test)]
    pub fn off() -> Self {
        Self { enabled: false }
    }

    /// Redraws the line: `label`, a bar filled to `fraction` and `detail`.
    pub fn show(&self, label: &str, fraction: f64, detail: &str) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            // \r back to the start, \x1b[K clears what a longer line left.
            let _ = write!(err, "\r{label} {} {detail}\x1b[K", bar(fraction));
            let _ = err.flush();
        }
    }

    /// Clears the line, before the report or a message.
    pub fn clear(&self) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

/// `[=======>      ]` filled to `fraction` (clamped to 0..=1).
pub fn bar(fraction: f64) -> String {
    let fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
    let filled = (fraction * BAR as f64).round() as usize;
    let mut s = String::with_capacity(BAR + 2);
    s.push('[');
    for i in 0..BAR {
        s.push(match i.cmp(&filled) {
            std::cmp::Ordering::Less => '=',
            std::cmp::Ordering::Equal => '>',
            std::cmp::Ordering::Greater => ' ',
        });
    }
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_fills_in_proportion() {
        assert_eq!(bar(0.0), format!("[>{}]", " ".repeat(BAR - 1)));
        assert_eq!(bar(0.5), format!("[{}>{}]", "=".repeat(15), " ".repeat(14)));
        assert_eq!(bar(1.0), format!("[{}]", "=".repeat(BAR)));
        assert_eq!(bar(7.0), bar(1.0));
        assert_eq!(bar(f64::NAN), bar(0.0));
    }
}
