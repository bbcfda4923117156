//! NAME of `egress` and `allow`: the container name of a running bottle, or
//! an agent name with exactly one running bottle; omitted when exactly one
//! bottle runs.

use super::Error;
use crate::backend::{ActiveBottle, SessionState};

/// The running bottle `query` names among `active`.
pub(crate) fn resolve<'a>(
    active: &'a [ActiveBottle],
    query: Option<&str>,
) -> Result<&'a ActiveBottle, Error> {
    let running: Vec<&ActiveBottle> = active.iter().filter(|b| in_session(b)).collect();
    let names = |bottles: &[&ActiveBottle]| {
        bottles
            .iter()
            .map(|b| format!("`{}` (agent `{}`)", b.name, b.agent))
            .collect::<Vec<_>>()
    };
    let Some(query) = query else {
        return match running.as_slice() {
            [only] => Ok(only),
            [] => Err(Error::NoRunningBottle),
            several => Err(Error::BottleRequired {
                candidates: names(several),
            }),
        };
    };
    if let Some(bottle) = running.iter().find(|b| b.name == query) {
        return Ok(bottle);
    }
    let of_agent: Vec<&ActiveBottle> = running
        .iter()
        .copied()
        .filter(|b| b.agent == query)
        .collect();
    match of_agent.as_slice() {
        [only] => Ok(only),
        [] => Err(Error::UnknownBottle {
            name: query.to_owned(),
            candidates: names(&running),
        }),
        several => Err(Error::AmbiguousBottle {
            name: query.to_owned(),
            candidates: names(several),
        }),
    }
}

/// Whether `word` names a running bottle (by container or agent name).
pub(crate) fn names_a_bottle(active: &[ActiveBottle], word: &str) -> bool {
    active
        .iter()
        .any(|b| in_session(b) && (b.name == word || b.agent == word))
}

/// A running bottle that a session uses. A warm one is left alone: its
/// proxy config must stay what its fingerprint says until a session claims it.
fn in_session(bottle: &ActiveBottle) -> bool {
    bottle.state == "running" && bottle.session_state != SessionState::Warm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Diagnostic;

    fn bottle(name: &str, agent: &str) -> ActiveBottle {
        ActiveBottle::running(name, agent)
    }

    #[test]
    fn a_name_is_a_container_or_an_agent_with_one_bottle() {
        let active = [
            bottle("claude-bottle-rev", "rev"),
            bottle("claude-bottle-rev-2", "rev"),
            bottle("claude-bottle-docs", "docs"),
        ];
        assert_eq!(
            resolve(&active, Some("claude-bottle-rev-2")).unwrap().name,
            "claude-bottle-rev-2"
        );
        assert_eq!(
            resolve(&active, Some("docs")).unwrap().name,
            "claude-bottle-docs"
        );
        let ambiguous = resolve(&active, Some("rev")).unwrap_err();
        assert_eq!(ambiguous.code(), 2);
        assert!(
            ambiguous.hints()[0].contains("`claude-bottle-rev-2` (agent `rev`)"),
            "{:?}",
            ambiguous.hints()
        );
        let unknown = resolve(&active, Some("nope")).unwrap_err();
        assert_eq!(unknown.code(), 2);
        assert!(unknown.hints()[0].contains("`claude-bottle-docs`"));
        let required = resolve(&active, None).unwrap_err();
        assert_eq!(required.code(), 2);
    }

    #[test]
    fn the_name_may_be_left_out_when_one_bottle_runs() {
        let mut exited = bottle("claude-bottle-old", "old");
        exited.state = "exited".into();
        let active = [exited, bottle("claude-bottle-rev", "rev")];
        assert_eq!(resolve(&active, None).unwrap().name, "claude-bottle-rev");
        assert!(matches!(resolve(&[], None), Err(Error::NoRunningBottle)));
    }
}
