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

/// Draws the dashboard's answer into `dir/<name>.png`: one bar group per row of the first
/// column, one colour per numeric column.
pub fn chart(dir: &Path, dashboard: &Dashboard, table: &ResultTable) -> Result<PathBuf, AnalyticsError> {
    let path = dir.join(format!("{}.png", dashboard.name));
    let shown = path.display().to_string();
    let fail = |e: &dyn std::fmt::Display| AnalyticsError::Chart { path: shown.clone(), message: e.to_string() };
    let text = register_font();
    let series: Vec<usize> = (1..table.columns.len())
        .filter(|&c| table.rows.iter().all(|r| r.get(c).is_some_and(|v| v.parse::<f64>().is_ok())))
        .collect();
    let value = |row: &Vec<String>, c: usize| row[c].parse::<f64>().unwrap_or(0.0);
    let max = table.rows.iter().flat_map(|r| series.iter().map(move |&c| value(r, c))).fold(0.0f64, f64::max);
    let root = BitMapBackend::new(&path, (1000, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let n = table.rows.len().max(1);
    let mut builder = ChartBuilder::on(&root);
    builder.margin(16);
    if text {
        builder.caption(dashboard.title, ("sans-serif", 18)).x_label_area_size(70).y_label_area_size(70);
    }
    let mut chart = builder.build_cartesian_2d(0f64..n as f64, 0f64..(max * 1.1).max(1.0)).map_err(|e| fail(&e))?;
    if text {
        let labels: Vec<String> = table.rows.iter().map(|r| r.first().cloned().unwrap_or_default()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.min(16))
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                labels.get(i).map(|l| l.chars().take(16).collect()).unwrap_or_default()
            })
            .x_label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| fail(&e))?;
    }
    let width = 0.8 / series.len().max(1) as f64;
    for (k, &c) in series.iter().enumerate() {
        let colour = Palette99::pick(k).to_rgba();
        let bars = table.rows.iter().enumerate().map(|(i, r)| {
            let x0 = i as f64 + 0.1 + k as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, value(r, c))], colour.filled())
        });
        let drawn = chart.draw_series(bars).map_err(|e| fail(&e))?;
        if text {
            drawn.label(table.columns[c].clone()).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        }
    }
    if text && !series.is_empty() {
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))?;
    drop(chart);
    drop(root);
    Ok(path)
}
