//! The loss-curve plot written next to each model: a small hand-written SVG (one polyline,
//! axes, a few ticks), so the model store needs no plotting dependency and the file opens in
//! any browser.

use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// An SVG line chart of `loss[i]` against iteration `i` (index 0 = after initialisation).
/// The y axis is logarithmic when every value is positive and they span more than a decade,
/// since NMF losses fall fast first and slowly afterwards; otherwise linear. Non-finite
/// values are left out of the line.
pub fn loss_curve_svg(loss: &[f64], title: &str) -> String {
    let points: Vec<(usize, f64)> = loss.iter().copied().enumerate().filter(|(_, v)| v.is_finite()).collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
"#,
        W / 2.0,
        escape(title)
    );
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    let _ = writeln!(
        svg,
        r##"<path d="M{x0},{y1} L{x0},{y0} L{x1},{y0}" fill="none" stroke="#333" stroke-width="1"/>"##
    );
    let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">iteration</text>"#, (x0 + x1) / 2.0, H - 12.0);
    if points.is_empty() {
        let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">no loss values</text>"#, W / 2.0, H / 2.0);
        svg.push_str("</svg>\n");
        return svg;
    }

    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let log = lo > 0.0 && hi / lo > 10.0;
    let f = |v: f64| if log { v.log10() } else { v };
    let (mut fl, mut fh) = (f(lo), f(hi));
    if fh - fl < 1e-12 {
        // A flat curve: give it some room instead of dividing by zero.
        let pad = if fl == 0.0 { 1.0 } else { fl.abs() * 0.05 };
        fl -= pad;
        fh += pad;
    }
    let last_iter = points.last().map(|p| p.0).unwrap_or(0).max(1) as f64;
    let sx = |i: usize| x0 + (x1 - x0) * i as f64 / last_iter;
    let sy = |v: f64| y0 - (y0 - y1) * (f(v) - fl) / (fh - fl);

    // y ticks: 5 evenly spaced in the (possibly log) scale, labelled with the real value.
    for t in 0..=4 {
        let fv = fl + (fh - fl) * t as f64 / 4.0;
        let v = if log { 10f64.powf(fv) } else { fv };
        let y = y0 - (y0 - y1) * t as f64 / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{}" y1="{y:.1}" x2="{x0}" y2="{y:.1}" stroke="#333"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 5.0,
            x0 - 8.0,
            y + 4.0,
            format_value(v)
        );
    }
    for t in 0..=4 {
        let i = (last_iter * t as f64 / 4.0).round() as usize;
        let x = sx(i);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{}" stroke="#333"/><text x="{x:.1}" y="{}" text-anchor="middle">{i}</text>"##,
            y0 + 5.0,
            y0 + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">loss{}</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        if log { " (log scale)" } else { "" }
    );
    let mut d = String::new();
    for (n, (i, v)) in points.iter().enumerate() {
        let _ = write!(d, "{}{:.2},{:.2}", if n == 0 { "M" } else { " L" }, sx(*i), sy(*v));
    }
    let _ = writeln!(svg, r##"<path class="loss" d="{d}" fill="none" stroke="#1f77b4" stroke-width="2"/>"##);
    svg.push_str("</svg>\n");
    svg
}

fn format_value(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_a_decreasing_curve_on_a_log_axis() {
        let loss: Vec<f64> = (0..50).map(|i| 1000.0 / (1.0 + i as f64)).collect();
        let svg = loss_curve_svg(&loss, "rank 8 <test>");
        assert!(svg.starts_with("<?xml"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("(log scale)"));
        assert!(svg.contains("rank 8 &lt;test&gt;"));
        let line = svg.lines().find(|l| l.contains(r#"class="loss""#)).unwrap();
        assert_eq!(line.matches('L').count(), 49);
    }

    #[test]
    fn flat_empty_and_non_finite_curves_do_not_break_it() {
        assert!(loss_curve_svg(&[], "x").contains("no loss values"));
        let flat = loss_curve_svg(&[2.0, 2.0, 2.0], "x");
        assert!(!flat.contains("NaN") && !flat.contains("inf"));
        let holes = loss_curve_svg(&[3.0, f64::NAN, 1.0, f64::INFINITY], "x");
        assert!(!holes.contains("NaN") && !holes.contains("inf"));
    }
}
