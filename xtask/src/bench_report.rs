//! What one `cargo xtask bench` run measured: its rows and goal lines, printed as they
//! come, written as JSON (one file per run under `target/bench/`), and compared row by row
//! with an earlier run's file (`--compare OLD.json`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};

/// One measured row, as the bench drivers print it (one JSON object per line).
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) server: String,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) ops_per_sec: f64,
    /// The engine's resident memory after the measurement, where a driver reports it.
    pub(crate) rss_mib: Option<f64>,
}

/// Parses the drivers' JSON lines (other lines are passed over).
pub(crate) fn parse_rows(text: &str) -> Result<Vec<Row>> {
    text.lines()
        .filter(|line| line.trim_start().starts_with('{'))
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).with_context(|| format!("parsing {line}"))?;
            let number = |key: &str| {
                value[key]
                    .as_f64()
                    .ok_or_else(|| anyhow!("no number `{key}` in {line}"))
            };
            let text = |key: &str| {
                value[key]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("no string `{key}` in {line}"))
            };
            Ok(Row {
                name: text("name")?,
                server: text("server")?,
                p50_us: number("p50_us")?,
                p99_us: number("p99_us")?,
                ops_per_sec: number("ops_per_sec")?,
                rss_mib: value["rss_mib"].as_f64(),
            })
        })
        .collect()
}

/// A goal line: a figure against its floor (a ratio) or against a fixed limit.
#[derive(Debug)]
struct Goal {
    section: String,
    label: String,
    value: Option<f64>,
    /// `None` for a goal on the figure itself (e.g. the in-process get in µs).
    floor: Option<f64>,
    limit: f64,
    lower_is_better: bool,
    met: Option<bool>,
}

/// Everything a run measured, in the order it was measured.
pub(crate) struct Report {
    section: String,
    rows: Vec<(String, Row)>,
    goals: Vec<Goal>,
    notes: Vec<(String, String)>,
}

impl Report {
    pub(crate) fn new() -> Self {
        Report {
            section: String::new(),
            rows: Vec::new(),
            goals: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Rows and goals from here on belong to `name`.
    pub(crate) fn section(&mut self, name: &str) {
        self.section = name.to_owned();
    }

    /// Keeps rows of the current section (they are printed by the section itself).
    pub(crate) fn rows(&mut self, rows: &[Row]) {
        let section = self.section.clone();
        self.rows
            .extend(rows.iter().map(|row| (section.clone(), row.clone())));
    }

    /// The p50 of the row `(name, server)` of any section measured so far.
    pub(crate) fn p50(&self, name: &str, server: &str) -> Option<f64> {
        self.rows
            .iter()
            .rev()
            .find(|(_, r)| r.name == name && r.server == server)
            .map(|(_, r)| r.p50_us)
    }

    /// Prints a line that is context, not a goal, and keeps it for the JSON file.
    pub(crate) fn note(&mut self, text: &str) {
        println!("  {text}");
        self.notes.push((self.section.clone(), text.to_owned()));
    }

    /// A goal on `value / floor` (lower is better), both measured in this run.
    pub(crate) fn ratio(
        &mut self,
        label: &str,
        value: Option<f64>,
        floor: Option<f64>,
        limit: f64,
    ) {
        self.goal(label, value, floor, limit, true);
    }

    /// A goal on `value / floor` where higher is better (e.g. throughput against a peer's).
    pub(crate) fn ratio_at_least(
        &mut self,
        label: &str,
        value: Option<f64>,
        floor: Option<f64>,
        limit: f64,
    ) {
        self.goal(label, value, floor, limit, false);
    }

    /// A goal on the figure itself, in the unit of its label (lower is better).
    pub(crate) fn at_most(&mut self, label: &str, value: Option<f64>, limit: f64) {
        let met = value.map(|v| v <= limit);
        match value {
            Some(v) => println!(
                "  {label}: {} (goal <= {limit}) {}",
                figure(v),
                verdict(met)
            ),
            None => println!("  {label}: not measured"),
        }
        self.goals.push(Goal {
            section: self.section.clone(),
            label: label.to_owned(),
            value,
            floor: None,
            limit,
            lower_is_better: true,
            met,
        });
    }

    fn goal(
        &mut self,
        label: &str,
        value: Option<f64>,
        floor: Option<f64>,
        limit: f64,
        lower_is_better: bool,
    ) {
        let (sign, met) = match (value, floor) {
            (Some(v), Some(f)) if lower_is_better => ("<=", Some(v <= f * limit)),
            (Some(v), Some(f)) => (">=", Some(v >= f * limit)),
            _ => (if lower_is_better { "<=" } else { ">=" }, None),
        };
        match (value, floor) {
            (Some(v), Some(f)) if f > 0.0 => println!(
                "  {label}: {:.2}x ({} / {}; goal {sign} {limit}x) {}",
                v / f,
                figure(v),
                figure(f),
                verdict(met)
            ),
            (Some(v), Some(f)) => println!(
                "  {label}: {} vs {} (no ratio to a floor of 0; goal {sign} {limit}x) {}",
                figure(v),
                figure(f),
                verdict(met)
            ),
            _ => println!("  {label}: not measured"),
        }
        self.goals.push(Goal {
            section: self.section.clone(),
            label: label.to_owned(),
            value,
            floor,
            limit,
            lower_is_better,
            met,
        });
    }

    fn to_json(&self, started_unix: u64) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|(section, r)| {
                json!({
                    "section": section, "name": r.name, "server": r.server,
                    "p50_us": r.p50_us, "p99_us": r.p99_us, "ops_per_sec": r.ops_per_sec,
                    "rss_mib": r.rss_mib,
                })
            })
            .collect();
        let goals: Vec<Value> = self
            .goals
            .iter()
            .map(|g| {
                json!({
                    "section": g.section, "label": g.label, "value": g.value,
                    "floor": g.floor,
                    "ratio": match (g.value, g.floor) {
                        (Some(v), Some(f)) if f > 0.0 => Some(v / f),
                        _ => None,
                    },
                    "limit": g.limit, "lower_is_better": g.lower_is_better, "met": g.met,
                })
            })
            .collect();
        let notes: Vec<Value> = self
            .notes
            .iter()
            .map(|(section, text)| json!({"section": section, "text": text}))
            .collect();
        json!({
            "started_unix": started_unix,
            "cores": std::thread::available_parallelism().map_or(0, usize::from),
            "rows": rows,
            "goals": goals,
            "notes": notes,
        })
    }

    /// Writes `target/bench/<unix time>.json`; returns its path.
    pub(crate) fn write(&self, root: &Path, started_unix: u64) -> Result<PathBuf> {
        let folder = root.join("target/bench");
        std::fs::create_dir_all(&folder)?;
        let path = folder.join(format!("{started_unix}.json"));
        let text = serde_json::to_string_pretty(&self.to_json(started_unix))?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Prints, per row and goal also in `old` (a file an earlier run wrote), the change.
    pub(crate) fn compare(&self, old: &Path) -> Result<()> {
        let text =
            std::fs::read_to_string(old).with_context(|| format!("reading {}", old.display()))?;
        let old: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a bench run's JSON", old.display()))?;
        let empty = Vec::new();
        let old_rows = old["rows"].as_array().unwrap_or(&empty);
        println!(
            "\nchange per row against {} (p50; negative is faster)",
            old_path_label(&old)
        );
        println!(
            "{:<14} {:<52} {:<22} {:>10} {:>10} {:>8}",
            "section", "row", "server", "old µs", "new µs", "change"
        );
        let mut matched = 0;
        for (section, row) in &self.rows {
            let before = old_rows.iter().find(|o| {
                o["section"] == section.as_str()
                    && o["name"] == row.name.as_str()
                    && o["server"] == row.server.as_str()
            });
            let Some(before) = before.and_then(|o| o["p50_us"].as_f64()) else {
                continue;
            };
            matched += 1;
            println!(
                "{:<14} {:<52} {:<22} {:>10.1} {:>10.1} {:>7.1}%",
                section,
                row.name,
                row.server,
                before,
                row.p50_us,
                change(before, row.p50_us)
            );
        }
        if matched == 0 {
            println!("  (no row of this run is in the old file: different sections?)");
        }
        let old_goals = old["goals"].as_array().unwrap_or(&empty);
        println!("\nchange per goal (ratio to its floor, or the figure for a goal without one)");
        for goal in &self.goals {
            let Some(before) = old_goals.iter().find(|o| {
                o["section"] == goal.section.as_str() && o["label"] == goal.label.as_str()
            }) else {
                continue;
            };
            let figure_of = |v: &Value| v["ratio"].as_f64().or_else(|| v["value"].as_f64());
            let now = match (goal.value, goal.floor) {
                (Some(v), Some(f)) if f > 0.0 => Some(v / f),
                (value, _) => value,
            };
            let show = |v: Option<f64>| v.map_or("-".to_owned(), figure);
            println!(
                "  {}: {} -> {} {}",
                goal.label,
                show(figure_of(before)),
                show(now),
                verdict(goal.met)
            );
        }
        Ok(())
    }
}

fn old_path_label(old: &Value) -> String {
    match old["started_unix"].as_u64() {
        Some(at) => format!("the run started at unix time {at}"),
        None => "the old run".to_owned(),
    }
}

fn change(before: f64, after: f64) -> f64 {
    if before == 0.0 {
        0.0
    } else {
        (after - before) / before * 100.0
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    }
}

/// A measured figure with as many decimals as its size deserves.
pub(crate) fn figure(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 1.0 => format!("{value:.2}"),
        _ => format!("{value:.4}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, p50: f64) -> Row {
        Row {
            name: name.to_owned(),
            server: "engine".to_owned(),
            p50_us: p50,
            p99_us: p50 * 2.0,
            ops_per_sec: 1e6 / p50,
            rss_mib: None,
        }
    }

    #[test]
    fn rows_parse_with_and_without_memory_and_other_lines_pass() {
        let rows = parse_rows(
            "warming up\n{\"name\":\"get\",\"server\":\"engine\",\"p50_us\":1.5,\"p99_us\":3,\"ops_per_sec\":9}\n{\"name\": \"x\", \"server\": \"s\", \"p50_us\": 2, \"p99_us\": 4, \"ops_per_sec\": 1, \"rss_mib\": 12.5}\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].p50_us, rows[0].rss_mib), (1.5, None));
        assert_eq!(rows[1].rss_mib, Some(12.5));
        assert!(parse_rows("{\"name\":\"get\"}").is_err());
    }

    #[test]
    fn goals_judge_ratios_and_a_run_round_trips_through_its_file() {
        let mut report = Report::new();
        report.section("engine");
        report.rows(&[row("get", 100.0), row("echo", 80.0)]);
        let (get, echo) = (report.p50("get", "engine"), report.p50("echo", "engine"));
        report.ratio("get / echo", get, echo, 1.3);
        report.ratio("get / echo, strict", get, echo, 1.2);
        report.ratio_at_least("throughput", Some(3.0), Some(1.0), 3.0);
        report.at_most("in-process µs", Some(1.4), 1.0);
        report.ratio("missing", None, echo, 1.0);
        let met: Vec<Option<bool>> = report.goals.iter().map(|g| g.met).collect();
        assert_eq!(
            met,
            [Some(true), Some(false), Some(true), Some(false), None]
        );

        let folder = std::env::temp_dir().join(format!("mlbridge-report-{}", std::process::id()));
        let path = report.write(&folder, 42).unwrap();
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written["rows"][0]["p50_us"], 100.0);
        assert_eq!(written["goals"][0]["ratio"], 1.25);
        assert_eq!(written["goals"][3]["ratio"], Value::Null);
        report.compare(&path).unwrap();
        assert!(report.compare(&folder.join("missing.json")).is_err());
        std::fs::remove_dir_all(folder).unwrap();
    }
}
