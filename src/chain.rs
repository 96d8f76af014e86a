//! `chain`: a traced run drawn as a sequence diagram, the picture the
//! tutorials draw by hand.
//!
//! Why this exists: the generator stage's lesson is a chain of calls that
//! nobody writes down in one place: `loop()` wakes from `select`, runs the
//! selector callback, which calls `future.set_result`, which runs the done
//! callback `Task.step`, which `send`s the result into the generator, which
//! registers the next wait and yields the next future back up the chain.
//! The 500 Lines chapter draws it as a figure; `--trace` prints it as lines.
//! This turns the printed lines of a real run ([`crate::trace::record`])
//! into [`Step`]s between five lanes (the loop and its selector, the
//! selector callback, the `Future`, `Task.step` and the generator) and draws
//! them with plotters' SVG backend, one row per step, top to bottom.
//!
//! The trace says what happened, not who called whom, so [`steps`] follows
//! the call stack the way a reader of the trace does: after
//! `select -> [fd=9, fd=11]` the loop runs fd 9's callback first; a
//! `set_result` right after it is that callback's; a `Task-1.step send`
//! right after a `set_result` is the future's done callback; a `register`
//! after a `send` is the generator's; `yielded` returns to the loop.

use std::collections::{HashMap, VecDeque};

use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The diagram's lanes, left to right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// `main` and `loop()`: `select`, and the selector's register/unregister.
    Loop,
    /// The function the selector calls for a ready fd (`on_readable`,
    /// or `connected` / `read_response` in the callback stage).
    Callback,
    /// `Future`: `set_result` and its done callbacks.
    Future,
    /// `Task.step`.
    Task,
    /// The generator (`fetch`) the Task drives.
    Generator,
}

impl Lane {
    /// The lane's heading.
    pub fn title(self) -> &'static str {
        match self {
            Lane::Loop => "main / loop() / selector",
            Lane::Callback => "selector callback",
            Lane::Future => "Future",
            Lane::Task => "Task.step",
            Lane::Generator => "generator (fetch)",
        }
    }
}

/// One row of the diagram.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Seconds since the trace started.
    pub at: f64,
    /// Who acts.
    pub from: Lane,
    /// Whom it calls, or (the same lane) a note on its own lifeline.
    pub to: Lane,
    /// What it does: `send(None)`, `register(fd=9, EVENT_READ)`, ...
    pub label: String,
    /// Which request the step belongs to (its colour), when known:
    /// 0 for the first socket or Task, 1 for the second, ...
    pub request: Option<usize>,
}

/// Shortens a traced value for an arrow:
/// `b'HTTP/1.0 200 OK\r\nServer: ...Conte... (220 bytes)` →
/// `b'HTTP/1.0 200 OK…' (220 bytes)`.
fn short(value: &str) -> String {
    if let (Some(body), Some(open)) = (value.strip_prefix("b'"), value.rfind(" (")) {
        if value.ends_with(" bytes)") && open > 2 {
            let head: String = body.chars().take(15).collect();
            return format!("b'{head}…'{}", &value[open..]);
        }
    }
    if value.chars().count() > 40 {
        let head: String = value.chars().take(39).collect();
        return format!("{head}…");
    }
    value.to_string()
}

/// Turns the lines of a traced run (as [`crate::trace::take_recorded`]
/// returns them) into the diagram's steps. `stage` names the callbacks:
/// `callback` for callback.py's `connected` / `read_response`, anything else
/// for the generator stages' `on_connected` / `on_readable`.
pub fn steps(lines: &[(f64, String)], stage: &str) -> Vec<Step> {
    let callback_names = if stage == "callback" {
        ("connected()", "read_response()")
    } else {
        ("on_connected()", "on_readable()")
    };
    let mut out = Vec::new();
    // Who runs now, and for which request.
    let mut actor = Lane::Loop;
    let mut current: Option<usize> = None;
    // The fds `select` returned whose callbacks have not been seen yet.
    let mut pending: VecDeque<i64> = VecDeque::new();
    // What each fd is registered for, and whose it is.
    let mut events: HashMap<i64, String> = HashMap::new();
    let mut owner: HashMap<i64, usize> = HashMap::new();
    let mut next_owner = 0usize;
    // Which Task waits on which future: "Task-1 yielded Future-3".
    let mut waiter: HashMap<String, usize> = HashMap::new();
    let mut at = 0.0;

    let task_index = |word: &str| -> Option<usize> {
        word.strip_prefix("Task-")
            .and_then(|n| n.trim_end_matches(".step").parse::<usize>().ok())
            .map(|n| n.saturating_sub(1))
    };
    let fd_of = |word: &str| -> Option<i64> {
        word.strip_prefix("fd=")?.trim_end_matches(',').parse().ok()
    };

    // The loop runs the callback of the next ready fd.
    let call_callback = |fd: i64,
                         out: &mut Vec<Step>,
                         at: f64,
                         events: &HashMap<i64, String>,
                         owner: &HashMap<i64, usize>| {
        let name = match events.get(&fd).map(String::as_str) {
            Some("EVENT_WRITE") => callback_names.0,
            _ => callback_names.1,
        };
        out.push(Step {
            at,
            from: Lane::Loop,
            to: Lane::Callback,
            label: format!("fd={fd} ready: {name}"),
            request: owner.get(&fd).copied(),
        });
    };

    for (time, line) in lines {
        at = *time;
        let words: Vec<&str> = line.split_whitespace().collect();
        // A line that is not a done callback ends the future's part: the
        // call returned to whoever called set_result, and back to the loop.
        let is_step = words.first().is_some_and(|w| w.ends_with(".step"));
        if actor == Lane::Future && !is_step {
            actor = Lane::Loop;
        }
        match words.as_slice() {
            ["select", "->", fds @ ..] => {
                while let Some(fd) = pending.pop_front() {
                    call_callback(fd, &mut out, at, &events, &owner);
                }
                let ready: Vec<i64> = fds
                    .iter()
                    .filter_map(|w| fd_of(w.trim_matches(|c| c == '[' || c == ']')))
                    .collect();
                out.push(Step {
                    at,
                    from: Lane::Loop,
                    to: Lane::Loop,
                    label: format!("select() → {}", fds.join(" ")),
                    request: None,
                });
                pending = ready.into();
                actor = Lane::Loop;
                current = None;
            }
            [verb @ ("register" | "unregister" | "modify"), fd, rest @ ..] => {
                let fd = fd_of(fd).unwrap_or(-1);
                // The selector is called by the callback of this fd (callback
                // stage), by the generator, or by main before the loop.
                if matches!(actor, Lane::Loop | Lane::Callback) && pending.contains(&fd) {
                    while let Some(next) = pending.pop_front() {
                        call_callback(next, &mut out, at, &events, &owner);
                        if next == fd {
                            break;
                        }
                    }
                    actor = Lane::Callback;
                    current = owner.get(&fd).copied();
                }
                if *verb == "register" {
                    // The generator registers its own socket; a callback
                    // re-registers the fd it was called for; main registers
                    // each new socket before the loop starts.
                    let who = match actor {
                        Lane::Generator => current.unwrap_or(next_owner),
                        Lane::Callback => *owner.get(&fd).unwrap_or(&next_owner),
                        _ => next_owner,
                    };
                    owner.insert(fd, who);
                    next_owner = next_owner.max(who + 1);
                }
                if let Some(event) = rest.first() {
                    events.insert(fd, event.to_string());
                }
                let args = std::iter::once(format!("fd={fd}"))
                    .chain(rest.iter().map(|w| w.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ");
                out.push(Step {
                    at,
                    from: actor,
                    to: Lane::Loop,
                    label: format!("selector.{verb}({args})"),
                    request: owner.get(&fd).copied().or(current),
                });
            }
            [verb @ ("set_result" | "set_exception"), future, value @ ..] => {
                if value.first() == Some(&"ignored:") {
                    out.push(Step {
                        at,
                        from: Lane::Future,
                        to: Lane::Future,
                        label: format!("{future}: {verb} ignored, already done"),
                        request: waiter.get(*future).copied(),
                    });
                    continue;
                }
                let mut from = actor;
                if actor == Lane::Loop {
                    if let Some(fd) = pending.pop_front() {
                        call_callback(fd, &mut out, at, &events, &owner);
                        current = owner.get(&fd).copied();
                        from = Lane::Callback;
                    }
                }
                let label = match (from, *verb) {
                    (Lane::Task, _) => format!("{verb}: the Task's own {future}"),
                    (Lane::Loop, "set_exception") => {
                        format!("timer: {verb}({})  {future}", short(&value.join(" ")))
                    }
                    _ => format!("{verb}({})  {future}", short(&value.join(" "))),
                };
                out.push(Step {
                    at,
                    from,
                    to: Lane::Future,
                    label,
                    request: waiter.get(*future).copied().or(current),
                });
                actor = Lane::Future;
            }
            [task, verb @ ("send" | "throw"), value @ ..] if task.ends_with(".step") => {
                let k = task_index(task);
                current = k;
                let label = if actor == Lane::Future {
                    "done callback: step()".to_string()
                } else {
                    format!("Task(fetch()): {}", task.trim_end_matches(".step"))
                };
                out.push(Step {
                    at,
                    from: if actor == Lane::Future {
                        Lane::Future
                    } else {
                        Lane::Loop
                    },
                    to: Lane::Task,
                    label,
                    request: k,
                });
                out.push(Step {
                    at,
                    from: Lane::Task,
                    to: Lane::Generator,
                    label: format!("{verb}({})", short(&value.join(" "))),
                    request: k,
                });
                actor = Lane::Generator;
            }
            [task, "yielded", future] => {
                let k = task_index(task);
                if let Some(k) = k {
                    waiter.insert(future.to_string(), k);
                }
                out.push(Step {
                    at,
                    from: Lane::Generator,
                    to: Lane::Task,
                    label: format!("yield {future}"),
                    request: k,
                });
                out.push(Step {
                    at,
                    from: Lane::Task,
                    to: Lane::Future,
                    label: format!("{future}.add_done_callback(step)"),
                    request: k,
                });
                actor = Lane::Loop;
                current = None;
            }
            [task, "done:", outcome @ ..] => {
                let k = task_index(task);
                out.push(Step {
                    at,
                    from: Lane::Generator,
                    to: Lane::Task,
                    label: format!("finished: {}", short(&outcome.join(" "))),
                    request: k,
                });
                actor = Lane::Task;
                current = k;
            }
            _ => out.push(Step {
                at,
                from: actor,
                to: actor,
                label: short(line),
                request: current,
            }),
        }
    }
    while let Some(fd) = pending.pop_front() {
        call_callback(fd, &mut out, at, &events, &owner);
    }
    out
}

/// A drawing failed (plotters' error, as text).
fn draw_error<E: std::fmt::Debug>(e: E) -> std::io::Error {
    std::io::Error::other(format!("drawing failed: {e:?}"))
}

/// The colour of request `k`'s arrows (grey when the step has no request).
pub fn request_colour(k: Option<usize>) -> RGBColor {
    const COLOURS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
    ];
    k.map_or(RGBColor(110, 110, 110), |k| COLOURS[k % COLOURS.len()])
}

/// Draws `steps` as a sequence diagram: a heading per lane that appears,
/// a dashed lifeline under it, and one row per step, an arrow from lane to
/// lane (a boxed note when a lane acts on itself) labelled with what
/// happened, coloured by request, with the time on the left.
pub fn svg(title: &str, steps: &[Step]) -> std::io::Result<String> {
    let mut lanes: Vec<Lane> = steps.iter().flat_map(|s| [s.from, s.to]).collect();
    lanes.sort();
    lanes.dedup();
    if lanes.is_empty() {
        lanes.push(Lane::Loop);
    }
    let (left, lane_width, row, top) = (90i32, 230i32, 24i32, 96i32);
    let width = (left + lane_width * lanes.len() as i32 + 20) as u32;
    let height = (top + row * steps.len() as i32 + 40) as u32;
    let x_of = |lane: Lane| {
        let i = lanes.iter().position(|&l| l == lane).unwrap_or(0) as i32;
        left + lane_width * i + lane_width / 2
    };

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let font = |size: u32| TextStyle::from(("sans-serif", size).into_font()).color(&BLACK);
        root.draw(&Text::new(title.to_string(), (12, 10), font(17)))
            .map_err(draw_error)?;
        let lifeline_end = height as i32 - 20;
        for &lane in &lanes {
            let x = x_of(lane);
            root.draw(&Rectangle::new(
                [(x - lane_width / 2 + 10, 44), (x + lane_width / 2 - 10, 74)],
                RGBColor(230, 236, 245).filled(),
            ))
            .map_err(draw_error)?;
            root.draw(&Text::new(
                lane.title(),
                (x, 59),
                font(14).pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(draw_error)?;
            root.draw(&DashedPathElement::new(
                vec![(x, 74), (x, lifeline_end)],
                4,
                4,
                RGBColor(170, 170, 170).stroke_width(1),
            ))
            .map_err(draw_error)?;
        }
        let time_font = font(11)
            .color(&RGBColor(120, 120, 120))
            .pos(Pos::new(HPos::Right, VPos::Center));
        for (i, step) in steps.iter().enumerate() {
            let y = top + row * i as i32 + row / 2;
            let colour = request_colour(step.request);
            root.draw(&Text::new(
                format!("{:.1} ms", step.at * 1000.0),
                (left - 8, y),
                time_font.clone(),
            ))
            .map_err(draw_error)?;
            let (x0, x1) = (x_of(step.from), x_of(step.to));
            if x0 == x1 {
                // A note on the lane's own lifeline.
                let half = (lane_width / 2 - 6).min(6 * step.label.chars().count() as i32 / 2 + 8);
                root.draw(&Rectangle::new(
                    [(x0 - half, y - 9), (x0 + half, y + 8)],
                    RGBColor(255, 250, 220).filled(),
                ))
                .map_err(draw_error)?;
                root.draw(&Rectangle::new(
                    [(x0 - half, y - 9), (x0 + half, y + 8)],
                    colour.stroke_width(1),
                ))
                .map_err(draw_error)?;
                root.draw(&Text::new(
                    step.label.clone(),
                    (x0, y),
                    font(11)
                        .color(&colour)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                ))
                .map_err(draw_error)?;
                continue;
            }
            let y_line = y + 6;
            root.draw(&PathElement::new(
                vec![(x0, y_line), (x1, y_line)],
                colour.stroke_width(2),
            ))
            .map_err(draw_error)?;
            let dir = if x1 > x0 { -1 } else { 1 };
            root.draw(&Polygon::new(
                vec![
                    (x1, y_line),
                    (x1 + dir * 9, y_line - 5),
                    (x1 + dir * 9, y_line + 5),
                ],
                colour.filled(),
            ))
            .map_err(draw_error)?;
            root.draw(&Text::new(
                step.label.clone(),
                ((x0 + x1) / 2, y_line - 3),
                font(11)
                    .color(&colour)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            ))
            .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<(f64, String)> {
        text.lines()
            .map(|l| (0.0, l.trim().to_string()))
            .filter(|(_, l)| !l.is_empty())
            .collect()
    }

    #[test]
    fn one_wake_up_of_the_generator_is_the_whole_chain() {
        let steps = steps(
            &lines(
                "Task-1.step send None
                 register fd=9 EVENT_WRITE
                 Task-1 yielded Future-3
                 select -> [fd=9]
                 set_result Future-3 None
                 Task-1.step send None
                 unregister fd=9",
            ),
            "generator",
        );
        let chain: Vec<(Lane, Lane)> = steps.iter().map(|s| (s.from, s.to)).collect();
        use Lane::*;
        assert_eq!(
            chain,
            [
                (Loop, Task),
                (Task, Generator),
                (Generator, Loop),
                (Generator, Task),
                (Task, Future),
                (Loop, Loop),
                (Loop, Callback),
                (Callback, Future),
                (Future, Task),
                (Task, Generator),
                (Generator, Loop),
            ]
        );
        assert_eq!(steps[6].label, "fd=9 ready: on_connected()");
        assert!(steps.iter().all(|s| s.request == Some(0) || s.from == s.to));
    }

    #[test]
    fn the_callback_stage_names_its_callbacks_by_what_the_fd_waits_for() {
        let steps = steps(
            &lines(
                "register fd=6 EVENT_WRITE
                 register fd=7 EVENT_WRITE
                 select -> [fd=6, fd=7]
                 unregister fd=6
                 register fd=6 EVENT_READ
                 unregister fd=7
                 register fd=7 EVENT_READ
                 select -> [fd=7]",
            ),
            "callback",
        );
        let calls: Vec<(&str, Option<usize>)> = steps
            .iter()
            .filter(|s| s.to == Lane::Callback)
            .map(|s| (s.label.as_str(), s.request))
            .collect();
        assert_eq!(
            calls,
            [
                ("fd=6 ready: connected()", Some(0)),
                ("fd=7 ready: connected()", Some(1)),
                ("fd=7 ready: read_response()", Some(1)),
            ]
        );
    }

    #[test]
    fn long_values_are_shortened_but_keep_their_size() {
        assert_eq!(
            short(r"b'HTTP/1.0 200 OK\r\nServer: pyfiber-slow-server\r\nConte... (220 bytes)"),
            "b'HTTP/1.0 200 OK…' (220 bytes)"
        );
        assert_eq!(short("None"), "None");
    }
}
