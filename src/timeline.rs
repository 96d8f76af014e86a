//! `timeline`: when each request of a stage started, connected, got its
//! first byte and finished, and the ladder's pictures of it.
//!
//! Why this exists: the ladder's lesson is a shape, and a table of seconds
//! hides it. `sync` is a staircase (each request starts when the one before
//! it finished), a pool of two workers is two lanes, and the coroutine
//! stages are ten bars inside one delay. A stage records four instants per
//! request with a [`Recorder`] (the moments a Python twin would take with
//! `time.time()` around `connect`, the first `recv` and the last one), prints
//! them in its `--json` line, and the ladder draws every stage's
//! [`StageTimeline`] on one time axis: in the terminal with Unicode blocks
//! ([`terminal`]) and as an SVG file ([`svg`], drawn with plotters).
//!
//! The instants are seconds since the stage's own start, so stages that ran
//! one after another share an axis that starts at 0 for each of them.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One request's four instants, in seconds since its stage started (the
/// Python twin's `time.time() - start` at each of them). An instant the
/// request never reached (a refused connect has no first byte) is `None`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    /// Before `socket()` / `connect()`.
    pub started: Option<f64>,
    /// When the connection was made (`connect` returned, or the socket
    /// became writable).
    pub connected: Option<f64>,
    /// When the first `recv` returned bytes.
    pub first_byte: Option<f64>,
    /// When the outcome (`result:` or `error:`) was known.
    pub finished: Option<f64>,
    /// Whether the request ended with a result rather than an error.
    pub ok: bool,
}

/// The moments a stage marks on a request, in the order they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Before the socket is made.
    Started,
    /// The connection is made.
    Connected,
    /// The first bytes of the answer arrived.
    FirstByte,
}

impl Request {
    /// The request as one JSON object:
    /// `{"started": 0.000012, "connected": ..., "first_byte": ..., "finished": ..., "ok": true}`
    /// (`null` for an instant it never reached).
    pub fn to_json(&self) -> String {
        let field = |v: Option<f64>| v.map_or("null".to_string(), |s| format!("{s:.6}"));
        format!(
            "{{\"started\": {}, \"connected\": {}, \"first_byte\": {}, \"finished\": {}, \"ok\": {}}}",
            field(self.started),
            field(self.connected),
            field(self.first_byte),
            field(self.finished),
            self.ok
        )
    }

    /// Where the bar of this request begins and ends: `started` to
    /// `finished`, or as much of that as was recorded.
    pub fn span(&self) -> Option<(f64, f64)> {
        let marks = [self.started, self.connected, self.first_byte, self.finished];
        let first = marks.iter().flatten().copied().reduce(f64::min)?;
        let last = marks.iter().flatten().copied().reduce(f64::max)?;
        Some((first, last))
    }
}

/// Collects the instants of a stage's requests, from any thread: request
/// `i` of the stage is slot `i`. Each mark keeps its first instant, so a
/// stage may mark `FirstByte` after every `recv` without moving it.
#[derive(Debug)]
pub struct Recorder {
    epoch: Instant,
    slots: Mutex<Vec<Request>>,
}

impl Recorder {
    /// A recorder for `n` requests whose instants count from `epoch` (the
    /// tutorials' `start = time.time()`).
    pub fn new(n: usize, epoch: Instant) -> Recorder {
        Recorder {
            epoch,
            slots: Mutex::new(vec![Request::default(); n]),
        }
    }

    /// Seconds since the epoch, now.
    pub fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    fn with_slot(&self, i: usize, f: impl FnOnce(&mut Request)) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(i) {
            f(slot);
        }
    }

    /// Marks `mark` on request `i` now, unless it was marked before.
    pub fn mark(&self, i: usize, mark: Mark) {
        self.mark_at(i, mark, self.now());
    }

    /// Marks `mark` on request `i` at `seconds` since the epoch (for an
    /// instant measured elsewhere, e.g. in a worker process), unless it was
    /// marked before.
    pub fn mark_at(&self, i: usize, mark: Mark, seconds: f64) {
        self.with_slot(i, |r| {
            let slot = match mark {
                Mark::Started => &mut r.started,
                Mark::Connected => &mut r.connected,
                Mark::FirstByte => &mut r.first_byte,
            };
            slot.get_or_insert(seconds);
        });
    }

    /// Request `i` has its outcome now: `ok` when it is a result.
    pub fn finish(&self, i: usize, ok: bool) {
        self.finish_at(i, ok, self.now());
    }

    /// [`Recorder::finish`] at `seconds` since the epoch.
    pub fn finish_at(&self, i: usize, ok: bool, seconds: f64) {
        self.with_slot(i, |r| {
            if r.finished.is_none() {
                r.finished = Some(seconds);
                r.ok = ok;
            }
        });
    }

    /// Every request's instants, in request order.
    pub fn requests(&self) -> Vec<Request> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The `"timeline"` value of a `--json` line: a JSON array with one
    /// [`Request::to_json`] object per request.
    pub fn to_json(&self) -> String {
        let parts: Vec<String> = self.requests().iter().map(Request::to_json).collect();
        format!("[{}]", parts.join(", "))
    }
}

/// One stage's run as the ladder draws it.
#[derive(Clone, Debug, PartialEq)]
pub struct StageTimeline {
    /// The stage (`"sync"`).
    pub stage: String,
    /// The Python file it mirrors (`"sync.py"`).
    pub mirrors: String,
    /// Its `Total Cost` in seconds.
    pub seconds: f64,
    /// Its requests, in order.
    pub requests: Vec<Request>,
}

/// The right end of the shared time axis: the latest instant any stage
/// reached (at least a millisecond, so an axis always has a length).
fn axis_end(stages: &[StageTimeline]) -> f64 {
    stages
        .iter()
        .flat_map(|s| {
            s.requests
                .iter()
                .filter_map(|r| r.span().map(|(_, end)| end))
                .chain([s.seconds])
        })
        .fold(0.001, f64::max)
}

/// Up to this many requests in all, the terminal picture has a row per
/// request; beyond, a row per stage.
pub const TERMINAL_ROWS_PER_REQUEST: usize = 24;

/// The terminal picture: one row per request of every stage (one row per
/// stage when the stages have more than [`TERMINAL_ROWS_PER_REQUEST`]
/// requests in all), on a time axis `width` columns wide shared by every
/// stage.
///
/// In a per-request row, `█` is the time the request was in flight (`▌`
/// and `▐` a cell it filled half of) and a failed request is drawn with
/// `✗`. In a per-stage row the block's height says how many requests were
/// in flight during that cell, relative to the stage's requests (`▁` one
/// of many, `█` all of them): sync is a long low line, the coroutine stages one
/// short full block. `colour` wraps each stage's bars in an ANSI colour (for
/// a terminal only).
pub fn terminal(stages: &[StageTimeline], width: usize, colour: bool) -> String {
    let width = width.max(10);
    let end = axis_end(stages);
    let cell = end / width as f64;
    let label_width = stages
        .iter()
        .map(|s| s.stage.len() + 6)
        .max()
        .unwrap_or(8)
        .max(8);
    const COLOURS: [&str; 6] = [
        "\x1b[34m", "\x1b[32m", "\x1b[35m", "\x1b[36m", "\x1b[33m", "\x1b[94m",
    ];
    let per_request =
        stages.iter().map(|s| s.requests.len()).sum::<usize>() <= TERMINAL_ROWS_PER_REQUEST;
    let mut out = String::new();
    // The axis: 0 s on the left, the end on the right, a tick per quarter.
    let mut axis = vec![' '; width + 12];
    let mut ticks = vec!['─'; width];
    for q in 0..=4 {
        let col = (q * (width - 1)) / 4;
        ticks[col] = if q == 0 {
            '├'
        } else if q == 4 {
            '┤'
        } else {
            '┼'
        };
        let text = format!("{:.2}s", end * q as f64 / 4.0);
        let start = if q == 4 {
            col + 1 - text.len().min(col + 1)
        } else {
            col
        };
        // A label that would touch the one before it is left out.
        let free = (start.saturating_sub(1)..start + text.len() + 1)
            .all(|c| axis.get(c).is_none_or(|&ch| ch == ' '));
        if free {
            for (k, ch) in text.chars().enumerate() {
                if let Some(slot) = axis.get_mut(start + k) {
                    *slot = ch;
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "{:label_width$} {}",
        "",
        axis.iter().collect::<String>().trim_end()
    );
    let _ = writeln!(
        out,
        "{:label_width$} {}",
        "",
        ticks.iter().collect::<String>()
    );
    for (k, stage) in stages.iter().enumerate() {
        let (on, off) = if colour {
            (COLOURS[k % COLOURS.len()], "\x1b[0m")
        } else {
            ("", "")
        };
        if per_request {
            for (i, request) in stage.requests.iter().enumerate() {
                let label = if i == 0 {
                    format!("{} #{i}", stage.stage)
                } else {
                    format!("#{i}")
                };
                let bar = request_row(request, cell, width);
                let _ = writeln!(out, "{label:>label_width$} {on}{bar}{off}");
            }
        } else {
            let bar = stage_row(&stage.requests, cell, width);
            let label = format!("{} ×{}", stage.stage, stage.requests.len());
            let _ = writeln!(out, "{label:>label_width$} {on}{bar}{off}");
        }
    }
    out
}

/// One request's row: which cells its span covers, and how much of each.
fn request_row(request: &Request, cell: f64, width: usize) -> String {
    let Some((start, end)) = request.span() else {
        return " ".repeat(width);
    };
    let full = if request.ok { '█' } else { '✗' };
    (0..width)
        .map(|c| {
            let (lo, hi) = (c as f64 * cell, (c + 1) as f64 * cell);
            let mid = lo + cell / 2.0;
            let left = start < mid && end > lo;
            let right = start < hi && end > mid;
            match (left, right) {
                (true, true) => full,
                (true, false) => '▌',
                (false, true) => '▐',
                // A request shorter than half a cell still shows.
                (false, false) if start >= lo && end < hi && end > start => '▏',
                (false, false) => ' ',
            }
        })
        .collect()
}

/// One stage's row: in each cell, the block whose height is the most
/// requests in flight at once during that cell, relative to all of the
/// stage's requests.
fn stage_row(requests: &[Request], cell: f64, width: usize) -> String {
    const HEIGHTS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let spans: Vec<(f64, f64)> = requests.iter().filter_map(Request::span).collect();
    let in_flight: Vec<usize> = (0..width)
        .map(|c| {
            let (lo, hi) = (c as f64 * cell, (c + 1) as f64 * cell);
            // The most at once inside [lo, hi): count at every start that
            // falls in the cell, and at the cell's left edge.
            let at = |t: f64| spans.iter().filter(|&&(s, e)| s <= t && t < e).count();
            spans
                .iter()
                .map(|&(s, _)| s)
                .filter(|&s| lo <= s && s < hi)
                .chain([lo])
                .map(at)
                .max()
                .unwrap_or(0)
        })
        .collect();
    // All of the stage's requests at once is a full block.
    let peak = requests.len().max(1);
    in_flight
        .iter()
        .map(|&n| {
            if n == 0 {
                ' '
            } else {
                HEIGHTS[((n * HEIGHTS.len()).div_ceil(peak)).clamp(1, HEIGHTS.len()) - 1]
            }
        })
        .collect()
}

/// The colours of a bar's parts, also the SVG's legend: connecting,
/// waiting for the answer, reading it, and a failed request.
pub const CONNECTING: RGBColor = RGBColor(158, 202, 225);
/// Connected, waiting for the first byte (the server's delay).
pub const WAITING: RGBColor = RGBColor(49, 130, 189);
/// From the first byte to the last.
pub const READING: RGBColor = RGBColor(253, 141, 60);
/// A request that ended with an error.
pub const FAILED: RGBColor = RGBColor(222, 45, 38);

/// A drawing failed (plotters' error, as text).
fn draw_error<E: std::fmt::Debug>(e: E) -> std::io::Error {
    std::io::Error::other(format!("drawing failed: {e:?}"))
}

/// The SVG picture: every stage in a band of its own, one horizontal bar
/// per request (started → connected → first byte → finished, in the
/// colours [`CONNECTING`], [`WAITING`], [`READING`]; [`FAILED`] for a
/// request that ended with an error), on one time axis shared by all
/// stages; each band is labelled with the stage, its Python file and its
/// time. Drawn with plotters' SVG backend.
pub fn svg(stages: &[StageTimeline]) -> std::io::Result<String> {
    // Each band is one bar row per request, between 3 and 14 pixels high.
    let band_height = |n: usize| (n.max(1) * 14).clamp(42, 280) as u32;
    let gap = 18u32;
    let (top, bottom, left, right) = (64u32, 48u32, 230u32, 30u32);
    let plot_height: u32 = stages
        .iter()
        .map(|s| band_height(s.requests.len()) + gap)
        .sum::<u32>()
        .max(gap);
    let (width, height) = (1000u32, top + plot_height + bottom);
    let end = axis_end(stages) * 1.02;

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let title = TextStyle::from(("sans-serif", 18).into_font()).color(&BLACK);
        root.draw(&Text::new(
            "per-request timelines: one bar per request, started → finished",
            (12, 8),
            title,
        ))
        .map_err(draw_error)?;
        // The legend, under the title.
        let legend_font = TextStyle::from(("sans-serif", 13).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        let mut x = 12;
        for (colour, name) in [
            (CONNECTING, "connecting"),
            (WAITING, "waiting for the answer"),
            (READING, "reading"),
            (FAILED, "failed"),
        ] {
            root.draw(&Rectangle::new([(x, 36), (x + 14, 50)], colour.filled()))
                .map_err(draw_error)?;
            root.draw(&Text::new(name, (x + 20, 43), legend_font.clone()))
                .map_err(draw_error)?;
            x += 34 + 7 * name.len() as i32;
        }

        let mut chart = ChartBuilder::on(&root)
            .margin_top(top)
            .margin_right(right)
            .x_label_area_size(bottom)
            .y_label_area_size(left)
            .build_cartesian_2d(0f64..end, 0f64..plot_height as f64)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .y_labels(0)
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(215, 215, 215))
            .x_desc("seconds since the stage started")
            .x_label_formatter(&|x| format!("{x:.2}"))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(draw_error)?;

        let label_font = TextStyle::from(("sans-serif", 14).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Right, VPos::Center));
        let detail_font = TextStyle::from(("sans-serif", 12).into_font())
            .color(&RGBColor(90, 90, 90))
            .pos(Pos::new(HPos::Right, VPos::Center));
        // y counts pixels down from the top of the plot; plotters' y goes up.
        let flip = |y: f64| plot_height as f64 - y;
        let mut y = gap as f64 / 2.0;
        for stage in stages {
            let band = band_height(stage.requests.len()) as f64;
            let n = stage.requests.len().max(1) as f64;
            let row = band / n;
            // The band's label, left of the axis.
            let (_, label_y) = chart.backend_coord(&(0.0, flip(y + band / 2.0)));
            let label_x = left as i32 - 12;
            root.draw(&Text::new(
                stage.stage.clone(),
                (label_x, label_y - 9),
                label_font.clone(),
            ))
            .map_err(draw_error)?;
            root.draw(&Text::new(
                format!("{}  {:.2} s", stage.mirrors, stage.seconds),
                (label_x, label_y + 9),
                detail_font.clone(),
            ))
            .map_err(draw_error)?;
            // A faint band behind the bars, so an empty stage still shows.
            chart
                .draw_series([Rectangle::new(
                    [(0.0, flip(y)), (end, flip(y + band))],
                    RGBColor(245, 245, 245).filled(),
                )])
                .map_err(draw_error)?;
            let mut bars = Vec::new();
            for (i, request) in stage.requests.iter().enumerate() {
                let Some((start, finish)) = request.span() else {
                    continue;
                };
                // A bar fills its row but for a sliver, so bars never touch.
                let (y0, y1) = (y + i as f64 * row, y + (i as f64 + 0.8) * row);
                let parts: Vec<(f64, f64, RGBColor)> = if request.ok {
                    let connected = request.connected.unwrap_or(start).clamp(start, finish);
                    // No first byte recorded (the process stage's workers
                    // record none): in flight until the end.
                    let first = request
                        .first_byte
                        .unwrap_or(finish)
                        .clamp(connected, finish);
                    vec![
                        (start, connected, CONNECTING),
                        (connected, first, WAITING),
                        (first, finish, READING),
                    ]
                } else {
                    vec![(start, finish, FAILED)]
                };
                for (a, b, colour) in parts {
                    if b > a {
                        bars.push(Rectangle::new(
                            [(a, flip(y0)), (b, flip(y1))],
                            colour.filled(),
                        ));
                    }
                }
            }
            chart.draw_series(bars).map_err(draw_error)?;
            y += band + gap as f64;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(started: f64, finished: f64) -> Request {
        Request {
            started: Some(started),
            connected: Some(started),
            first_byte: Some(finished),
            finished: Some(finished),
            ok: true,
        }
    }

    #[test]
    fn a_mark_keeps_its_first_instant() {
        let recorder = Recorder::new(2, Instant::now());
        recorder.mark_at(1, Mark::FirstByte, 0.5);
        recorder.mark_at(1, Mark::FirstByte, 0.9);
        recorder.finish_at(1, false, 1.0);
        recorder.finish_at(1, true, 2.0);
        // Out of range is ignored, not a panic.
        recorder.mark_at(7, Mark::Started, 0.1);
        let got = recorder.requests();
        assert_eq!(got[0], Request::default());
        assert_eq!(got[1].first_byte, Some(0.5));
        assert_eq!((got[1].finished, got[1].ok), (Some(1.0), false));
        assert_eq!(
            got[1].to_json(),
            "{\"started\": null, \"connected\": null, \"first_byte\": 0.500000, \"finished\": 1.000000, \"ok\": false}"
        );
    }

    #[test]
    fn the_terminal_rows_are_a_staircase_for_sync() {
        let sync = StageTimeline {
            stage: "sync".into(),
            mirrors: "sync.py".into(),
            seconds: 4.0,
            requests: (0..4).map(|i| request(i as f64, i as f64 + 1.0)).collect(),
        };
        let picture = terminal(&[sync], 40, false);
        let rows: Vec<&str> = picture.lines().skip(2).collect();
        assert_eq!(rows.len(), 4, "{picture}");
        // Row i is filled from column 10 i to 10 i + 9, nowhere else.
        for (i, row) in rows.iter().enumerate() {
            let bar: Vec<char> = row.chars().rev().take(40).collect::<Vec<_>>();
            let bar: Vec<char> = bar.into_iter().rev().collect();
            let filled: Vec<usize> = (0..40).filter(|&c| bar[c] != ' ').collect();
            assert_eq!(filled.first(), Some(&(10 * i)), "{picture}");
            assert_eq!(filled.last(), Some(&(10 * i + 9)), "{picture}");
        }
    }

    #[test]
    fn many_requests_get_one_row_per_stage_with_the_height_of_concurrency() {
        let all_at_once = StageTimeline {
            stage: "generator".into(),
            mirrors: "generator.py".into(),
            seconds: 1.0,
            requests: (0..100).map(|_| request(0.0, 1.0)).collect(),
        };
        let one_by_one = StageTimeline {
            stage: "sync".into(),
            mirrors: "sync.py".into(),
            seconds: 1.0,
            requests: (0..100)
                .map(|i| request(i as f64 / 100.0, (i + 1) as f64 / 100.0))
                .collect(),
        };
        let picture = terminal(&[all_at_once, one_by_one], 20, false);
        let rows: Vec<&str> = picture.lines().skip(2).collect();
        assert_eq!(rows.len(), 2, "{picture}");
        assert!(rows[0].ends_with(&"█".repeat(20)), "{picture}");
        // One of 100 in flight: the lowest block.
        assert!(rows[1].ends_with(&"▁".repeat(20)), "{picture}");
    }

    #[test]
    fn colour_only_when_asked() {
        let stage = StageTimeline {
            stage: "sync".into(),
            mirrors: "sync.py".into(),
            seconds: 1.0,
            requests: vec![request(0.0, 1.0)],
        };
        assert!(!terminal(std::slice::from_ref(&stage), 20, false).contains('\x1b'));
        assert!(terminal(&[stage], 20, true).contains("\x1b[34m"));
    }
}
