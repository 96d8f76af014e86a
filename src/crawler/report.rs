//! The crawler's report: `reporting.py` of the 500 Lines chapter, plus JSON.
//!
//! Why this exists: a crawl's result is the list of what happened to each
//! URL. The chapter prints it in a fixed shape — `*** Report ***`, one line
//! per URL sorted by URL in one of four forms, a `Finished ...` summary line,
//! the counters, then `Todo`, `Done` and `Date` — which the Python twin
//! prints too, so the two runs can be compared. `--json` gives the same facts
//! to programs.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::SystemTime;

use super::{Crawler, FetchStatistic, Outcome};

/// `reporting.Stats`: named counters, printed sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `self.stats`: counter name → count.
    pub stats: BTreeMap<String, u64>,
}

impl Stats {
    /// `stats.add(key, count)`.
    pub fn add(&mut self, key: &str, count: u64) {
        *self.stats.entry(key.to_string()).or_insert(0) += count;
    }

    /// `stats.report()`: `'%10d' % count, key` per counter, sorted by key.
    pub fn report(&self, out: &mut dyn Write) -> io::Result<()> {
        for (key, count) in &self.stats {
            writeln!(out, "{count:10} {key}")?;
        }
        Ok(())
    }
}

/// Python's `str(None)` for a missing field.
fn or_none<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "None".to_string(), ToString::to_string)
}

/// `url_report(stat, stats)`: counts the statistic and prints its line.
///
/// - error: `url error ExceptionName: message`
/// - redirect: `url status redirect next_url`
/// - html: `url status text/html encoding size new/total`
/// - other: `url status content_type encoding size` (no `new/total`: the
///   chapter prints it for html only; a status other than 200 counts as
///   `error` + `status_N`)
pub fn url_report(stat: &FetchStatistic, stats: &mut Stats, out: &mut dyn Write) -> io::Result<()> {
    match stat.outcome() {
        Outcome::Error => {
            let exc = stat.exception.as_ref().expect("an error has an exception");
            stats.add("fail", 1);
            stats.add(&format!("fail_{}", exc.name()), 1);
            writeln!(out, "{} error {}", stat.url, exc.line())
        }
        Outcome::Redirect => {
            stats.add("redirect", 1);
            writeln!(
                out,
                "{} {} redirect {}",
                stat.url,
                or_none(&stat.status),
                or_none(&stat.next_url)
            )
        }
        Outcome::Html => {
            stats.add("html", 1);
            stats.add("html_bytes", stat.size as u64);
            writeln!(
                out,
                "{} {} {} {} {} {}/{}",
                stat.url,
                or_none(&stat.status),
                or_none(&stat.content_type),
                or_none(&stat.encoding),
                stat.size,
                stat.num_new_urls,
                stat.num_urls
            )
        }
        Outcome::Other => {
            if stat.status == Some(200) {
                stats.add("other", 1);
                stats.add("other_bytes", stat.size as u64);
            } else {
                stats.add("error", 1);
                stats.add("error_bytes", stat.size as u64);
                stats.add(&format!("status_{}", or_none(&stat.status)), 1);
            }
            writeln!(
                out,
                "{} {} {} {} {}",
                stat.url,
                or_none(&stat.status),
                or_none(&stat.content_type),
                or_none(&stat.encoding),
                stat.size
            )
        }
    }
}

/// `done` sorted by URL, as the report shows it.
fn sorted(crawler: &Crawler) -> Vec<FetchStatistic> {
    let mut show = crawler.done();
    show.sort_by(|a, b| a.url.cmp(&b.url));
    show
}

/// `(len(done) / dt / max_tasks)`: URLs per second per task.
fn speed(crawler: &Crawler, done: usize) -> f64 {
    let dt = crawler.elapsed().as_secs_f64();
    if dt > 0.0 && crawler.max_tasks > 0 {
        done as f64 / dt / crawler.max_tasks as f64
    } else {
        0.0
    }
}

/// `reporting.report(crawler)`: the chapter's text report.
pub fn report(crawler: &Crawler, out: &mut dyn Write) -> io::Result<()> {
    let show = sorted(crawler);
    let mut stats = Stats::default();
    writeln!(out, "*** Report ***")?;
    for stat in &show {
        url_report(stat, &mut stats, out)?;
    }
    writeln!(
        out,
        "Finished {} urls in {:.3} secs (max_tasks={}) ({:.3} urls/sec/task)",
        show.len(),
        crawler.elapsed().as_secs_f64(),
        crawler.max_tasks,
        speed(crawler, show.len())
    )?;
    stats.report(out)?;
    writeln!(out, "Todo: {}", crawler.q.qsize())?;
    writeln!(out, "Done: {}", show.len())?;
    writeln!(out, "Date: {} local time", ctime(SystemTime::now()))
}

/// A JSON string literal (RFC 8259 escapes).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON string, or `null`.
fn json_opt(v: Option<String>) -> String {
    v.map_or_else(|| "null".to_string(), |s| json_str(&s))
}

/// `--json`: the same facts as [`report`], as one JSON object: `roots`,
/// `max_tasks`, `elapsed` (seconds), `urls` (one object per URL, sorted, with
/// its `outcome` — `error`, `redirect`, `html` or `other` — and the
/// statistic's fields, `exception` as `Name: message`), `stats` (the
/// counters), `todo`, `done` and `date`.
pub fn report_json(crawler: &Crawler, out: &mut dyn Write) -> io::Result<()> {
    let show = sorted(crawler);
    let mut stats = Stats::default();
    for stat in &show {
        url_report(stat, &mut stats, &mut io::sink())?;
    }
    let roots: Vec<String> = crawler.roots.iter().map(|r| json_str(r)).collect();
    writeln!(out, "{{")?;
    writeln!(out, "  \"roots\": [{}],", roots.join(", "))?;
    writeln!(out, "  \"max_tasks\": {},", crawler.max_tasks)?;
    writeln!(
        out,
        "  \"elapsed\": {:.6},",
        crawler.elapsed().as_secs_f64()
    )?;
    writeln!(out, "  \"urls\": [")?;
    for (i, stat) in show.iter().enumerate() {
        let comma = if i + 1 < show.len() { "," } else { "" };
        writeln!(
            out,
            "    {{\"url\": {}, \"outcome\": {}, \"status\": {}, \"next_url\": {}, \
             \"exception\": {}, \"size\": {}, \"content_type\": {}, \"encoding\": {}, \
             \"num_urls\": {}, \"num_new_urls\": {}}}{comma}",
            json_str(&stat.url),
            json_str(stat.outcome().name()),
            stat.status
                .map_or_else(|| "null".to_string(), |s| s.to_string()),
            json_opt(stat.next_url.clone()),
            json_opt(stat.exception.as_ref().map(|e| e.line())),
            stat.size,
            json_opt(stat.content_type.clone()),
            json_opt(stat.encoding.clone()),
            stat.num_urls,
            stat.num_new_urls
        )?;
    }
    writeln!(out, "  ],")?;
    let counters: Vec<String> = stats
        .stats
        .iter()
        .map(|(k, v)| format!("{}: {v}", json_str(k)))
        .collect();
    writeln!(out, "  \"stats\": {{{}}},", counters.join(", "))?;
    writeln!(out, "  \"todo\": {},", crawler.q.qsize())?;
    writeln!(out, "  \"done\": {},", show.len())?;
    writeln!(
        out,
        "  \"date\": {}",
        json_str(&format!("{} local time", ctime(SystemTime::now())))
    )?;
    writeln!(out, "}}")
}

/// `time.ctime(t)`: `Sat Nov 21 22:49:09 2026`, in local time, as the
/// chapter's `Date:` line prints it. Local time is whatever `TZ` (or
/// `/etc/localtime`) says, read by chrono as the C library reads it.
pub fn ctime(t: SystemTime) -> String {
    // `%e` pads the day with a space, as asctime's `%2d` does.
    chrono::DateTime::<chrono::Local>::from(t)
        .format("%a %b %e %H:%M:%S %Y")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape() {
        assert_eq!(json_str("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
