//! Charts drawn on the server as SVG ([`plotters`]): a line per series over
//! time, with labelled axes and units, and the legend beside it in HTML.

use maud::{Markup, PreEscaped, html};
use plotters::prelude::*;

/// The colours of the series, in order (readable on both themes).
pub const COLOURS: [(u8, u8, u8); 8] = [
    (37, 99, 235),
    (22, 163, 74),
    (234, 88, 12),
    (147, 51, 234),
    (219, 39, 119),
    (8, 145, 178),
    (202, 138, 4),
    (100, 116, 139),
];

/// One line: its name and its points (unix seconds, value).
#[derive(Debug, Clone)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// Its points, in time order.
    pub points: Vec<(i64, f64)>,
}

/// How a chart's axes read.
#[derive(Debug, Clone, Copy)]
pub struct Axes {
    /// The first and last instants (unix seconds) of the x axis.
    pub from: i64,
    /// See `from`.
    pub to: i64,
    /// Whether the x labels are hours (else dates).
    pub hourly: bool,
    /// The y axis' name with its unit (`USD per day`).
    pub y_desc: &'static str,
    /// How a y value is written, given the axis' top.
    pub y_label: fn(f64, f64) -> String,
    /// The chart's width in pixels (it scales to its box).
    pub width: u32,
}

/// A line chart of `series` (an empty one says there is no data).
pub fn lines(series: &[Series], axes: Axes) -> Markup {
    let svg = draw(series, axes).unwrap_or_default();
    html! {
        div.chart {
            @if series.iter().all(|s| s.points.is_empty()) {
                p.muted { "No requests in this range yet." }
            }
            (PreEscaped(svg))
            div.legend {
                @for (i, s) in series.iter().enumerate() {
                    @let (r, g, b) = COLOURS[i % COLOURS.len()];
                    span { i style={ "background: rgb(" (r) "," (g) "," (b) ")" } {} (s.name) }
                }
            }
        }
    }
}

fn draw(series: &[Series], axes: Axes) -> Option<String> {
    let mut svg = String::new();
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    // The x axis counts buckets (hours or days) from `from`, so that its
    // ticks fall on whole hours or days.
    let step = if axes.hourly { 3_600 } else { 86_400 };
    let buckets = ((axes.to - axes.from) / step).max(1);
    {
        let root = SVGBackend::with_string(&mut svg, (axes.width, 280)).into_drawing_area();
        let grid = RGBAColor(128, 128, 128, 0.18);
        let text = ("sans-serif", 13)
            .into_font()
            .color(&RGBColor(110, 118, 129));
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size(70)
            .build_cartesian_2d(0..buckets, 0f64..top)
            .ok()?;
        let x_label = |x: &i64| {
            let text = crate::keys::admin::views::rfc3339(axes.from + x * step);
            if axes.hourly {
                text.get(5..16).unwrap_or_default().replacen('T', " ", 1)
            } else {
                text.get(0..10).unwrap_or_default().to_owned()
            }
        };
        let y_label = |y: &f64| (axes.y_label)(*y, top);
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(5)
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .y_desc(axes.y_desc)
            .label_style(text.clone())
            .axis_desc_style(text)
            .bold_line_style(grid)
            .light_line_style(TRANSPARENT)
            .axis_style(grid)
            .draw()
            .ok()?;
        for (i, s) in series.iter().enumerate() {
            let (r, g, b) = COLOURS[i % COLOURS.len()];
            let colour = RGBColor(r, g, b);
            let at = |(t, v): (i64, f64)| ((t - axes.from) / step, v);
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied().map(at),
                    colour.stroke_width(2),
                ))
                .ok()?;
            if s.points.len() < 40 {
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|p| Circle::new(at(*p), 3, colour.filled())),
                    )
                    .ok()?;
            }
        }
        root.present().ok()?;
    }
    Some(svg)
}

/// Dollars on an axis whose top is `top`, with as many decimals as its
/// ticks need to differ: `$12`, `$0.50`, `$0.00012`.
pub fn usd_axis(y: f64, top: f64) -> String {
    if y == 0.0 {
        return "$0".to_owned();
    }
    let decimals = (2.0 - top.log10().floor()).clamp(0.0, 8.0) as usize;
    format!("${y:.decimals$}")
}

/// A count on an axis.
pub fn count_axis(y: f64, _top: f64) -> String {
    if y >= 1e6 {
        format!("{:.1}M", y / 1e6)
    } else if y >= 1e3 {
        format!("{:.1}k", y / 1e3)
    } else {
        format!("{y:.0}")
    }
}
