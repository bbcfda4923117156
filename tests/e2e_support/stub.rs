//! The stub `claude` of the agent test image, seen from the test: the probes
//! it runs inside the bottle and the report it prints (test-support/images/
//! agent/claude documents both).
//!
//! Every session's stub runs, in order: a GO gate, the test's probes, and a
//! RELEASE gate. The gates are probes that wait for a marker file the test
//! creates with `docker exec` (see session.rs for why the test must hold the
//! session open at both ends). Before GO, the test writes the addresses the
//! probes need (known only once the session's networks exist) to
//! [`VARS_FILE`], which every probe sources.

use serde_json::Value;

pub const GO_MARKER: &str = "/tmp/e2e-go";
pub const RELEASE_MARKER: &str = "/tmp/e2e-release";
pub const VARS_FILE: &str = "/tmp/e2e-vars";
/// How long a gate waits before giving up (the stub then goes on and exits,
/// so a dead test never leaves a session hanging), in tenths of a second.
const GATE_TENTHS: u32 = 3000;
/// Each probe's bound, passed to the stub as CLAUDE_STUB_PROBE_TIMEOUT.
pub const PROBE_TIMEOUT_SECS: u32 = 330;

/// One probe: a shell snippet run inside the bottle as Claude would run a
/// tool, with the test's variables sourced.
#[derive(Debug, Clone)]
pub struct Probe {
    pub name: String,
    pub sh: String,
}

impl Probe {
    pub fn new(name: &str, sh: &str) -> Self {
        Self {
            name: name.to_owned(),
            sh: sh.to_owned(),
        }
    }
}

fn gate(marker: &str) -> String {
    format!(
        "n=0; while [ ! -e {marker} ]; do n=$((n+1)); [ $n -gt {GATE_TENTHS} ] && exit 99; sleep 0.1; done"
    )
}

/// The stub's arguments (after `--`) for `probes` between the two gates.
pub fn stub_args(probes: &[Probe]) -> Vec<String> {
    let mut args = vec!["--stub-sh".to_owned(), gate(GO_MARKER)];
    for probe in probes {
        args.push("--stub-sh".into());
        args.push(format!(
            "[ -r {VARS_FILE} ] && . {VARS_FILE}; : probe={name}; {sh}",
            name = probe.name,
            sh = probe.sh
        ));
    }
    args.push("--stub-sh".into());
    args.push(gate(RELEASE_MARKER));
    args
}

/// The result of one probe.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub name: String,
    /// None when the stub timed it out.
    pub exit: Option<i64>,
    pub stdout: String,
    pub stderr: String,
}

impl ProbeResult {
    pub fn succeeded(&self) -> bool {
        self.exit == Some(0)
    }

    /// stdout and stderr, for assertion messages and searching.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "probe `{}` exit={:?}\n--- stdout\n{}--- stderr\n{}---",
            self.name, self.exit, self.stdout, self.stderr
        )
    }
}

/// The stub's report: the JSON after `CLAUDE_STUB_REPORT `.
#[derive(Debug, Clone)]
pub struct StubReport {
    pub json: Value,
    probes: Vec<ProbeResult>,
}

impl StubReport {
    /// Finds the report line in the stub's stdout and pairs its probes with
    /// the names the test gave them.
    pub fn parse(stdout: &str, probes: &[Probe]) -> Option<Self> {
        let line = stdout
            .lines()
            .find_map(|l| l.trim_end_matches('\r').strip_prefix("CLAUDE_STUB_REPORT "))?;
        let json: Value = serde_json::from_str(line).ok()?;
        let raw = json["probes"].as_array().cloned().unwrap_or_default();
        let names = std::iter::once("<go gate>".to_owned())
            .chain(probes.iter().map(|p| p.name.clone()))
            .chain(std::iter::once("<release gate>".to_owned()));
        let probes = raw
            .iter()
            .zip(names)
            .map(|(p, name)| ProbeResult {
                name,
                exit: p["exit"].as_i64(),
                stdout: p["stdout"].as_str().unwrap_or_default().to_owned(),
                stderr: p["stderr"].as_str().unwrap_or_default().to_owned(),
            })
            .collect();
        Some(Self { json, probes })
    }

    pub fn probe(&self, name: &str) -> &ProbeResult {
        self.probes
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no probe `{name}` in the stub report: {:#}", self.json))
    }

    pub fn gates_passed(&self) -> bool {
        self.probes.first().is_some_and(ProbeResult::succeeded)
            && self.probes.last().is_some_and(ProbeResult::succeeded)
    }

    pub fn process(&self, key: &str) -> String {
        self.json["process"][key]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A shell snippet that prints `KEY=VALUE` lines as sourceable assignments.
pub fn vars_script(vars: &[(&str, String)]) -> String {
    vars.iter()
        .map(|(k, v)| format!("{k}='{}'\n", v.replace('\'', "'\\''")))
        .collect()
}
