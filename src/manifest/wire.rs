//! The manifest as written: serde structs mirroring the JSON, and the one pass
//! that validates them into the domain types of [`super`].
//!
//! Parsing (`parse`) checks the shape: every object rejects unknown keys, every
//! field has its JSON type, and objects must really be JSON objects (serde_json
//! would otherwise fill a struct from an array, by position). Paths come from
//! `serde_path_to_error`, which tracks them during deserialization; this keeps
//! the wire structs the single description of the schema and still lets
//! duplicate keys be caught, which a detour through `serde_json::Value` would
//! silently collapse. Every field is optional on the wire, so that "required"
//! is checked during validation, where the message can say more (for example
//! which bottles exist).
//!
//! Validation (`Manifest::validate`) then checks every value, threading the
//! JSON path, and collects all problems instead of stopping at the first one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::{JsonPath, Problem};
use super::{AllowRule, EnvName, EnvValue, Hostname, ManifestSource, SkillName, SshHostName};

/// The port an SSH entry uses when it names none.
pub const DEFAULT_SSH_PORT: u16 = 22;

/// What parsing can fail with, before the origin of the text is attached.
#[derive(Debug)]
pub(super) enum ParseError {
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    Shape(Problem),
}

/// Parses manifest text into wire structs, checking its shape.
pub(super) fn parse(text: &str) -> Result<Manifest, ParseError> {
    // Some Windows editors start UTF-8 files with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(ParseError::Syntax {
            line: 1,
            column: 0,
            message: "the file is empty, expected a JSON object with `bottles` and `agents`"
                .to_owned(),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let root: Root = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = JsonPath::from_serde(err.path());
        from_serde_error(path, err.inner())
    })?;
    deserializer
        .end()
        .map_err(|err| from_serde_error(JsonPath::root(), &err))?;
    Ok(root.0)
}

fn from_serde_error(path: JsonPath, err: &serde_json::Error) -> ParseError {
    use serde_json::error::Category;
    // serde_json appends the position to data errors; the path says more.
    let full = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    let message = full.strip_suffix(&position).unwrap_or(&full);
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => ParseError::Syntax {
            line: err.line(),
            column: err.column(),
            message: message.to_owned(),
        },
        Category::Data => ParseError::Shape(problem_from_serde(path, message)),
    }
}

/// Turns serde's data error wording (stable since serde 1.0) into a [`Problem`].
fn problem_from_serde(path: JsonPath, message: &str) -> Problem {
    if message.starts_with("unknown field `")
        && let Some(field) = path.last_key()
    {
        let parent = path.parent();
        if field == "runtime"
            && let [
                super::error::Segment::Key(top),
                super::error::Segment::Key(bottle),
            ] = parent.segments()
            && top == "bottles"
        {
            return Problem::RemovedRuntime {
                bottle: bottle.clone(),
                path,
            };
        }
        let rest = message
            .strip_prefix(&format!("unknown field `{field}`, "))
            .unwrap_or("");
        // The allowed names are the odd pieces between backticks; they are ours.
        let allowed: Vec<String> = rest
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let suggestion = closest(field, &allowed);
        return Problem::UnknownField {
            path,
            allowed,
            suggestion,
        };
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some(at) = rest.rfind(", expected ")
        {
            return Problem::WrongType {
                path,
                expected: rest[at + ", expected ".len()..].to_owned(),
                found: json_kind(&rest[..at]).to_owned(),
            };
        }
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return Problem::Missing {
            path: path.key(field),
            expected: "a value".to_owned(),
        };
    }
    for prefix in ["duplicate field `", DUPLICATE_KEY_PREFIX] {
        if let Some(key) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix('`'))
        {
            return Problem::Duplicate {
                path: path.key(key),
            };
        }
    }
    Problem::Invalid {
        path,
        message: message.to_owned(),
        expected: "a value of the documented shape".to_owned(),
        hint: None,
    }
}

/// Names the JSON type serde describes as `unexpected`, without echoing the
/// value: a string in the wrong place may well be a secret.
fn json_kind(unexpected: &str) -> &'static str {
    let starts = |p: &str| unexpected.starts_with(p);
    if starts("integer") || starts("floating point") {
        "a number"
    } else if starts("string") || starts("char") {
        "a string"
    } else if starts("boolean") {
        "a boolean"
    } else if starts("unit") || starts("null") || starts("Option") {
        "null"
    } else if starts("sequence") {
        "an array"
    } else if starts("map") {
        "an object"
    } else {
        "a value of another type"
    }
}

/// The allowed name a typo most likely meant: same letters in another case,
/// or at most two edits away.
fn closest(field: &str, allowed: &[String]) -> Option<String> {
    let field = field.to_ascii_lowercase();
    allowed
        .iter()
        .map(|name| (edit_distance(&field, &name.to_ascii_lowercase()), name))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

// ---------------------------------------------------------------------------
// The wire structs.

/// How a wire struct is described in "expected ..." messages.
pub(super) trait Described {
    const EXPECTING: &'static str;
}

/// Entries of a JSON object, in file order, keys unique.
pub(super) type Entries<T> = Vec<(String, T)>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    #[serde(default, deserialize_with = "bottles")]
    pub bottles: Option<Entries<Bottle>>,
    #[serde(default, deserialize_with = "agents")]
    pub agents: Option<Entries<Agent>>,
}

impl Described for Manifest {
    const EXPECTING: &'static str = "an object with `bottles` and `agents`";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Bottle {
    #[serde(default, deserialize_with = "env")]
    pub env: Option<Entries<String>>,
    #[serde(default, deserialize_with = "ssh_entries")]
    pub ssh: Option<Vec<SshEntry>>,
    #[serde(default, deserialize_with = "object")]
    pub egress: Option<Egress>,
    #[serde(default, deserialize_with = "string")]
    pub image: Option<String>,
}

impl Described for Bottle {
    const EXPECTING: &'static str = "a bottle object with optional env, ssh, egress, image";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SshEntry {
    #[serde(rename = "Host", default, deserialize_with = "string")]
    pub host: Option<String>,
    #[serde(rename = "HostName", default, deserialize_with = "string")]
    pub host_name: Option<String>,
    #[serde(rename = "User", default, deserialize_with = "string")]
    pub user: Option<String>,
    #[serde(rename = "Port", default, deserialize_with = "port")]
    pub port: Option<serde_json::Number>,
    #[serde(rename = "IdentityFile", default, deserialize_with = "string")]
    pub identity_file: Option<String>,
}

impl Described for SshEntry {
    const EXPECTING: &'static str =
        "an SSH entry object with Host, IdentityFile and optional HostName, User, Port";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Egress {
    #[serde(default, deserialize_with = "strings")]
    pub allowlist: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strings")]
    pub trusted_domains: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strings")]
    pub ip_cidrs: Option<Vec<String>>,
}

impl Described for Egress {
    const EXPECTING: &'static str =
        "an egress object with optional allowlist, trusted_domains, ip_cidrs";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Agent {
    #[serde(default, deserialize_with = "string")]
    pub bottle: Option<String>,
    #[serde(default, deserialize_with = "strings")]
    pub skills: Option<Vec<String>>,
    #[serde(default, deserialize_with = "string")]
    pub prompt: Option<String>,
}

impl Described for Agent {
    const EXPECTING: &'static str = "an agent object with bottle and optional skills, prompt";
}

// ---------------------------------------------------------------------------
// Field deserializers. A field that is present must have its type: `null` is
// not taken to mean "absent", so a value is never silently dropped.

/// The document root, read through [`Strict`] like every other object.
struct Root(Manifest);

impl<'de> Deserialize<'de> for Root {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Strict::<Manifest>::new()
            .deserialize(deserializer)
            .map(Root)
    }
}

fn object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Described,
{
    Strict::<T>::new().deserialize(deserializer).map(Some)
}

fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    String::deserialize(deserializer).map(Some)
}

fn strings<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    deserializer
        .deserialize_seq(ArrayOf {
            expecting: "an array of strings",
            seed: PhantomData::<String>,
        })
        .map(Some)
}

fn ssh_entries<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<SshEntry>>, D::Error> {
    deserializer
        .deserialize_seq(ArrayOf {
            expecting: "an array of SSH entry objects",
            seed: Strict::<SshEntry>::new(),
        })
        .map(Some)
}

fn env<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Entries<String>>, D::Error> {
    deserializer
        .deserialize_map(ObjectOf {
            expecting: "an object mapping variable names to strings",
            seed: PhantomData::<String>,
        })
        .map(Some)
}

fn bottles<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Entries<Bottle>>, D::Error> {
    deserializer
        .deserialize_map(ObjectOf {
            expecting: "an object mapping bottle names to bottle objects",
            seed: Strict::<Bottle>::new(),
        })
        .map(Some)
}

fn agents<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Entries<Agent>>, D::Error> {
    deserializer
        .deserialize_map(ObjectOf {
            expecting: "an object mapping agent names to agent objects",
            seed: Strict::<Agent>::new(),
        })
        .map(Some)
}

const PORT_EXPECTING: &str = "an integer from 1 to 65535";

/// Any JSON number; range and integrality are checked during validation, where
/// the message can show the number.
fn port<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Number>, D::Error> {
    struct PortVisitor;

    impl Visitor<'_> for PortVisitor {
        type Value = serde_json::Number;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(PORT_EXPECTING)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(v.into())
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(v.into())
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            serde_json::Number::from_f64(v)
                .ok_or_else(|| E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }

    deserializer.deserialize_any(PortVisitor).map(Some)
}

/// Reads `T` from a JSON object only; anything else is a type error that
/// describes `T`.
struct Strict<T>(PhantomData<T>);

impl<T> Strict<T> {
    fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Clone for Strict<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Strict<T> {}

impl<'de, T: Deserialize<'de> + Described> DeserializeSeed<'de> for Strict<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de> + Described> Visitor<'de> for Strict<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

const DUPLICATE_KEY_PREFIX: &str = "duplicate key `";

/// A JSON object whose values are read with `seed`, rejecting duplicate keys.
struct ObjectOf<S> {
    expecting: &'static str,
    seed: S,
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for ObjectOf<S> {
    type Value = Entries<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = BTreeSet::new();
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format_args!(
                    "{DUPLICATE_KEY_PREFIX}{key}`"
                )));
            }
            let value = map.next_value_seed(self.seed)?;
            entries.push((key, value));
        }
        Ok(entries)
    }
}

/// A JSON array whose elements are read with `seed`.
struct ArrayOf<S> {
    expecting: &'static str,
    seed: S,
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for ArrayOf<S> {
    type Value = Vec<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.seed)? {
            items.push(item);
        }
        Ok(items)
    }
}

// ---------------------------------------------------------------------------
// Validation into the domain types.

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

/// A value from the file, shown in a message. Only for values that cannot be
/// secrets (hosts, names, paths); control characters are escaped.
fn shown(raw: &str) -> String {
    format!("`{}`", raw.escape_debug())
}

impl Manifest {
    /// Validates the whole manifest, reporting every problem found.
    pub(super) fn validate(self, source: ManifestSource) -> Result<super::Manifest, Vec<Problem>> {
        let mut problems = Problems::default();
        let root = JsonPath::root();

        let bottles_path = root.key("bottles");
        let mut bottles = BTreeMap::new();
        let mut bottle_names = Vec::new();
        match self.bottles {
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
                for (name, wire) in entries {
                    let path = bottles_path.key(&name);
                    bottle_names.push(name.clone());
                    if name.trim().is_empty() {
                        problems.invalid(path.clone(), "empty bottle name", "a non-empty name", None);
                    }
                    let bottle = wire.validate(&path, &mut problems);
                    bottles.insert(name, bottle);
                }
            }
        }

        let agents_path = root.key("agents");
        let mut agents = BTreeMap::new();
        match self.agents {
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
                for (name, wire) in entries {
                    let path = agents_path.key(&name);
                    if name.trim().is_empty() {
                        problems.invalid(
                            path.clone(),
                            "empty agent name",
                            "a non-empty name",
                            None,
                        );
                    }
                    let agent = wire.validate(&path, &bottle_names, &mut problems);
                    agents.insert(name, agent);
                }
            }
        }

        if problems.0.is_empty() {
            Ok(super::Manifest {
                bottles,
                agents,
                source,
            })
        } else {
            Err(problems.0)
        }
    }
}

impl Bottle {
    fn validate(self, path: &JsonPath, problems: &mut Problems) -> super::Bottle {
        let mut bottle = super::Bottle::default();

        for (name, raw) in self.env.unwrap_or_default() {
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
        for (index, wire) in self.ssh.unwrap_or_default().into_iter().enumerate() {
            let entry_path = path.key("ssh").index(index);
            if let Some(host) = &wire.host {
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
            if let Some(entry) = wire.validate(&entry_path, problems) {
                bottle.ssh.push(entry);
            }
        }

        if let Some(egress) = self.egress {
            bottle.egress = egress.validate(&path.key("egress"), problems);
        }

        if let Some(image) = self.image {
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
const SSH_HOSTNAME_EXPECTING: &str = "a DNS name or an IP address";

impl SshEntry {
    fn validate(self, path: &JsonPath, problems: &mut Problems) -> Option<super::SshEntry> {
        let before = problems.0.len();

        let host_path = path.key("Host");
        let host = match self.host {
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

        let host_name = match (&self.host_name, &host) {
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

        let user = match self.user {
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

        let port = match &self.port {
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
        let identity_file = match self.identity_file {
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
        Some(super::SshEntry {
            host: host?,
            host_name: host_name?,
            user,
            port: port?,
            identity_file: identity_file?,
        })
    }
}

fn parse_ssh_host_name(raw: &str) -> Option<SshHostName> {
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(SshHostName::Ip(ip));
    }
    Hostname::parse(raw).map(SshHostName::Dns)
}

const ALLOW_RULE_EXPECTING: &str =
    "a hostname, `*.` followed by at least two labels (like `*.example.com`), or an IP address";
const TRUSTED_DOMAIN_EXPECTING: &str =
    "an exact hostname such as `git.internal.example.com`, without wildcards";
const CIDR_EXPECTING: &str = "a CIDR such as `10.0.0.0/8`, not `/0`, with no host bits set";

/// Why a list entry was refused: what is wrong, and how to fix it.
struct Refusal {
    message: String,
    hint: Option<String>,
}

fn refuse(message: String, hint: Option<String>) -> Refusal {
    Refusal { message, hint }
}

/// Refuses what is not a bare host in any of the egress lists: a URL, a path,
/// a port, whitespace.
fn refuse_non_host(raw: &str) -> Result<(), Refusal> {
    if raw.is_empty() {
        return Err(refuse("empty entry".to_owned(), None));
    }
    if let Some((_, rest)) = raw.split_once("://") {
        let host = rest.split(['/', ':']).next().unwrap_or(rest);
        return Err(refuse(
            format!("{} is a URL", shown(raw)),
            Some(format!("write only the host: {}", shown(host))),
        ));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refuse(format!("{} contains whitespace", shown(raw)), None));
    }
    if let Some((host, _)) = raw.split_once('/') {
        return Err(refuse(
            format!("{} has a path", shown(raw)),
            Some(format!(
                "the proxy admits hosts, not paths; write only the host: {}",
                shown(host)
            )),
        ));
    }
    if raw.parse::<IpAddr>().is_err()
        && let Some((host, _)) = raw.split_once(':')
    {
        return Err(refuse(
            format!("{} has a port", shown(raw)),
            Some(format!(
                "ports are not restricted; write only the host: {}",
                shown(host)
            )),
        ));
    }
    Ok(())
}

fn parse_allow_rule(raw: &str) -> Result<AllowRule, Refusal> {
    refuse_non_host(raw)?;
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Ok(AllowRule::Ip(ip));
    }
    if raw == "*" {
        return Err(refuse(
            "a bare `*` would admit every host".to_owned(),
            Some("list the hosts the agent needs instead".to_owned()),
        ));
    }
    if let Some(suffix) = raw.strip_prefix("*.") {
        let Some(host) = Hostname::parse(suffix).filter(|_| suffix.parse::<IpAddr>().is_err())
        else {
            return Err(refuse(
                format!("{} is not `*.` followed by a hostname", shown(raw)),
                None,
            ));
        };
        if host.label_count() < 2 {
            return Err(refuse(
                format!("{} would admit a whole top-level domain", shown(raw)),
                Some(format!(
                    "name the domain itself, like `*.example.{}`",
                    host.as_str()
                )),
            ));
        }
        return Ok(AllowRule::Wildcard(host));
    }
    if raw.contains('*') {
        return Err(refuse(
            format!("{} has a `*` that is not a leading `*.`", shown(raw)),
            None,
        ));
    }
    Hostname::parse(raw)
        .map(AllowRule::Exact)
        .ok_or_else(|| refuse(format!("{} is not a valid hostname", shown(raw)), None))
}

fn parse_trusted_domain(raw: &str) -> Result<Hostname, Refusal> {
    refuse_non_host(raw)?;
    if raw.contains('*') {
        return Err(refuse(format!("{} is a wildcard", shown(raw)), None));
    }
    if raw.parse::<IpAddr>().is_ok() {
        return Err(refuse(
            format!("{} is an IP address", shown(raw)),
            Some("exempt addresses through `ip_cidrs`, as a /32 or /128".to_owned()),
        ));
    }
    Hostname::parse(raw)
        .ok_or_else(|| refuse(format!("{} is not a valid hostname", shown(raw)), None))
}

fn parse_cidr(raw: &str) -> Result<IpNet, Refusal> {
    let Ok(net) = raw.parse::<IpNet>() else {
        let hint = raw.parse::<IpAddr>().ok().map(|ip| {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            format!("for a single address write `{ip}/{bits}`")
        });
        return Err(refuse(format!("{} is not a CIDR", shown(raw)), hint));
    };
    if net.prefix_len() == 0 {
        return Err(refuse(
            format!(
                "{} would exempt every address from the SSRF check",
                shown(raw)
            ),
            None,
        ));
    }
    if net.trunc() != net {
        return Err(refuse(
            format!("{} has host bits set", shown(raw)),
            Some(format!("did you mean `{}`?", net.trunc())),
        ));
    }
    Ok(net)
}

impl Egress {
    fn validate(self, path: &JsonPath, problems: &mut Problems) -> super::Egress {
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
                        problems.invalid(
                            path.index(index),
                            refusal.message,
                            expected,
                            refusal.hint,
                        );
                    }
                }
            }
            parsed
        }

        super::Egress {
            allowlist: each(
                self.allowlist,
                &path.key("allowlist"),
                ALLOW_RULE_EXPECTING,
                parse_allow_rule,
                problems,
            ),
            trusted_domains: each(
                self.trusted_domains,
                &path.key("trusted_domains"),
                TRUSTED_DOMAIN_EXPECTING,
                parse_trusted_domain,
                problems,
            ),
            ip_cidrs: each(
                self.ip_cidrs,
                &path.key("ip_cidrs"),
                CIDR_EXPECTING,
                parse_cidr,
                problems,
            ),
        }
    }
}

impl Agent {
    fn validate(
        self,
        path: &JsonPath,
        bottle_names: &[String],
        problems: &mut Problems,
    ) -> super::Agent {
        let defined = bottle_names
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let bottle_path = path.key("bottle");
        let bottle = match self.bottle {
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
        for (index, raw) in self.skills.unwrap_or_default().iter().enumerate() {
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

        super::Agent {
            bottle,
            skills,
            prompt: self.prompt.unwrap_or_default(),
        }
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

    #[test]
    fn allow_rules() {
        let ok = |raw: &str| parse_allow_rule(raw).ok().map(|r| r.to_string());
        assert_eq!(ok("API.Anthropic.com."), Some("api.anthropic.com".into()));
        assert_eq!(
            ok("*.githubusercontent.com"),
            Some("*.githubusercontent.com".into())
        );
        assert_eq!(ok("10.1.2.3"), Some("10.1.2.3".into()));
        assert_eq!(ok("::1"), Some("::1".into()));
        for bad in [
            "",
            "*",
            "*.com",
            "https://x.com",
            "x.com:443",
            "x.com/path",
            "a b.com",
            "a.*.com",
            "*.1.2.3.4",
            "*.",
            "-x.com",
            "[::1]:22",
        ] {
            assert_eq!(ok(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn trusted_domains_and_cidrs() {
        assert!(parse_trusted_domain("git.internal.example.com").is_ok());
        for bad in [
            "*",
            "*.com",
            "*.example.com",
            "https://x.com",
            "x.com:22",
            "10.0.0.1",
        ] {
            assert!(
                parse_trusted_domain(bad).is_err(),
                "{bad:?} must be refused"
            );
        }
        assert_eq!(parse_cidr("10.0.0.0/8").ok(), "10.0.0.0/8".parse().ok());
        assert_eq!(parse_cidr("fd00::/8").ok(), "fd00::/8".parse().ok());
        for bad in [
            "0.0.0.0/0",
            "::/0",
            "10.0.0.1/8",
            "10.0.0.1",
            "10.0.0.0/33",
            "x",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad:?} must be refused");
        }
        let hint = parse_cidr("10.0.0.1/8").err().and_then(|r| r.hint);
        assert_eq!(hint.as_deref(), Some("did you mean `10.0.0.0/8`?"));
    }

    #[test]
    fn typos_get_a_suggestion() {
        let allowed = ["allowlist", "trusted_domains", "ip_cidrs"].map(String::from);
        assert_eq!(closest("alowlist", &allowed).as_deref(), Some("allowlist"));
        assert_eq!(closest("zzz", &allowed), None);
        let ssh = ["Host", "HostName", "User"].map(String::from);
        assert_eq!(closest("hostname", &ssh).as_deref(), Some("HostName"));
    }
}
