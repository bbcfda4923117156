//! `list`: the manifest's agents and the backend's active bottles.

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;

use super::args::ListArgs;
use super::{Error, load_manifest};
use crate::backend::{ActiveBottle, AnyBackend, Backend, SessionState};
use crate::core::work_home::kept::KeptWork;
use crate::manifest::{Manifest, ManifestSource};
use crate::printer::Printer;

#[derive(Debug, Serialize)]
struct AgentRow<'a> {
    name: &'a str,
    bottle: &'a str,
    skills: Vec<&'a str>,
}

#[derive(Debug, Serialize)]
struct Listing<'a> {
    /// The manifest file, or `null` for the embedded default.
    manifest_path: Option<String>,
    /// The same for people, as in error messages.
    #[serde(skip)]
    manifest: String,
    agents: Vec<AgentRow<'a>>,
    active: Vec<ActiveBottle>,
}

pub async fn run(
    manifest_path: Option<&std::path::Path>,
    args: ListArgs,
    printer: &Printer,
) -> Result<u8, Error> {
    let manifest = load_manifest(manifest_path)?;
    let mut active = AnyBackend::from_env(printer)?.list_active().await?;
    let kept = KeptWork::all();
    for bottle in &mut active {
        bottle.work_not_home = kept
            .iter()
            .any(|k| k.is_of(&bottle.name, Some(&bottle.handle)));
    }
    let manifest_path = match &manifest.source {
        ManifestSource::File(path) => Some(path.display().to_string()),
        ManifestSource::Embedded => None,
    };
    let listing = Listing {
        manifest_path,
        manifest: manifest.source.to_string(),
        agents: agent_rows(&manifest),
        active,
    };
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&listing).unwrap_or_default();
        json.push('\n');
        json
    } else {
        render_table(&listing)
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(Error::Stdout)?;
    Ok(0)
}

fn agent_rows(manifest: &Manifest) -> Vec<AgentRow<'_>> {
    manifest
        .agents
        .iter()
        .map(|(name, agent)| AgentRow {
            name,
            bottle: &agent.bottle,
            skills: agent.skills.iter().map(|s| s.as_str()).collect(),
        })
        .collect()
}

fn render_table(listing: &Listing<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "AGENTS ({})", listing.manifest);
    let name_w = column_width(listing.agents.iter().map(|a| a.name.len()), 5);
    let bottle_w = column_width(listing.agents.iter().map(|a| a.bottle.len()), 6);
    let _ = writeln!(out, "  {:name_w$}  {:bottle_w$}  SKILLS", "AGENT", "BOTTLE");
    for agent in &listing.agents {
        let skills = if agent.skills.is_empty() {
            "-".to_owned()
        } else {
            agent.skills.join(", ")
        };
        let _ = writeln!(
            out,
            "  {:name_w$}  {:bottle_w$}  {skills}",
            agent.name, agent.bottle
        );
    }
    out.push('\n');
    if listing.active.is_empty() {
        out.push_str("ACTIVE BOTTLES: none\n");
        return out;
    }
    out.push_str("ACTIVE BOTTLES\n");
    let states: Vec<String> = listing
        .active
        .iter()
        .map(|b| {
            if b.work_not_home {
                format!("{} (holds work that did not come home)", b.state)
            } else if b.orphaned {
                format!("{} (orphan)", b.state)
            } else if b.session_state == SessionState::Warm {
                format!("{} (warm)", b.state)
            } else {
                b.state.clone()
            }
        })
        .collect();
    let ctr_w = column_width(listing.active.iter().map(|b| b.name.len()), 9);
    let agent_w = column_width(listing.active.iter().map(|b| b.agent.len()), 5);
    let state_w = column_width(states.iter().map(String::len), 5);
    let runtime_w = column_width(listing.active.iter().map(|b| b.runtime.len()), 7);
    let _ = writeln!(
        out,
        "  {:ctr_w$}  {:agent_w$}  {:state_w$}  {:runtime_w$}  AGE",
        "CONTAINER", "AGENT", "STATE", "RUNTIME"
    );
    for (bottle, state) in listing.active.iter().zip(&states) {
        let _ = writeln!(
            out,
            "  {:ctr_w$}  {:agent_w$}  {state:state_w$}  {:runtime_w$}  {}",
            bottle.name,
            bottle.agent,
            bottle.runtime,
            format_age(bottle.age_seconds)
        );
    }
    out
}

/// The widest cell, at least `header` wide.
fn column_width(cells: impl Iterator<Item = usize>, header: usize) -> usize {
    cells.max().unwrap_or(0).max(header)
}

fn format_age(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::SessionState;

    #[test]
    fn ages_are_compact() {
        assert_eq!(format_age(5), "5s");
        assert_eq!(format_age(125), "2m");
        assert_eq!(format_age(3 * 3600 + 120), "3h2m");
        assert_eq!(format_age(2 * 86_400 + 5), "2d");
    }

    #[test]
    fn table_shows_agents_and_active_bottles() {
        let listing = Listing {
            manifest_path: None,
            manifest: "test".into(),
            agents: vec![AgentRow {
                name: "reviewer",
                bottle: "default",
                skills: vec!["code-review"],
            }],
            active: vec![ActiveBottle {
                name: "claude-bottle-reviewer".into(),
                handle: "c1".into(),
                agent: "reviewer".into(),
                bottle: "default".into(),
                manifest_path: None,
                state: "running".into(),
                runtime: "runc".into(),
                age_seconds: 61,
                session: "s1".into(),
                session_state: SessionState::Ended,
                orphaned: true,
                work_not_home: false,
            }],
        };
        insta::assert_snapshot!(render_table(&listing));
    }
}
