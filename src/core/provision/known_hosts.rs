//! Picking the host user's `known_hosts` lines that vouch for a bottle's SSH
//! hosts, so the bottle can check host keys strictly instead of trusting on
//! first use.
//!
//! Matching follows OpenSSH (`hostfile.c`, `match.c`): the name looked up is
//! the `HostName`, written `[host]:port` when the port is not 22; a host field
//! is either one hashed name (`|1|salt|hash`, the HMAC-SHA1 of the name keyed
//! with the salt) or a comma list of patterns with `*`, `?` and `!` negation,
//! compared without regard to case.
//!
//! Markers: `@revoked` lines are copied (they only ever refuse keys) but do not
//! count as knowing the host; `@cert-authority` lines are copied and do count,
//! since the host user trusts that CA to vouch for the host. Lines with any
//! other marker, comments and malformed lines are skipped, as ssh skips them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// The name ssh looks a host key up under: `host`, or `[host]:port` off port 22.
pub fn lookup_name(host_name: &str, port: u16) -> String {
    if port == 22 {
        host_name.to_owned()
    } else {
        format!("[{host_name}]:{port}")
    }
}

/// The lines of one host's entry in the bottle's `known_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostKeys {
    /// Lines to write, in the order of the host file.
    pub lines: Vec<String>,
    /// Whether a host key or a CA vouches for the host, so checking can be strict.
    pub known: bool,
}

/// The lines of `known_hosts` (the file's text) that apply to `name` (a
/// [`lookup_name`]). Plain lines are rewritten to name only `name`, so the
/// bottle does not learn the other hosts a line lists; hashed lines are kept
/// as they are, since they reveal nothing.
pub fn lines_for(known_hosts: &str, name: &str) -> HostKeys {
    let name = name.to_ascii_lowercase();
    let mut keys = HostKeys::default();
    for line in known_hosts.lines() {
        let Some(parsed) = ParsedLine::parse(line) else {
            continue;
        };
        let counts_as_known = match parsed.marker {
            None | Some("@cert-authority") => true,
            Some("@revoked") => false,
            Some(_) => continue,
        };
        let out = if parsed.hosts.starts_with('|') {
            if !hashed_name_matches(parsed.hosts, &name) {
                continue;
            }
            line.trim().to_owned()
        } else {
            if !pattern_list_matches(parsed.hosts, &name) {
                continue;
            }
            match parsed.marker {
                Some(marker) => format!("{marker} {name} {}", parsed.rest),
                None => format!("{name} {}", parsed.rest),
            }
        };
        if !keys.lines.contains(&out) {
            keys.lines.push(out);
        }
        keys.known |= counts_as_known;
    }
    keys
}

struct ParsedLine<'a> {
    marker: Option<&'a str>,
    hosts: &'a str,
    /// Key type, key and comment, as written.
    rest: &'a str,
}

impl<'a> ParsedLine<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (first, after_first) = split_field(line)?;
        let (marker, hosts, rest) = if first.starts_with('@') {
            let (hosts, rest) = split_field(after_first)?;
            (Some(first), hosts, rest)
        } else {
            (None, first, after_first)
        };
        // A key line needs at least a key type and the key itself.
        let mut key_fields = rest.split_whitespace();
        key_fields.next()?;
        key_fields.next()?;
        Some(Self {
            marker,
            hosts,
            rest,
        })
    }
}

/// The first whitespace-separated field and the trimmed remainder.
fn split_field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    let end = s.find(char::is_whitespace)?;
    Some((&s[..end], s[end..].trim()))
}

/// `|1|salt|hash`: HMAC-SHA1 of `name` keyed with the salt equals the hash.
fn hashed_name_matches(field: &str, name: &str) -> bool {
    let Some(body) = field.strip_prefix("|1|") else {
        return false;
    };
    let Some((salt, hash)) = body.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (BASE64.decode(salt), BASE64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// OpenSSH's `match_hostname`: some positive pattern matches and no negated one does.
fn pattern_list_matches(list: &str, name: &str) -> bool {
    let mut positive = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if wildcard_matches(pattern.to_ascii_lowercase().as_bytes(), name.as_bytes()) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `*` matches any run of characters, `?` exactly one.
fn wildcard_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    t = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO4LK2oLpL12Eq3EeLn0caRkxwyItLT1MmUWbNMJZHVx";
    // Made by `ssh-keygen -H` from `github.com` and `[git.example.org]:2200` lines.
    const HASHED_GITHUB: &str = "|1|C19yqZB5TE3Pr4T7dJCDNmAQ/lg=|U4tM1/7pjg7DmoqUo5uVzNKDxuU=";
    const HASHED_EXAMPLE_2200: &str =
        "|1|CP1fR3mDeDkGZCgnwSCIDPsuY9o=|KODC3gRh4i1lppRarAeGkZXSqXo=";

    #[test]
    fn lookup_name_brackets_non_default_ports() {
        assert_eq!(lookup_name("github.com", 22), "github.com");
        assert_eq!(lookup_name("10.0.0.5", 2222), "[10.0.0.5]:2222");
        assert_eq!(lookup_name("fd00::1", 2222), "[fd00::1]:2222");
    }

    #[test]
    fn hashed_names_match_what_ssh_keygen_hashed() {
        assert!(hashed_name_matches(HASHED_GITHUB, "github.com"));
        assert!(!hashed_name_matches(HASHED_GITHUB, "gitlab.com"));
        assert!(!hashed_name_matches(HASHED_GITHUB, "[github.com]:22"));
        assert!(hashed_name_matches(
            HASHED_EXAMPLE_2200,
            "[git.example.org]:2200"
        ));
        assert!(!hashed_name_matches(HASHED_EXAMPLE_2200, "git.example.org"));
    }

    #[test]
    fn malformed_hashes_never_match() {
        for field in [
            "|1|",
            "|1|abc",
            "|1|!!!|!!!",
            "|2|C19yqZB5TE3Pr4T7dJCDNmAQ/lg=|x",
        ] {
            assert!(!hashed_name_matches(field, "github.com"), "{field}");
        }
    }

    #[test]
    fn patterns_follow_openssh() {
        assert!(pattern_list_matches("github.com", "github.com"));
        assert!(pattern_list_matches("GitHub.COM", "github.com"));
        assert!(pattern_list_matches("a.com,github.com,b.com", "github.com"));
        assert!(!pattern_list_matches("api.github.com", "github.com"));
        assert!(pattern_list_matches("*.example.com", "git.example.com"));
        assert!(!pattern_list_matches("*.example.com", "example.com"));
        assert!(pattern_list_matches("git?.example.com", "git1.example.com"));
        assert!(!pattern_list_matches("git?.example.com", "git.example.com"));
        assert!(!pattern_list_matches(
            "*.example.com,!bad.example.com",
            "bad.example.com"
        ));
        assert!(!pattern_list_matches(
            "!bad.example.com",
            "good.example.com"
        ));
        assert!(pattern_list_matches("[10.0.0.5]:2222", "[10.0.0.5]:2222"));
        assert!(!pattern_list_matches("10.0.0.5", "[10.0.0.5]:2222"));
        assert!(pattern_list_matches("*", "anything"));
        assert!(pattern_list_matches("a*b*c", "aXXbYYc"));
        assert!(!pattern_list_matches("a*b*c", "aXXbYY"));
    }

    #[test]
    fn plain_lines_are_narrowed_to_the_looked_up_name() {
        let file = format!("github.com,140.82.112.3 {KEY} laptop\n");
        let keys = lines_for(&file, "github.com");
        assert_eq!(keys.lines, vec![format!("github.com {KEY} laptop")]);
        assert!(keys.known);
    }

    #[test]
    fn hashed_lines_are_copied_as_they_are() {
        let file = format!("{HASHED_GITHUB} {KEY}\n{HASHED_EXAMPLE_2200} {KEY}\n");
        let keys = lines_for(&file, "github.com");
        assert_eq!(keys.lines, vec![format!("{HASHED_GITHUB} {KEY}")]);
        assert!(keys.known);
        let keys = lines_for(&file, "[git.example.org]:2200");
        assert_eq!(keys.lines, vec![format!("{HASHED_EXAMPLE_2200} {KEY}")]);
    }

    #[test]
    fn markers_comments_and_malformed_lines() {
        let file = format!(
            "# a comment\n\n@revoked github.com {KEY}\n@cert-authority *.corp.example {KEY}\n\
             @future-marker github.com {KEY}\ngithub.com\ngithub.com ssh-ed25519\n"
        );
        let revoked_only = lines_for(&file, "github.com");
        assert_eq!(
            revoked_only.lines,
            vec![format!("@revoked github.com {KEY}")]
        );
        assert!(
            !revoked_only.known,
            "a revocation alone does not vouch for a host"
        );

        let ca = lines_for(&file, "git.corp.example");
        assert_eq!(
            ca.lines,
            vec![format!("@cert-authority git.corp.example {KEY}")]
        );
        assert!(ca.known);
    }

    #[test]
    fn a_miss_yields_nothing() {
        let file = format!("github.com {KEY}\n[github.com]:2222 {KEY}\n");
        assert_eq!(lines_for(&file, "gitlab.com"), HostKeys::default());
        let keys = lines_for(&file, "[github.com]:2222");
        assert_eq!(keys.lines, vec![format!("[github.com]:2222 {KEY}")]);
    }

    #[test]
    fn duplicate_lines_are_written_once() {
        let file = format!("github.com {KEY}\ngithub.com,gh {KEY}\n");
        assert_eq!(lines_for(&file, "github.com").lines.len(), 1);
    }
}
