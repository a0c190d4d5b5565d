//! The recovery chart: P99 latency and error rate over time, from before the faulty rollout to
//! the end of validation, with the moments that matter marked (bad rollout, rollback, verdict)
//! and the limits drawn (baseline, baseline × tolerance, error-rate threshold). Pure: series
//! and markers in, PNG bytes out ([`render`]), drawn with `plotters` into an RGB buffer and
//! encoded with `png`. Text uses the DejaVu Sans font embedded in the binary
//! (`assets/fonts`, licence beside it): the runtime image has no system fonts.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// Pixels.
pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 640;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

const BAD_ROLLOUT: RGBColor = RGBColor(214, 39, 40);
const ROLLBACK: RGBColor = RGBColor(31, 119, 180);
const VALIDATED: RGBColor = RGBColor(44, 160, 44);
const NOT_VALIDATED: RGBColor = RGBColor(148, 103, 189);
const LIMIT: RGBColor = RGBColor(255, 127, 14);
const GREY: RGBColor = RGBColor(120, 120, 120);

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("the embedded font cannot be read")]
    Font,
    #[error("cannot draw the chart: {0}")]
    Draw(String),
    #[error("cannot encode the PNG: {0}")]
    Encode(String),
}

/// One time series; `missing` says why there is no data when it is empty (e.g. Prometheus
/// unreachable), shown on the chart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub points: Vec<(DateTime<Utc>, f64)>,
    pub missing: Option<String>,
}

impl Series {
    /// Whether there is anything to draw.
    pub fn has_data(&self) -> bool {
        self.points.iter().any(|(_, v)| v.is_finite())
    }

    /// The points that can be drawn (NaN and infinities are gaps, not zeros).
    fn finite(&self) -> Vec<(DateTime<Utc>, f64)> {
        self.points
            .iter()
            .copied()
            .filter(|(_, v)| v.is_finite())
            .collect()
    }
}

/// Everything one chart shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartSpec {
    /// The first line, e.g. "checkout-api (prod/checkout-api) · rollback #12".
    pub title: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// P99 latency, seconds.
    pub p99: Series,
    /// Errors / requests, a ratio (drawn in %).
    pub error_rate: Series,
    pub bad_rollout_at: Option<DateTime<Utc>>,
    pub rollback_at: Option<DateTime<Utc>>,
    /// When validation ended (the verdict).
    pub verdict_at: DateTime<Utc>,
    pub validated: bool,
    /// P99 before the incident, seconds.
    pub baseline: Option<f64>,
    /// Baseline × tolerance, seconds.
    pub latency_limit: Option<f64>,
    /// The error-rate threshold, a ratio.
    pub max_error_rate: f64,
}

/// Draws `spec` as a PNG of [`WIDTH`] × [`HEIGHT`]. Empty, NaN-only or missing series give a
/// panel that says "no data" (and why), never a panic.
///
/// # Errors
/// The embedded font unreadable, a drawing or encoding failure.
pub fn render(spec: &ChartSpec) -> Result<Vec<u8>, ChartError> {
    register_font()?;
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, spec).map_err(|e| ChartError::Draw(e.to_string()))?;
        root.present()
            .map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    encode_png(&rgb)
}

fn register_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err(ChartError::Font) }
}

fn encode_png(rgb: &[u8]) -> Result<Vec<u8>, ChartError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| ChartError::Encode(e.to_string()))?;
    writer
        .write_image_data(rgb)
        .map_err(|e| ChartError::Encode(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| ChartError::Encode(e.to_string()))?;
    Ok(out)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(root: &DrawingArea<BitMapBackend<'_>, Shift>, spec: &ChartSpec) -> DrawResult {
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(64);
    let verdict = if spec.validated {
        ("✓ recovered", VALIDATED)
    } else {
        ("✗ not recovered", NOT_VALIDATED)
    };
    header.draw(&Text::new(
        spec.title.clone(),
        (16, 10),
        (FAMILY, 20).into_font().color(&BLACK),
    ))?;
    header.draw(&Text::new(
        format!(
            "{} – {} UTC · verdict: {}",
            spec.from.format("%Y-%m-%d %H:%M:%S"),
            spec.to.format("%H:%M:%S"),
            verdict.0
        ),
        (16, 38),
        (FAMILY, 15).into_font().color(&verdict.1),
    ))?;
    let panels = body.split_evenly((2, 1));
    let mut p99_limits = Vec::new();
    if let Some(b) = spec.baseline.filter(|b| b.is_finite()) {
        p99_limits.push(("baseline", b, GREY));
    }
    if let Some(l) = spec.latency_limit.filter(|l| l.is_finite()) {
        p99_limits.push(("limit", l, LIMIT));
    }
    panel(
        &panels[0],
        spec,
        Panel {
            caption: "P99 latency (s)",
            series: &spec.p99,
            scale: 1.0,
            limits: &p99_limits,
            decimals: 3,
        },
    )?;
    panel(
        &panels[1],
        spec,
        Panel {
            caption: "error rate (%)",
            series: &spec.error_rate,
            scale: 100.0,
            limits: &[("threshold", spec.max_error_rate, LIMIT)],
            decimals: 2,
        },
    )?;
    Ok(())
}

struct Panel<'a> {
    caption: &'a str,
    series: &'a Series,
    /// Multiplies values for display (100 for a ratio shown in %).
    scale: f64,
    /// Horizontal lines: name, value (unscaled), colour.
    limits: &'a [(&'a str, f64, RGBColor)],
    decimals: usize,
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    spec: &ChartSpec,
    p: Panel<'_>,
) -> DrawResult {
    let span = seconds(spec.from, spec.to).max(1.0);
    let x = |at: DateTime<Utc>| seconds(spec.from, at).clamp(0.0, span);
    let points: Vec<(f64, f64)> = p
        .series
        .finite()
        .into_iter()
        .map(|(at, v)| (x(at), v * p.scale))
        .collect();
    let highest = points
        .iter()
        .map(|(_, v)| *v)
        .chain(p.limits.iter().map(|(_, v, _)| v * p.scale))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let y_max = if highest > 0.0 { highest * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin_left(12)
        .margin_right(24)
        .margin_bottom(6)
        .caption(p.caption, (FAMILY, 16))
        .x_label_area_size(28)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..span, 0.0..y_max)?;
    let from = spec.from;
    let time_label = move |s: &f64| {
        let at = from + chrono::TimeDelta::milliseconds((s * 1000.0) as i64);
        at.format("%H:%M:%S").to_string()
    };
    let decimals = p.decimals;
    let value_label = move |v: &f64| format!("{v:.decimals$}");
    chart
        .configure_mesh()
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&time_label)
        .y_label_formatter(&value_label)
        .label_style((FAMILY, 13))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    for (name, value, colour) in p.limits {
        let y = value * p.scale;
        if !y.is_finite() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                [(0.0, y), (span, y)],
                colour.stroke_width(1),
            ))?
            .label(format!("{name} {y:.decimals$}"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    let markers = [
        ("bad rollout", spec.bad_rollout_at, BAD_ROLLOUT),
        ("rollback", spec.rollback_at, ROLLBACK),
        (
            "verdict",
            Some(spec.verdict_at),
            if spec.validated {
                VALIDATED
            } else {
                NOT_VALIDATED
            },
        ),
    ];
    // Named in the legend rather than beside the line: markers can be a second apart.
    for (name, at, colour) in markers {
        let Some(at) = at else { continue };
        let mx = x(at);
        chart
            .draw_series(LineSeries::new(
                [(mx, 0.0), (mx, y_max)],
                colour.stroke_width(2),
            ))?
            .label(format!("{name} {}", at.format("%H:%M:%S")))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    if points.is_empty() {
        let why = p
            .series
            .missing
            .as_deref()
            .unwrap_or("Prometheus returned no samples (or only NaN)");
        chart.draw_series(std::iter::once(Text::new(
            format!("no data: {}", shorten(why, 90)),
            (span * 0.03, y_max * 0.55),
            (FAMILY, 16).into_font().color(&BAD_ROLLOUT),
        )))?;
    } else {
        // Gaps (missing samples) break the line instead of bridging them.
        let step = typical_step(&points);
        for run in runs(&points, step * 3.0) {
            chart.draw_series(LineSeries::new(run, BLACK.stroke_width(2)))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .draw()?;
    Ok(())
}

fn seconds(from: DateTime<Utc>, at: DateTime<Utc>) -> f64 {
    (at - from).num_milliseconds() as f64 / 1000.0
}

/// The median distance between samples (1 for fewer than two).
fn typical_step(points: &[(f64, f64)]) -> f64 {
    let mut steps: Vec<f64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    if steps.is_empty() {
        return 1.0;
    }
    steps.sort_by(f64::total_cmp);
    steps[steps.len() / 2].max(f64::EPSILON)
}

/// Splits `points` where two neighbours are more than `gap` apart.
fn runs(points: &[(f64, f64)], gap: f64) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    for &p in points {
        match out.last_mut() {
            Some(run) if run.last().is_some_and(|last| p.0 - last.0 <= gap) => run.push(p),
            _ => out.push(vec![p]),
        }
    }
    out
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(max - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + s, 0).unwrap()
    }

    fn spec(p99: Series, error_rate: Series) -> ChartSpec {
        ChartSpec {
            title: "web (shop/web) · rollback #7".into(),
            from: at(0),
            to: at(120),
            p99,
            error_rate,
            bad_rollout_at: Some(at(20)),
            rollback_at: Some(at(60)),
            verdict_at: at(110),
            validated: true,
            baseline: Some(0.08),
            latency_limit: Some(0.096),
            max_error_rate: 0.001,
        }
    }

    fn series(f: impl Fn(i64) -> f64) -> Series {
        Series {
            points: (0..=120).map(|s| (at(s), f(s))).collect(),
            missing: None,
        }
    }

    /// Decodes a PNG: its size and RGB pixels.
    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(png_bytes);
        let mut reader = decoder.read_info().expect("a PNG header");
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).expect("PNG image data");
        pixels.truncate(info.buffer_size());
        (info.width, info.height, pixels)
    }

    fn pixels_of(pixels: &[u8], colour: RGBColor) -> usize {
        pixels
            .chunks(3)
            .filter(|p| p == &[colour.0, colour.1, colour.2])
            .count()
    }

    /// Red-ish pixels, antialiased text included.
    fn reddish(pixels: &[u8]) -> usize {
        pixels
            .chunks(3)
            .filter(|p| p[0] > 180 && p[1] < 140 && p[2] < 140)
            .count()
    }

    #[test]
    fn a_chart_is_a_png_with_lines_markers_and_text() {
        let p99 = series(|s| if (20..70).contains(&s) { 1.2 } else { 0.08 });
        let errors = series(|s| if (20..70).contains(&s) { 0.05 } else { 0.0 });
        let png_bytes = render(&spec(p99, errors)).unwrap();
        assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
        let (w, h, pixels) = decode(&png_bytes);
        assert_eq!((w, h), (WIDTH, HEIGHT));
        let total = (w * h) as usize;
        let white = pixels_of(&pixels, WHITE);
        assert!(
            white < total * 97 / 100,
            "drawn on: {white} of {total} white"
        );
        assert!(white > total / 2, "mostly background: {white} of {total}");
        // Each marker and the series are drawn in their colours.
        for (name, colour) in [
            ("bad rollout", BAD_ROLLOUT),
            ("rollback", ROLLBACK),
            ("verdict", VALIDATED),
            ("limit", LIMIT),
        ] {
            assert!(pixels_of(&pixels, colour) > 100, "{name} marker drawn");
        }
        assert!(pixels_of(&pixels, BLACK) > 1000, "series and text drawn");
    }

    #[test]
    fn a_failed_verdict_is_drawn_in_its_own_colour() {
        let mut s = spec(series(|_| 0.5), series(|_| 0.05));
        s.validated = false;
        let (_, _, pixels) = decode(&render(&s).unwrap());
        assert!(pixels_of(&pixels, NOT_VALIDATED) > 100);
        assert_eq!(pixels_of(&pixels, VALIDATED), 0);
    }

    #[test]
    fn empty_and_nan_series_give_a_no_data_chart_not_a_panic() {
        let nan = series(|_| f64::NAN);
        let empty = Series {
            points: vec![],
            missing: Some("Prometheus unreachable at http://127.0.0.1:9/".into()),
        };
        let with_data = render(&spec(series(|_| 0.08), series(|_| 0.0))).unwrap();
        for (p99, errors) in [
            (nan.clone(), empty.clone()),
            (empty.clone(), nan.clone()),
            (Series::default(), Series::default()),
        ] {
            let png_bytes = render(&spec(p99, errors)).unwrap();
            let (w, h, pixels) = decode(&png_bytes);
            assert_eq!((w, h), (WIDTH, HEIGHT));
            // "no data: …" is written in the bad-rollout red, besides the marker.
            let (_, _, data_pixels) = decode(&with_data);
            assert!(
                reddish(&pixels) > reddish(&data_pixels) + 500,
                "a visible no-data message: {} vs {}",
                reddish(&pixels),
                reddish(&data_pixels)
            );
        }
        // No baseline, no markers, a zero-length range: still a chart.
        let mut bare = spec(Series::default(), Series::default());
        bare.baseline = None;
        bare.latency_limit = Some(f64::NAN);
        bare.bad_rollout_at = None;
        bare.rollback_at = None;
        bare.to = bare.from;
        bare.verdict_at = bare.from;
        let (w, h, _) = decode(&render(&bare).unwrap());
        assert_eq!((w, h), (WIDTH, HEIGHT));
    }

    #[test]
    fn gaps_split_the_line_and_steps_are_typical() {
        let points = [(0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (10.0, 1.0), (11.0, 1.0)];
        assert_eq!(typical_step(&points), 1.0);
        let split = runs(&points, 3.0);
        assert_eq!(split.len(), 2);
        assert_eq!(split[1], vec![(10.0, 1.0), (11.0, 1.0)]);
        assert_eq!(typical_step(&[(5.0, 1.0)]), 1.0);
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
