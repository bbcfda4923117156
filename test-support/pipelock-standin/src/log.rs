//! Pipelock-style audit lines: one JSON object per line with `level`, `time`,
//! `component`, `event`, `message` and the event's fields (`target`,
//! `method`, `url`, `reason`, ...), named as pipelock 2.3.0's audit logger
//! (`internal/audit/logger.go`) names them.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// Pipelock's `agent` value for a request that names no agent profile
/// (`agentAnonymous` in `internal/proxy/agent.go`).
pub const ANONYMOUS_AGENT: &str = "anonymous";

/// The `method` of pipelock's operational events about its config reload
/// (`configReloadAuditMethod` in `internal/cli/runtime/run.go`).
pub const CONFIG_RELOAD_METHOD: &str = "CONFIG_RELOAD";

/// Where a request came from and what it asked for.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub method: String,
    /// The absolute URL of a plain HTTP request.
    pub url: Option<String>,
    /// `host:port` of a CONNECT tunnel.
    pub target: Option<String>,
    pub client_ip: String,
    pub request_id: String,
    /// `anonymous` unless the request names an agent (the stand-in knows none).
    pub agent: String,
}

impl RequestContext {
    /// The identifying fields in pipelock's order: `method` (when asked),
    /// `url`, `target`, `client_ip`, `request_id`. `agent` is left to the
    /// caller, whose events place it differently.
    fn fields(&self, with_method: bool) -> Vec<(&'static str, Value)> {
        let mut fields = Vec::new();
        if with_method && !self.method.is_empty() {
            fields.push(("method", self.method.clone().into()));
        }
        if let Some(url) = &self.url {
            fields.push(("url", url.clone().into()));
        }
        if let Some(target) = &self.target {
            fields.push(("target", target.clone().into()));
        }
        if !self.client_ip.is_empty() {
            fields.push(("client_ip", self.client_ip.clone().into()));
        }
        if !self.request_id.is_empty() {
            fields.push(("request_id", self.request_id.clone().into()));
        }
        fields
    }

    fn push_agent(&self, fields: &mut Vec<(&'static str, Value)>) {
        if !self.agent.is_empty() {
            fields.push(("agent", self.agent.clone().into()));
        }
    }
}

/// Pipelock's `TechniqueForScanner` for the scanners the stand-in reports.
fn mitre_technique(scanner: &str) -> Option<&'static str> {
    match scanner {
        "ssrf" | "core_ssrf" => Some("T1046"),
        "allowlist" | "blocklist" => Some("T1071.001"),
        "scheme" => Some("T1071"),
        "parser" => Some("T1190"),
        _ => None,
    }
}

type Sink = Box<dyn Write + Send>;

pub struct AuditLog {
    sink: Mutex<Sink>,
    include_allowed: bool,
    include_blocked: bool,
}

impl AuditLog {
    pub fn stdout(include_allowed: bool, include_blocked: bool) -> Self {
        Self::with_sink(
            Box::new(std::io::stdout()),
            include_allowed,
            include_blocked,
        )
    }

    pub fn with_sink(sink: Sink, include_allowed: bool, include_blocked: bool) -> Self {
        Self {
            sink: Mutex::new(sink),
            include_allowed,
            include_blocked,
        }
    }

    /// A log whose lines land in the returned buffer, for tests.
    pub fn in_memory() -> (Self, SharedBuffer) {
        let buffer = SharedBuffer::default();
        (
            Self::with_sink(Box::new(buffer.clone()), true, true),
            buffer,
        )
    }

    fn emit(&self, level: &str, event: &str, message: &str, fields: Vec<(&str, Value)>) {
        let mut line = Map::new();
        line.insert("level".into(), level.into());
        line.insert("component".into(), "pipelock".into());
        line.insert("event".into(), event.into());
        for (key, value) in fields {
            line.insert(key.into(), value);
        }
        line.insert("time".into(), rfc3339_utc(SystemTime::now()).into());
        line.insert("message".into(), message.into());
        let text = Value::Object(line).to_string();
        // A poisoned lock only means another writer panicked mid-line; keep logging.
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(sink, "{text}");
        let _ = sink.flush();
    }

    pub fn startup(&self, listen: &str, mode: &str, config_hash: &str) {
        self.emit(
            "info",
            "startup",
            "pipelock started",
            vec![
                ("listen", listen.into()),
                ("mode", mode.into()),
                (
                    "version",
                    concat!("standin-", env!("CARGO_PKG_VERSION")).into(),
                ),
                ("config_hash", config_hash.into()),
            ],
        );
    }

    /// Pipelock's `LogConfigReload`. Pipelock calls it only for an applied
    /// reload, with status `success` and detail `mode=<mode>`; a refused
    /// reload is an `error` event (see [`AuditLog::resource_error`]).
    pub fn config_reload(&self, status: &str, detail: &str, config_hash: &str) {
        self.emit(
            "info",
            "config_reload",
            "configuration reloaded",
            vec![
                ("status", status.into()),
                ("detail", detail.into()),
                ("config_hash", config_hash.into()),
            ],
        );
    }

    /// Pipelock's `LogError` with a resource context
    /// (`audit.NewResourceLogContext(method, resource)`): how it reports a
    /// refused config reload (method `CONFIG_RELOAD`, resource the config path).
    pub fn resource_error(&self, method: &str, resource: &str, error: &str) {
        self.emit(
            "error",
            "error",
            "request error",
            vec![
                ("method", method.into()),
                ("resource", resource.into()),
                ("error", error.into()),
            ],
        );
    }

    pub fn shutdown(&self, reason: &str) {
        self.emit(
            "info",
            "shutdown",
            "pipelock stopping",
            vec![("reason", reason.into())],
        );
    }

    pub fn blocked(&self, ctx: &RequestContext, scanner: &str, reason: &str) {
        if !self.include_blocked {
            return;
        }
        let mut fields = ctx.fields(true);
        fields.push(("scanner", scanner.into()));
        fields.push(("reason", reason.into()));
        ctx.push_agent(&mut fields);
        if let Some(technique) = mitre_technique(scanner) {
            fields.push(("mitre_technique", technique.into()));
        }
        self.emit("warn", "blocked", "request blocked", fields);
    }

    pub fn tunnel_open(&self, ctx: &RequestContext) {
        if !self.include_allowed {
            return;
        }
        let mut fields = ctx.fields(false);
        ctx.push_agent(&mut fields);
        self.emit("info", "tunnel_open", "tunnel opened", fields);
    }

    pub fn tunnel_close(&self, ctx: &RequestContext, total_bytes: u64, duration: Duration) {
        if !self.include_allowed {
            return;
        }
        let mut fields = ctx.fields(false);
        ctx.push_agent(&mut fields);
        fields.push(("total_bytes", total_bytes.into()));
        fields.push(("duration_ms", duration_ms(duration)));
        self.emit("info", "tunnel_close", "tunnel closed", fields);
    }

    pub fn forward_http(
        &self,
        ctx: &RequestContext,
        status_code: Option<u16>,
        size_bytes: u64,
        duration: Duration,
    ) {
        if !self.include_allowed {
            return;
        }
        let mut fields = ctx.fields(true);
        ctx.push_agent(&mut fields);
        // Pipelock always writes the (int) status; 0 when none was read.
        fields.push(("status_code", status_code.unwrap_or(0).into()));
        fields.push(("size_bytes", size_bytes.into()));
        fields.push(("duration_ms", duration_ms(duration)));
        self.emit("info", "forward_http", "forward proxy request", fields);
    }

    pub fn error(&self, ctx: &RequestContext, error: &str) {
        let mut fields = ctx.fields(true);
        ctx.push_agent(&mut fields);
        fields.push(("error", error.into()));
        self.emit("error", "error", "request error", fields);
    }
}

fn duration_ms(duration: Duration) -> Value {
    // zerolog writes durations as float milliseconds.
    (duration.as_secs_f64() * 1000.0).into()
}

/// A clonable in-memory sink.
#[derive(Clone, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// Every complete line written so far, parsed as JSON.
    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `time` as zerolog's default format writes it (RFC 3339, seconds), in UTC.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rfc3339_utc() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199); // leap-year February end
        assert_eq!(rfc3339_utc(t), "2024-02-29T23:59:59Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_utc(t), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn lines_carry_pipelock_fields_and_respect_the_include_flags() {
        let (log, buffer) = AuditLog::in_memory();
        let ctx = RequestContext {
            method: "CONNECT".into(),
            target: Some("x.test:443".into()),
            client_ip: "10.0.0.2".into(),
            request_id: "r1".into(),
            ..RequestContext::default()
        };
        log.blocked(&ctx, "allowlist", "domain not in allowlist: x.test");
        log.tunnel_open(&ctx);
        let lines = buffer.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["level"], "warn");
        assert_eq!(lines[0]["event"], "blocked");
        assert_eq!(lines[0]["target"], "x.test:443");
        assert_eq!(lines[0]["method"], "CONNECT");
        assert_eq!(lines[0]["reason"], "domain not in allowlist: x.test");
        assert!(lines[0]["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(lines[1]["event"], "tunnel_open");
        assert!(lines[1].get("method").is_none());

        let buffer = SharedBuffer::default();
        let quiet = AuditLog::with_sink(Box::new(buffer.clone()), false, true);
        quiet.tunnel_open(&ctx);
        quiet.blocked(&ctx, "allowlist", "no");
        let lines = buffer.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["event"], "blocked");
    }
}
