//! Validation: wire structs into the domain types of [`super`].
//!
//! One pass checks every value, threading the JSON path, and collects all
//! problems instead of stopping at the first one. Egress list entries and SSH
//! host names are read by `hosts`.

use std::collections::BTreeMap;

use super::error::{JsonPath, Problem, shown};
use super::hosts::{
    ALLOW_RULE_EXPECTING, CIDR_EXPECTING, Refusal, SSH_HOSTNAME_EXPECTING,
    TRUSTED_DOMAIN_EXPECTING, parse_allow_rule, parse_cidr, parse_ssh_host_name,
    parse_trusted_domain,
};
use super::wire::{self, PORT_EXPECTING};
use super::{
    Agent, Bottle, Egress, EnvName, EnvValue, Manifest, ManifestSource, SkillName, SshEntry,
};

/// The port an SSH entry uses when it names none.
pub const DEFAULT_SSH_PORT: u16 = 22;

/// Collects problems while the conversion carries on with what is valid.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn invalid(
        &mut self,
        path: JsonPath,
        message: impl Into<String>,
        expected: impl Into<String>,
        hint: Option<String>,
    ) {
        self.0.push(Problem::Invalid {
            path,
            message: message.into(),
            expected: expected.into(),
            hint,
        });
    }

    fn missing(&mut self, path: JsonPath, expected: impl Into<String>) {
        self.0.push(Problem::Missing {
            path,
            expected: expected.into(),
        });
    }
}

/// Validates the whole manifest, reporting every problem found.
pub(super) fn manifest(
    wire: wire::Manifest,
    source: ManifestSource,
) -> Result<Manifest, Vec<Problem>> {
    let mut problems = Problems::default();
    let root = JsonPath::root();

    let bottles_path = root.key("bottles");
    let mut bottles = BTreeMap::new();
    let mut bottle_names = Vec::new();
    match wire.bottles {
        None => problems.missing(
            bottles_path,
            "an object mapping bottle names to bottle objects",
        ),
        Some(entries) if entries.is_empty() => problems.invalid(
            bottles_path,
            "no bottle is defined",
            "at least one bottle",
            Some(
                r#"define one, for example "default": {"egress": {"allowlist": ["api.anthropic.com"]}}"#
                    .to_owned(),
            ),
        ),
        Some(entries) => {
            for (name, entry) in entries {
                let path = bottles_path.key(&name);
                bottle_names.push(name.clone());
                if name.trim().is_empty() {
                    problems.invalid(path.clone(), "empty bottle name", "a non-empty name", None);
                }
                let bottle = bottle(entry, &path, &mut problems);
                bottles.insert(name, bottle);
            }
        }
    }

    let agents_path = root.key("agents");
    let mut agents = BTreeMap::new();
    match wire.agents {
        None => problems.missing(
            agents_path,
            "an object mapping agent names to agent objects",
        ),
        Some(entries) if entries.is_empty() => problems.invalid(
            agents_path,
            "no agent is defined",
            "at least one agent",
            Some(r#"define one, for example "claude": {"bottle": "default"}"#.to_owned()),
        ),
        Some(entries) => {
            for (name, entry) in entries {
                let path = agents_path.key(&name);
                if name.trim().is_empty() {
                    problems.invalid(path.clone(), "empty agent name", "a non-empty name", None);
                }
                let agent = agent(entry, &path, &bottle_names, &mut problems);
                agents.insert(name, agent);
            }
        }
    }

    if problems.0.is_empty() {
        Ok(Manifest {
            bottles,
            agents,
            source,
        })
    } else {
        Err(problems.0)
    }
}

fn bottle(wire: wire::Bottle, path: &JsonPath, problems: &mut Problems) -> Bottle {
    let mut bottle = Bottle::default();

    for (name, raw) in wire.env.unwrap_or_default() {
        let entry_path = path.key("env").key(&name);
        let Some(env_name) = EnvName::parse(&name) else {
            problems.invalid(
                entry_path,
                format!("{} is not a valid variable name", shown(&name)),
                "a name matching `[A-Za-z_][A-Za-z0-9_]*`",
                None,
            );
            continue;
        };
        match parse_env_value(&raw) {
            Some(value) => {
                bottle.env.insert(env_name, value);
            }
            // The value is not echoed: it may be a secret written inline.
            None => problems.invalid(
                entry_path,
                "the value contains a `$` that is neither `$$` nor part of a whole-value reference",
                "a literal (with `$$` for each literal `$`), or exactly `${VAR}` or `$VAR`",
                Some(
                    "a reference must be the whole value, e.g. \"${GITHUB_TOKEN}\"; values are not interpolated, so write `$$` for every `$` meant literally"
                        .to_owned(),
                ),
            ),
        }
    }

    let mut aliases: BTreeMap<String, usize> = BTreeMap::new();
    for (index, entry) in wire.ssh.unwrap_or_default().into_iter().enumerate() {
        let entry_path = path.key("ssh").index(index);
        if let Some(host) = &entry.host {
            if let Some(first) = aliases.get(host) {
                problems.invalid(
                    entry_path.key("Host"),
                    format!("alias {} is already used by ssh[{first}]", shown(host)),
                    "a distinct Host alias for each entry",
                    None,
                );
            } else {
                aliases.insert(host.clone(), index);
            }
        }
        if let Some(entry) = ssh_entry(entry, &entry_path, problems) {
            bottle.ssh.push(entry);
        }
    }

    if let Some(wire_egress) = wire.egress {
        bottle.egress = egress(wire_egress, &path.key("egress"), problems);
    }

    if let Some(image) = wire.image {
        let image_path = path.key("image");
        if image.trim().is_empty() {
            problems.invalid(
                image_path,
                "empty image name",
                "an image reference such as `my/agent:tag`",
                Some("remove `image` to use the built-in agent image".to_owned()),
            );
        } else if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.invalid(
                image_path,
                format!("{} contains whitespace", shown(&image)),
                "an image reference such as `my/agent:tag`",
                None,
            );
        } else {
            bottle.image = Some(image);
        }
    }

    bottle
}

/// Reads an `env` value. `${VAR}` or `$VAR` as the whole value (with `VAR` a
/// valid name) reads the host variable; anything else is a literal in which
/// `$$` stands for `$`.
///
/// Any other `$` (`"a${B}c"`, `"${}"`, `"$1x"`, a trailing `$`) is rejected
/// rather than passed through as it is: it reads like an interpolation the tool
/// does not perform, and passing it on would hand the container the reference
/// text instead of the credential the user meant. Returns `None` for those.
fn parse_env_value(raw: &str) -> Option<EnvValue> {
    let reference = match raw.strip_prefix("${") {
        Some(braced) => braced.strip_suffix('}'),
        None => raw.strip_prefix('$'),
    };
    if let Some(name) = reference.and_then(EnvName::parse) {
        return Some(EnvValue::HostVar(name));
    }
    let mut literal = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '$' && chars.next() != Some('$') {
            return None;
        }
        literal.push(c);
    }
    Some(EnvValue::Literal(literal))
}

const HOST_ALIAS_EXPECTING: &str =
    "a non-empty alias without whitespace or ssh_config pattern characters (`*`, `?`, `!`, `,`)";

fn ssh_entry(wire: wire::SshEntry, path: &JsonPath, problems: &mut Problems) -> Option<SshEntry> {
    let before = problems.0.len();

    let host_path = path.key("Host");
    let host = match wire.host {
        None => {
            problems.missing(host_path.clone(), HOST_ALIAS_EXPECTING);
            None
        }
        Some(host) if host.is_empty() => {
            problems.invalid(host_path.clone(), "empty alias", HOST_ALIAS_EXPECTING, None);
            None
        }
        // A pattern in `Host` would apply the entry to other hosts as well.
        Some(host)
            if host.chars().any(|c| {
                c.is_whitespace() || c.is_control() || matches!(c, '*' | '?' | '!' | ',')
            }) =>
        {
            problems.invalid(
                host_path.clone(),
                format!("{} is not a plain alias", shown(&host)),
                HOST_ALIAS_EXPECTING,
                None,
            );
            None
        }
        Some(host) => Some(host),
    };

    let host_name = match (&wire.host_name, &host) {
        (Some(raw), _) => {
            let parsed = parse_ssh_host_name(raw);
            if parsed.is_none() {
                problems.invalid(
                    path.key("HostName"),
                    format!("{} is not a valid host", shown(raw)),
                    SSH_HOSTNAME_EXPECTING,
                    None,
                );
            }
            parsed
        }
        (None, Some(alias)) => {
            let parsed = parse_ssh_host_name(alias);
            if parsed.is_none() {
                problems.invalid(
                    host_path.clone(),
                    format!(
                        "HostName is not set, so it defaults to Host, and {} is not a valid host",
                        shown(alias)
                    ),
                    SSH_HOSTNAME_EXPECTING,
                    Some(r#"add "HostName": "the.real.host" to the entry"#.to_owned()),
                );
            }
            parsed
        }
        (None, None) => None,
    };

    let user = match wire.user {
        Some(user)
            if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            problems.invalid(
                path.key("User"),
                "empty or contains whitespace",
                "a user name without whitespace",
                Some("remove `User` to use the SSH default".to_owned()),
            );
            None
        }
        user => user,
    };

    let port = match &wire.port {
        None => Some(DEFAULT_SSH_PORT),
        Some(number) => {
            let port = number
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0);
            if port.is_none() {
                problems.invalid(
                    path.key("Port"),
                    format!("{number} is not a valid port"),
                    PORT_EXPECTING,
                    None,
                );
            }
            port
        }
    };

    let identity_path = path.key("IdentityFile");
    let identity_file = match wire.identity_file {
        None => {
            problems.missing(identity_path, "the path of a private key file");
            None
        }
        Some(file) if file.trim().is_empty() => {
            problems.invalid(
                identity_path,
                "empty path",
                "the path of a private key file",
                None,
            );
            None
        }
        Some(file) if file.chars().any(char::is_control) => {
            problems.invalid(
                identity_path,
                "the path contains control characters",
                "the path of a private key file",
                None,
            );
            None
        }
        Some(file) => Some(file),
    };

    if problems.0.len() != before {
        return None;
    }
    Some(SshEntry {
        host: host?,
        host_name: host_name?,
        user,
        port: port?,
        identity_file: identity_file?,
    })
}

fn egress(wire: wire::Egress, path: &JsonPath, problems: &mut Problems) -> Egress {
    fn each<T>(
        list: Option<Vec<String>>,
        path: &JsonPath,
        expected: &str,
        parse: fn(&str) -> Result<T, Refusal>,
        problems: &mut Problems,
    ) -> Vec<T> {
        let mut parsed = Vec::new();
        for (index, raw) in list.unwrap_or_default().iter().enumerate() {
            match parse(raw) {
                Ok(item) => parsed.push(item),
                Err(refusal) => {
                    problems.invalid(path.index(index), refusal.message, expected, refusal.hint);
                }
            }
        }
        parsed
    }

    Egress {
        allowlist: each(
            wire.allowlist,
            &path.key("allowlist"),
            ALLOW_RULE_EXPECTING,
            parse_allow_rule,
            problems,
        ),
        trusted_domains: each(
            wire.trusted_domains,
            &path.key("trusted_domains"),
            TRUSTED_DOMAIN_EXPECTING,
            parse_trusted_domain,
            problems,
        ),
        ip_cidrs: each(
            wire.ip_cidrs,
            &path.key("ip_cidrs"),
            CIDR_EXPECTING,
            parse_cidr,
            problems,
        ),
    }
}

fn agent(
    wire: wire::Agent,
    path: &JsonPath,
    bottle_names: &[String],
    problems: &mut Problems,
) -> Agent {
    let defined = bottle_names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let bottle_path = path.key("bottle");
    let bottle = match wire.bottle {
        None => {
            problems.missing(
                bottle_path,
                format!("the name of a bottle (defined: {defined})"),
            );
            String::new()
        }
        // With no bottle defined, `bottles` itself is already reported.
        Some(bottle) if !bottle_names.is_empty() && !bottle_names.contains(&bottle) => {
            problems.invalid(
                bottle_path,
                format!("bottle {} is not defined", shown(&bottle)),
                format!("one of the defined bottles: {defined}"),
                None,
            );
            bottle
        }
        Some(bottle) => bottle,
    };

    let mut skills = Vec::new();
    for (index, raw) in wire.skills.unwrap_or_default().iter().enumerate() {
        match SkillName::parse(raw) {
            Some(skill) => skills.push(skill),
            None => problems.invalid(
                path.key("skills").index(index),
                if raw.is_empty() {
                    "empty skill name".to_owned()
                } else {
                    format!("{} is not a skill directory name", shown(raw))
                },
                "the name of a directory under ~/.claude/skills/, without `/` or `..`",
                None,
            ),
        }
    }

    Agent {
        bottle,
        skills,
        prompt: wire.prompt.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_read_whole_references_and_unescape_dollars() {
        let host = |name: &str| Some(EnvValue::HostVar(EnvName::parse(name).unwrap()));
        let literal = |text: &str| Some(EnvValue::Literal(text.to_owned()));
        assert_eq!(parse_env_value("${GITHUB_TOKEN}"), host("GITHUB_TOKEN"));
        assert_eq!(parse_env_value("$GITHUB_TOKEN"), host("GITHUB_TOKEN"));
        assert_eq!(parse_env_value("$_x1"), host("_x1"));
        assert_eq!(parse_env_value("Bottle Bot"), literal("Bottle Bot"));
        assert_eq!(parse_env_value(""), literal(""));
        assert_eq!(parse_env_value("pa$$word"), literal("pa$word"));
        assert_eq!(parse_env_value("$$HOME"), literal("$HOME"));
        assert_eq!(parse_env_value("$${HOME}"), literal("${HOME}"));
        assert_eq!(parse_env_value("$$$$"), literal("$$"));
        for bad in [
            "a${B}c", "${}", "$1x", "$", "a$", "${A", "$A}", "${A-B}", "$$$", "$A$B",
        ] {
            assert_eq!(parse_env_value(bad), None, "{bad:?} must be refused");
        }
    }
}
