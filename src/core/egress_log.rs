//! Reading pipelock's audit log: the egress decisions behind
//! `claude-bottle egress` and the denial summary at the end of a session,
//! and the `config_reload` outcome that `allow` waits for.
//!
//! Pipelock 2.3.0 writes one JSON object per line through zerolog
//! (`internal/audit/logger.go`): `level`, `component`, `event`, the event's
//! fields, `time` (zerolog's default `time.RFC3339`, so seconds and the
//! process's zone offset, `Z` in a container) and `message`. The time is kept
//! as written: it already is RFC 3339. An egress event without a `time` is
//! skipped ([`LogLine::Other`]): every event zerolog writes has one, and a
//! feed line without a time would be neither sortable nor comparable.
//!
//! Which events are egress decisions, and why nothing is counted twice:
//!
//! | event          | written by (v2.3.0)                              | decision | destination |
//! |----------------|--------------------------------------------------|----------|-------------|
//! | `blocked`      | `Logger.LogBlocked`, from `proxy/forward.go` `handleConnect` (CONNECT) and `handleForwardHTTP` (plain HTTP) | denied | `target` or `url` |
//! | `tunnel_open`  | `Logger.LogTunnelOpen`, from `handleConnect` once the tunnel is relayed | allowed | `target` |
//! | `forward_http` | `Logger.LogForwardHTTP`, from `handleForwardHTTP` after the response | allowed | `url` |
//! | `allowed`      | `Logger.LogAllowed`, only from `proxy/proxy.go` `handleFetch` (the `/fetch` endpoint) | allowed | `url` |
//!
//! A CONNECT is either `blocked` (and returns) or, once relayed,
//! `tunnel_open` then `tunnel_close`; pipelock never logs `allowed` for a
//! CONNECT, so `tunnel_open` is the allowed event and `tunnel_close` is
//! [`LogLine::Other`]. A plain HTTP request is either `blocked` or
//! `forward_http`. `blocked` also covers denials after the request left (a
//! response scan), so a denied host may be one on the allowlist.
//!
//! `tunnel_open` carries no `method`; it is `CONNECT` by construction.
//! A block by a content scanner (DLP and the like) redacts `url` to
//! `scheme://host/[redacted]` (the host survives) and a CONNECT `target` to
//! `[redacted-url]`, which is then reported as the host, unparsed.
//!
//! Hosts, methods and reasons come from requests the agent made, so they are
//! the agent's to choose: the text output passes them through
//! [`terminal_safe`] and the JSON output escapes the same characters.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// The proxy's verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allowed,
    Denied,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
        }
    }
}

/// One egress decision of the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressEvent {
    /// RFC 3339, as pipelock wrote it; never empty from [`parse_line`].
    pub time: String,
    pub decision: Decision,
    /// Lowercase, IPv6 literals without brackets.
    pub host: String,
    /// Explicit, or the scheme's default for a URL; `None` when unknown.
    pub port: Option<u16>,
    pub method: String,
    /// Why the proxy denied the request; `None` for allowed requests.
    pub reason: Option<String>,
}

/// What one line of pipelock's output means to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine {
    Egress(EgressEvent),
    /// A configuration reload: `ok` when pipelock applied it (a
    /// `config_reload` event with status `success`), otherwise the reload was
    /// refused and pipelock kept the previous configuration (an `error` event
    /// of method `CONFIG_RELOAD`, or the plain-text line of a file that did
    /// not load). A `config_reload` event of any other status is
    /// [`LogLine::Other`]: pipelock 2.3.0 only writes `success`, and a later
    /// one may report a step before the outcome. `detail` is pipelock's
    /// `detail` (e.g. `mode=strict`) on success and its error text on
    /// refusal. `time` is empty for the one refusal pipelock writes as plain
    /// text.
    ConfigReload {
        ok: bool,
        detail: Option<String>,
        time: String,
    },
    Other,
}

/// The `method` pipelock's runtime gives the audit context of reload errors
/// (`internal/cli/runtime/run.go`, `configReloadAuditMethod`).
const CONFIG_RELOAD_METHOD: &str = "CONFIG_RELOAD";

/// What `config.Reloader.tryReload` prints to stderr, without JSON, when the
/// new file does not load or validate.
const RELOAD_FAILED_PREFIX: &str = "pipelock: config reload failed: ";

/// Reads one line of pipelock's output. Anything that is not an event we know
/// (not JSON, not an object, another event, an event without a destination)
/// is [`LogLine::Other`]; this never fails. The one plain-text line read is
/// the refused reload `config.Reloader.tryReload` prints to stderr, which the
/// container's log interleaves with the JSON on stdout.
pub fn parse_line(line: &str) -> LogLine {
    let line = line.trim();
    if let Some(error) = line.strip_prefix(RELOAD_FAILED_PREFIX) {
        return LogLine::ConfigReload {
            ok: false,
            detail: non_empty(error),
            time: String::new(),
        };
    }
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else {
        return LogLine::Other;
    };
    let text = |key: &str| fields.get(key).and_then(Value::as_str);
    let time = text("time").unwrap_or_default().to_owned();
    let decision = match text("event") {
        Some("blocked") => Decision::Denied,
        Some("allowed" | "forward_http" | "tunnel_open") => Decision::Allowed,
        Some("config_reload") if text("status") == Some("success") => {
            return LogLine::ConfigReload {
                ok: true,
                detail: text("detail").and_then(non_empty),
                time,
            };
        }
        Some("error") if text("method") == Some(CONFIG_RELOAD_METHOD) => {
            return LogLine::ConfigReload {
                ok: false,
                detail: text("error").and_then(non_empty),
                time,
            };
        }
        _ => return LogLine::Other,
    };
    if time.is_empty() {
        return LogLine::Other;
    }
    let (host, port, is_connect) = if let Some(target) = text("target").filter(|t| !t.is_empty()) {
        let (host, port) = split_host_port(target)
            .map_or_else(|| (target.to_owned(), None), |(h, p)| (h.to_owned(), p));
        (host, port, true)
    } else if let Some(url) = text("url").filter(|u| !u.is_empty()) {
        let (host, port) = url_host_port(url).unwrap_or_else(|| (url.to_owned(), None));
        (host, port, false)
    } else {
        // MCP blocks name a `resource`, not a destination.
        return LogLine::Other;
    };
    let method = match text("method").filter(|m| !m.is_empty()) {
        Some(method) => method.to_owned(),
        None if is_connect => "CONNECT".to_owned(),
        None => String::new(),
    };
    let reason = match decision {
        Decision::Denied => text("reason").map(str::to_owned),
        Decision::Allowed => None,
    };
    LogLine::Egress(EgressEvent {
        time,
        decision,
        host: host.to_lowercase(),
        port,
        method,
        reason,
    })
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// `host:port`, `[v6]:port`, `[v6]` or a bare host. `None` when there is no
/// host, or brackets hold no IPv6 literal, are unclosed or are followed by
/// something other than a port.
/// A port that is not a `u16` is dropped, the host kept.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        // Brackets hold IPv6 literals only; pipelock's `[redacted-url]` is no host.
        if !host.contains(':') {
            return None;
        }
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            // Two colons without brackets: an IPv6 literal with no port.
            Some((host, _)) if host.contains(':') => (authority, None),
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((host, port.and_then(|p| p.parse().ok())))
}

/// Host and port of an absolute URL, the port defaulting by scheme.
fn url_host_port(url: &str) -> Option<(String, Option<u16>)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = split_host_port(host_port)?;
    let port = port.or(match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    });
    Some((host.to_owned(), port))
}

/// The `--json` line: exactly these keys, in this order.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    decision: Decision,
    host: &'a str,
    port: Option<u16>,
    method: &'a str,
    reason: Option<&'a str>,
}

impl EgressEvent {
    /// One JSON object with the keys `time`, `decision` (`allowed`/`denied`),
    /// `host`, `port` (number or null), `method` and `reason` (null when
    /// allowed); no trailing newline. Besides what JSON requires, the
    /// characters [`terminal_safe`] escapes are written as `\uXXXX`, so the
    /// line is ASCII-safe to print.
    pub fn to_json_line(&self) -> String {
        let line = JsonLine {
            time: &self.time,
            decision: self.decision,
            host: &self.host,
            port: self.port,
            method: &self.method,
            reason: match self.decision {
                Decision::Denied => self.reason.as_deref(),
                Decision::Allowed => None,
            },
        };
        json_safe(
            &serde_json::to_string(&line).expect("a struct of strings and numbers serializes"),
        )
    }

    /// `host:port`, bracketing IPv6 literals; the host alone without a port.
    fn destination(&self) -> String {
        match self.port {
            Some(port) if self.host.contains(':') => format!("[{}]:{port}", self.host),
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }
}

/// Whether `c` may change how a terminal shows the text around it: a control
/// character (Unicode category Cc), a format character (Cf: bidi overrides
/// and isolates, zero-width characters, the BOM, tags...) or the line and
/// paragraph separators U+2028 and U+2029. The format characters are those of
/// Unicode 15.0.
fn is_unsafe_for_terminals(c: char) -> bool {
    matches!(
        u32::from(c),
        // Cc
        0x0000..=0x001F
            | 0x007F..=0x009F
            // Cf
            | 0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
            // Zl, Zp
            | 0x2028..=0x2029
    )
}

/// `s` with every character that could drive a terminal or reorder what it
/// shows (see `is_unsafe_for_terminals`: control and format characters, the
/// line and paragraph separators) written as `\u{XXXX}`, in uppercase hex
/// of at least four digits. Everything else, other non-ASCII text included,
/// is kept.
pub fn terminal_safe(s: &str) -> String {
    use std::fmt::Write as _;
    let mut safe = String::with_capacity(s.len());
    for c in s.chars() {
        if is_unsafe_for_terminals(c) {
            let _ = write!(safe, "\\u{{{:04X}}}", u32::from(c));
        } else {
            safe.push(c);
        }
    }
    safe
}

/// Serialized JSON with the characters [`terminal_safe`] escapes written as
/// JSON escapes (UTF-16 surrogate pairs above U+FFFF). serde_json already
/// escapes U+0000 to U+001F, and JSON text holds other non-ASCII characters
/// only within strings, where `\uXXXX` means the same character.
fn json_safe(json: &str) -> String {
    use std::fmt::Write as _;
    let mut safe = String::with_capacity(json.len());
    for c in json.chars() {
        if is_unsafe_for_terminals(c) {
            let mut units = [0; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(safe, "\\u{unit:04x}");
            }
        } else {
            safe.push(c);
        }
    }
    safe
}

/// `time  decision  host:port  method  reason`, padded so consecutive lines
/// line up (a destination longer than its column pushes the rest right).
impl fmt::Display for EgressEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = if self.time.is_empty() {
            "-"
        } else {
            &self.time
        };
        let method = if self.method.is_empty() {
            "-"
        } else {
            &self.method
        };
        let line = format!(
            "{:<20}  {:<7}  {:<32}  {:<7}",
            terminal_safe(time),
            self.decision.as_str(),
            terminal_safe(&self.destination()),
            terminal_safe(method),
        );
        match (&self.decision, &self.reason) {
            (Decision::Denied, Some(reason)) => write!(f, "{line}  {}", terminal_safe(reason)),
            _ => f.write_str(line.trim_end()),
        }
    }
}

/// How pipelock's allowlist scanner starts the reason of a denial
/// (`scanner.checkAllowlist` in v2.3.0: `domain not in allowlist: HOST`; the
/// stand-in writes the same).
const NOT_IN_ALLOWLIST: &str = "domain not in allowlist";

/// The hosts the proxy denied because they are not on the allowlist, with
/// how often.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenialSummary {
    /// Each denied host with its count, most frequent first, ties by host.
    pub entries: Vec<(String, usize)>,
}

impl DenialSummary {
    /// Counts the denials whose reason is the allowlist's (it starts with
    /// `domain not in allowlist`), the ones [`DenialSummary::hint`]'s advice
    /// fixes. Other denials are left out: a blocklist or SSRF match, a DLP
    /// or response-scan block (whose host may be on the allowlist already,
    /// or be `[redacted-url]`) do not go away by allowing the host.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a EgressEvent>) -> Self {
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for event in events {
            let not_allowlisted = event
                .reason
                .as_deref()
                .is_some_and(|reason| reason.starts_with(NOT_IN_ALLOWLIST));
            if event.decision == Decision::Denied && not_allowlisted {
                *counts.entry(&event.host).or_default() += 1;
            }
        }
        let mut entries: Vec<(String, usize)> = counts
            .into_iter()
            .map(|(host, count)| (host.to_owned(), count))
            .collect();
        // Stable: equal counts keep the map's host order.
        entries.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        Self { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What to do about the denials, for the caller to print as a hint.
    pub fn hint(&self, bottle: &str) -> String {
        let them = if self.entries.len() == 1 {
            "it"
        } else {
            "them"
        };
        format!(
            "to allow {them}, add {them} to `bottles.{bottle}.egress.allowlist` in the manifest, \
             or run `claude-bottle allow HOST` while the bottle runs"
        )
    }
}

impl fmt::Display for DenialSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entries.len() {
            0 => return f.write_str("the proxy denied no hosts"),
            1 => f.write_str("the proxy denied 1 host:")?,
            n => write!(f, "the proxy denied {n} hosts:")?,
        }
        let hosts: Vec<String> = self.entries.iter().map(|(h, _)| terminal_safe(h)).collect();
        let width = hosts.iter().map(|h| h.chars().count()).max().unwrap_or(0);
        for (host, (_, count)) in hosts.iter().zip(&self.entries) {
            write!(f, "\n  {host:<width$}  {count}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Lines shaped as pipelock 2.3.0's zerolog writer lays them out
    // (`internal/audit/logger.go`) and as the stand-in's `log.rs` writes them.
    const CONNECT_BLOCKED: &str = r#"{"level":"warn","component":"pipelock","event":"blocked","method":"CONNECT","target":"Evil.Example.com:443","client_ip":"172.18.0.3","request_id":"req-7","scanner":"allowlist","reason":"domain not in allowlist: evil.example.com","agent":"anonymous","mitre_technique":"T1071.001","time":"2026-03-01T10:15:02Z","message":"request blocked"}"#;
    const TUNNEL_OPEN: &str = r#"{"level":"info","component":"pipelock","event":"tunnel_open","target":"api.anthropic.com:443","client_ip":"172.18.0.3","request_id":"req-8","agent":"anonymous","time":"2026-03-01T10:15:03Z","message":"tunnel opened"}"#;
    const TUNNEL_CLOSE: &str = r#"{"level":"info","component":"pipelock","event":"tunnel_close","target":"api.anthropic.com:443","client_ip":"172.18.0.3","request_id":"req-8","agent":"anonymous","total_bytes":48213,"duration_ms":5321.7,"time":"2026-03-01T10:15:09Z","message":"tunnel closed"}"#;
    const FORWARD_HTTP: &str = r#"{"level":"info","component":"pipelock","event":"forward_http","method":"GET","url":"http://deb.debian.org/debian/dists/bookworm/InRelease","client_ip":"172.18.0.3","request_id":"req-9","agent":"anonymous","status_code":200,"size_bytes":151234,"duration_ms":84.2,"time":"2026-03-01T10:15:04Z","message":"forward proxy request"}"#;
    const HTTP_BLOCKED: &str = r#"{"level":"warn","component":"pipelock","event":"blocked","method":"POST","url":"http://user:pw@Exfil.Example.net:8080/upload?x=1","client_ip":"172.18.0.3","request_id":"req-10","scanner":"allowlist","reason":"domain not in allowlist: exfil.example.net","agent":"anonymous","mitre_technique":"T1071.001","time":"2026-03-01T10:15:05Z","message":"request blocked"}"#;
    const FETCH_ALLOWED: &str = r#"{"level":"info","component":"pipelock","event":"allowed","method":"GET","url":"https://docs.rs/serde","client_ip":"127.0.0.1","request_id":"req-3","status_code":200,"size_bytes":5120,"duration_ms":120.5,"agent":"anonymous","time":"2026-03-01T10:15:06+01:00","message":"request allowed"}"#;
    const V6_BLOCKED: &str = r#"{"level":"warn","component":"pipelock","event":"blocked","method":"CONNECT","target":"[2001:DB8::1]:8443","client_ip":"172.18.0.3","request_id":"req-11","scanner":"allowlist","reason":"domain not in allowlist: 2001:db8::1","time":"2026-03-01T10:15:07Z","message":"request blocked"}"#;
    const DLP_REDACTED: &str = r#"{"level":"warn","component":"pipelock","event":"blocked","method":"CONNECT","target":"[redacted-url]","client_ip":"172.18.0.3","request_id":"req-12","scanner":"dlp","reason":"DLP match: AWS Access Key (critical)","mitre_technique":"T1048","time":"2026-03-01T10:15:08Z","message":"request blocked"}"#;
    const RELOAD_OK: &str = r#"{"level":"info","component":"pipelock","event":"config_reload","status":"success","detail":"mode=strict","config_hash":"4b2d0c7e9a","time":"2026-03-01T10:16:00Z","message":"configuration reloaded"}"#;
    const RELOAD_REFUSED: &str = r#"{"level":"error","component":"pipelock","event":"error","method":"CONFIG_RELOAD","resource":"/etc/pipelock/pipelock.yaml","error":"rejected: security downgrade from strict mode","time":"2026-03-01T10:16:01Z","message":"request error"}"#;
    const RELOAD_IGNORED: &str = r#"{"level":"info","component":"pipelock","event":"config_reload","status":"ignored","detail":"unchanged","time":"2026-03-01T10:16:02Z","message":"configuration reload ignored"}"#;
    const RELOAD_UNLOADABLE: &str =
        "pipelock: config reload failed: validating config: api_allowlist[3]: invalid domain\n";
    const BLOCKLIST_BLOCKED: &str = r#"{"level":"warn","component":"pipelock","event":"blocked","method":"CONNECT","target":"pastebin.com:443","client_ip":"172.18.0.3","request_id":"req-14","scanner":"blocklist","reason":"domain blocked: pastebin.com matches *.pastebin.com","time":"2026-03-01T10:15:11Z","message":"request blocked"}"#;
    // What an agent can put in a log line: a host name with a bidi override
    // and a tag character, a method with an escape sequence, a reason with
    // a line separator and a zero-width space.
    const HOSTILE_BLOCKED: &str = r#"{"level":"warn","component":"pipelock","event":"blocked","method":"GE\u001b[2JT","url":"http://evil\u202egro.test\udb40\udc41/x","client_ip":"172.18.0.3","request_id":"req-15","scanner":"allowlist","reason":"domain not in allowlist: evil\u202egro.test\u2028forged\u200b\u0085","time":"2026-03-01T10:15:12Z","message":"request blocked"}"#;
    const STARTUP: &str = r#"{"level":"info","component":"pipelock","event":"startup","listen":"0.0.0.0:8888","mode":"strict","version":"2.3.0","config_hash":"4b2d0c7e9a","time":"2026-03-01T10:15:00Z","message":"pipelock started"}"#;
    const DIAL_ERROR: &str = r#"{"level":"error","component":"pipelock","event":"error","method":"CONNECT","target":"api.anthropic.com:443","client_ip":"172.18.0.3","request_id":"req-13","agent":"anonymous","error":"dial tcp: i/o timeout","time":"2026-03-01T10:15:10Z","message":"request error"}"#;

    fn egress(line: &str) -> EgressEvent {
        match parse_line(line) {
            LogLine::Egress(event) => event,
            other => panic!("not an egress event: {other:?}"),
        }
    }

    fn event(host: &str, decision: Decision) -> EgressEvent {
        EgressEvent {
            time: "2026-03-01T10:15:02Z".into(),
            decision,
            host: host.into(),
            port: Some(443),
            method: "CONNECT".into(),
            reason: (decision == Decision::Denied)
                .then(|| format!("domain not in allowlist: {host}")),
        }
    }

    #[test]
    fn a_blocked_connect_is_a_denial_of_its_target() {
        assert_eq!(
            egress(CONNECT_BLOCKED),
            EgressEvent {
                time: "2026-03-01T10:15:02Z".into(),
                decision: Decision::Denied,
                host: "evil.example.com".into(),
                port: Some(443),
                method: "CONNECT".into(),
                reason: Some("domain not in allowlist: evil.example.com".into()),
            }
        );
    }

    #[test]
    fn an_opened_tunnel_is_an_allowed_connect() {
        let event = egress(TUNNEL_OPEN);
        assert_eq!(event.decision, Decision::Allowed);
        assert_eq!(
            (event.host.as_str(), event.port),
            ("api.anthropic.com", Some(443))
        );
        assert_eq!(event.method, "CONNECT");
        assert_eq!(event.reason, None);
    }

    #[test]
    fn a_closed_tunnel_is_not_counted_again() {
        assert_eq!(parse_line(TUNNEL_CLOSE), LogLine::Other);
    }

    #[test]
    fn plain_http_takes_host_and_port_from_the_url() {
        let event = egress(FORWARD_HTTP);
        assert_eq!(event.decision, Decision::Allowed);
        assert_eq!(
            (event.host.as_str(), event.port),
            ("deb.debian.org", Some(80))
        );
        assert_eq!(event.method, "GET");

        let event = egress(HTTP_BLOCKED);
        assert_eq!(event.decision, Decision::Denied);
        assert_eq!(
            (event.host.as_str(), event.port),
            ("exfil.example.net", Some(8080))
        );
        assert_eq!(event.method, "POST");

        let event = egress(FETCH_ALLOWED);
        assert_eq!((event.host.as_str(), event.port), ("docs.rs", Some(443)));
        assert_eq!(
            event.time, "2026-03-01T10:15:06+01:00",
            "the offset is kept"
        );
    }

    #[test]
    fn ipv6_targets_lose_their_brackets_and_case() {
        let event = egress(V6_BLOCKED);
        assert_eq!(
            (event.host.as_str(), event.port),
            ("2001:db8::1", Some(8443))
        );
        assert!(event.to_string().contains("[2001:db8::1]:8443"));
    }

    #[test]
    fn a_redacted_target_is_still_a_denial() {
        let event = egress(DLP_REDACTED);
        assert_eq!(event.decision, Decision::Denied);
        assert_eq!((event.host.as_str(), event.port), ("[redacted-url]", None));
        assert_eq!(
            event.reason.as_deref(),
            Some("DLP match: AWS Access Key (critical)")
        );
    }

    #[test]
    fn destinations() {
        assert_eq!(split_host_port("a.test:443"), Some(("a.test", Some(443))));
        assert_eq!(split_host_port("[::1]:443"), Some(("::1", Some(443))));
        assert_eq!(split_host_port("[::1]"), Some(("::1", None)));
        assert_eq!(split_host_port("::1"), Some(("::1", None)));
        assert_eq!(split_host_port("a.test"), Some(("a.test", None)));
        assert_eq!(split_host_port("a.test:99999"), Some(("a.test", None)));
        assert_eq!(split_host_port("[::1"), None);
        assert_eq!(split_host_port("[::1]x"), None);
        assert_eq!(split_host_port(":443"), None);
        assert_eq!(split_host_port("[redacted-url]"), None);
        let url = |u| url_host_port(u);
        assert_eq!(url("https://A.test"), Some(("A.test".into(), Some(443))));
        assert_eq!(url("HTTP://a.test?q"), Some(("a.test".into(), Some(80))));
        assert_eq!(url("wss://a.test#f"), Some(("a.test".into(), Some(443))));
        assert_eq!(url("ftp://a.test/x"), Some(("a.test".into(), None)));
        assert_eq!(
            url("http://[fe80::1]:81/x"),
            Some(("fe80::1".into(), Some(81)))
        );
        assert_eq!(url("http://u@p@a.test/"), Some(("a.test".into(), Some(80))));
        assert_eq!(url("https:///path"), None);
        assert_eq!(url("a.test/x"), None);
    }

    #[test]
    fn config_reloads_succeed_or_are_refused() {
        assert_eq!(
            parse_line(RELOAD_OK),
            LogLine::ConfigReload {
                ok: true,
                detail: Some("mode=strict".into()),
                time: "2026-03-01T10:16:00Z".into(),
            }
        );
        assert_eq!(
            parse_line(RELOAD_REFUSED),
            LogLine::ConfigReload {
                ok: false,
                detail: Some("rejected: security downgrade from strict mode".into()),
                time: "2026-03-01T10:16:01Z".into(),
            }
        );
        assert_eq!(
            parse_line(RELOAD_UNLOADABLE),
            LogLine::ConfigReload {
                ok: false,
                detail: Some("validating config: api_allowlist[3]: invalid domain".into()),
                time: String::new(),
            }
        );
    }

    #[test]
    fn a_reload_of_another_status_is_neither_success_nor_refusal() {
        assert_eq!(parse_line(RELOAD_IGNORED), LogLine::Other);
        for status in [r#""status":"pending","#, r#""status":7,"#, ""] {
            let line = format!(
                r#"{{"level":"info","event":"config_reload",{status}"time":"2026-03-01T10:16:02Z"}}"#
            );
            assert_eq!(parse_line(&line), LogLine::Other, "{line}");
        }
    }

    #[test]
    fn an_egress_event_without_a_time_is_skipped() {
        let without = CONNECT_BLOCKED.replace(r#""time":"2026-03-01T10:15:02Z","#, "");
        assert_eq!(parse_line(&without), LogLine::Other);
        let empty = TUNNEL_OPEN.replace("2026-03-01T10:15:03Z", "");
        assert_eq!(parse_line(&empty), LogLine::Other);
        let not_a_string = FORWARD_HTTP.replace(r#""2026-03-01T10:15:04Z""#, "1772360104");
        assert_eq!(parse_line(&not_a_string), LogLine::Other);
    }

    #[test]
    fn everything_else_is_other() {
        for line in [
            STARTUP,
            DIAL_ERROR,
            "",
            "not json",
            "[1,2]",
            "null",
            r#"{"event":"blocked"}"#,
            r#"{"event":"blocked","resource":"bash","method":"tools/call"}"#,
            r#"{"event":"blocked","target":"a.test:443"}"#,
            r#"{"event":7,"target":"a.test:443"}"#,
            "10:15AM WRN request blocked event=blocked target=a.test:443",
        ] {
            assert_eq!(parse_line(line), LogLine::Other, "{line}");
        }
    }

    #[test]
    fn json_lines_snapshot() {
        let lines: Vec<String> = [
            CONNECT_BLOCKED,
            TUNNEL_OPEN,
            FORWARD_HTTP,
            HTTP_BLOCKED,
            V6_BLOCKED,
            DLP_REDACTED,
            HOSTILE_BLOCKED,
        ]
        .into_iter()
        .map(|line| egress(line).to_json_line())
        .collect();
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn human_lines_snapshot() {
        let lines: Vec<String> = [
            CONNECT_BLOCKED,
            TUNNEL_OPEN,
            FORWARD_HTTP,
            HTTP_BLOCKED,
            V6_BLOCKED,
            DLP_REDACTED,
            HOSTILE_BLOCKED,
        ]
        .into_iter()
        .map(|line| egress(line).to_string())
        .collect();
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn an_allowed_event_never_shows_a_reason() {
        let mut allowed = event("a.test", Decision::Allowed);
        allowed.reason = Some("stale".into());
        assert!(allowed.to_json_line().ends_with(r#""reason":null}"#));
        assert!(!allowed.to_string().contains("stale"));
    }

    #[test]
    fn the_summary_counts_denials_most_frequent_first() {
        let events = [
            event("b.test", Decision::Denied),
            event("evil.example.com", Decision::Denied),
            event("a.test", Decision::Denied),
            event("api.anthropic.com", Decision::Allowed),
            event("evil.example.com", Decision::Denied),
            event("b.test", Decision::Denied),
            event("evil.example.com", Decision::Denied),
            // Not the allowlist's denials: allowing the host would not help.
            egress(DLP_REDACTED),
            egress(BLOCKLIST_BLOCKED),
            EgressEvent {
                reason: Some("DLP match: GitHub token (critical)".into()),
                ..event("b.test", Decision::Denied)
            },
            EgressEvent {
                reason: None,
                ..event("c.test", Decision::Denied)
            },
        ];
        let summary = DenialSummary::from_events(&events);
        assert_eq!(
            summary.entries,
            vec![
                ("evil.example.com".to_owned(), 3),
                ("b.test".to_owned(), 2),
                ("a.test".to_owned(), 1),
            ]
        );
        assert!(!summary.is_empty());
        insta::assert_snapshot!(format!("{summary}\n{}", summary.hint("dev")));
    }

    #[test]
    fn a_single_or_no_denial() {
        let one = DenialSummary::from_events(&[event("a.test", Decision::Denied)]);
        assert_eq!(one.to_string(), "the proxy denied 1 host:\n  a.test  1");
        assert!(
            one.hint("dev")
                .starts_with("to allow it, add it to `bottles.dev.egress.allowlist`")
        );
        let none = DenialSummary::from_events(&[event("a.test", Decision::Allowed)]);
        assert!(none.is_empty());
        assert_eq!(none.to_string(), "the proxy denied no hosts");
    }

    #[test]
    fn a_summary_of_only_other_denials_is_empty() {
        let summary =
            DenialSummary::from_events(&[egress(DLP_REDACTED), egress(BLOCKLIST_BLOCKED)]);
        assert!(summary.is_empty());
    }

    #[test]
    fn terminal_safe_escapes_control_format_and_separator_characters() {
        assert_eq!(
            terminal_safe("a\u{1b}[2J\tb\u{7f}\u{85}\u{9f}"),
            r"a\u{001B}[2J\u{0009}b\u{007F}\u{0085}\u{009F}"
        );
        assert_eq!(
            terminal_safe("\u{202e}evil\u{2066}\u{200b}\u{feff}\u{ad}\u{2028}\u{2029}"),
            r"\u{202E}evil\u{2066}\u{200B}\u{FEFF}\u{00AD}\u{2028}\u{2029}"
        );
        assert_eq!(
            terminal_safe("tag\u{e0041}\u{e007f}"),
            r"tag\u{E0041}\u{E007F}"
        );
        // Other text, non-ASCII included, is kept.
        assert_eq!(terminal_safe("café 日本 ‐ a.test"), "café 日本 ‐ a.test");
        assert_eq!(terminal_safe(""), "");
    }

    #[test]
    fn every_listed_character_is_escaped() {
        // Unicode's Cc and Cf (15.0), and Zl and Zp.
        let ranges = [
            (0x0000, 0x001F),
            (0x007F, 0x009F),
            (0x00AD, 0x00AD),
            (0x0600, 0x0605),
            (0x061C, 0x061C),
            (0x06DD, 0x06DD),
            (0x070F, 0x070F),
            (0x0890, 0x0891),
            (0x08E2, 0x08E2),
            (0x180E, 0x180E),
            (0x200B, 0x200F),
            (0x2028, 0x202E),
            (0x2060, 0x2064),
            (0x2066, 0x206F),
            (0xFEFF, 0xFEFF),
            (0xFFF9, 0xFFFB),
            (0x110BD, 0x110BD),
            (0x110CD, 0x110CD),
            (0x13430, 0x1343F),
            (0x1BCA0, 0x1BCA3),
            (0x1D173, 0x1D17A),
            (0xE0001, 0xE0001),
            (0xE0020, 0xE007F),
        ];
        for (first, last) in ranges {
            for c in (first..=last).filter_map(char::from_u32) {
                assert_eq!(
                    terminal_safe(&c.to_string()),
                    format!("\\u{{{:04X}}}", u32::from(c))
                );
            }
            // The neighbours are kept, unless themselves in a range.
            for c in [first.checked_sub(1), Some(last + 1)]
                .into_iter()
                .flatten()
                .filter_map(char::from_u32)
            {
                if !ranges.iter().any(|&(f, l)| (f..=l).contains(&u32::from(c))) {
                    assert_eq!(terminal_safe(&c.to_string()), c.to_string(), "{c:?}");
                }
            }
        }
    }

    #[test]
    fn control_and_format_characters_do_not_reach_the_terminal() {
        let event = egress(HOSTILE_BLOCKED);
        assert_eq!(event.host, "evil\u{202e}gro.test\u{e0041}");
        let text = event.to_string();
        assert!(!text.chars().any(is_unsafe_for_terminals), "{text:?}");
        assert!(
            text.contains(r"evil\u{202E}gro.test\u{E0041}:80  GE\u{001B}[2JT"),
            "{text}"
        );
        let summary = DenialSummary::from_events(&[event, egress(CONNECT_BLOCKED)]);
        let text = summary.to_string();
        // Its own newlines aside.
        let unsafe_char = text
            .lines()
            .flat_map(str::chars)
            .any(is_unsafe_for_terminals);
        assert!(!unsafe_char, "{text:?}");
        assert_eq!(
            text,
            "the proxy denied 2 hosts:\n  \
             evil.example.com               1\n  \
             evil\\u{202E}gro.test\\u{E0041}  1"
        );
    }

    #[test]
    fn json_lines_escape_what_the_terminal_would_act_on() {
        let event = egress(HOSTILE_BLOCKED);
        let line = event.to_json_line();
        assert!(line.is_ascii(), "{line}");
        assert!(
            line.contains(r#""host":"evil\u202egro.test\udb40\udc41""#),
            "{line}"
        );
        assert!(line.contains(r#""method":"GE\u001b[2JT""#), "{line}");
        assert!(line.contains(r"\u2028forged\u200b\u0085"), "{line}");
        let object: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(object["host"], event.host.as_str());
        assert_eq!(object["method"], event.method.as_str());
        assert_eq!(object["reason"], event.reason.as_deref().unwrap());
        // Characters JSON itself escapes are left to serde_json.
        let mut quoted = event.clone();
        quoted.host = "a\\\u{202e}\"b".into();
        let line = quoted.to_json_line();
        assert!(line.contains(r#""host":"a\\\u202e\"b""#), "{line}");
        let object: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(object["host"], quoted.host.as_str());
    }

    proptest! {
        #[test]
        fn parse_line_never_panics(line in any::<String>()) {
            let _ = parse_line(&line);
        }

        #[test]
        fn terminal_safe_leaves_no_control_character(s in any::<String>()) {
            let safe = terminal_safe(&s);
            prop_assert!(!safe.chars().any(char::is_control), "{:?}", safe);
            prop_assert!(!safe.chars().any(is_unsafe_for_terminals), "{:?}", safe);
            if !s.chars().any(is_unsafe_for_terminals) {
                prop_assert_eq!(safe, s);
            }
        }

        #[test]
        fn parse_line_never_panics_on_pipelock_shaped_lines(
            event in prop::sample::select(vec!["blocked", "allowed", "tunnel_open", "forward_http", "config_reload", "error"]),
            target in ".{0,40}",
            url in "(https?://)?[^\"\\\\]{0,40}",
            method in prop::sample::select(vec!["", "GET", "CONNECT", "CONFIG_RELOAD"]),
        ) {
            let line = serde_json::json!({
                "level": "warn", "event": event, "method": method,
                "target": target, "url": url, "time": "2026-03-01T10:15:02Z",
            });
            if let LogLine::Egress(parsed) = parse_line(&line.to_string()) {
                prop_assert_eq!(parsed.host.to_lowercase(), parsed.host);
            }
        }

        #[test]
        fn json_lines_have_exactly_the_six_keys(
            time in any::<String>(),
            denied in any::<bool>(),
            host in any::<String>(),
            port in any::<Option<u16>>(),
            method in any::<String>(),
            reason in any::<Option<String>>(),
        ) {
            let decision = if denied { Decision::Denied } else { Decision::Allowed };
            let event = EgressEvent { time, decision, host, port, method, reason };
            let line = event.to_json_line();
            prop_assert!(!line.contains('\n'));
            let Value::Object(object) = serde_json::from_str::<Value>(&line).unwrap() else {
                panic!("not an object: {line}");
            };
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            prop_assert_eq!(keys, ["decision", "host", "method", "port", "reason", "time"]);
            prop_assert!(!line.chars().any(is_unsafe_for_terminals), "{:?}", line);
            prop_assert_eq!(&object["time"], event.time.as_str());
            prop_assert_eq!(&object["host"], event.host.as_str());
            prop_assert_eq!(&object["method"], event.method.as_str());
            prop_assert_eq!(&object["decision"], if denied { "denied" } else { "allowed" });
            prop_assert_eq!(object["port"].as_u64(), event.port.map(u64::from));
            if denied {
                prop_assert_eq!(object["reason"].as_str(), event.reason.as_deref());
            } else {
                prop_assert!(object["reason"].is_null());
            }
        }
    }
}
