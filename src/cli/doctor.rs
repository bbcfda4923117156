//! `doctor`: what stands in the way of a bottle on this machine. The report
//! is the command's data, so it goes to stdout (`--quiet` does not hide
//! it); the exit code is 1 when a check failed.

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;

use super::args::DoctorArgs;
use super::error::EXIT_FAILURE;
use super::{Error, load_manifest};
use crate::backend::{AnyBackend, Backend, Check, CheckStatus, DoctorRequest};
use crate::diagnostic::Diagnostic;
use crate::printer::Printer;

pub async fn run(
    manifest_path: Option<&std::path::Path>,
    args: DoctorArgs,
    printer: &Printer,
) -> Result<u8, Error> {
    let backend = AnyBackend::from_env(printer)?;
    let (manifest_check, request) = match load_manifest(manifest_path) {
        Ok(manifest) => {
            let request = DoctorRequest {
                bottle_images: manifest
                    .bottles
                    .iter()
                    .filter_map(|(name, b)| Some((name.clone(), b.image.clone()?)))
                    .collect(),
            };
            (Check::ok("manifest", manifest.source.to_string()), request)
        }
        Err(err) => {
            let mut check = Check::fail("manifest", err.to_string());
            check.hints = err.hints();
            (check, DoctorRequest::default())
        }
    };
    let mut checks = vec![manifest_check];
    checks.extend(backend.doctor(&request).await);
    let text = if args.json {
        render_json(&checks)
    } else {
        render_human(&checks)
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(Error::Stdout)?;
    Ok(exit_code(&checks))
}

fn exit_code(checks: &[Check]) -> u8 {
    if checks.iter().any(|c| c.status == CheckStatus::Fail) {
        EXIT_FAILURE
    } else {
        0
    }
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    name: &'a str,
    status: CheckStatus,
    detail: &'a str,
    /// The hints joined, or `null`.
    hint: Option<String>,
}

/// One JSON object per line.
fn render_json(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let row = JsonCheck {
            name: &check.name,
            status: check.status,
            detail: &check.detail,
            hint: (!check.hints.is_empty()).then(|| check.hints.join("; ")),
        };
        out.push_str(&serde_json::to_string(&row).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// `text` with control characters (a daemon's message may carry escapes) shown as `?`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// One line per check: status, name, detail, aligned; hints indented below.
fn render_human(checks: &[Check]) -> String {
    let name_w = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for check in checks {
        let _ = writeln!(
            out,
            "{:4}  {:name_w$}  {}",
            check.status.as_str(),
            check.name,
            printable(&check.detail)
        );
        for hint in &check.hints {
            let _ = writeln!(out, "{:4}  {:name_w$}  hint: {}", "", "", printable(hint));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Check> {
        vec![
            Check::ok("manifest", "built-in default"),
            Check::ok(
                "engine",
                "Docker 20.10.24 (API 1.41) at unix:///var/run/docker.sock",
            ),
            Check::warn("runsc", "not registered (runtimes: runc)")
                .hint("install gVisor and register `runsc` with the daemon"),
            Check::fail("address-space", "could not list networks: boom")
                .hint("first")
                .hint("second"),
        ]
    }

    #[test]
    fn human_output_is_aligned_with_hints_below() {
        insta::assert_snapshot!(render_human(&sample()));
    }

    #[test]
    fn json_is_one_object_per_line_with_a_null_or_joined_hint() {
        let text = render_json(&sample());
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[0],
            serde_json::json!({"name": "manifest", "status": "ok", "detail": "built-in default", "hint": null})
        );
        assert_eq!(rows[2]["status"], "warn");
        assert_eq!(rows[3]["hint"], "first; second");
    }

    #[test]
    fn only_a_failure_fails() {
        assert_eq!(exit_code(&sample()), 1);
        assert_eq!(exit_code(&sample()[..3]), 0);
    }
}
