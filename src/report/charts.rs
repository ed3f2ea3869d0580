//! The report's charts, rendered in Rust with plotters to PNG.
//!
//! Text is drawn with WenQuanYi Micro Hei (Apache-2.0, `reports/fonts/`), compiled into the
//! binary: it has Latin and CJK glyphs, so Chinese labels never turn into boxes, whatever fonts
//! the machine has. Images are drawn at twice the size they are shown (retina mail clients).

use std::path::Path;
use std::sync::Once;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

const FONT: &[u8] = include_bytes!("../../reports/fonts/wqy-microhei.ttf");
const FAMILY: &str = "pulse-sans";

/// Chart size in pixels (shown at half this width in the email).
const WIDTH: u32 = 1200;

const BLUE: RGBColor = RGBColor(37, 99, 235);
const GREY: RGBColor = RGBColor(156, 163, 175);
const INK: RGBColor = RGBColor(31, 41, 55);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the embedded chart font could not be loaded; charts have no text");
        }
    });
}

fn chart_error(e: impl std::fmt::Display) -> Error {
    // plotters' errors borrow the drawing backend's types: keep their message.
    Error::Chart(e.to_string().into())
}

/// Horizontal bars: one per `(label, value)`, the value printed at the end of each bar.
pub fn bars(path: &Path, title: &str, rows: &[(String, i64)]) -> Result<()> {
    register_font();
    let height = 120 + 56 * rows.len().max(1) as u32;
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    // Room after the longest bar for its value.
    let x_max = max + max / 6 + 1;
    let n = rows.len().max(1) as i32;
    let mut chart = ChartBuilder::on(&root)
        .margin(24)
        .caption(title, (FAMILY, 40).into_font().color(&INK))
        .x_label_area_size(0)
        .y_label_area_size(260)
        .build_cartesian_2d(0..x_max, (0..n - 1).into_segmented())
        .map_err(chart_error)?;
    let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_y_mesh()
        .disable_x_axis()
        .y_labels(rows.len().max(1))
        .y_label_style((FAMILY, 30).into_font().color(&INK))
        .y_label_formatter(&|v: &SegmentValue<i32>| match v {
            // Segment i is drawn top-down: the first row at the top.
            SegmentValue::CenterOf(i) => labels
                .get((n - 1 - i) as usize)
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(chart_error)?;
    for (i, (_, value)) in rows.iter().enumerate() {
        let slot = n - 1 - i as i32;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [
                    (0, SegmentValue::Exact(slot)),
                    (*value, SegmentValue::Exact(slot + 1)),
                ],
                BLUE.filled(),
            )))
            .map_err(chart_error)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!(" {value}"),
                (*value, SegmentValue::CenterOf(slot)),
                (FAMILY, 30)
                    .into_font()
                    .color(&INK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )))
            .map_err(chart_error)?;
    }
    root.present().map_err(chart_error)?;
    Ok(())
}

/// Members active per day: the earlier window in grey, the current one in blue.
/// `labels` are the x-axis labels for each point (a short date).
pub fn daily_line(
    path: &Path,
    title: &str,
    legend: (&str, &str),
    labels: &[String],
    values: &[i64],
    split: usize,
) -> Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (WIDTH, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let n = values.len().max(2);
    let mut chart = ChartBuilder::on(&root)
        .margin(24)
        .caption(title, (FAMILY, 40).into_font().color(&INK))
        .x_label_area_size(56)
        .y_label_area_size(90)
        .build_cartesian_2d(0..n - 1, 0..max + max / 10 + 1)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .bold_line_style(RGBColor(229, 231, 235))
        .light_line_style(TRANSPARENT)
        .x_labels(7)
        .x_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
        .label_style((FAMILY, 26).into_font().color(&INK))
        .draw()
        .map_err(chart_error)?;
    let previous: Vec<(usize, i64)> = values[..split.min(values.len())]
        .iter()
        .copied()
        .enumerate()
        .collect();
    let current: Vec<(usize, i64)> = values
        .iter()
        .copied()
        .enumerate()
        .skip(split.saturating_sub(1))
        .collect();
    chart
        .draw_series(LineSeries::new(previous, GREY.stroke_width(4)))
        .map_err(chart_error)?
        .label(legend.0)
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 30, y)], GREY.stroke_width(4)));
    chart
        .draw_series(LineSeries::new(current, BLUE.stroke_width(4)))
        .map_err(chart_error)?
        .label(legend.1)
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 30, y)], BLUE.stroke_width(4)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 26).into_font().color(&INK))
        .background_style(WHITE.mix(0.9))
        .border_style(GREY)
        .draw()
        .map_err(chart_error)?;
    root.present().map_err(chart_error)?;
    Ok(())
}
