//! The agent's seccomp profile on Podman: Podman's own default, but with
//! Docker's answer to the three calls that make a user namespace.
//!
//! Why: Docker's default profile refuses an unprivileged process a new
//! namespace (`clone` with a namespace flag, `unshare`, `clone3`); Podman's
//! allows all three, so an agent could `unshare --user --map-root-user` and
//! be root, with every capability, in a namespace of its own: a large kernel
//! surface (netfilter, mounts) that a capability-less process never reaches.
//! The profile is fixed when the container is created, so the agent cannot
//! undo it.
//!
//! How: Podman's Docker API takes `seccomp=` as a path on the service's
//! host, not as the profile's text as Docker does. The base is the profile
//! Podman itself applies by default (its override in /etc first, as Podman
//! reads them), so nothing else Podman refuses is let through. The derived
//! profile is written into a directory of its own next to the service's
//! socket (which the service can read: rootless Podman runs as its user),
//! or in the temp dir when that is not writable, named at random so nobody
//! can put another profile in its place, and is
//! removed once the container is created: Podman copies it into the
//! container's spec. On Docker nothing changes: its default already refuses.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Where Podman's default profile is, in the order Podman reads them.
pub(crate) const PODMAN_PROFILES: [&str; 2] = [
    "/etc/containers/seccomp.json",
    "/usr/share/containers/seccomp.json",
];

/// The namespace flags of `clone(2)`: CLONE_NEWNS, NEWCGROUP, NEWUTS,
/// NEWIPC, NEWUSER, NEWPID, NEWNET (the mask Docker's default uses).
const CLONE_NAMESPACES: u64 = 0x7E02_0000;
/// Those, and CLONE_NEWTIME, which only `unshare` takes.
const UNSHARE_NAMESPACES: u64 = CLONE_NAMESPACES | 0x80;
const EPERM: u64 = 1;
const ENOSYS: u64 = 38;

/// Why no profile could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProfileError {
    #[error(
        "Podman's default seccomp profile is not at {} (the profile that keeps the agent from making user namespaces is derived from it)",
        PODMAN_PROFILES.join(" or ")
    )]
    NoBase,
    #[error("could not read `{path}`: {detail}")]
    Unreadable { path: String, detail: String },
    #[error("`{path}` is not a seccomp profile: {detail}")]
    NotAProfile { path: String, detail: String },
    #[error(
        "the Podman service at `{endpoint}` is not on a local socket, so no profile can be handed to it (its Docker API takes a path on its own host)"
    )]
    NotLocal { endpoint: String },
    #[error("could not write the agent's seccomp profile in `{dir}`: {detail}")]
    Unwritable { dir: String, detail: String },
}

impl ProfileError {
    pub fn hints(&self) -> Vec<String> {
        match self {
            Self::NoBase | Self::Unreadable { .. } | Self::NotAProfile { .. } => vec![
                "install Podman's default profile (Debian and Fedora: the `containers-common` package, or `golang-github-containers-common` on Debian)".to_owned(),
            ],
            Self::NotLocal { .. } => vec![
                "run claude-bottle on Podman's host, with `DOCKER_HOST=unix://...` pointing at its socket".to_owned(),
            ],
            Self::Unwritable { .. } => vec![
                "run claude-bottle as the user whose Podman service it talks to (or as root)".to_owned(),
            ],
        }
    }
}

/// `base` with `clone`, `clone3` and `unshare` taken out of every rule and
/// given Docker's default rules for an unprivileged process instead:
/// `clone` and `unshare` without a namespace flag are allowed, with one
/// refused with EPERM; `clone3` (whose flags seccomp cannot see) fails with
/// ENOSYS, so the C library falls back to `clone`.
pub(crate) fn without_user_namespaces(base: &Value) -> Result<Value, String> {
    let mut profile = base.clone();
    let rules = profile
        .get_mut("syscalls")
        .and_then(Value::as_array_mut)
        .ok_or("it has no `syscalls` list")?;
    const CALLS: [&str; 3] = ["clone", "clone3", "unshare"];
    for rule in rules.iter_mut() {
        if let Some(names) = rule.get_mut("names").and_then(Value::as_array_mut) {
            names.retain(|n| !n.as_str().is_some_and(|n| CALLS.contains(&n)));
        }
    }
    rules.retain(|rule| {
        rule.get("names")
            .and_then(Value::as_array)
            .is_none_or(|names| !names.is_empty())
    });
    let masked = |value: u64, mask: u64| json!({ "index": 0, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ" });
    for (call, namespaces) in [("clone", CLONE_NAMESPACES), ("unshare", UNSHARE_NAMESPACES)] {
        rules.push(json!({ "names": [call], "action": "SCMP_ACT_ALLOW",
                           "args": [masked(0, namespaces)] }));
        // One rule per flag: a masked comparison tests equality, so "any
        // of these bits" is a rule for each bit. Without it a call with a
        // flag would get the profile's default action, whatever that is.
        for bit in (0..64).map(|i| 1u64 << i).filter(|b| namespaces & b != 0) {
            rules.push(
                json!({ "names": [call], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                               "args": [masked(bit, bit)] }),
            );
        }
    }
    rules.push(json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS }));
    Ok(profile)
}

/// Podman's default profile, read from the first of `candidates` that
/// exists, and that one's path.
pub(crate) fn podman_base<'a>(candidates: &[&'a str]) -> Result<(&'a str, Value), ProfileError> {
    let path = candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .ok_or(ProfileError::NoBase)?;
    let text = std::fs::read_to_string(path).map_err(|e| ProfileError::Unreadable {
        path: (*path).to_owned(),
        detail: e.to_string(),
    })?;
    let profile = serde_json::from_str(&text).map_err(|e| ProfileError::NotAProfile {
        path: (*path).to_owned(),
        detail: e.to_string(),
    })?;
    Ok((path, profile))
}

/// The derived profile, written for the service at `endpoint`; removed
/// with its directory when dropped.
#[derive(Debug)]
pub(crate) struct WrittenProfile {
    dir: tempfile::TempDir,
}

impl WrittenProfile {
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("seccomp.json")
    }

    /// The derived profile of Podman's default, written next to the socket
    /// of the service at `endpoint` (a `unix://` address).
    pub fn for_podman(endpoint: &str) -> Result<Self, ProfileError> {
        let not_local = || ProfileError::NotLocal {
            endpoint: endpoint.to_owned(),
        };
        let socket = endpoint.strip_prefix("unix://").ok_or_else(not_local)?;
        let dir = Path::new(socket).parent().ok_or_else(not_local)?;
        let (source, base) = podman_base(&PODMAN_PROFILES)?;
        let profile =
            without_user_namespaces(&base).map_err(|detail| ProfileError::NotAProfile {
                path: source.to_owned(),
                detail,
            })?;
        // A socket shared through its group may sit in a directory only
        // root writes to; that service is root's, and reads the temp dir.
        Self::write(dir, &profile)
            .or_else(|first| Self::write(&std::env::temp_dir(), &profile).map_err(|_| first))
    }

    fn write(dir: &Path, profile: &Value) -> Result<Self, ProfileError> {
        use std::os::unix::fs::PermissionsExt;
        let unwritable = |e: std::io::Error| ProfileError::Unwritable {
            dir: dir.display().to_string(),
            detail: e.to_string(),
        };
        let made = tempfile::Builder::new()
            .prefix("claude-bottle-seccomp-")
            .tempdir_in(dir)
            .map_err(unwritable)?;
        // The service may run as another user than this tool (root talking
        // to a rootless service): it must be able to read the file. The
        // directory's random name and owner keep anyone else from replacing it.
        std::fs::set_permissions(made.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(unwritable)?;
        let written = Self { dir: made };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(written.path())
            .map_err(unwritable)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(unwritable)?;
        let text = serde_json::to_vec(profile).map_err(|e| unwritable(e.into()))?;
        file.write_all(&text).map_err(unwritable)?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                { "names": ["read", "clone", "clone3", "unshare", "write"], "action": "SCMP_ACT_ALLOW" },
                { "names": ["unshare"], "action": "SCMP_ACT_ALLOW", "includes": { "caps": ["CAP_SYS_ADMIN"] } },
                { "names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }
            ]
        })
    }

    fn rules_naming(profile: &Value, call: &str) -> Vec<Value> {
        profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == call))
            .cloned()
            .collect()
    }

    #[test]
    fn the_three_calls_get_dockers_rules_and_nothing_else_changes() {
        let profile = without_user_namespaces(&base()).unwrap();
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
        let rules = profile["syscalls"].as_array().unwrap();
        assert_eq!(rules[0]["names"], json!(["read", "write"]));
        // The capability-gated rule had only `unshare`: it goes.
        assert_eq!(rules[1]["names"], json!(["bpf"]));
        let clone = rules_naming(&profile, "clone");
        // Allowed without a namespace flag; refused with each of the seven.
        assert_eq!(clone.len(), 8);
        assert_eq!(clone[0]["action"], "SCMP_ACT_ALLOW");
        assert_eq!(clone[0]["args"][0]["value"], json!(CLONE_NAMESPACES));
        assert_eq!(clone[0]["args"][0]["valueTwo"], json!(0));
        assert_eq!(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        let new_user = json!({ "index": 0, "value": 0x1000_0000u64, "valueTwo": 0x1000_0000u64, "op": "SCMP_CMP_MASKED_EQ" });
        assert!(
            clone[1..].iter().any(|r| r["args"][0] == new_user
                && r["action"] == "SCMP_ACT_ERRNO"
                && r["errnoRet"] == json!(EPERM)),
            "{clone:#?}"
        );
        let unshare = rules_naming(&profile, "unshare");
        // CLONE_NEWTIME too.
        assert_eq!(unshare.len(), 9);
        assert_eq!(unshare[0]["args"][0]["value"], json!(UNSHARE_NAMESPACES));
        assert!(
            unshare[1..].iter().any(|r| r["args"][0] == new_user),
            "{unshare:#?}"
        );
        let clone3 = rules_naming(&profile, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0]["errnoRet"], json!(ENOSYS));
    }

    #[test]
    fn a_profile_without_rules_is_refused() {
        assert!(without_user_namespaces(&json!({ "defaultAction": "SCMP_ACT_ALLOW" })).is_err());
    }

    #[test]
    fn a_missing_base_is_named() {
        let err = podman_base(&["/nonexistent/seccomp.json"]).unwrap_err();
        assert_eq!(err, ProfileError::NoBase);
        assert!(!err.hints().is_empty());
    }

    #[test]
    fn the_written_profile_is_readable_by_all_and_goes_when_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let written = WrittenProfile::write(dir.path(), &json!({ "syscalls": [] })).unwrap();
        let path = written.path();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let parent = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(parent.permissions().mode() & 0o777, 0o755);
        assert_eq!(
            serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()).unwrap(),
            json!({ "syscalls": [] })
        );
        drop(written);
        assert!(!path.exists());
    }

    #[test]
    fn a_service_not_on_a_local_socket_gets_no_profile() {
        let err = WrittenProfile::for_podman("tcp://10.0.0.1:2375").unwrap_err();
        assert!(matches!(err, ProfileError::NotLocal { .. }), "{err}");
    }
}
