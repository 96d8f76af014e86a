//! The pictures, checked the way a reader looks at them: the SVG must be
//! well-formed XML, must render (resvg, to pixels), and the rendered pixels
//! must show the lesson: sync's bars one after another, never side by
//! side; the coroutine stages' bars all over each other; the traced chain's
//! arrows in the order the tutorials narrate.
//!
//! Each picture is also saved, as SVG and rendered PNG (without text: the
//! test renders no fonts), under the test's temporary directory
//! (`target/tmp/`), to be looked at.

use std::path::PathBuf;
use std::process::Stdio;

use pyfiber::timeline::{self, Request, StageTimeline, CONNECTING, FAILED, READING, WAITING};

mod support;
use support::example;

/// Parses (must be well-formed XML with an `<svg>` root), renders, and saves
/// `svg` as `target/tmp/<name>.svg` and `.png`; returns the pixels.
fn render(svg: &str, name: &str) -> resvg::tiny_skia::Pixmap {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is not well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default())
        .expect("usvg cannot read the SVG");
    let size = tree.size().to_int_size();
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(size.width(), size.height()).expect("an empty picture");
    resvg::render(&tree, Default::default(), &mut pixmap.as_mut());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(dir.join(format!("{name}.svg")), svg).expect("cannot save the SVG");
    let png = dir.join(format!("{name}.png"));
    pixmap.save_png(&png).expect("cannot save the PNG");
    pixmap
}

/// The text of every `<text>` element, in document order.
fn texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is not well-formed XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            let text: String = n
                .descendants()
                .filter(|t| t.is_text())
                .filter_map(|t| t.text())
                .collect();
            text.trim().to_string()
        })
        .collect()
}

/// The horizontal bars of the picture, top to bottom: each is a run of
/// pixel rows that hold bar colours, with the leftmost and rightmost column
/// of those colours in it.
fn bars(pixmap: &resvg::tiny_skia::Pixmap) -> Vec<(u32, u32)> {
    let colours = [CONNECTING, WAITING, READING, FAILED];
    let is_bar = |x: u32, y: u32| {
        let p = pixmap.pixel(x, y).unwrap();
        colours
            .iter()
            .any(|c| (p.red(), p.green(), p.blue()) == (c.0, c.1, c.2))
    };
    let mut out = Vec::new();
    let mut current: Option<(u32, u32)> = None;
    for y in 0..pixmap.height() {
        let xs: Vec<u32> = (0..pixmap.width()).filter(|&x| is_bar(x, y)).collect();
        match (xs.first(), xs.last(), current) {
            (Some(&lo), Some(&hi), None) => current = Some((lo, hi)),
            (Some(&lo), Some(&hi), Some((a, b))) => current = Some((a.min(lo), b.max(hi))),
            (None, _, Some(bar)) => {
                out.push(bar);
                current = None;
            }
            _ => {}
        }
    }
    out.extend(current);
    out
}

fn request(started: f64, first_byte: f64, finished: f64, ok: bool) -> Request {
    Request {
        started: Some(started),
        connected: Some(started + 0.001),
        first_byte: Some(first_byte),
        finished: Some(finished),
        ok,
    }
}

#[test]
fn the_timeline_draws_a_staircase_and_a_stack() {
    // A stage one after another and a stage all at once, each 4 requests
    // of 0.2 s; the last coroutine request failed.
    let sync = StageTimeline {
        stage: "sync".into(),
        mirrors: "sync.py".into(),
        seconds: 0.8,
        requests: (0..4)
            .map(|i| {
                let t = i as f64 * 0.2;
                request(t, t + 0.19, t + 0.2, true)
            })
            .collect(),
    };
    let generator = StageTimeline {
        stage: "generator".into(),
        mirrors: "generator.py".into(),
        seconds: 0.2,
        requests: (0..4).map(|i| request(0.0, 0.19, 0.2, i != 3)).collect(),
    };
    let svg = timeline::svg(&[sync, generator]).unwrap();
    let labels = texts(&svg);
    for label in [
        "sync",
        "sync.py  0.80 s",
        "generator",
        "generator.py  0.20 s",
    ] {
        assert!(
            labels.iter().any(|t| t == label),
            "no {label:?} in {labels:?}"
        );
    }
    let pixmap = render(&svg, "timeline_shapes");
    let found = bars(&pixmap);
    // The legend's squares are the first run of coloured rows, then 4 + 4 bars.
    assert_eq!(found.len(), 1 + 8, "bars: {found:?}");
    let (sync, generator) = found[1..].split_at(4);
    for pair in sync.windows(2) {
        assert!(pair[0].1 <= pair[1].0 + 1, "sync's bars overlap: {sync:?}");
        assert!(
            pair[0].0 < pair[1].0,
            "sync's bars do not step right: {sync:?}"
        );
    }
    let width = |b: &(u32, u32)| b.1 - b.0;
    for bar in generator {
        assert!(bar.0.abs_diff(generator[0].0) <= 1, "{generator:?}");
        // Each of the stack's bars is as long as one of sync's steps.
        assert!(
            width(bar).abs_diff(width(&sync[0])) <= 2,
            "{generator:?} {sync:?}"
        );
    }
    // The failed request is drawn in FAILED's colour, the others not.
    let y_of_failed = (0..pixmap.height())
        .filter(|&y| {
            let p = pixmap.pixel(generator[3].0 + 2, y).unwrap();
            (p.red(), p.green(), p.blue()) == (FAILED.0, FAILED.1, FAILED.2)
        })
        .count();
    assert!(y_of_failed > 0, "no red bar for the failed request");
}

#[test]
fn the_chain_of_a_real_run_is_drawn_in_the_tutorials_order() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for stage in ["generator", "yield_from", "callback"] {
        let file = dir.join(format!("chain_{stage}.svg"));
        let _ = std::fs::remove_file(&file);
        let output = example(stage)
            .args(["--urls", "2", "--delay", "0.1", "--trace", "--svg"])
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{stage}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let svg = std::fs::read_to_string(&file).unwrap();
        let labels = texts(&svg);
        let pixmap = render(&svg, &format!("chain_{stage}"));
        // Something was drawn: arrows in the requests' colours.
        let blue = pyfiber::chain::request_colour(Some(0));
        let coloured = pixmap
            .pixels()
            .iter()
            .filter(|p| (p.red(), p.green(), p.blue()) == (blue.0, blue.1, blue.2))
            .count();
        assert!(coloured > 1000, "{stage}: {coloured} pixels of arrows");

        let position = |from: usize, needle: &str| {
            labels[from..]
                .iter()
                .position(|t| t.contains(needle))
                .map(|p| p + from)
                .unwrap_or_else(|| panic!("{stage}: no {needle:?} after #{from} in {labels:#?}"))
        };
        if stage == "callback" {
            for lane in ["main / loop() / selector", "selector callback"] {
                position(0, lane);
            }
            // A ready fd's callback is called after select returned it,
            // then it unregisters the fd and registers it for reading.
            let select = position(0, "select() → ");
            let connected = position(select, "ready: connected()");
            let reregister = position(connected, "EVENT_READ)");
            position(reregister, "ready: read_response()");
            continue;
        }
        for lane in [
            "main / loop() / selector",
            "selector callback",
            "Future",
            "Task.step",
            "generator (fetch)",
        ] {
            position(0, lane);
        }
        // One wake-up with data, link by link: select returns the fd, the
        // loop runs on_readable, which sets the future's result, whose done
        // callback is Task.step, which sends the chunk into the generator,
        // which yields the next future, on which step is registered.
        let select = position(0, "select() → ");
        let readable = position(select, "ready: on_readable()");
        let set = position(readable, "set_result(b'HTTP/1.0 200");
        let step = position(set, "done callback: step()");
        let send = position(step, "send(b'HTTP/1.0 200");
        let yielded = position(send, "yield Future-");
        position(yielded, ".add_done_callback(step)");
        // Both requests finish.
        assert_eq!(
            labels
                .iter()
                .filter(|t| t.starts_with("finished: StopIteration"))
                .count(),
            2,
            "{stage}: {labels:#?}"
        );
    }
}

#[test]
fn the_chain_refuses_many_urls() {
    let output = example("generator")
        .args(["--trace", "--svg", "x.svg", "--urls", "50"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("use --urls 10 or fewer"), "{stderr}");
}

#[test]
fn a_stage_alone_draws_its_own_timeline() {
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("thread_alone.svg");
    let output = example("thread")
        .args(["--urls", "4", "--delay", "0.2", "--workers", "2", "--svg"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let svg = std::fs::read_to_string(&file).unwrap();
    let found = bars(&render(&svg, "thread_alone"));
    assert_eq!(found.len(), 1 + 4, "{found:?}");
    // Two workers: two lanes, #0 and #1 first, #2 and #3 after them.
    // The bars come from a real run, so the two first ones start as the
    // two threads happen to be scheduled: on a loaded 2-core machine that
    // was 3 px (about 1.6 ms) apart. What the picture must show is that
    // they run side by side: each starts within a quarter of a bar of the
    // other, where one worker alone would put #1 a whole bar later.
    let b = &found[1..];
    let quarter = (b[0].1 - b[0].0) / 4;
    assert!(b[0].0.abs_diff(b[1].0) <= quarter, "{b:?}");
    assert!(b[2].0 + 1 >= b[0].1.min(b[1].1), "{b:?}");
    assert!(b[3].0 + 1 >= b[0].1.min(b[1].1), "{b:?}");
}

#[test]
fn the_ladders_picture_shows_the_staircase_and_the_stack() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let (svg_file, html_file) = (dir.join("ladder.svg"), dir.join("ladder.html"));
    let output = example("ladder")
        .args([
            "--no-build",
            "--urls",
            "4",
            "--delay",
            "0.2",
            "--stages",
            "sync,generator",
        ])
        .arg("--svg")
        .arg(&svg_file)
        .arg("--html")
        .arg(&html_file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let svg = std::fs::read_to_string(&svg_file).unwrap();
    let labels = texts(&svg);
    for label in ["sync", "generator"] {
        assert!(
            labels.iter().any(|t| t == label),
            "no {label:?} in {labels:?}"
        );
    }
    // Each band says its file and its time (at least 4 × 0.2 s for sync).
    let sync_label = labels.iter().find(|t| t.starts_with("sync.py  ")).unwrap();
    let sync_seconds: f64 = sync_label["sync.py  ".len()..]
        .trim_end_matches(" s")
        .parse()
        .unwrap_or_else(|_| panic!("{sync_label:?}"));
    assert!(sync_seconds >= 0.8, "{sync_label:?}");
    let pixmap = render(&svg, "ladder");
    let found = bars(&pixmap);
    assert_eq!(found.len(), 1 + 8, "bars: {found:?}");
    let (sync, generator) = found[1..].split_at(4);
    // sync: each request after the one before, never two at once.
    for pair in sync.windows(2) {
        assert!(pair[0].1 <= pair[1].0 + 1, "sync's bars overlap: {sync:?}");
    }
    // generator: all four in flight at once, over most of a delay.
    let common_start = generator.iter().map(|b| b.0).max().unwrap();
    let common_end = generator.iter().map(|b| b.1).min().unwrap();
    let one_delay = sync[0].1 - sync[0].0;
    assert!(
        common_end > common_start + one_delay / 2,
        "generator's bars do not overlap: {generator:?} (one delay is {one_delay} px)"
    );

    // The page: the table, the picture and the generator's traced chain.
    let html = std::fs::read_to_string(&html_file).unwrap();
    assert!(
        html.contains("<td>generator</td><td>generator.py</td><td>4</td><td>4</td>"),
        "{html}"
    );
    assert_eq!(html.matches("<svg").count(), 2, "two pictures");
    assert!(html.contains("trace: select -&gt; [fd="), "no trace lines");
    assert!(html.contains("ready: on_readable()"), "no chain picture");
}
