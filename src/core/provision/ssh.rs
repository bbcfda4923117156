//! The bottle's SSH setup: one identity file per manifest entry, an
//! `ssh_config` whose every host goes through the proxy, and the host keys the
//! host user already trusts.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::known_hosts::{self, HostKeys};
use super::{Item, ProvisionError, ProvisionSet, Source, join};
use crate::core::pipelock::LISTEN_PORT;
use crate::core::slug::slugify;
use crate::manifest::{SshEntry, expand_tilde};

pub(super) const SSH_DIR_MODE: u32 = 0o700;
const SECRET_FILE_MODE: u32 = 0o600;

/// What one manifest entry becomes in the bottle.
struct HostPlan<'a> {
    entry: &'a SshEntry,
    key_dest: String,
    keys: HostKeys,
}

pub(super) fn provision(
    set: &mut ProvisionSet,
    home: &str,
    proxy_host: &str,
    bottle_name: &str,
    entries: &[SshEntry],
    host_home: &Path,
) -> Result<(), ProvisionError> {
    if entries.is_empty() {
        return Ok(());
    }
    let ssh_dir = join(home, ".ssh");
    let known_hosts_text = read_known_hosts(host_home)?;
    let mut used_names = BTreeSet::new();
    let mut plans = Vec::with_capacity(entries.len());
    let mut identity_items = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let manifest_path = format!("bottles.{bottle_name}.ssh[{index}]");
        check_config_value(&manifest_path, "Host", &entry.host)?;
        if let Some(user) = &entry.user {
            check_config_value(&manifest_path, "User", user)?;
        }
        let identity = checked_identity_file(&manifest_path, entry, host_home)?;
        let key_dest = join(&ssh_dir, &unique_key_name(&entry.host, &mut used_names));
        identity_items.push(Item {
            dest: key_dest.clone(),
            mode: SECRET_FILE_MODE,
            source: Source::HostFile(identity),
        });
        let lookup = known_hosts::lookup_name(&entry.host_name.to_string(), entry.port);
        plans.push(HostPlan {
            entry,
            key_dest,
            keys: known_hosts::lines_for(&known_hosts_text, &lookup),
        });
    }

    let known_hosts_dest = join(&ssh_dir, "known_hosts");
    set.dirs.push((ssh_dir.clone(), SSH_DIR_MODE));
    set.items.extend(identity_items);
    set.items.push(Item {
        dest: join(&ssh_dir, "config"),
        mode: SECRET_FILE_MODE,
        source: Source::Bytes(
            render_config(bottle_name, proxy_host, &known_hosts_dest, &plans).into_bytes(),
        ),
    });
    if let Some(text) = render_known_hosts(&plans) {
        set.items.push(Item {
            dest: known_hosts_dest,
            mode: SECRET_FILE_MODE,
            source: Source::Bytes(text.into_bytes()),
        });
    }
    Ok(())
}

/// The host user's `~/.ssh/known_hosts`, empty when there is none. An
/// unreadable file is an error rather than silently weaker host-key checks.
fn read_known_hosts(host_home: &Path) -> Result<String, ProvisionError> {
    let path = host_home.join(".ssh").join("known_hosts");
    match fs::read(&path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ProvisionError::KnownHostsUnreadable { path, source }),
    }
}

fn checked_identity_file(
    manifest_path: &str,
    entry: &SshEntry,
    host_home: &Path,
) -> Result<PathBuf, ProvisionError> {
    let path = expand_tilde(&entry.identity_file, host_home);
    let context = || (manifest_path.to_owned(), entry.host.clone(), path.clone());
    let metadata = match fs::metadata(&path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let (entry, host, path) = context();
            return Err(ProvisionError::IdentityFileMissing { entry, host, path });
        }
        Err(source) => {
            let (entry, host, path) = context();
            return Err(ProvisionError::IdentityFileUnreadable {
                entry,
                host,
                path,
                source,
            });
        }
    };
    if !metadata.is_file() {
        let (entry, host, path) = context();
        return Err(ProvisionError::IdentityFileNotAFile { entry, host, path });
    }
    if let Err(source) = fs::File::open(&path) {
        let (entry, host, path) = context();
        return Err(ProvisionError::IdentityFileUnreadable {
            entry,
            host,
            path,
            source,
        });
    }
    Ok(path)
}

/// Values are written unquoted into `ssh_config`, where whitespace, quotes and
/// `=` would split or end them.
fn check_config_value(manifest_path: &str, field: &str, value: &str) -> Result<(), ProvisionError> {
    let unsafe_char =
        |c: char| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '=');
    if value.is_empty() || value.chars().any(unsafe_char) {
        return Err(ProvisionError::SshValueUnwritable {
            entry: manifest_path.to_owned(),
            field: field.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// `id_<alias slug>`, with `-2`, `-3`... when two aliases slug alike.
fn unique_key_name(alias: &str, used: &mut BTreeSet<String>) -> String {
    let stem = if alias.chars().any(|c| c.is_ascii_alphanumeric()) {
        slugify(alias)
    } else {
        "host".to_owned()
    };
    let base = format!("id_{stem}");
    let mut name = base.clone();
    let mut suffix = 2;
    while !used.insert(name.clone()) {
        name = format!("{base}-{suffix}");
        suffix += 1;
    }
    name
}

fn render_config(
    bottle_name: &str,
    proxy_host: &str,
    known_hosts_dest: &str,
    plans: &[HostPlan<'_>],
) -> String {
    let mut out = format!(
        "# Written by claude-bottle for bottle `{bottle_name}`: every host goes through the bottle's proxy.\n"
    );
    for plan in plans {
        let entry = plan.entry;
        // Writing to a String cannot fail.
        let _ = writeln!(out, "\nHost {}", entry.host);
        let _ = writeln!(out, "  HostName {}", entry.host_name);
        if let Some(user) = &entry.user {
            let _ = writeln!(out, "  User {user}");
        }
        let _ = writeln!(out, "  Port {}", entry.port);
        let _ = writeln!(out, "  IdentityFile {}", plan.key_dest);
        out.push_str("  IdentitiesOnly yes\n");
        let _ = writeln!(
            out,
            "  ProxyCommand nc -X connect -x {proxy_host}:{LISTEN_PORT} %h %p"
        );
        let _ = writeln!(out, "  UserKnownHostsFile {known_hosts_dest}");
        let policy = if plan.keys.known { "yes" } else { "accept-new" };
        let _ = writeln!(out, "  StrictHostKeyChecking {policy}");
    }
    out
}

/// The bottle's `known_hosts`, or `None` when no host was found in the host
/// user's file (ssh then creates it on first accept).
fn render_known_hosts(plans: &[HostPlan<'_>]) -> Option<String> {
    let mut lines: Vec<&str> = Vec::new();
    for line in plans.iter().flat_map(|plan| &plan.keys.lines) {
        if !lines.contains(&line.as_str()) {
            lines.push(line);
        }
    }
    if lines.is_empty() {
        return None;
    }
    let mut out = String::from(
        "# From the host user's ~/.ssh/known_hosts, for this bottle's SSH hosts only.\n",
    );
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_unique_per_entry() {
        let mut used = BTreeSet::new();
        assert_eq!(unique_key_name("github", &mut used), "id_github");
        assert_eq!(unique_key_name("GitHub", &mut used), "id_github-2");
        assert_eq!(unique_key_name("github", &mut used), "id_github-3");
        assert_eq!(unique_key_name("build.box", &mut used), "id_build-box");
        assert_eq!(unique_key_name("@@", &mut used), "id_host");
    }

    #[test]
    fn config_values_that_would_break_the_file_are_refused() {
        for bad in ["", "a b", "a\tb", "a\"b", "a=b", "a\nb"] {
            let err = check_config_value("bottles.x.ssh[0]", "Host", bad)
                .expect_err("unsafe value accepted");
            assert!(matches!(err, ProvisionError::SshValueUnwritable { .. }));
        }
        assert!(check_config_value("bottles.x.ssh[0]", "Host", "git-host.example_1").is_ok());
    }
}
