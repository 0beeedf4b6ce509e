//! `shopflow analytics report`: every dashboard as a text table and one PNG chart each
//! (plotters, bars over the first column; numeric columns after it are the series).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::dashboards::{Dashboard, ResultTable};
use crate::AnalyticsError;

/// Fonts tried for chart text, in order. Charts are drawn without text when none exists.
const FONTS: &[&str] = &["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"];

/// Registers a font for chart text once; false when none could be loaded.
pub fn register_font() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        for path in FONTS {
            if let Ok(bytes) = std::fs::read(path) {
                let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, leaked).is_ok() {
                    return true;
                }
            }
        }
        tracing::warn!("no font found for chart labels; charts are drawn without text");
        false
    })
}

/// The table as aligned text.
pub fn format_table(title: &str, table: &ResultTable) -> String {
    let mut widths: Vec<usize> = table.columns.iter().map(|c| c.chars().count()).collect();
    for row in &table.rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!("## {title}\n\n");
    let line = |cells: &[String], out: &mut String| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "| {} |", padded.join(" | "));
    };
    line(&table.columns, &mut out);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
    for row in &table.rows {
        line(row, &mut out);
    }
    if table.rows.is_empty() {
        out.push_str("(no rows)\n");
    }
    out
}

/// Draws the dashboard's answer into `dir/<name>.png`: one bar per row, labelled with the
/// first column, of the first numeric column after it (the headline value; the table in the
/// report has the rest).
pub fn chart(dir: &Path, dashboard: &Dashboard, table: &ResultTable) -> Result<PathBuf, AnalyticsError> {
    let path = dir.join(format!("{}.png", dashboard.name));
    let shown = path.display().to_string();
    let fail = |e: &dyn std::fmt::Display| AnalyticsError::Chart { path: shown.clone(), message: e.to_string() };
    let text = register_font();
    let column = (1..table.columns.len()).find(|&c| table.rows.iter().all(|r| r.get(c).is_some_and(|v| v.parse::<f64>().is_ok())));
    let values: Vec<f64> = match column {
        Some(c) => table.rows.iter().map(|r| r[c].parse().unwrap_or(0.0)).collect(),
        None => Vec::new(),
    };
    let labels: Vec<String> = table.rows.iter().map(|r| r.first().cloned().unwrap_or_default()).collect();
    let max = values.iter().copied().fold(0.0f64, f64::max);
    let n = values.len().max(1) as u32;
    {
        let root = BitMapBackend::new(&path, (1000, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(16);
        if text {
            let y = column.map(|c| table.columns[c].as_str()).unwrap_or("");
            builder.caption(format!("{} — {y}", dashboard.title), ("sans-serif", 16)).x_label_area_size(60).y_label_area_size(70);
        }
        let mut chart =
            builder.build_cartesian_2d((0u32..n - 1).into_segmented(), 0f64..(max * 1.1).max(1.0)).map_err(|e| fail(&e))?;
        if text {
            // At most ~8 labels (long ones: dates and hours): every k-th bar is named.
            let every = (n as usize).div_ceil(8).max(1);
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n as usize + 1)
                .x_label_formatter(&|x| match x {
                    SegmentValue::CenterOf(i) if (*i as usize).is_multiple_of(every) => {
                        labels.get(*i as usize).map(|l| l.chars().take(18).collect()).unwrap_or_default()
                    }
                    _ => String::new(),
                })
                .x_label_style(("sans-serif", 11))
                .draw()
                .map_err(|e| fail(&e))?;
        }
        let colour = Palette99::pick(0).to_rgba();
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let mut bar = Rectangle::new([(SegmentValue::Exact(i as u32), 0.0), (SegmentValue::Exact(i as u32 + 1), *v)], colour.filled());
                bar.set_margin(0, 0, 3, 3);
                bar
            }))
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(path)
}
