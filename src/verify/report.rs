//! Named checks and the report `verify` prints, as text or as one JSON document (schema in the README).

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// Not run, because a check it depends on failed.
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub duration_ms: u64,
}

impl Check {
    pub fn new(name: &str, status: Status, detail: impl Into<String>, took: Duration) -> Self {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            duration_ms: took.as_millis() as u64,
        }
    }

    pub fn skipped(name: &str, why: &str) -> Self {
        Check::new(name, Status::Skip, format!("not run: {why}"), Duration::ZERO)
    }
}

/// One missing or corrupt item found by `--deep`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    pub repository: String,
    pub tag: String,
    /// The digest of the missing or corrupt manifest or blob.
    pub digest: String,
    pub problem: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Deep {
    pub repositories: usize,
    pub tags: usize,
    pub manifests: usize,
    pub blobs: usize,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub passed: usize,
    pub warned: usize,
    pub failed: usize,
    pub skipped: usize,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub registry: String,
    /// pass, warn or fail: the worst check, with `--strict` counting warnings as failures.
    pub status: Status,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deep: Option<Deep>,
    /// With --baseline: how what is served differs from that inventory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory: Option<super::inventory::Comparison>,
    pub summary: Summary,
}

pub const SCHEMA: &str = "registry-up.verify/v1";

impl Report {
    pub fn new(registry: String, checks: Vec<Check>, deep: Option<Deep>, strict: bool, took: Duration) -> Self {
        let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
        let summary = Summary {
            passed: count(Status::Pass),
            warned: count(Status::Warn),
            failed: count(Status::Fail),
            skipped: count(Status::Skip),
            duration_ms: took.as_millis() as u64,
        };
        let status = if summary.failed > 0 || (strict && summary.warned > 0) {
            Status::Fail
        } else if summary.warned > 0 {
            Status::Warn
        } else {
            Status::Pass
        };
        Report {
            schema: SCHEMA,
            registry,
            status,
            checks,
            deep,
            inventory: None,
            summary,
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let tag = match c.status {
                Status::Pass => "PASS",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
                Status::Skip => "SKIP",
            };
            out.push_str(&format!("{tag} {:<19} {} ({} ms)\n", c.name, c.detail, c.duration_ms));
            if c.name == "inventory" {
                for change in self.inventory.iter().flat_map(|i| &i.changed) {
                    out.push_str(&format!("       {}\n", change.describe()));
                }
                for added in self.inventory.iter().flat_map(|i| &i.added) {
                    out.push_str(&format!(
                        "       {}:{} {} added since (information)\n",
                        added.repository, added.tag, added.digest
                    ));
                }
            }
            if c.name == "deep" {
                for p in self.deep.iter().flat_map(|d| &d.problems) {
                    out.push_str(&format!(
                        "       {}:{} {} {}\n",
                        p.repository, p.tag, p.digest, p.problem
                    ));
                }
            }
        }
        let s = &self.summary;
        out.push_str(&format!(
            "verify {}: {} passed, {} warnings, {} failed, {} skipped in {:.1} s\n",
            self.registry,
            s.passed,
            s.warned,
            s.failed,
            s.skipped,
            s.duration_ms as f64 / 1000.0
        ));
        out
    }
}
