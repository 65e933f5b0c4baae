//! The latency percentile spectrum as an SVG, written by hand: one line
//! per target and operation, latency (ms, linear) over percentile on the
//! classic log scale, x = log10(1 / (1 - p)), so 0, 90, 99, 99.9, ...
//! percent are evenly spaced and the tail gets the room.

use std::fmt::Write as _;

use crate::harness::Latency;

/// One line of the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend's text.
    pub label: String,
    /// `(x, ms)`: x = log10(1 / (1 - p)).
    pub points: Vec<(f64, f64)>,
}

/// Steps per decade of the percentile axis.
const STEPS_PER_NINE: usize = 50;
/// The most nines plotted (99.9999%).
const MAX_NINES: f64 = 6.0;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// Line colours, cycled (colour-blind-safe Okabe-Ito).
const COLOURS: [&str; 8] =
    ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];

/// The spectrum of `latency`: from p0 up to the last percentile its
/// samples resolve (1 - 1/count), ending at the maximum.
pub fn spectrum(latency: &Latency) -> Vec<(f64, f64)> {
    let n = latency.count();
    if n == 0 {
        return Vec::new();
    }
    let last = (n as f64).log10().min(MAX_NINES);
    let steps = (last * STEPS_PER_NINE as f64).ceil() as usize;
    let mut points: Vec<(f64, f64)> = (0..steps)
        .map(|i| {
            let x = i as f64 / STEPS_PER_NINE as f64;
            (x, latency.p(percentile_at(x)) / 1000.0)
        })
        .collect();
    points.push((last, latency.max() / 1000.0));
    points
}

/// The percentile (0 <= p < 1) at `x`: x = log10(1 / (1 - p)).
fn percentile_at(x: f64) -> f64 {
    1.0 - 10f64.powf(-x)
}

/// The SVG document.
pub fn render(title: &str, series: &[Series]) -> String {
    let max_x = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(0.0f64, f64::max);
    let nines = max_x.ceil().clamp(1.0, MAX_NINES) as usize;
    let max_ms = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0f64, f64::max);
    let (y_top, y_step) = nice_axis(max_ms);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + x / nines as f64 * plot_w;
    let py = |ms: f64| TOP + plot_h - ms / y_top * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="25" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );

    // Grid and ticks.
    for i in 0..=nines {
        let x = px(i as f64);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            TOP + plot_h
        );
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + plot_h + 18.0,
            percentile_label(i)
        );
    }
    let ticks = (y_top / y_step).round() as usize;
    for i in 0..=ticks {
        let ms = i as f64 * y_step;
        let y = py(ms);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + 4.0,
            fmt_ms(ms)
        );
    }
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">latency (ms)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );

    // Lines, then the legend over them.
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut points = String::new();
        for &(x, ms) in &s.points {
            let _ = write!(points, "{:.1},{:.1} ", px(x), py(ms));
        }
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
            points.trim_end(),
            escape(&s.label)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{:.1}" y="{:.1}" width="230" height="{:.1}" fill="white" fill-opacity="0.85" stroke="#999"/>"##,
        LEFT + 10.0,
        TOP + 10.0,
        series.len() as f64 * 18.0 + 8.0
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let y = TOP + 24.0 + i as f64 * 18.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="3"/>"#,
            LEFT + 18.0,
            LEFT + 42.0
        );
        let _ =
            writeln!(svg, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, LEFT + 50.0, y + 4.0, escape(&s.label));
    }
    svg.push_str("</svg>\n");
    svg
}

/// `0%`, `90%`, `99%`, `99.9%`, ... for 0, 1, 2, 3, ... nines.
fn percentile_label(nines: usize) -> String {
    match nines {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        n => format!("99.{}%", "9".repeat(n - 2)).replace(".%", "%"),
    }
}

/// A round top for the y axis at or above `max`, and its tick step.
fn nice_axis(max: f64) -> (f64, f64) {
    if !(max.is_finite() && max > 0.0) {
        return (1.0, 0.2);
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil().max(1.0) * step, step)
}

fn fmt_ms(ms: f64) -> String {
    let s = format!("{ms:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Text safe inside an element or attribute.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Checks that every tag of `svg` is closed in order (enough for the
    /// documents written here: no comments, CDATA or `>` in attributes).
    fn assert_well_formed(svg: &str) {
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let close = rest[open..].find('>').expect("unclosed tag") + open;
            let tag = &rest[open + 1..close];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().expect("a tag name"));
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        for (i, _) in svg.match_indices('&') {
            let entity =
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| svg[i..].starts_with(e));
            assert!(entity, "raw & at {i}");
        }
    }

    fn latency(samples_us: impl IntoIterator<Item = u64>) -> Latency {
        let mut l = Latency::new();
        for us in samples_us {
            l.record(Duration::from_micros(us));
        }
        l
    }

    #[test]
    fn percentile_axis_is_log_of_the_tail() {
        for (x, p) in [(0.0, 0.0), (1.0, 0.9), (2.0, 0.99), (3.0, 0.999), (5.0, 0.99999)] {
            assert!((percentile_at(x) - p).abs() < 1e-12, "x {x}: {} vs {p}", percentile_at(x));
        }
        let labels: Vec<String> = (0..6).map(percentile_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
    }

    #[test]
    fn spectrum_climbs_to_the_maximum() {
        // 1..=10,000 µs: the spectrum runs to x = 4 (1 - 1/10^4) and ends at
        // the maximum; p90 (x = 1) is 9 ms.
        let points = spectrum(&latency(1..=10_000));
        assert_eq!(points.first().map(|p| p.0), Some(0.0));
        assert_eq!(points.last().map(|p| p.0), Some(4.0));
        assert!((points.last().unwrap().1 - 10.0).abs() < 0.01);
        let p90 = points.iter().find(|p| (p.0 - 1.0).abs() < 1e-9).unwrap().1;
        assert!((p90 - 9.0).abs() < 0.01, "p90 {p90} ms");
        assert!(points.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "monotonic");
        assert!(spectrum(&Latency::new()).is_empty());
    }

    #[test]
    fn svg_is_well_formed_and_has_every_series() {
        let series = vec![
            Series { label: "etcd update".into(), points: spectrum(&latency((1..=1000).map(|i| i * 3))) },
            Series { label: "ekv <read> & co".into(), points: spectrum(&latency(1..=1000)) },
        ];
        let svg = render("ycsb-a: 2000 ops/s", &series);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">etcd update<"));
        assert!(svg.contains("ekv &lt;read&gt; &amp; co"));
        for label in ["0%", "90%", "99%", "99.9%", "percentile", "latency (ms)", "ycsb-a: 2000 ops/s"] {
            assert!(svg.contains(&format!(">{label}<")), "missing {label}");
        }
        // No empty or NaN coordinates.
        assert!(!svg.contains("NaN") && !svg.contains("inf") && !svg.contains("points=\"\""));

        let empty = render("nothing", &[]);
        assert_well_formed(&empty);
    }

    #[test]
    fn y_axis_is_round() {
        let close = |got: (f64, f64), want: (f64, f64)| {
            assert!((got.0 - want.0).abs() < 1e-9 && (got.1 - want.1).abs() < 1e-9, "{got:?} vs {want:?}");
        };
        close(nice_axis(9.3), (10.0, 2.0));
        close(nice_axis(0.42), (0.5, 0.1));
        close(nice_axis(120.0), (125.0, 25.0));
        close(nice_axis(0.0), (1.0, 0.2));
        assert_eq!(fmt_ms(2.5), "2.5");
        assert_eq!(fmt_ms(10.0), "10");
        assert_eq!(fmt_ms(0.0), "0");
    }
}
