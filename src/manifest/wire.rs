//! Strict decoding: the manifest text into wire structs that mirror the JSON.
//!
//! Every object rejects unknown keys, every field has its JSON type, and
//! objects must really be JSON objects (serde_json would otherwise fill a
//! struct from an array, by position). Paths come from `serde_path_to_error`,
//! which tracks them during deserialization; this keeps the wire structs the
//! single description of the schema and still lets duplicate keys be caught,
//! which a detour through `serde_json::Value` would silently collapse. Every
//! field is optional on the wire, so that "required" is checked in
//! `validate`, where the message can say more (for example which
//! bottles exist).

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::{JsonPath, Problem, Segment};
use super::schema;

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
            && let [Segment::Key(top), Segment::Key(bottle)] = parent.segments()
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
            .filter(|name| *name != SCHEMA_KEY)
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
trait Described {
    const EXPECTING: &'static str;
}

/// Entries of a JSON object, in file order, keys unique.
pub(super) type Entries<T> = Vec<(String, T)>;

/// The `$schema` key: where an editor finds the schema. It is read and
/// ignored, and left out of the keys an unknown-field message offers.
pub(super) const SCHEMA_KEY: &str = "$schema";

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Manifest", extend("required" = ["bottles", "agents"]))]
pub(super) struct Manifest {
    #[serde(rename = "$schema", default, deserialize_with = "string")]
    #[schemars(schema_with = "schema::schema_key")]
    #[allow(dead_code, reason = "read so that it is allowed, then ignored")]
    pub schema: Option<String>,
    #[serde(default, deserialize_with = "bottles")]
    #[schemars(schema_with = "schema::bottles")]
    pub bottles: Option<Entries<Bottle>>,
    #[serde(default, deserialize_with = "agents")]
    #[schemars(schema_with = "schema::agents")]
    pub agents: Option<Entries<Agent>>,
}

impl Described for Manifest {
    const EXPECTING: &'static str = "an object with `bottles` and `agents`";
}

/// An isolation and egress policy.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Bottle {
    #[serde(default, deserialize_with = "env")]
    #[schemars(schema_with = "schema::env")]
    pub env: Option<Entries<String>>,
    #[serde(default, deserialize_with = "ssh_entries")]
    #[schemars(schema_with = "schema::ssh")]
    pub ssh: Option<Vec<SshEntry>>,
    #[serde(default, deserialize_with = "object")]
    #[schemars(schema_with = "schema::egress")]
    pub egress: Option<Egress>,
    #[serde(default, deserialize_with = "string")]
    #[schemars(schema_with = "schema::image")]
    pub image: Option<String>,
}

impl Described for Bottle {
    const EXPECTING: &'static str = "a bottle object with optional env, ssh, egress, image";
}

/// An SSH host the bottle may reach, and the key to reach it with.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    extend("required" = ["Host", "IdentityFile"]),
    transform = schema::ssh_entry_host_default
)]
pub(super) struct SshEntry {
    #[serde(rename = "Host", default, deserialize_with = "string")]
    #[schemars(schema_with = "schema::ssh_host")]
    pub host: Option<String>,
    #[serde(rename = "HostName", default, deserialize_with = "string")]
    #[schemars(schema_with = "schema::ssh_host_name")]
    pub host_name: Option<String>,
    #[serde(rename = "User", default, deserialize_with = "string")]
    #[schemars(schema_with = "schema::ssh_user")]
    pub user: Option<String>,
    #[serde(rename = "Port", default, deserialize_with = "port")]
    #[schemars(schema_with = "schema::ssh_port")]
    pub port: Option<serde_json::Number>,
    #[serde(rename = "IdentityFile", default, deserialize_with = "string")]
    #[schemars(schema_with = "schema::identity_file")]
    pub identity_file: Option<String>,
}

impl Described for SshEntry {
    const EXPECTING: &'static str =
        "an SSH entry object with Host, IdentityFile and optional HostName, User, Port";
}

/// What the bottle's egress proxy admits.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Egress {
    #[serde(default, deserialize_with = "strings")]
    #[schemars(schema_with = "schema::allowlist")]
    pub allowlist: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strings")]
    #[schemars(schema_with = "schema::trusted_domains")]
    pub trusted_domains: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strings")]
    #[schemars(schema_with = "schema::ip_cidrs")]
    pub ip_cidrs: Option<Vec<String>>,
}

impl Described for Egress {
    const EXPECTING: &'static str =
        "an egress object with optional allowlist, trusted_domains, ip_cidrs";
}

/// A Claude Code agent: the bottle it runs in, its skills and its prompt.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("required" = ["bottle"]))]
pub(super) struct Agent {
    #[serde(default, deserialize_with = "string")]
    #[schemars(schema_with = "schema::agent_bottle")]
    pub bottle: Option<String>,
    #[serde(default, deserialize_with = "strings")]
    #[schemars(schema_with = "schema::skills")]
    pub skills: Option<Vec<String>>,
    #[serde(default, deserialize_with = "string")]
    #[schemars(schema_with = "schema::prompt")]
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

pub(super) const PORT_EXPECTING: &str = "an integer from 1 to 65535";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion() {
        let allowed = ["allowlist", "trusted_domains", "ip_cidrs"].map(String::from);
        assert_eq!(closest("alowlist", &allowed).as_deref(), Some("allowlist"));
        assert_eq!(closest("zzz", &allowed), None);
        let ssh = ["Host", "HostName", "User"].map(String::from);
        assert_eq!(closest("hostname", &ssh).as_deref(), Some("HostName"));
    }
}
