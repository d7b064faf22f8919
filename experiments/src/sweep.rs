//! Sweep definitions: the `experiments/*.toml` files.
//!
//! A sweep is a scenario template (the scenario TOML of [`livecam_sim::scenario`] with
//! `${name}` placeholders) and the points to fill it with. Each `[[points]]` block maps
//! parameter names to lists of values and stands for every combination of them (a cartesian
//! product); the sweep's points are the blocks' points in file order. Every point runs once per
//! seed.
//!
//! ```toml
//! name = "example"
//! title = "Loss against policy"
//! kind = "policy_vs_loss"     # which analysis draws the charts
//! description = "What it shows."
//! seeds = 5                   # seeds 1..=5 per point
//! quick_seeds = 2             # with --quick
//! template = '''
//! duration_s = 10.0
//! [workload]
//! fps = 10.0
//! frame_bytes = 10000
//! policy = "${policy}"
//! ...
//! [link]
//! loss = ${loss}
//! '''
//!
//! [[points]]
//! policy = ["seed", "model"]
//! loss = [0.0, 0.1]
//! ```
//!
//! `${cellular}` needs no point: it is the directory of the recorded LTE uplink traces
//! ([`cellular_dir`]), so a sweep can read them in place wherever it is run from. Where that
//! directory is not there (a checkout of livecam on its own), a sweep that names it loads as
//! [`Sweep::missing`]: listed, refused when run by name, skipped by `--all`, and every other
//! sweep runs as usual.
//!
//! A value is inserted as written: numbers as numbers, strings as their text (quote them in the
//! template where TOML wants a string). Parameters whose name starts with `_` fill the template
//! but are left out of the CSV (e.g. a whole `[[faults]]` block), so give such points a
//! readable label parameter too.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use livecam_sim::Scenario;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The sweeps shipped with livecam, compiled in: `(file name, text)`.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "policy-vs-loss.toml",
        include_str!("../policy-vs-loss.toml"),
    ),
    (
        "segment-size-trace.toml",
        include_str!("../segment-size-trace.toml"),
    ),
    (
        "cluster-balance.toml",
        include_str!("../cluster-balance.toml"),
    ),
    ("failover.toml", include_str!("../failover.toml")),
    (
        "capacity-adaptation.toml",
        include_str!("../capacity-adaptation.toml"),
    ),
    ("bonding.toml", include_str!("../bonding.toml")),
];

/// Which analysis turns a sweep's runs into charts and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    PolicyVsLoss,
    SegmentSizeTrace,
    ClusterBalance,
    Failover,
    CapacityAdaptation,
    Bonding,
}

/// One parameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Value {
    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Text(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            // Rust prints floats without an exponent and with a `.0` only when asked; TOML
            // needs a float to look like one.
            Value::Float(x) if x.fract() == 0.0 && x.is_finite() => write!(f, "{x:.1}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(s) => f.write_str(s),
        }
    }
}

/// Most points one sweep file may expand to (every point is a scenario to check and run).
pub const MAX_POINTS: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    name: String,
    title: String,
    kind: Kind,
    #[serde(default)]
    description: String,
    seeds: u64,
    quick_seeds: u64,
    template: String,
    points: Vec<BTreeMap<String, Vec<toml::Value>>>,
}

/// One point of a sweep: parameter values in name order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub params: Vec<(String, Value)>,
}

impl Point {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Parameter `name` as a number.
    pub fn num(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(Value::as_f64)
    }

    /// Parameter `name` as text (numbers formatted).
    pub fn text(&self, name: &str) -> String {
        self.get(name).map(|v| v.to_string()).unwrap_or_default()
    }

    /// The parameters written to CSV (names not starting with `_`).
    pub fn public(&self) -> impl Iterator<Item = &(String, Value)> {
        self.params.iter().filter(|(n, _)| !n.starts_with('_'))
    }
}

/// A loaded, checked sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub name: String,
    pub title: String,
    pub kind: Kind,
    pub description: String,
    pub seeds: u64,
    pub quick_seeds: u64,
    pub template: String,
    pub points: Vec<Point>,
    /// The recorded traces' directory, when the sweep reads them and it is not there: its
    /// points are then not checked (each names a file that cannot be read) and it cannot run.
    pub missing: Option<String>,
}

impl Sweep {
    /// Parses a sweep file and checks that every point makes a valid scenario (a sweep that
    /// reads the recorded traces where they are not there: [`Sweep::missing`]).
    pub fn parse(file: &str, text: &str) -> Result<Sweep, Error> {
        Self::parse_with(file, text, Path::new(CELLULAR_DIR))
    }

    /// [`Sweep::parse`], with the recorded traces expected in `cellular`.
    fn parse_with(file: &str, text: &str, cellular: &Path) -> Result<Sweep, Error> {
        let bad = |message: String| Error::Sweep {
            file: file.to_string(),
            message,
        };
        let f: SweepFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if f.seeds == 0 || f.quick_seeds == 0 {
            return Err(bad("seeds and quick_seeds must be at least 1".into()));
        }
        let mut points = Vec::new();
        for (b, block) in f.points.iter().enumerate() {
            let mut combos: Vec<Vec<(String, Value)>> = vec![Vec::new()];
            for (name, values) in block {
                if values.is_empty() {
                    return Err(bad(format!("points[{b}].{name}: no values")));
                }
                let values = values
                    .iter()
                    .map(|v| match v {
                        toml::Value::Integer(i) => Ok(Value::Int(*i)),
                        toml::Value::Float(x) => Ok(Value::Float(*x)),
                        toml::Value::String(s) => Ok(Value::Text(s.clone())),
                        other => Err(bad(format!(
                            "points[{b}].{name}: {other} is not a number or a string"
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                // Counted before the product is built: a few short lists multiply past memory.
                let total =
                    (combos.len().saturating_mul(values.len())).saturating_add(points.len());
                if total > MAX_POINTS {
                    return Err(bad(format!(
                        "points[{b}].{name}: more than {MAX_POINTS} points in all"
                    )));
                }
                combos = combos
                    .into_iter()
                    .flat_map(|c| {
                        values.iter().map(move |v| {
                            let mut c = c.clone();
                            c.push((name.clone(), v.clone()));
                            c
                        })
                    })
                    .collect();
            }
            points.extend(combos.into_iter().map(|params| Point { params }));
        }
        if points.is_empty() {
            return Err(bad("no points".into()));
        }
        let sweep = Sweep {
            name: f.name,
            title: f.title,
            kind: f.kind,
            description: f.description,
            seeds: f.seeds,
            quick_seeds: f.quick_seeds,
            template: f.template,
            points,
            missing: None,
        };
        if sweep.reads_traces() && !cellular.is_dir() {
            return Ok(Sweep {
                missing: Some(cellular.display().to_string()),
                ..sweep
            });
        }
        for (i, p) in sweep.points.iter().enumerate() {
            sweep
                .scenario(p)
                .map_err(|e| bad(format!("point {i} ({}): {e}", describe(p))))?;
        }
        Ok(sweep)
    }

    /// Whether the sweep reads the recorded traces (`${cellular}` in its template or a value).
    pub fn reads_traces(&self) -> bool {
        self.template.contains(CELLULAR)
            || self
                .points
                .iter()
                .flat_map(|p| &p.params)
                .any(|(_, v)| matches!(v, Value::Text(t) if t.contains(CELLULAR)))
    }

    /// The sweep, or why it cannot run here (the recorded traces it reads are not there).
    pub fn runnable(self) -> Result<Sweep, Error> {
        match &self.missing {
            None => Ok(self),
            Some(dir) => Err(Error::Sweep {
                file: self.name,
                message: format!(
                    "reads the recorded LTE uplink traces in {dir}, which is not there \
                     (the mahimahi traces, GPLv3: they are not part of livecam)"
                ),
            }),
        }
    }

    /// The scenario text of a point.
    pub fn render(&self, point: &Point) -> Result<String, String> {
        let mut out = String::with_capacity(self.template.len());
        let mut rest = self.template.as_str();
        while let Some(at) = rest.find("${") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| "an unclosed ${ in the template".to_string())?;
            let name = &after[..end];
            match point.get(name) {
                // A value may name the traces' directory too (a whole `[[links]]` block).
                Some(v) => out.push_str(&v.to_string().replace(CELLULAR, &cellular_dir())),
                None if name == "cellular" => out.push_str(&cellular_dir()),
                None => {
                    return Err(format!(
                        "the template uses ${{{name}}}, which no point sets"
                    ))
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The scenario of a point, parsed and checked.
    pub fn scenario(&self, point: &Point) -> Result<Scenario, String> {
        let text = self.render(point)?;
        let mut s = Scenario::parse(&text).map_err(|e| e.to_string())?;
        if s.name.is_empty() {
            s.name = self.name.clone();
        }
        Ok(s)
    }

    /// The seeds every point runs: `1..=n`.
    pub fn seed_list(&self, quick: bool, seeds: Option<u64>) -> Vec<u64> {
        let n = seeds.unwrap_or(if quick { self.quick_seeds } else { self.seeds });
        (1..=n).collect()
    }
}

/// The directory of the recorded cellular uplink traces a sweep's `${cellular}` names, as
/// the text of a TOML basic string: `../shared/data/cellular` beside this source tree (GPLv3
/// data from the mahimahi project: read in place, never copied into livecam). Fixed at build
/// time, not taken from the environment, so a committed report is always the same data's;
/// a sweep naming it cannot run where the traces are not there ([`Sweep::missing`]).
pub fn cellular_dir() -> String {
    CELLULAR_DIR.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The placeholder that stands for [`cellular_dir`] in a template or a value.
const CELLULAR: &str = "${cellular}";

/// Where [`cellular_dir`] points, as a path.
const CELLULAR_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/cellular");

/// `a=1 b=x` for messages.
pub fn describe(p: &Point) -> String {
    p.public()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every built-in sweep, parsed.
pub fn builtin() -> Result<Vec<Sweep>, Error> {
    BUILTIN.iter().map(|(f, t)| Sweep::parse(f, t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
name = "t"
title = "T"
kind = "policy_vs_loss"
seeds = 3
quick_seeds = 1
template = '''
duration_s = 5.0
[workload]
fps = 10.0
frame_bytes = 1000
policy = "${policy}"
[[hosts]]
name = "rx"
role = "receiver"
[[hosts]]
name = "cam"
role = "camera"
target = "rx"
[link]
loss = ${loss}
${_extra}
'''
[[points]]
policy = ["seed", "fixed:500"]
loss = [0.0, 0.1, 1]
_extra = [""]
[[points]]
policy = ["model"]
loss = [0.2]
_extra = ["delay_ms = 5.0"]
"#;

    #[test]
    fn expands_products_and_renders() {
        let s = Sweep::parse("t.toml", SMALL).unwrap();
        assert_eq!(s.points.len(), 7);
        assert_eq!(describe(&s.points[0]), "loss=0.0 policy=seed");
        assert_eq!(describe(&s.points[6]), "loss=0.2 policy=model");
        let sc = s.scenario(&s.points[6]).unwrap();
        assert_eq!(sc.link.loss, 0.2);
        assert_eq!(sc.link.delay_ms, 5.0);
        assert_eq!(sc.name, "t");
        assert_eq!(s.seed_list(false, None), [1, 2, 3]);
        assert_eq!(s.seed_list(true, None), [1]);
        assert_eq!(s.seed_list(true, Some(2)), [1, 2]);
    }

    #[test]
    fn a_product_past_the_point_limit_is_an_error_before_it_is_built() {
        // Nine lists of ten values asked for 10^9 points, all built before any check.
        let list = format!("[{}]", ["1"; 10].join(", "));
        let block: Vec<String> = (0..9).map(|i| format!("p{i} = {list}")).collect();
        let text = SMALL.replace("[[points]]", &format!("[[points]]\n{}", block.join("\n")));
        let e = Sweep::parse("t.toml", &text).unwrap_err().to_string();
        assert!(e.contains("more than 10000 points"), "{e}");
    }

    #[test]
    fn bad_points_name_the_point() {
        let e = Sweep::parse("t.toml", &SMALL.replace("0.1, 1]", "0.1, 2]")).unwrap_err();
        assert!(e.to_string().contains("loss=2"), "{e}");
        let e = Sweep::parse("t.toml", &SMALL.replace("${loss}", "${lost}")).unwrap_err();
        assert!(e.to_string().contains("${lost}"), "{e}");
    }

    #[test]
    fn a_sweep_of_the_recorded_traces_is_listed_but_refused_where_they_are_not() {
        let nowhere = Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-traces");
        let (file, text) = BUILTIN.iter().find(|(f, _)| *f == "bonding.toml").unwrap();
        let s = Sweep::parse_with(file, text, &nowhere).unwrap();
        assert!(s.reads_traces());
        assert_eq!(s.missing.as_deref(), Some(nowhere.to_str().unwrap()));
        let e = s.runnable().unwrap_err().to_string();
        assert!(e.contains("no-such-traces") && e.contains("bonding"), "{e}");
        // A sweep that does not read them loads and runs as before.
        let s = Sweep::parse_with("t.toml", SMALL, &nowhere).unwrap();
        assert!(!s.reads_traces());
        assert!(s.missing.is_none() && s.runnable().is_ok());
        // Where the traces are, the trace sweeps' points are checked as every other's; a
        // checkout without them passes, unless `LIVECAM_REQUIRE_TRACES=1` (CI) says they are.
        for s in builtin().unwrap() {
            if let Some(dir) = &s.missing {
                assert!(
                    std::env::var("LIVECAM_REQUIRE_TRACES").is_err(),
                    "{}: no traces at {dir}",
                    s.name
                );
                eprintln!("{}: no traces at {dir}", s.name);
            }
        }
    }

    #[test]
    fn builtin_sweeps_parse_and_every_file_is_built_in() {
        let sweeps = builtin().unwrap();
        assert_eq!(sweeps.len(), BUILTIN.len());
        let dir = concat!(env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml") && n != "Cargo.toml")
            .collect();
        files.sort();
        let mut built: Vec<&str> = BUILTIN.iter().map(|(f, _)| *f).collect();
        built.sort();
        assert_eq!(files, built);
        for s in &sweeps {
            let file = BUILTIN
                .iter()
                .find(|(_, t)| Sweep::parse("", t).unwrap().name == s.name)
                .unwrap()
                .0;
            assert_eq!(file, format!("{}.toml", s.name));
        }
    }
}
