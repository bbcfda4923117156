//! Editing `bottles.<name>.egress.allowlist` in the manifest file's text, for
//! `allow HOST... --save` and `allow --remove HOST... --save`.
//!
//! The edit changes nothing else in the file: every byte outside the edited
//! array (or the member inserted to hold it) stays as written, and inside
//! the array the untouched entries do too. serde_json cannot give the byte
//! span of a value, so a small scanner locates it; the text is first checked
//! with serde_json, so the scanner only ever walks well-formed JSON.
//!
//! New text follows the file's own layout: an array with one entry per line
//! gets new entries on their own lines at the same indentation, a one-line
//! array gets them inline with the same separator, and a created `egress` or
//! `allowlist` member is laid out like its siblings (indent unit, newline
//! style, spacing around `:`). The caller still loads the result with the
//! manifest loader before writing it.
//!
//! Not `jsonc-parser`'s CST, which keeps untouched text too, but reflows a
//! one-line object onto several lines when it gains a member, indents an
//! appended entry by its depth rather than like its siblings, and takes
//! comments even when told not to.

use std::fs;
use std::io::{self, Write};
use std::ops::Range;
use std::path::Path;

use serde::de::IgnoredAny;

use super::AllowRule;
use super::error::{JsonPath, shown};
use super::hosts::parse_allow_rule;
use crate::diagnostic::Diagnostic;

/// The text after an edit, and what the edit did for each host asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    /// The whole file; equal to the input when nothing changed.
    pub text: String,
    /// The hosts added (or removed), in the order asked for.
    pub changed: Vec<AllowRule>,
    /// The hosts that were already there (or already absent), in the order asked for.
    pub unchanged: Vec<AllowRule>,
}

impl Edited {
    pub fn is_changed(&self) -> bool {
        !self.changed.is_empty()
    }
}

/// Why the allowlist could not be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The text is not JSON.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },

    /// The bottle named is not in the manifest.
    #[error("{path}: no such bottle, {}", known_bottles(known))]
    UnknownBottle {
        bottle: String,
        /// `bottles.<bottle>`, for the message.
        path: JsonPath,
        /// The bottles the manifest has, sorted.
        known: Vec<String>,
    },

    /// A value on the way to the allowlist has the wrong JSON type.
    #[error("{path}: expected {expected}")]
    WrongType {
        path: JsonPath,
        expected: &'static str,
    },

    /// A key on the way to the allowlist is defined more than once.
    #[error("{path}: defined more than once, expected each key once")]
    Duplicate { path: JsonPath },
}

fn known_bottles(known: &[String]) -> String {
    let names: Vec<String> = known.iter().map(|name| shown(name)).collect();
    match names.as_slice() {
        [] => "the manifest defines none".to_owned(),
        [only] => format!("expected {only}"),
        _ => format!("expected one of {}", names.join(", ")),
    }
}

impl Diagnostic for EditError {
    fn hints(&self) -> Vec<String> {
        match self {
            Self::UnknownBottle { known, .. } if !known.is_empty() => {
                vec!["add the bottle to the manifest first, or name one it defines".to_owned()]
            }
            _ => Vec::new(),
        }
    }
}

/// Adds `hosts` to `bottles.<bottle>.egress.allowlist`, creating `egress` or
/// `allowlist` when the bottle has none. A host already listed (compared as
/// an [`AllowRule`], so case and a trailing dot do not matter) is left alone.
pub fn add_to_allowlist(
    text: &str,
    bottle: &str,
    hosts: &[AllowRule],
) -> Result<Edited, EditError> {
    let (bom, body) = split_bom(text);
    check_syntax(body)?;
    let root = Scanner::parse(body);
    let found = locate(&root, body, bottle)?;

    let existing: Vec<&str> = match found.allowlist {
        Some(array) => array
            .children()
            .iter()
            .filter(|c| c.value.is_string)
            .map(|c| &body[c.value.span.clone()])
            .collect(),
        None => Vec::new(),
    };
    let mut changed: Vec<AllowRule> = Vec::new();
    let mut unchanged = Vec::new();
    for host in hosts {
        let present = existing.iter().any(|raw| entry_matches(raw, host));
        if present || changed.contains(host) {
            unchanged.push(host.clone());
        } else {
            changed.push(host.clone());
        }
    }
    if changed.is_empty() {
        return Ok(Edited {
            text: text.to_owned(),
            changed,
            unchanged,
        });
    }

    let entries: Vec<String> = changed.iter().map(quoted).collect();
    let layout = Layout::of(body, &found);
    let (range, insert) = match (found.allowlist, found.egress) {
        (Some(array), _) => layout.append_entries(array, &entries),
        (None, Some(egress)) => layout.insert_member(
            egress,
            found.egress_member,
            "allowlist",
            &|style: &Style| layout.array(style, &entries),
        ),
        (None, None) => layout.insert_member(
            found.bottle,
            Some(found.bottle_member),
            "egress",
            &|style: &Style| {
                layout.object(style, "allowlist", &|inner: &Style| {
                    layout.array(inner, &entries)
                })
            },
        ),
    };
    let mut edited = String::with_capacity(text.len() + insert.len());
    edited.push_str(bom);
    edited.push_str(&body[..range.start]);
    edited.push_str(&insert);
    edited.push_str(&body[range.end..]);
    Ok(Edited {
        text: edited,
        changed,
        unchanged,
    })
}

/// Removes every entry of `bottles.<bottle>.egress.allowlist` that matches one
/// of `hosts` (compared as an [`AllowRule`]). Removing the last entry leaves
/// `[]`; a bottle without an allowlist is left as it is.
pub fn remove_from_allowlist(
    text: &str,
    bottle: &str,
    hosts: &[AllowRule],
) -> Result<Edited, EditError> {
    let (bom, body) = split_bom(text);
    check_syntax(body)?;
    // The bottle must exist even when there is nothing to remove.
    locate(&Scanner::parse(body), body, bottle)?;
    let mut current = body.to_owned();
    let mut changed: Vec<AllowRule> = Vec::new();
    let mut unchanged = Vec::new();
    for host in hosts {
        let mut removed = false;
        // One entry at a time, scanning again after each: the file is small,
        // and every span stays exact.
        loop {
            let root = Scanner::parse(&current);
            let found = locate(&root, &current, bottle)?;
            let Some(array) = found.allowlist else {
                break;
            };
            let children = array.children();
            let Some(index) = children.iter().position(|c| {
                c.value.is_string && entry_matches(&current[c.value.span.clone()], host)
            }) else {
                break;
            };
            let range = removal_span(array, index);
            current.replace_range(range, "");
            removed = true;
        }
        if removed {
            changed.push(host.clone());
        } else {
            unchanged.push(host.clone());
        }
    }
    Ok(Edited {
        text: if changed.is_empty() {
            text.to_owned()
        } else {
            format!("{bom}{current}")
        },
        changed,
        unchanged,
    })
}

/// Replaces the file at `path` with `text` at once: a temporary file in the
/// same directory, synced, then renamed over it. The file keeps its
/// permissions; a symbolic link is followed, so the file it names is
/// replaced and the link stays. A file that did not exist is created
/// readable and writable by its owner only.
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let target = match fs::canonicalize(path) {
        Ok(resolved) => resolved,
        Err(err) if err.kind() == io::ErrorKind::NotFound => path.to_path_buf(),
        Err(err) => return Err(err),
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::env::current_dir()?,
    };
    let permissions = match fs::metadata(&target) {
        Ok(meta) => Some(meta.permissions()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    // A rename needs only the directory: without this, a file its owner
    // made read-only, or someone else's, would be replaced all the same.
    if permissions.is_some()
        && nix::unistd::access(&target, nix::unistd::AccessFlags::W_OK).is_err()
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the file is not writable by this user",
        ));
    }
    let mut temp = tempfile::Builder::new()
        .prefix(".claude-bottle-")
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    temp.write_all(text.as_bytes())?;
    if let Some(permissions) = permissions {
        temp.as_file().set_permissions(permissions)?;
    }
    temp.as_file().sync_all()?;
    temp.persist(&target).map_err(|err| err.error)?;
    // The rename is durable once the directory is synced; not every
    // filesystem allows that, and the file is in place either way.
    if let Ok(dir) = fs::File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// A leading byte order mark is kept as it is and not scanned (the loader
/// skips it too).
fn split_bom(text: &str) -> (&str, &str) {
    match text.strip_prefix('\u{feff}') {
        Some(body) => text.split_at(text.len() - body.len()),
        None => ("", text),
    }
}

fn check_syntax(body: &str) -> Result<(), EditError> {
    serde_json::from_str::<IgnoredAny>(body)
        .map(|_| ())
        .map_err(|err| {
            let full = err.to_string();
            let position = format!(" at line {} column {}", err.line(), err.column());
            EditError::Syntax {
                line: err.line(),
                column: err.column(),
                message: full.strip_suffix(&position).unwrap_or(&full).to_owned(),
            }
        })
}

/// Whether the allowlist entry written as `raw` (a JSON string literal,
/// quotes included) is `host`.
fn entry_matches(raw: &str, host: &AllowRule) -> bool {
    let Ok(value) = serde_json::from_str::<String>(raw) else {
        return false;
    };
    match parse_allow_rule(&value) {
        Ok(rule) => rule == *host,
        // An entry the loader would refuse: compared as text.
        Err(_) => value.eq_ignore_ascii_case(&host.to_string()),
    }
}

/// A host as a JSON string literal.
fn quoted(host: &AllowRule) -> String {
    serde_json::Value::String(host.to_string()).to_string()
}

/// The text to delete to remove element `index` of `array` and keep the
/// array valid JSON.
fn removal_span(array: &Node, index: usize) -> Range<usize> {
    let children = array.children();
    if children.len() == 1 {
        // Only entry: everything between the brackets, leaving `[]`.
        array.span.start + 1..array.span.end - 1
    } else if index + 1 < children.len() {
        // The entry, its comma and the space before the next entry.
        children[index].start()..children[index + 1].start()
    } else {
        // The last entry, with the comma and space that lead to it.
        children[index - 1].value.span.end..children[index].value.span.end
    }
}

// ---------------------------------------------------------------------------
// The scanner: byte spans of the values of well-formed JSON.

/// One JSON value and where it is in the text.
#[derive(Debug)]
struct Node {
    span: Range<usize>,
    is_string: bool,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Object(Vec<Child>),
    Array(Vec<Child>),
    Scalar,
}

/// An object member or an array element.
#[derive(Debug)]
struct Child {
    /// Just after the `{`, `[` or `,` before it: `lead..start()` is the
    /// whitespace that lays it out.
    lead: usize,
    /// The key's string literal, for an object member.
    key: Option<Range<usize>>,
    value: Node,
}

impl Child {
    fn start(&self) -> usize {
        self.key
            .as_ref()
            .map_or(self.value.span.start, |key| key.start)
    }
}

impl Node {
    fn children(&self) -> &[Child] {
        match &self.kind {
            Kind::Object(children) | Kind::Array(children) => children,
            Kind::Scalar => &[],
        }
    }

    fn is_object(&self) -> bool {
        matches!(self.kind, Kind::Object(_))
    }
}

/// Walks text that serde_json has accepted. It never panics on other text
/// (reading past the end yields NUL bytes), but its spans mean nothing there.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn parse(body: &'a str) -> Node {
        let mut scanner = Self {
            bytes: body.as_bytes(),
            pos: 0,
        };
        scanner.value()
    }

    fn peek(&self) -> u8 {
        self.bytes.get(self.pos).copied().unwrap_or(0)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Node {
        self.skip_ws();
        let start = self.pos;
        let (kind, is_string) = match self.peek() {
            b'{' => (Kind::Object(self.children(b'}', true)), false),
            b'[' => (Kind::Array(self.children(b']', false)), false),
            b'"' => {
                self.string();
                (Kind::Scalar, true)
            }
            _ => {
                while !self.at_end()
                    && !matches!(
                        self.peek(),
                        b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'
                    )
                {
                    self.pos += 1;
                }
                (Kind::Scalar, false)
            }
        };
        Node {
            span: start..self.pos,
            is_string,
            kind,
        }
    }

    /// From the opening bracket to just past the closing one.
    fn children(&mut self, close: u8, keyed: bool) -> Vec<Child> {
        let mut children = Vec::new();
        self.pos += 1;
        loop {
            let lead = self.pos;
            self.skip_ws();
            if self.peek() == close || self.at_end() {
                self.pos += 1;
                return children;
            }
            let key = keyed.then(|| {
                let start = self.pos;
                self.string();
                let key = start..self.pos;
                self.skip_ws();
                self.pos += 1; // the colon
                key
            });
            let value = self.value();
            children.push(Child { lead, key, value });
            self.skip_ws();
            if self.peek() == b',' {
                self.pos += 1;
            } else {
                self.pos += 1; // the closing bracket
                return children;
            }
        }
    }

    /// From the opening quote to just past the closing one. `"` and `\` are
    /// ASCII, never part of a multi-byte UTF-8 sequence.
    fn string(&mut self) {
        self.pos += 1;
        while !self.at_end() {
            match self.peek() {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return;
                }
                _ => self.pos += 1,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Finding the allowlist.

/// The bottle and what it already has on the way to its allowlist.
struct Found<'n> {
    root: &'n Node,
    bottles: &'n Node,
    bottle_member: &'n Child,
    bottle: &'n Node,
    egress_member: Option<&'n Child>,
    egress: Option<&'n Node>,
    allowlist_member: Option<&'n Child>,
    allowlist: Option<&'n Node>,
}

fn decode_key(body: &str, key: &Range<usize>) -> String {
    serde_json::from_str(&body[key.clone()]).unwrap_or_default()
}

/// The member `key` of `object`, refusing a key defined twice.
fn member<'n>(
    body: &str,
    object: &'n Node,
    key: &str,
    path: &JsonPath,
) -> Result<Option<&'n Child>, EditError> {
    let mut matching = object
        .children()
        .iter()
        .filter(|c| c.key.as_ref().is_some_and(|k| decode_key(body, k) == key));
    let first = matching.next();
    if first.is_some() && matching.next().is_some() {
        return Err(EditError::Duplicate { path: path.clone() });
    }
    Ok(first)
}

fn locate<'n>(root: &'n Node, body: &str, bottle: &str) -> Result<Found<'n>, EditError> {
    let top = JsonPath::root();
    if !root.is_object() {
        return Err(EditError::WrongType {
            path: top,
            expected: "an object",
        });
    }
    let bottles_path = top.key("bottles");
    let bottle_path = bottles_path.key(bottle);
    let unknown = |known: Vec<String>| EditError::UnknownBottle {
        bottle: bottle.to_owned(),
        path: bottle_path.clone(),
        known,
    };
    let Some(bottles) = member(body, root, "bottles", &bottles_path)?.map(|c| &c.value) else {
        return Err(unknown(Vec::new()));
    };
    if !bottles.is_object() {
        return Err(EditError::WrongType {
            path: bottles_path,
            expected: "an object",
        });
    }
    let Some(bottle_member) = member(body, bottles, bottle, &bottle_path)? else {
        let mut known: Vec<String> = bottles
            .children()
            .iter()
            .filter_map(|c| c.key.as_ref().map(|k| decode_key(body, k)))
            .collect();
        known.sort();
        known.dedup();
        return Err(unknown(known));
    };
    let bottle_node = &bottle_member.value;
    if !bottle_node.is_object() {
        return Err(EditError::WrongType {
            path: bottle_path,
            expected: "an object",
        });
    }
    let egress_path = bottle_path.key("egress");
    let egress_member = member(body, bottle_node, "egress", &egress_path)?;
    let egress = egress_member.map(|c| &c.value);
    if egress.is_some_and(|e| !e.is_object()) {
        return Err(EditError::WrongType {
            path: egress_path,
            expected: "an object",
        });
    }
    let allowlist_path = egress_path.key("allowlist");
    let allowlist_member = match egress {
        Some(egress) => member(body, egress, "allowlist", &allowlist_path)?,
        None => None,
    };
    let allowlist = allowlist_member.map(|c| &c.value);
    if allowlist.is_some_and(|a| !matches!(a.kind, Kind::Array(_))) {
        return Err(EditError::WrongType {
            path: allowlist_path,
            expected: "an array of hosts",
        });
    }
    Ok(Found {
        root,
        bottles,
        bottle_member,
        bottle: bottle_node,
        egress_member,
        egress,
        allowlist_member,
        allowlist,
    })
}

// ---------------------------------------------------------------------------
// Writing new text in the file's own layout.

/// How a new value is laid out where it goes.
enum Style {
    /// Over several lines; the string is the indentation of the line the
    /// value starts on (that of the member holding it).
    Lines(String),
    /// On one line.
    Inline,
}

/// The file's conventions, read from the text around the edit.
struct Layout<'a> {
    body: &'a str,
    newline: &'static str,
    /// One level of indentation.
    unit: String,
    /// What goes between a key and its value, such as `": "`.
    colon: String,
    /// What follows a comma on one line, such as `" "`.
    inline_separator: &'static str,
    /// Whether a new array holds one entry per line.
    arrays_on_lines: bool,
    /// What goes inside the braces of a new one-line object, such as `" "`.
    object_padding: String,
}

impl<'a> Layout<'a> {
    fn of(body: &'a str, found: &Found<'_>) -> Self {
        let newline = match body.find('\n') {
            Some(i) if body[..i].ends_with('\r') => "\r\n",
            _ => "\n",
        };
        // The nearest container on the path whose children are on lines of
        // their own tells the indent unit.
        let unit = [
            found.allowlist,
            found.egress,
            Some(found.bottle),
            Some(found.bottles),
            Some(found.root),
        ]
        .into_iter()
        .flatten()
        .find_map(|node| indent_step(body, node))
        .unwrap_or_else(|| "  ".to_owned());
        // The spacing around `:` of the nearest member.
        let colon = [
            found.allowlist_member,
            found.egress.and_then(|e| e.children().last()),
            found.egress_member,
            found.bottle.children().last(),
            Some(found.bottle_member),
        ]
        .into_iter()
        .flatten()
        .find_map(|member| {
            let key = member.key.as_ref()?;
            let colon = &body[key.end..member.value.span.start];
            (!colon.contains('\n')).then(|| colon.to_owned())
        })
        .unwrap_or_else(|| ": ".to_owned());
        let inline_separator = if colon.ends_with(' ') { " " } else { "" };
        // A new array is laid out like the first list of strings in the file.
        let arrays_on_lines =
            first_string_list(found.root).is_none_or(|first| ws_before(body, first).contains('\n'));
        // New one-line objects are padded inside their braces like the
        // nearest one-line object on the path.
        let object_padding = [
            found.egress,
            Some(found.bottle),
            Some(found.bottles),
            Some(found.root),
        ]
        .into_iter()
        .flatten()
        .filter_map(|node| node.children().first())
        .map(|first| ws_before(body, first))
        .find(|ws| !ws.contains('\n'))
        .unwrap_or("")
        .to_owned();
        Self {
            body,
            newline,
            unit,
            colon,
            inline_separator,
            arrays_on_lines,
            object_padding,
        }
    }

    /// The edit that appends `entries` to an existing array.
    fn append_entries(&self, array: &Node, entries: &[String]) -> (Range<usize>, String) {
        let children = array.children();
        let Some(last) = children.last() else {
            // Empty: filled on one line, unless it already spans lines.
            let inner = array.span.start + 1..array.span.end - 1;
            let text = if self.body[inner.clone()].contains('\n') {
                let closing = line_indent(self.body, array.span.start);
                self.lines(entries, &format!("{closing}{}", self.unit), closing)
            } else {
                entries.join(&format!(",{}", self.inline_separator))
            };
            return (inner, text);
        };
        // Each new entry is laid out as the last one is: on a line of its
        // own with the same indentation, or after the same separator.
        let before_last = ws_before(self.body, last);
        let separator = if before_last.contains('\n') || children.len() > 1 {
            before_last
        } else {
            self.inline_separator
        };
        let mut text = String::new();
        for entry in entries {
            text.push(',');
            text.push_str(separator);
            text.push_str(entry);
        }
        let at = last.value.span.end;
        (at..at, text)
    }

    /// The edit that adds the member `key` to `object`, whose own member is
    /// `holder`. `value` renders the member's value in a given style.
    fn insert_member(
        &self,
        object: &Node,
        holder: Option<&Child>,
        key: &str,
        value: &dyn Fn(&Style) -> String,
    ) -> (Range<usize>, String) {
        let key = serde_json::Value::String(key.to_owned()).to_string();
        let member = |style: &Style| format!("{key}{}{}", self.colon, value(style));
        let children = object.children();
        let Some(last) = children.last() else {
            let inner = object.span.start + 1..object.span.end - 1;
            // `{}` among members on lines of their own opens up.
            let on_lines = self.body[inner.clone()].contains('\n')
                || holder.is_some_and(|h| ws_before(self.body, h).contains('\n'));
            let text = match on_lines.then(|| line_indent(self.body, object.span.start)) {
                Some(closing) => {
                    let indent = format!("{closing}{}", self.unit);
                    let member = member(&Style::Lines(indent.clone()));
                    format!("{nl}{indent}{member}{nl}{closing}", nl = self.newline)
                }
                None => member(&Style::Inline),
            };
            return (inner, text);
        };
        let before_last = ws_before(self.body, last);
        let text = match before_last.rfind('\n') {
            Some(i) => {
                let indent = before_last[i + 1..].to_owned();
                format!(",{before_last}{}", member(&Style::Lines(indent)))
            }
            None => {
                let separator = if children.len() > 1 {
                    before_last
                } else {
                    self.inline_separator
                };
                format!(",{separator}{}", member(&Style::Inline))
            }
        };
        let at = last.value.span.end;
        (at..at, text)
    }

    /// A new array of `entries`.
    fn array(&self, style: &Style, entries: &[String]) -> String {
        match style {
            Style::Lines(indent) if self.arrays_on_lines => {
                let inner = self.lines(entries, &format!("{indent}{}", self.unit), indent);
                format!("[{inner}]")
            }
            _ => format!("[{}]", entries.join(&format!(",{}", self.inline_separator))),
        }
    }

    /// A new object with the one member `key`.
    fn object(&self, style: &Style, key: &str, value: &dyn Fn(&Style) -> String) -> String {
        let key = serde_json::Value::String(key.to_owned()).to_string();
        match style {
            Style::Lines(indent) => {
                let inner = format!("{indent}{}", self.unit);
                let value = value(&Style::Lines(inner.clone()));
                format!(
                    "{{{nl}{inner}{key}{colon}{value}{nl}{indent}}}",
                    nl = self.newline,
                    colon = self.colon
                )
            }
            Style::Inline => format!(
                "{{{pad}{key}{colon}{value}{pad}}}",
                pad = self.object_padding,
                colon = self.colon,
                value = value(&Style::Inline)
            ),
        }
    }

    /// `items` one per line at `indent`, then a line break and `closing`
    /// (the indentation of the line of the closing bracket).
    fn lines(&self, items: &[String], indent: &str, closing: &str) -> String {
        let mut text = String::new();
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                text.push(',');
            }
            text.push_str(self.newline);
            text.push_str(indent);
            text.push_str(item);
        }
        text.push_str(self.newline);
        text.push_str(closing);
        text
    }
}

/// The whitespace that lays `child` out: after the `{`, `[` or `,` before it.
fn ws_before<'a>(body: &'a str, child: &Child) -> &'a str {
    &body[child.lead..child.start()]
}

/// The leading blanks of the line `pos` is on.
fn line_indent(body: &str, pos: usize) -> &str {
    let start = body[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line = &body[start..pos];
    &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
}

/// One level of indentation, when `node` has its children on lines of
/// their own, indented further than its own line.
fn indent_step(body: &str, node: &Node) -> Option<String> {
    let first = node.children().first()?;
    let before = ws_before(body, first);
    let child_indent = &before[before.rfind('\n')? + 1..];
    let own = line_indent(body, node.span.start);
    child_indent
        .strip_prefix(own)
        .filter(|step| !step.is_empty())
        .map(str::to_owned)
}

/// The first entry of the first non-empty array of strings, depth first.
fn first_string_list(node: &Node) -> Option<&Child> {
    match &node.kind {
        Kind::Array(children) if children.first().is_some_and(|c| c.value.is_string) => {
            children.first()
        }
        Kind::Object(children) | Kind::Array(children) => children
            .iter()
            .find_map(|child| first_string_list(&child.value)),
        Kind::Scalar => None,
    }
}

#[cfg(test)]
mod tests;
