//! Resolution of a bottle's `env` into the values the container gets.
//!
//! Values are held as [`SecretString`] from the moment they are read, so they
//! cannot reach a plan, a log line or an error message by accident: their
//! `Debug` is redacted and they have no `Display`.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::SecretString;

use crate::manifest::{EnvName, EnvValue};
use crate::term::Terminal;

/// The host variable whose value becomes the container's `CLAUDE_CODE_OAUTH_TOKEN`.
pub const OAUTH_TOKEN_HOST_VAR: &str = "CLAUDE_BOTTLE_OAUTH_TOKEN";
pub const OAUTH_TOKEN_CONTAINER_VAR: &str = "CLAUDE_CODE_OAUTH_TOKEN";

/// Where a resolved value came from. Shown in the plan instead of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvSource {
    Literal,
    /// Read from claude-bottle's own environment (`${VAR}`/`$VAR`).
    Host,
    /// Typed at a hidden prompt because the host variable was unset.
    Prompted,
    /// `CLAUDE_BOTTLE_OAUTH_TOKEN` forwarded as `CLAUDE_CODE_OAUTH_TOKEN`.
    OauthToken,
}

impl fmt::Display for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Literal => "literal",
            Self::Host => "host",
            Self::Prompted => "prompted",
            Self::OauthToken => "host CLAUDE_BOTTLE_OAUTH_TOKEN",
        })
    }
}

#[derive(Debug, Clone)]
pub struct ResolvedVar {
    pub name: String,
    pub source: EnvSource,
    /// For `${VAR}` sources, the host variable that was read.
    pub host_var: Option<String>,
    pub value: SecretString,
}

/// The container environment of one session, in a stable order.
#[derive(Debug, Clone, Default)]
pub struct ResolvedEnv {
    pub vars: Vec<ResolvedVar>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(
        "bottle `{bottle}` needs host variable `{var}` for `env.{name}`, but it is unset and stdin is not a terminal to ask for it"
    )]
    Unset {
        bottle: String,
        name: String,
        var: String,
    },
    #[error("could not read `{var}` for bottle `{bottle}` from the terminal: {source}")]
    Prompt {
        bottle: String,
        var: String,
        source: std::io::Error,
    },
}

/// Reads host variables. A trait so tests need not touch the process environment.
pub trait HostEnv {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment. A variable that is set but not UTF-8 is
/// treated as unset rather than mangled.
#[derive(Debug, Default)]
pub struct ProcessEnv;

impl HostEnv for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl HostEnv for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Resolves `env` of bottle `bottle`. An unset host variable is prompted for
/// with hidden input when stdin is a terminal, and is an error otherwise.
/// When `CLAUDE_BOTTLE_OAUTH_TOKEN` is set, `CLAUDE_CODE_OAUTH_TOKEN` is added.
pub async fn resolve<T: Terminal>(
    bottle: &str,
    env: &BTreeMap<EnvName, EnvValue>,
    host: &dyn HostEnv,
    term: &mut T,
) -> Result<ResolvedEnv, EnvError> {
    let mut vars = Vec::with_capacity(env.len() + 1);
    for (name, value) in env {
        let resolved = match value {
            EnvValue::Literal(text) => ResolvedVar {
                name: name.to_string(),
                source: EnvSource::Literal,
                host_var: None,
                value: SecretString::from(text.clone()),
            },
            EnvValue::HostVar(var) => {
                let (value, source) = match host.var(var.as_str()) {
                    Some(value) => (value, EnvSource::Host),
                    None if term.stdin_is_tty() => {
                        let prompt = format!("value for `{var}` (bottle `{bottle}`, hidden): ");
                        let value =
                            term.read_secret(&prompt)
                                .await
                                .map_err(|source| EnvError::Prompt {
                                    bottle: bottle.to_owned(),
                                    var: var.to_string(),
                                    source,
                                })?;
                        (value, EnvSource::Prompted)
                    }
                    None => {
                        return Err(EnvError::Unset {
                            bottle: bottle.to_owned(),
                            name: name.to_string(),
                            var: var.to_string(),
                        });
                    }
                };
                ResolvedVar {
                    name: name.to_string(),
                    source,
                    host_var: Some(var.to_string()),
                    value: SecretString::from(value),
                }
            }
        };
        vars.push(resolved);
    }
    if let Some(token) = host.var(OAUTH_TOKEN_HOST_VAR) {
        vars.retain(|v| v.name != OAUTH_TOKEN_CONTAINER_VAR);
        vars.push(ResolvedVar {
            name: OAUTH_TOKEN_CONTAINER_VAR.to_owned(),
            source: EnvSource::OauthToken,
            host_var: Some(OAUTH_TOKEN_HOST_VAR.to_owned()),
            value: SecretString::from(token),
        });
    }
    Ok(ResolvedEnv { vars })
}

/// The literal values of `env` alone: all of it that is fixed when a bottle
/// is made (the rest goes only to Claude's process), so `prewarm` needs
/// nothing from the host or the terminal.
pub fn literals(env: &BTreeMap<EnvName, EnvValue>) -> ResolvedEnv {
    let vars = env
        .iter()
        .filter_map(|(name, value)| match value {
            EnvValue::Literal(text) => Some(ResolvedVar {
                name: name.to_string(),
                source: EnvSource::Literal,
                host_var: None,
                value: SecretString::from(text.clone()),
            }),
            EnvValue::HostVar(_) => None,
        })
        .collect();
    ResolvedEnv { vars }
}

impl crate::diagnostic::Diagnostic for EnvError {
    fn hints(&self) -> Vec<String> {
        match self {
            Self::Unset { var, .. } => vec![format!(
                "export {var}=... before running claude-bottle, or run it from a terminal to be prompted"
            )],
            Self::Prompt { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::FakeTerminal;
    use futures_util::FutureExt;
    use secrecy::ExposeSecret;

    fn pairs(env: &ResolvedEnv) -> Vec<String> {
        env.vars
            .iter()
            .map(|v| format!("{}={}", v.name, v.value.expose_secret()))
            .collect()
    }

    /// The fake terminal answers at once, so the future is ready on first poll.
    fn resolve_now(
        bottle: &str,
        env: &BTreeMap<EnvName, EnvValue>,
        host: &dyn HostEnv,
        term: &mut FakeTerminal,
    ) -> Result<ResolvedEnv, EnvError> {
        resolve(bottle, env, host, term)
            .now_or_never()
            .expect("a fake terminal never waits")
    }

    fn env(pairs: &[(&str, EnvValue)]) -> BTreeMap<EnvName, EnvValue> {
        pairs
            .iter()
            .map(|(n, v)| (EnvName::parse(n).unwrap(), v.clone()))
            .collect()
    }

    fn host(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn var(name: &str) -> EnvValue {
        EnvValue::HostVar(EnvName::parse(name).unwrap())
    }

    #[test]
    fn literals_and_host_values_resolve_in_name_order() {
        let spec = env(&[
            ("B_LIT", EnvValue::Literal("x$y".into())),
            ("A_REF", var("HOST_A")),
        ]);
        let mut term = FakeTerminal::with_inputs(false, &[]);
        let got = resolve_now("default", &spec, &host(&[("HOST_A", "s3cret")]), &mut term).unwrap();
        assert_eq!(pairs(&got), ["A_REF=s3cret", "B_LIT=x$y"]);
        assert_eq!(got.vars[0].source, EnvSource::Host);
        assert_eq!(got.vars[1].source, EnvSource::Literal);
    }

    #[test]
    fn unset_without_terminal_names_variable_and_bottle() {
        let spec = env(&[("TOKEN", var("MISSING_TOKEN"))]);
        let mut term = FakeTerminal::with_inputs(false, &[]);
        let err = resolve_now("work", &spec, &host(&[]), &mut term).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`MISSING_TOKEN`"), "{msg}");
        assert!(msg.contains("bottle `work`"), "{msg}");
        assert!(!msg.contains("hint:"), "{msg}");
        assert_eq!(
            crate::diagnostic::Diagnostic::hints(&err),
            [
                "export MISSING_TOKEN=... before running claude-bottle, or run it from a terminal to be prompted"
            ]
        );
    }

    #[test]
    fn unset_on_terminal_prompts_hidden() {
        let spec = env(&[("TOKEN", var("MISSING_TOKEN"))]);
        let mut term = FakeTerminal::with_inputs(true, &["typed-value"]);
        let got = resolve_now("work", &spec, &host(&[]), &mut term).unwrap();
        assert_eq!(pairs(&got), ["TOKEN=typed-value"]);
        assert_eq!(got.vars[0].source, EnvSource::Prompted);
        assert_eq!(term.prompts.len(), 1);
        assert!(!term.prompts[0].contains("typed-value"));
    }

    #[test]
    fn oauth_token_is_forwarded_under_claude_name() {
        let mut term = FakeTerminal::with_inputs(false, &[]);
        let got = resolve_now(
            "b",
            &env(&[]),
            &host(&[(OAUTH_TOKEN_HOST_VAR, "tok")]),
            &mut term,
        )
        .unwrap();
        assert_eq!(pairs(&got), ["CLAUDE_CODE_OAUTH_TOKEN=tok"]);
    }

    #[test]
    fn debug_output_never_shows_values() {
        let spec = env(&[("A", var("H"))]);
        let mut term = FakeTerminal::with_inputs(false, &[]);
        let got = resolve_now("b", &spec, &host(&[("H", "hunter2-secret")]), &mut term).unwrap();
        assert!(!format!("{got:?}").contains("hunter2-secret"));
    }
}
