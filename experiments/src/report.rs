//! Writing a report: `runs.csv`, `summary.csv`, charts, `index.html` and `report.json` under
//! `OUT/NAME/`, and `OUT/index.html` linking every report. Shard files for `merge` too.
//!
//! Nothing written depends on the machine, the time or the thread count: a rerun with the same
//! seeds writes the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analysis::{self, Figures, Table};
use crate::runner::{self, RunRecord};
use crate::sweep::{describe, Sweep};
use crate::{chart, Error};

/// The facts about a report that the top index shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub name: String,
    pub title: String,
    pub description: String,
    pub command: String,
    pub seeds: Vec<u64>,
    pub points: usize,
    pub runs: usize,
    pub charts: Vec<String>,
    /// Runs whose promise checks failed (should be 0).
    pub promise_failures: usize,
}

/// The command that reproduces a report.
pub fn command(sweep: &Sweep, seeds: &[u64]) -> String {
    format!(
        "cargo run --release -- experiment run {} --seeds {}",
        sweep.name,
        seeds.len()
    )
}

/// A cheap fingerprint of a sweep's definition, so slices of different sweeps never merge.
pub fn fingerprint(sweep: &Sweep) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |s: &str| {
        for b in s.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(&sweep.name);
    feed(&sweep.template);
    for p in &sweep.points {
        for (n, v) in &p.params {
            feed(n);
            feed(&v.to_string());
        }
    }
    format!("{h:016x}")
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> Error + '_ {
    move |e| Error::Data {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes the whole report of `sweep` from its records (in job order) and returns its directory.
pub fn write(
    sweep: &Sweep,
    seeds: &[u64],
    records: &[RunRecord],
    out: &Path,
) -> Result<PathBuf, Error> {
    let dir = out.join(&sweep.name);
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    write_runs(sweep, records, &dir.join("runs.csv"))?;
    write_summary(sweep, records, &dir.join("summary.csv"))?;
    let figures = analysis::analyse(sweep, records)?;
    for c in &figures.charts {
        chart::render(c, &dir)?;
    }
    let meta = Meta {
        name: sweep.name.clone(),
        title: sweep.title.clone(),
        description: sweep.description.trim().to_string(),
        command: command(sweep, seeds),
        seeds: seeds.to_vec(),
        points: sweep.points.len(),
        runs: records.len(),
        charts: figures.charts.iter().map(|c| c.file.clone()).collect(),
        promise_failures: records
            .iter()
            .filter(|r| r.metric("promises_kept") < 1.0)
            .count(),
    };
    let html = page(sweep, &meta, &figures);
    let path = dir.join("index.html");
    std::fs::write(&path, html).map_err(Error::io(&path))?;
    let path = dir.join("report.json");
    let json = serde_json::to_string_pretty(&meta).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(&path, json + "\n").map_err(Error::io(&path))?;
    Ok(dir)
}

/// `runs.csv`: the point's parameters, the seed, the trace hash and every figure.
fn write_runs(sweep: &Sweep, records: &[RunRecord], path: &Path) -> Result<(), Error> {
    let mut w = csv::Writer::from_path(path).map_err(csv_err(path))?;
    let params: Vec<String> = param_names(sweep);
    let metrics = metric_names(records);
    let mut header = params.clone();
    header.extend(["seed".to_string(), "trace_hash".to_string()]);
    header.extend(metrics.iter().cloned());
    w.write_record(&header).map_err(csv_err(path))?;
    for r in records {
        let p = &sweep.points[r.point];
        let mut row: Vec<String> = params.iter().map(|n| p.text(n)).collect();
        row.push(r.seed.to_string());
        row.push(r.trace_hash.clone());
        row.extend(metrics.iter().map(|m| num(r.metric(m))));
        w.write_record(&row).map_err(csv_err(path))?;
    }
    w.flush().map_err(Error::io(path))
}

/// `summary.csv`: per point, the mean over seeds of every figure, and the standard deviation
/// of the ones that matter most.
fn write_summary(sweep: &Sweep, records: &[RunRecord], path: &Path) -> Result<(), Error> {
    let mut w = csv::Writer::from_path(path).map_err(csv_err(path))?;
    let params = param_names(sweep);
    let metrics = metric_names(records);
    let key = analysis::key_metrics(sweep.kind);
    let mut header = params.clone();
    header.push("runs".into());
    for m in &metrics {
        header.push(m.clone());
        if key.contains(&m.as_str()) {
            header.push(format!("{m}_sd"));
        }
    }
    w.write_record(&header).map_err(csv_err(path))?;
    for (i, p) in sweep.points.iter().enumerate() {
        let runs: Vec<&RunRecord> = records.iter().filter(|r| r.point == i).collect();
        if runs.is_empty() {
            continue;
        }
        let mut row: Vec<String> = params.iter().map(|n| p.text(n)).collect();
        row.push(runs.len().to_string());
        for m in &metrics {
            let v: Vec<f64> = runs.iter().map(|r| r.metric(m)).collect();
            row.push(num(analysis::mean(&v)));
            if key.contains(&m.as_str()) {
                row.push(num(analysis::sd(&v)));
            }
        }
        w.write_record(&row).map_err(csv_err(path))?;
    }
    w.flush().map_err(Error::io(path))
}

fn param_names(sweep: &Sweep) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for p in &sweep.points {
        for (n, _) in p.public() {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    names
}

fn metric_names(records: &[RunRecord]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in records {
        for (n, _) in &r.metrics {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    names
}

/// A figure for CSV: integers as integers, others to 6 significant digits.
pub fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.is_finite() {
        let digits = (5 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
        let s = format!("{v:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        String::new()
    }
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) const STYLE: &str =
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;\
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid \
#ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child\
{text-align:left}figure{margin:1.5em 0}img{max-width:100%;border:1px solid #ddd}\
figcaption{color:#555;font-size:90%}code,pre{background:#f6f6f6;padding:2px 4px}";

fn table_html(t: &Table) -> String {
    let mut s = format!("<h3>{}</h3>\n<table>\n<tr>", esc(&t.title));
    for h in &t.header {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr>\n");
    for row in &t.rows {
        s.push_str("<tr>");
        for c in row {
            let _ = write!(s, "<td>{}</td>", esc(c));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    if !t.note.is_empty() {
        let _ = writeln!(s, "<p>{}</p>", esc(&t.note));
    }
    s
}

fn page(sweep: &Sweep, meta: &Meta, f: &Figures) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        esc(&meta.title)
    );
    let _ = writeln!(
        s,
        "<p><a href=\"../index.html\">All experiments</a></p>\n<h1>{}</h1>\n<p>{}</p>",
        esc(&meta.title),
        esc(&meta.description)
    );
    let _ = writeln!(
        s,
        "<h2>Reproduce</h2>\n<pre>{}</pre>\n<p>Seeds {} for each of {} points ({} runs), \
         deterministic simulation (event-driven backend): the same command writes the same \
         CSV. Data: <a href=\"runs.csv\">runs.csv</a> (one row per run), \
         <a href=\"summary.csv\">summary.csv</a> (mean over seeds per point). Runs whose \
         protocol promises failed: {}.</p>",
        esc(&meta.command),
        seed_range(&meta.seeds),
        meta.points,
        meta.runs,
        meta.promise_failures
    );
    s.push_str("<h2>Charts</h2>\n");
    for c in &f.charts {
        let _ = writeln!(
            s,
            "<figure><a href=\"{0}.svg\"><img src=\"{0}.png\" alt=\"{1}\"></a>\
             <figcaption>{2} (<a href=\"{0}.svg\">SVG</a>)</figcaption></figure>",
            c.file,
            esc(&c.title),
            esc(&c.caption)
        );
    }
    s.push_str("<h2>Figures</h2>\n");
    for t in &f.tables {
        s.push_str(&table_html(t));
    }
    s.push_str("<h2>Points</h2>\n<table>\n<tr><th>#</th><th>parameters</th></tr>\n");
    for (i, p) in sweep.points.iter().enumerate() {
        let _ = writeln!(s, "<tr><td>{i}</td><td>{}</td></tr>", esc(&describe(p)));
    }
    s.push_str("</table>\n</body>\n</html>\n");
    s
}

fn seed_range(seeds: &[u64]) -> String {
    match (seeds.first(), seeds.last()) {
        (Some(a), Some(b)) if seeds.len() > 1 => format!("{a}..={b}"),
        (Some(a), _) => a.to_string(),
        _ => "none".into(),
    }
}

/// Rewrites `OUT/index.html` from every `OUT/*/report.json`.
pub fn write_index(out: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(out).map_err(Error::io(out))?;
    let mut metas: BTreeMap<String, Meta> = BTreeMap::new();
    for entry in std::fs::read_dir(out).map_err(Error::io(out))? {
        let entry = entry.map_err(Error::io(out))?;
        let path = entry.path().join("report.json");
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
        let meta: Meta = serde_json::from_str(&text).map_err(|e| Error::Data {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        metas.insert(meta.name.clone(), meta);
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>livecam experiments</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>livecam experiments</h1>\n<p>Each report was produced in deterministic simulation \
         by the command shown; open one for its charts, figures and data.</p>\n<table>\n\
         <tr><th>experiment</th><th>what it shows</th><th>runs</th><th>seeds</th>\
         <th>command</th></tr>"
    );
    for m in metas.values() {
        let first = m.charts.first().cloned().unwrap_or_default();
        let _ = writeln!(
            s,
            "<tr><td><a href=\"{0}/index.html\">{0}</a></td><td>{1}</td><td>{2}</td>\
             <td>{3}</td><td><code>{4}</code></td></tr>",
            esc(&m.name),
            esc(&m.title),
            m.runs,
            seed_range(&m.seeds),
            esc(&m.command)
        );
        let _ = first;
    }
    s.push_str("</table>\n");
    for m in metas.values() {
        if let Some(c) = m.charts.first() {
            let _ = writeln!(
                s,
                "<h2><a href=\"{0}/index.html\">{1}</a></h2>\n<a href=\"{0}/index.html\">\
                 <img src=\"{0}/{2}.png\" alt=\"{1}\" style=\"max-width:560px\"></a>",
                esc(&m.name),
                esc(&m.title),
                c
            );
        }
    }
    s.push_str("</body>\n</html>\n");
    let path = out.join("index.html");
    std::fs::write(&path, s).map_err(Error::io(&path))
}

/// A slice of a sweep's runs, saved for `merge`.
#[derive(Debug, Serialize, Deserialize)]
struct ShardFile {
    sweep: String,
    fingerprint: String,
    seeds: Vec<u64>,
    index: usize,
    count: usize,
    records: Vec<RunRecord>,
}

/// Saves shard `i` of `n` as `OUT/NAME/shards/shard-I-of-N.json`.
pub fn write_shard(
    sweep: &Sweep,
    seeds: &[u64],
    (index, count): (usize, usize),
    records: &[RunRecord],
    out: &Path,
) -> Result<PathBuf, Error> {
    let dir = out.join(&sweep.name).join("shards");
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let path = dir.join(format!("shard-{index}-of-{count}.json"));
    let file = ShardFile {
        sweep: sweep.name.clone(),
        fingerprint: fingerprint(sweep),
        seeds: seeds.to_vec(),
        index,
        count,
        records: records.to_vec(),
    };
    let json = serde_json::to_string(&file).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(&path, json).map_err(Error::io(&path))?;
    Ok(path)
}

/// Reads every shard of `sweep` under `out`, checks that they are the slices of one run and
/// that none is missing, and returns the seeds and the records in job order.
pub fn read_shards(sweep: &Sweep, out: &Path) -> Result<(Vec<u64>, Vec<RunRecord>), Error> {
    let dir = out.join(&sweep.name).join("shards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(Error::io(&dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut shards: Vec<ShardFile> = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        let shard: ShardFile = serde_json::from_str(&text).map_err(|e| Error::Data {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let bad = |message: String| Error::Data {
            path: path.display().to_string(),
            message,
        };
        if shard.sweep != sweep.name || shard.fingerprint != fingerprint(sweep) {
            return Err(bad(format!(
                "a slice of another definition of {:?}: rerun it with this build",
                shard.sweep
            )));
        }
        if let Some(first) = shards.first() {
            if shard.count != first.count || shard.seeds != first.seeds {
                return Err(bad(format!(
                    "shard {}/{} with {} seeds does not match shard {}/{} with {} seeds",
                    shard.index,
                    shard.count,
                    shard.seeds.len(),
                    first.index,
                    first.count,
                    first.seeds.len()
                )));
            }
        }
        shards.push(shard);
    }
    let Some(first) = shards.first() else {
        return Err(Error::Data {
            path: dir.display().to_string(),
            message: "no shard files".into(),
        });
    };
    let (count, seeds) = (first.count, first.seeds.clone());
    let mut have: Vec<usize> = shards.iter().map(|s| s.index).collect();
    have.sort_unstable();
    have.dedup();
    if have != (0..count).collect::<Vec<_>>() || shards.len() != count {
        return Err(Error::Data {
            path: dir.display().to_string(),
            message: format!("need shards 0..{count} once each, found {have:?}"),
        });
    }
    let jobs = runner::jobs(sweep, &seeds);
    let mut by_job: BTreeMap<(usize, u64), RunRecord> = BTreeMap::new();
    for s in shards {
        for r in s.records {
            by_job.insert((r.point, r.seed), r);
        }
    }
    let mut records = Vec::with_capacity(jobs.len());
    for j in &jobs {
        match by_job.remove(j) {
            Some(r) => records.push(r),
            None => {
                return Err(Error::Data {
                    path: dir.display().to_string(),
                    message: format!("no run of point {} seed {}", j.0, j.1),
                })
            }
        }
    }
    Ok((seeds, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_csv() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.123456789), "0.123457");
        assert_eq!(num(1234.56789), "1234.57");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(f64::NAN), "");
    }
}
