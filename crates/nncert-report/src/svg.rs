//! Hand-written SVG: line charts of evidence series and small images of image-shaped inputs. Fifty lines of
//! SVG are simpler than a plotting crate here, and the output is deterministic text.

use crate::evidence::Series;
use std::fmt::Write as _;

/// Colours of successive series (colour-blind-safe palette).
const COLOURS: [&str; 6] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
];

fn esc(s: &str) -> String {
    crate::render::esc(s)
}

/// "Nice" tick step for a range (1, 2 or 5 times a power of ten, about five ticks).
fn tick_step(span: f64) -> f64 {
    let raw = span / 5.0;
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    let f = if m < 1.5 {
        1.0
    } else if m < 3.5 {
        2.0
    } else if m < 7.5 {
        5.0
    } else {
        10.0
    };
    f * p
}

/// A line chart of `series` (same axes) titled `title`; non-finite points are skipped.
pub fn line_chart(title: &str, series: &[&Series]) -> String {
    // A wide right margin: legend names such as `stability-smoothed (smoothing σ = 0.25)` must not be cut.
    let (w, h) = (760.0, 360.0);
    let (ml, mr, mt, mb) = (70.0, 290.0, 40.0, 55.0);
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p[0].is_finite() && p[1].is_finite());
    let (mut x0, mut x1, mut y0, mut y1) =
        (f64::INFINITY, f64::NEG_INFINITY, 0.0f64, f64::NEG_INFINITY);
    for p in pts {
        x0 = x0.min(p[0]);
        x1 = x1.max(p[0]);
        y0 = y0.min(p[1]);
        y1 = y1.max(p[1]);
    }
    if !x0.is_finite() {
        (x0, x1, y1) = (0.0, 1.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let sx = |x: f64| ml + (x - x0) / (x1 - x0) * (w - ml - mr);
    let sy = |y: f64| h - mb - (y - y0) / (y1 - y0) * (h - mt - mb);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{t}\">\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>\
         <text x=\"{ml}\" y=\"24\" font-size=\"15\" font-weight=\"bold\">{t}</text>",
        t = esc(title)
    );
    // Grid and ticks.
    for (lo, hi, horizontal) in [(x0, x1, false), (y0, y1, true)] {
        let step = tick_step(hi - lo);
        let mut v = (lo / step).ceil() * step;
        let mut n = 0;
        while v <= hi + step * 1e-9 && n < 20 {
            // As many decimals as the step needs, so labels read 0.05, 0.1, 0.15 and not 0.150000.
            let decimals = (-step.log10().floor()).max(0.0) as usize + 1;
            let label = format!("{:.*}", decimals, (v / step).round() * step);
            let label = if label.contains('.') {
                label
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()
            } else {
                label
            };
            if horizontal {
                let y = sy(v);
                let _ = write!(
                    s,
                    "<line x1=\"{ml}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                     <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{label}</text>",
                    w - mr,
                    ml - 6.0,
                    y + 4.0
                );
            } else {
                let x = sx(v);
                let _ = write!(
                    s,
                    "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{mt}\" y2=\"{}\" stroke=\"#ddd\"/>\
                     <text x=\"{x:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{label}</text>",
                    h - mb,
                    h - mb + 16.0
                );
            }
            v += step;
            n += 1;
        }
    }
    let _ = write!(
        s,
        "<rect x=\"{ml}\" y=\"{mt}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>",
        w - ml - mr,
        h - mt - mb
    );
    if let Some(first) = series.first() {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>\
             <text x=\"16\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>",
            ml + (w - ml - mr) / 2.0,
            h - 12.0,
            esc(&first.x_label),
            mt + (h - mt - mb) / 2.0,
            mt + (h - mt - mb) / 2.0,
            esc(&first.y_label)
        );
    }
    for (i, ser) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let coords: Vec<String> = ser
            .points
            .iter()
            .filter(|p| p[0].is_finite() && p[1].is_finite())
            .map(|p| format!("{:.1},{:.1}", sx(p[0]), sy(p[1])))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            coords.join(" ")
        );
        for xy in &coords {
            if let Some((x, y)) = xy.split_once(',') {
                let _ = write!(s, "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{c}\"/>");
            }
        }
        let ly = mt + 10.0 + 18.0 * i as f64;
        let _ = write!(
            s,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"3\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>",
            w - mr + 10.0,
            w - mr + 30.0,
            w - mr + 35.0,
            ly + 4.0,
            esc(&ser.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// `(channels, height, width)` if a per-sample shape looks like an image: `[H, W]`, `[C, H, W]` or
/// `[1, C, H, W]` with C of 1 or 3 and H, W at least 4.
pub fn image_dims(shape: &[u64]) -> Option<(usize, usize, usize)> {
    let s: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let (c, h, w) = match s.as_slice() {
        [h, w] => (1, *h, *w),
        [c, h, w] | [1, c, h, w] => (*c, *h, *w),
        _ => return None,
    };
    ((c == 1 || c == 3) && h >= 4 && w >= 4).then_some((c, h, w))
}

/// An SVG image of `values` (channel-major `[C, H, W]`), scaled to the values' own min..max, one rect per
/// pixel, `scale` screen pixels per image pixel.
pub fn image(values: &[f64], c: usize, h: usize, w: usize, scale: usize) -> String {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let level = |v: f64| ((v - lo) / span * 255.0).clamp(0.0, 255.0).round() as u8;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" shape-rendering=\"crispEdges\">",
        w * scale,
        h * scale
    );
    for y in 0..h {
        for x in 0..w {
            let px = |ch: usize| values.get(ch * h * w + y * w + x).copied().unwrap_or(0.0);
            let (r, g, b) = if c == 3 {
                (level(px(0)), level(px(1)), level(px(2)))
            } else {
                let v = level(px(0));
                (v, v, v)
            };
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"{scale}\" height=\"{scale}\" fill=\"#{r:02x}{g:02x}{b:02x}\"/>",
                x * scale,
                y * scale
            );
        }
    }
    s.push_str("</svg>");
    s
}
