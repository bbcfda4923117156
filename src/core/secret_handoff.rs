//! How Claude's secrets reach its process, whatever the engine, without
//! being part of any exec's or container's configuration (SPEC §4): an
//! engine may keep those on disk (Podman stores an exec session's
//! environment in its state database), but nothing keeps what flows over an
//! exec's stdin.
//!
//! Once the bottle is up, a non-TTY exec of [`writer_command`] reads
//! [`payload`] from its stdin into a file of a fresh directory on the
//! container's `/dev/shm`, a memory filesystem of the container's own
//! (under gVisor too). Claude's exec then runs [`launcher_command`], which
//! loads that file, removes the directory and runs `claude` with its
//! arguments, so the values live on only in Claude's environment.
//!
//! The launcher stays Claude's parent to write Claude's exit code to
//! [`exit_record`] in the bottle: Docker can lose an exec that runs for
//! minutes (its exec garbage collector takes one created while it scans for
//! a stale one), and the docker CLI then reports "No such exec instance"
//! instead of Claude's exit code.

use std::fmt::Write as _;

use secrecy::{ExposeSecret, SecretString};

use super::agent_env::EnvPair;
use crate::manifest::EnvName;

/// Where the handoff directories go: the container's shared-memory mount,
/// which Docker, Podman and gVisor give each container of its own.
pub const SHM: &str = "/dev/shm";

/// The handoff directory of the session `session` (an ID of letters and
/// digits); not a secret, so it may go on a command line.
pub fn handoff_dir(session: &str) -> String {
    format!("{SHM}/claude-bottle-env-{session}")
}

/// The writer's script. `$1` is the handoff directory. It refuses a
/// `/dev/shm` that is no mount of its own (it would be the container's
/// writable layer, on the engine's disk), and makes the directory itself:
/// `mkdir` fails on anything already there, a symlink included, so the
/// values go only into a directory this exec created, mode 0700. The file
/// in it is new, and `set -C` refuses to write one that is not.
const WRITER: &str = r#"set -eu
umask 077
shm=
while read -r _ mnt _; do
    [ "$mnt" = /dev/shm ] && shm=1
done < /proc/self/mounts
if [ -z "$shm" ]; then
    echo "/dev/shm is not a mount of its own in the bottle" >&2
    exit 3
fi
mkdir -- "$1"
set -C
cat > "$1/env""#;

/// The file in the bottle that the launcher writes Claude's exit code to,
/// for the session `session`.
pub fn exit_record(session: &str) -> String {
    format!("/tmp/claude-bottle-exit-{session}")
}

/// Claude's exit code as [`exit_record`] holds it.
pub fn parse_exit_record(text: &str) -> Option<i32> {
    text.trim()
        .parse()
        .ok()
        .filter(|code| (0..=255).contains(code))
}

/// The launcher's script. `$1` is the exit record, `$2` the handoff
/// directory (empty: no handoff), the rest Claude's command line. The
/// payload's assignments are exported as they are read; the directory goes
/// before Claude starts. It keeps no shell variable of its own: the payload
/// may set any name, and only the positional parameters and functions are
/// out of its reach. While Claude runs, a signal to the terminal's process
/// group (Ctrl-C outside raw mode) is Claude's to act on: the launcher
/// catches it, which leaves Claude's own handling as it was, and records the
/// code Claude ends with.
const LAUNCHER: &str = r#"if [ -n "$2" ]; then
    . "$2/env" && rm -rf -- "$2" || {
        echo "claude-bottle: could not load Claude's environment from $2" >&2
        exit 125
    }
fi
trap : INT QUIT TERM
claude_bottle_run() { shift 2; "$@"; }
claude_bottle_run "$@"
set -- "$?" "$1"
{ echo "$1" > "$2"; } 2>/dev/null
exit "$1""#;

/// `$0` of both scripts, for their error messages.
const SCRIPT_NAME: &str = "claude-bottle";

/// The writer's command line: it reads the payload from stdin into the
/// handoff directory `dir`.
pub fn writer_command(dir: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        WRITER.into(),
        SCRIPT_NAME.into(),
        dir.into(),
    ]
}

/// The command line that loads the handoff directory `handoff` (if any),
/// runs `command` (Claude's, from `claude` on) and writes its exit code to
/// `record` (see [`exit_record`]).
pub fn launcher_command(
    record: &str,
    handoff: Option<&str>,
    command: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        LAUNCHER.into(),
        SCRIPT_NAME.into(),
        record.into(),
        handoff.unwrap_or_default().into(),
    ];
    argv.extend(command);
    argv
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandoffError {
    #[error("`{name}` is not a valid environment variable name")]
    BadName { name: String },
    #[error("the value of `{name}` holds a NUL byte, which no environment variable can hold")]
    Nul { name: String },
}

impl crate::diagnostic::Diagnostic for HandoffError {
    fn hints(&self) -> Vec<String> {
        match self {
            Self::BadName { .. } => {
                vec!["names are letters, digits and `_`, and do not start with a digit".to_owned()]
            }
            Self::Nul { name } => vec![format!("give `{name}` a value without NUL bytes")],
        }
    }
}

/// The file the launcher sources: one `export NAME='value'` line per pair.
/// Within single quotes the shell takes every byte as it is but `'`, which
/// is written as `'\''`, so any value (newlines, `"`, `$`, `\`) arrives
/// byte for byte.
pub fn payload(pairs: &[EnvPair]) -> Result<SecretString, HandoffError> {
    let mut out = String::new();
    for pair in pairs {
        if EnvName::parse(&pair.name).is_none() {
            return Err(HandoffError::BadName {
                name: pair.name.clone(),
            });
        }
        let value = pair.value.expose_secret();
        if value.contains('\0') {
            return Err(HandoffError::Nul {
                name: pair.name.clone(),
            });
        }
        let _ = writeln!(
            out,
            "export {}='{}'",
            pair.name,
            value.replace('\'', r"'\''")
        );
    }
    Ok(SecretString::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A value with each byte the shell could take for syntax.
    const AWKWARD: &str = "a'b\"c$HOME `id` \\n\\\\ $(id)\nline two\t'\n'' end\\";

    fn pairs() -> Vec<EnvPair> {
        vec![
            EnvPair::new("PLAIN", "value"),
            EnvPair::new("AWKWARD", AWKWARD),
            EnvPair::new("EMPTY", ""),
            EnvPair::new("_UNI", "é €"),
        ]
    }

    /// Names a shell script could be using for itself.
    fn shell_names(elsewhere: &str) -> Vec<EnvPair> {
        vec![
            EnvPair::new("d", elsewhere),
            EnvPair::new("dir", elsewhere),
            EnvPair::new("IFS", "/"),
            EnvPair::new("OPTIND", "9"),
        ]
    }

    #[test]
    fn the_payload_is_one_quoted_export_per_pair() {
        let text = payload(&pairs()).unwrap();
        assert_eq!(
            text.expose_secret(),
            "export PLAIN='value'\n\
             export AWKWARD='a'\\''b\"c$HOME `id` \\n\\\\ $(id)\nline two\t'\\''\n'\\'''\\'' end\\'\n\
             export EMPTY=''\n\
             export _UNI='é €'\n"
        );
    }

    #[test]
    fn a_bad_name_or_a_nul_is_refused() {
        for name in ["A;B", "1A", "", "A B", "A=B"] {
            assert_eq!(
                payload(&[EnvPair::new(name, "x")]).unwrap_err(),
                HandoffError::BadName { name: name.into() }
            );
        }
        let err = payload(&[EnvPair::new("T", "a\0b")]).unwrap_err();
        assert_eq!(err, HandoffError::Nul { name: "T".into() });
        assert!(!err.to_string().contains("a\0b"));
    }

    fn sh(argv: &[String], stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A script that stops early reads none of it: a broken pipe here is
        // its exit status's to tell.
        let _ = child.stdin.take().unwrap().write_all(stdin);
        child.wait_with_output().unwrap()
    }

    /// The writer, reading `table` for its mount table, and the handoff
    /// directory it writes, in `shm` (standing in for `/dev/shm`).
    fn writer_in(shm: &std::path::Path, table: &str) -> (Vec<String>, String) {
        let dir = shm.join("claude-bottle-env-s1").display().to_string();
        let mounts = shm.join("mounts");
        std::fs::write(&mounts, table).unwrap();
        let mut writer = writer_command(&dir);
        writer[2] = writer[2].replace("/proc/self/mounts", &mounts.display().to_string());
        (writer, dir)
    }

    /// The writer and the handoff directory, with `/dev/shm` mounted.
    fn scripts_in(shm: &std::path::Path) -> (Vec<String>, String) {
        writer_in(shm, "overlay / overlay rw 0 0\nshm /dev/shm tmpfs rw 0 0\n")
    }

    #[test]
    fn the_launcher_gives_the_command_each_value_byte_for_byte_and_removes_the_file() {
        let shm = tempfile::tempdir().unwrap();
        let (writer, dir) = scripts_in(shm.path());
        let text = payload(&pairs()).unwrap();
        let wrote = sh(&writer, text.expose_secret().as_bytes());
        assert!(wrote.status.success(), "{wrote:?}");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&format!("{dir}/env")), 0o600);

        let printenv = [
            "sh",
            "-c",
            "printf '%s\\0' \"$AWKWARD\" \"$PLAIN\" \"$EMPTY\" \"$_UNI\" \"$0\" \"$@\" && env | grep -c '^AWKWARD='",
            "zero",
            "one arg",
            "$two",
        ];
        let ran = sh(
            &launcher_command(
                &record_in(shm.path()),
                Some(&dir),
                printenv.iter().map(|s| (*s).to_owned()),
            ),
            b"",
        );
        assert!(ran.status.success(), "{ran:?}");
        let out = String::from_utf8(ran.stdout).unwrap();
        let fields: Vec<&str> = out.split('\0').collect();
        assert_eq!(
            fields,
            [
                AWKWARD, "value", "", "é €", "zero", "one arg", "$two", "1\n"
            ],
            "values, and the command's own arguments, are exact; the values are exported"
        );
        assert!(
            !std::path::Path::new(&dir).exists(),
            "the directory is gone"
        );
    }

    #[test]
    fn a_secret_named_like_a_shell_variable_does_not_steer_the_launcher() {
        let shm = tempfile::tempdir().unwrap();
        let elsewhere = shm.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("keep"), "x").unwrap();
        let (writer, dir) = scripts_in(shm.path());
        let text = payload(&shell_names(&elsewhere.display().to_string())).unwrap();
        assert!(
            sh(&writer, text.expose_secret().as_bytes())
                .status
                .success()
        );
        // `env` itself, not a shell: a shell takes no IFS from its environment.
        let ran = sh(
            &launcher_command(&record_in(shm.path()), Some(&dir), ["env".to_owned()]),
            b"",
        );
        assert!(ran.status.success(), "{ran:?}");
        let env = String::from_utf8(ran.stdout).unwrap();
        let lines: Vec<&str> = env.lines().collect();
        let d = format!("d={}", elsewhere.display());
        for line in [d.as_str(), "IFS=/", "OPTIND=9"] {
            assert!(lines.contains(&line), "{line} in {lines:?}");
        }
        assert!(
            !std::path::Path::new(&dir).exists(),
            "its own directory is gone"
        );
        assert!(elsewhere.join("keep").exists(), "and nothing else");
    }

    /// The exit record, in `dir` (standing in for the bottle's `/tmp`).
    fn record_in(dir: &std::path::Path) -> String {
        dir.join("exit").display().to_string()
    }

    #[test]
    fn the_launcher_passes_and_records_the_exit_code_and_refuses_a_missing_file() {
        let shm = tempfile::tempdir().unwrap();
        let (writer, dir) = scripts_in(shm.path());
        let record = record_in(shm.path());
        assert!(sh(&writer, b"export A='1'\n").status.success());
        let cmd = ["sh", "-c", "exit 7"].map(str::to_owned);
        assert_eq!(
            sh(&launcher_command(&record, Some(&dir), cmd.clone()), b"")
                .status
                .code(),
            Some(7)
        );
        let recorded = std::fs::read_to_string(&record).unwrap();
        assert_eq!(parse_exit_record(&recorded), Some(7), "{recorded:?}");
        std::fs::remove_file(&record).unwrap();
        // Loaded once: the second run finds nothing, and does not run the command.
        let again = sh(&launcher_command(&record, Some(&dir), cmd), b"");
        assert_ne!(again.status.code(), Some(7), "{again:?}");
        assert!(!again.status.success());
        assert!(!std::path::Path::new(&record).exists(), "nothing ran");
    }

    #[test]
    fn without_a_handoff_the_launcher_runs_the_command_and_records_its_code() {
        let tmp = tempfile::tempdir().unwrap();
        let record = record_in(tmp.path());
        let cmd = ["sh", "-c", "printf '%s' \"$*\"; exit 3", "zero", "one two"].map(str::to_owned);
        let ran = sh(&launcher_command(&record, None, cmd), b"");
        assert_eq!(ran.status.code(), Some(3), "{ran:?}");
        assert_eq!(String::from_utf8_lossy(&ran.stdout), "one two");
        let recorded = std::fs::read_to_string(&record).unwrap();
        assert_eq!(parse_exit_record(&recorded), Some(3));
    }

    #[test]
    fn a_ctrl_c_to_the_terminal_group_is_claudes_and_its_code_is_recorded() {
        use std::os::unix::process::CommandExt;
        let tmp = tempfile::tempdir().unwrap();
        let record = record_in(tmp.path());
        let ready = tmp.path().join("ready");
        // Stands in for Claude: it handles SIGINT itself and ends with 5.
        let script = format!(
            "trap 'exit 5' INT; : > '{}'; while :; do sleep 0.05; done",
            ready.display()
        );
        let argv = launcher_command(&record, None, ["sh", "-c", &script].map(str::to_owned));
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .process_group(0)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ready.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the command never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // What a terminal does with Ctrl-C: SIGINT to the whole group.
        let group = nix::unistd::Pid::from_raw(-i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGINT).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(5),
            "the launcher outlived the signal: {status:?}"
        );
        let recorded = std::fs::read_to_string(&record).unwrap();
        assert_eq!(parse_exit_record(&recorded), Some(5));
    }

    #[test]
    fn an_exit_record_is_a_code_from_0_to_255() {
        assert_eq!(parse_exit_record("0\n"), Some(0));
        assert_eq!(parse_exit_record("130\n"), Some(130));
        for bad in ["", "x", "256", "-1", "1 2"] {
            assert_eq!(parse_exit_record(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_writer_refuses_a_path_that_exists_even_as_a_symlink() {
        let shm = tempfile::tempdir().unwrap();
        let (writer, dir) = scripts_in(shm.path());
        let elsewhere = shm.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
        let wrote = sh(&writer, b"export A='secret'\n");
        assert!(!wrote.status.success());
        assert!(
            !elsewhere.join("env").exists(),
            "nothing is written through the link"
        );
        std::fs::remove_file(&dir).unwrap();
        // A dangling link, and a directory made before, are refused too.
        std::os::unix::fs::symlink(shm.path().join("nowhere"), &dir).unwrap();
        assert!(!sh(&writer, b"x").status.success());
        assert!(!shm.path().join("nowhere").exists());
        std::fs::remove_file(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        assert!(!sh(&writer, b"x").status.success());
        assert!(!std::path::Path::new(&dir).join("env").exists());
    }

    #[test]
    fn the_writer_refuses_a_shm_that_is_no_mount() {
        let shm = tempfile::tempdir().unwrap();
        let (writer, dir) = writer_in(
            shm.path(),
            "overlay / overlay rw 0 0\nproc /proc proc rw 0 0\n",
        );
        let wrote = sh(&writer, b"x");
        assert_eq!(wrote.status.code(), Some(3), "{wrote:?}");
        assert!(String::from_utf8_lossy(&wrote.stderr).contains("/dev/shm is not a mount"));
        assert!(!std::path::Path::new(&dir).exists());
        // The control: with the mount, the same writer goes ahead.
        let (writer, dir) = scripts_in(shm.path());
        assert!(sh(&writer, b"x").status.success());
        assert!(std::path::Path::new(&dir).join("env").exists());
    }
}
