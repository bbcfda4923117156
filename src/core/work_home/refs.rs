//! The pure part of bringing the work home: reading what the bottle says its
//! repository holds (untrusted, so bounded and checked), deciding which refs
//! the host gets and under which free names, and the summary.

use std::collections::BTreeMap;
use std::fmt;

/// The most bytes of the bottle's listing that are read.
pub const LISTING_LIMIT: usize = 1024 * 1024;
/// The most branches brought home from one bottle.
pub const BRANCH_LIMIT: usize = 1000;
/// The longest branch name (after `refs/heads/`) brought home.
pub const BRANCH_NAME_LIMIT: usize = 200;
/// Where every ref brought home goes: `refs/heads/bottle/<name>/...`.
pub const NAMESPACE_ROOT: &str = "bottle";
/// The last name of the commit holding the uncommitted work.
pub const UNCOMMITTED: &str = "uncommitted";

/// A git object name: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(String);

impl ObjectId {
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (hex && matches!(text.len(), 40 | 64)).then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `name` is a full ref name `git check-ref-format` accepts (without
/// `--allow-onelevel` or `--refspec-pattern`), by the rules of its manual.
pub fn is_valid_ref_name(name: &str) -> bool {
    if name.is_empty()
        || name == "@"
        || name.starts_with('/')
        || name.ends_with('/')
        || name.ends_with('.')
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || !name.contains('/')
    {
        return false;
    }
    let bad_char = |c: char| {
        c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\' | '\x7f')
    };
    if name.chars().any(bad_char) {
        return false;
    }
    name.split('/')
        .all(|part| !part.is_empty() && !part.starts_with('.') && !part.ends_with(".lock"))
}

/// One branch of the bottle's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BottleBranch {
    /// The name after `refs/heads/`.
    pub name: String,
    pub tip: ObjectId,
}

/// What the bottle's repository holds, as its listing said, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BottleWork {
    pub branches: Vec<BottleBranch>,
    /// The commit of the uncommitted work, when there was any.
    pub uncommitted: Option<ObjectId>,
    /// The branch the bottle's `HEAD` is on, when it is on one of
    /// [`Self::branches`].
    pub head: Option<String>,
    /// Lines that were left out, and why, for the user to read.
    pub skipped: Vec<String>,
}

/// The bottle's listing could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    #[error("the bottle's repository listing is larger than {LISTING_LIMIT} bytes")]
    TooLarge,
    #[error("the bottle's repository has more than {BRANCH_LIMIT} branches")]
    TooManyBranches,
    #[error("the bottle's repository listing has a malformed line: {0:?}")]
    Malformed(String),
}

impl BottleWork {
    /// Reads the listing the bottle printed: lines `branch <oid> <type>
    /// <refname>`, at most one `uncommitted <oid>` and at most one `head
    /// <refname>`; anything else is malformed. A branch that is not a commit, or whose name git would
    /// refuse or is too long, is skipped and said so.
    pub fn parse(listing: &str) -> Result<Self, ListingError> {
        if listing.len() > LISTING_LIMIT {
            return Err(ListingError::TooLarge);
        }
        let malformed = |line: &str| ListingError::Malformed(line.chars().take(120).collect());
        let mut work = Self::default();
        let mut head: Option<String> = None;
        for line in listing.lines().filter(|l| !l.is_empty()) {
            let mut fields = line.splitn(4, ' ');
            match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some("branch"), Some(oid), Some(kind), Some(refname)) => {
                    let tip = ObjectId::parse(oid).ok_or_else(|| malformed(line))?;
                    let shown: String = refname.escape_debug().take(120).collect();
                    let Some(name) = refname.strip_prefix("refs/heads/") else {
                        return Err(malformed(line));
                    };
                    if kind != "commit" {
                        work.skipped
                            .push(format!("`{shown}` points at a {kind}, not a commit"));
                    } else if name.len() > BRANCH_NAME_LIMIT {
                        work.skipped.push(format!(
                            "`{shown}` has a name longer than {BRANCH_NAME_LIMIT} bytes"
                        ));
                    } else if !is_valid_ref_name(refname) {
                        work.skipped
                            .push(format!("`{shown}` is not a valid branch name"));
                    } else {
                        if work.branches.len() == BRANCH_LIMIT {
                            return Err(ListingError::TooManyBranches);
                        }
                        work.branches.push(BottleBranch {
                            name: name.to_owned(),
                            tip,
                        });
                    }
                }
                (Some("uncommitted"), Some(oid), None, None) if work.uncommitted.is_none() => {
                    work.uncommitted = Some(ObjectId::parse(oid).ok_or_else(|| malformed(line))?);
                }
                (Some("head"), Some(refname), None, None) if head.is_none() => {
                    head = Some(refname.to_owned());
                }
                _ => return Err(malformed(line)),
            }
        }
        // Only a branch that is listed, and so checked, names the `HEAD`.
        work.head = head
            .as_deref()
            .and_then(|r| r.strip_prefix("refs/heads/"))
            .filter(|name| work.branches.iter().any(|b| b.name == *name))
            .map(str::to_owned);
        Ok(work)
    }
}

/// What a ref brought home holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A branch of the bottle, by its name there.
    Branch(String),
    /// The commit of the uncommitted work.
    Uncommitted,
}

impl Source {
    /// Its full ref name in the bottle's repository.
    pub fn in_bottle(&self) -> String {
        match self {
            Self::Branch(name) => format!("refs/heads/{name}"),
            Self::Uncommitted => super::bottle::UNCOMMITTED_REF.to_owned(),
        }
    }
}

/// One ref to write in the host repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRef {
    pub source: Source,
    pub tip: ObjectId,
    /// The full name, `refs/heads/bottle/<name>/<branch>`.
    pub target: String,
}

impl PlannedRef {
    /// The name as the user types it: without `refs/heads/`.
    pub fn short(&self) -> &str {
        self.target
            .strip_prefix("refs/heads/")
            .unwrap_or(&self.target)
    }
}

/// Which refs the host gets, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPlan {
    /// `bottle/<name>` or, when that was taken, the free one chosen.
    pub namespace: String,
    /// The namespace wanted, when it was taken and another was chosen.
    pub taken: Option<String>,
    pub refs: Vec<PlannedRef>,
}

impl ImportPlan {
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }
}

/// No ref can be written for this bottle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("`{0}` is not a name git accepts for a branch namespace")]
    BadName(String),
    #[error(
        "the host repository has a branch named `{NAMESPACE_ROOT}`, so no `{NAMESPACE_ROOT}/...` branch can be made"
    )]
    RootTaken,
}

/// The bottle's name in ref names: the container name without its leading
/// `claude-bottle-`.
pub fn bottle_name(container: &str) -> &str {
    container
        .strip_prefix("claude-bottle-")
        .unwrap_or(container)
}

/// Decides what comes home: every branch whose tip is not the tip of the
/// host's branch of the same name, and the uncommitted work, under
/// `bottle/<name>/` or, when anything exists there already (an earlier
/// session of the same name), under the first free `bottle/<name>-<n>/`.
/// `host_branches` maps the host's branch names (after `refs/heads/`) to
/// their tips; every one of them counts as taken.
pub fn plan(
    name: &str,
    work: &BottleWork,
    host_branches: &BTreeMap<String, ObjectId>,
) -> Result<ImportPlan, PlanError> {
    if host_branches.contains_key(NAMESPACE_ROOT) {
        return Err(PlanError::RootTaken);
    }
    let wanted = format!("{NAMESPACE_ROOT}/{name}");
    if !is_valid_ref_name(&format!("refs/heads/{wanted}/x")) {
        return Err(PlanError::BadName(wanted));
    }
    let taken = |namespace: &str| {
        let dir = format!("{namespace}/");
        host_branches
            .keys()
            .any(|b| b == namespace || b.starts_with(&dir))
    };
    let namespace = if taken(&wanted) {
        (2u32..)
            .map(|n| format!("{wanted}-{n}"))
            .find(|candidate| !taken(candidate))
            .unwrap_or_else(|| wanted.clone())
    } else {
        wanted.clone()
    };
    Ok(ImportPlan {
        refs: planned_refs(&format!("refs/heads/{namespace}/"), work, host_branches),
        taken: (namespace != wanted).then_some(wanted),
        namespace,
    })
}

/// The refs of a bundle that carries the bottle's work by itself (no host
/// repository to bring it into): every branch under its own name, and the
/// uncommitted work as one more branch, `uncommitted` unless that name is a
/// branch's. Its `namespace` is empty.
pub fn bundle_plan(work: &BottleWork) -> ImportPlan {
    ImportPlan {
        namespace: String::new(),
        taken: None,
        refs: planned_refs("refs/heads/", work, &BTreeMap::new()),
    }
}

/// Every branch of `work` whose tip is not the tip of its namesake in
/// `host_branches`, and the uncommitted work, as refs named `<prefix><name>`.
fn planned_refs(
    prefix: &str,
    work: &BottleWork,
    host_branches: &BTreeMap<String, ObjectId>,
) -> Vec<PlannedRef> {
    let mut refs: Vec<PlannedRef> = work
        .branches
        .iter()
        .filter(|b| host_branches.get(&b.name) != Some(&b.tip))
        .map(|b| PlannedRef {
            source: Source::Branch(b.name.clone()),
            tip: b.tip.clone(),
            target: format!("{prefix}{}", b.name),
        })
        .collect();
    if let Some(tip) = &work.uncommitted {
        // A bottle branch may itself be called `uncommitted` (or hold it as
        // a directory): the commit of the uncommitted work steps aside.
        let clashes = |last: &str| {
            let dir = format!("{last}/");
            work.branches
                .iter()
                .any(|b| b.name == last || b.name.starts_with(&dir))
        };
        let last = std::iter::once(UNCOMMITTED.to_owned())
            .chain((2u32..).map(|n| format!("{UNCOMMITTED}-{n}")))
            .find(|l| !clashes(l))
            .unwrap_or_else(|| UNCOMMITTED.to_owned());
        refs.push(PlannedRef {
            source: Source::Uncommitted,
            tip: tip.clone(),
            target: format!("{prefix}{last}"),
        });
    }
    refs
}

/// One ref written, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub planned: PlannedRef,
    /// Commits on it that none of the host's branches had; for the
    /// uncommitted work, only its own commit (its parents are the bottle's
    /// branches, counted there).
    pub new_commits: u64,
    /// The host branch to compare it with: its namesake, else the host's
    /// `HEAD` branch.
    pub compare_with: Option<String>,
}

/// What was brought home, shown on stderr after the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub repo: String,
    pub taken: Option<String>,
    pub namespace: String,
    pub written: Vec<Written>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(taken) = &self.taken {
            writeln!(
                f,
                "`{taken}/` was taken by an earlier session, so the work went to `{}/`",
                self.namespace
            )?;
        }
        write!(f, "brought the bottle's work home to {}:", self.repo)?;
        let width = self
            .written
            .iter()
            .map(|w| w.planned.short().len())
            .max()
            .unwrap_or(0);
        for w in &self.written {
            let short = w.planned.short();
            let count = match w.new_commits {
                1 => "1 new commit".to_owned(),
                n => format!("{n} new commits"),
            };
            let look = match (&w.planned.source, &w.compare_with) {
                (Source::Uncommitted, _) => format!("git show --stat {short}"),
                (Source::Branch(_), Some(base)) => format!("git log {base}..{short}"),
                (Source::Branch(_), None) => format!("git log {short}"),
            };
            write!(f, "\n  {short:width$}  {count}; see `{look}`")?;
        }
        if let Some(w) = self
            .written
            .iter()
            .find(|w| w.planned.source == Source::Uncommitted)
        {
            write!(
                f,
                "\n  the uncommitted work as a diff: `git diff {0}~1 {0}`",
                w.planned.short()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(c: char) -> ObjectId {
        ObjectId::parse(&c.to_string().repeat(40)).unwrap()
    }

    fn work(branches: &[(&str, char)], uncommitted: Option<char>) -> BottleWork {
        BottleWork {
            branches: branches
                .iter()
                .map(|(n, c)| BottleBranch {
                    name: (*n).to_owned(),
                    tip: oid(*c),
                })
                .collect(),
            uncommitted: uncommitted.map(oid),
            head: None,
            skipped: vec![],
        }
    }

    fn host(branches: &[(&str, char)]) -> BTreeMap<String, ObjectId> {
        branches
            .iter()
            .map(|(n, c)| ((*n).to_owned(), oid(*c)))
            .collect()
    }

    fn targets(plan: &ImportPlan) -> Vec<&str> {
        plan.refs.iter().map(|r| r.target.as_str()).collect()
    }

    #[test]
    fn ref_names_follow_check_ref_format() {
        for good in [
            "refs/heads/main",
            "refs/heads/feature/x-1",
            "refs/heads/a.b",
            "refs/heads/ü",
        ] {
            assert!(is_valid_ref_name(good), "{good}");
        }
        for bad in [
            "main",
            "refs/heads/",
            "refs/heads/a..b",
            "refs/heads/.hidden",
            "refs/heads/x.lock",
            "refs/heads/a b",
            "refs/heads/a~1",
            "refs/heads/a^",
            "refs/heads/a:b",
            "refs/heads/a?",
            "refs/heads/a*",
            "refs/heads/a[",
            "refs/heads/a\\b",
            "refs/heads/a@{1}",
            "refs/heads/a//b",
            "refs/heads/a.",
            "refs/heads/a\nb",
            "refs/heads/a\x7f",
            "/refs/heads/a",
            "@",
        ] {
            assert!(!is_valid_ref_name(bad), "{bad:?}");
        }
    }

    /// The rules agree with git's own `check-ref-format` on every name of
    /// the table above and a few more.
    #[test]
    fn ref_names_agree_with_git() {
        let names = [
            "refs/heads/main",
            "refs/heads/x.lock",
            "refs/heads/a..b",
            "refs/heads/.a",
            "refs/heads/a/.b",
            "refs/heads/a@{b",
            "refs/heads/a@b",
            "refs/heads/-x",
            "refs/heads/a b",
            "refs/heads/a.",
            "refs/heads/ü",
            "refs/heads/a//b",
        ];
        for name in names {
            let Ok(out) = std::process::Command::new("git")
                .args(["check-ref-format", name])
                .output()
            else {
                panic!("git is needed for this test");
            };
            assert_eq!(is_valid_ref_name(name), out.status.success(), "{name}");
        }
    }

    #[test]
    fn the_listing_is_parsed_and_bad_branches_are_skipped_with_a_reason() {
        let a = "a".repeat(40);
        let listing = format!(
            "branch {a} commit refs/heads/main\n\
             branch {a} tree refs/heads/odd\n\
             branch {a} commit refs/heads/x.lock\n\
             uncommitted {b}\n",
            b = "b".repeat(64)
        );
        let work = BottleWork::parse(&listing).unwrap();
        assert_eq!(
            work.branches,
            [BottleBranch {
                name: "main".into(),
                tip: oid('a')
            }]
        );
        assert_eq!(work.uncommitted.unwrap().as_str(), "b".repeat(64));
        assert_eq!(
            work.skipped,
            [
                "`refs/heads/odd` points at a tree, not a commit",
                "`refs/heads/x.lock` is not a valid branch name"
            ]
        );
    }

    #[test]
    fn the_head_is_named_only_when_it_is_a_listed_branch() {
        let a = "a".repeat(40);
        let on = |head: &str| {
            BottleWork::parse(&format!(
                "head {head}\nbranch {a} commit refs/heads/main\nbranch {a} tree refs/heads/odd\n"
            ))
            .unwrap()
            .head
        };
        assert_eq!(on("refs/heads/main").as_deref(), Some("main"));
        assert_eq!(on("refs/heads/odd"), None);
        assert_eq!(on("refs/heads/gone"), None);
        assert!(BottleWork::parse("head a\nhead b\n").is_err());
    }

    #[test]
    fn a_bundle_plan_names_every_branch_plainly_and_the_uncommitted_work_beside_them() {
        let p = bundle_plan(&work(&[("main", 'a'), ("uncommitted", 'b')], Some('c')));
        assert_eq!(p.namespace, "");
        assert_eq!(
            targets(&p),
            [
                "refs/heads/main",
                "refs/heads/uncommitted",
                "refs/heads/uncommitted-2"
            ]
        );
    }

    #[test]
    fn a_listing_that_is_not_ours_is_refused() {
        let a = "a".repeat(40);
        for bad in [
            format!("branch {a} commit refs/tags/v1"),
            format!("branch {} commit refs/heads/main", "A".repeat(40)),
            format!("branch {} commit refs/heads/main", "a".repeat(41)),
            format!("uncommitted {a}\nuncommitted {a}"),
            "rm -rf /".to_owned(),
        ] {
            assert!(
                matches!(BottleWork::parse(&bad), Err(ListingError::Malformed(_))),
                "{bad}"
            );
        }
        let huge = "x".repeat(LISTING_LIMIT + 1);
        assert_eq!(BottleWork::parse(&huge), Err(ListingError::TooLarge));
        let many: String = (0..=BRANCH_LIMIT)
            .map(|i| format!("branch {a} commit refs/heads/b{i}\n"))
            .collect();
        assert_eq!(BottleWork::parse(&many), Err(ListingError::TooManyBranches));
    }

    #[test]
    fn only_branches_that_moved_come_home_and_the_uncommitted_work_with_them() {
        let plan = plan(
            "reviewer-2",
            &work(&[("main", 'a'), ("feature", 'b'), ("same", 'c')], Some('d')),
            &host(&[("main", 'e'), ("same", 'c')]),
        )
        .unwrap();
        assert_eq!(plan.taken, None);
        assert_eq!(plan.namespace, "bottle/reviewer-2");
        assert_eq!(
            targets(&plan),
            [
                "refs/heads/bottle/reviewer-2/main",
                "refs/heads/bottle/reviewer-2/feature",
                "refs/heads/bottle/reviewer-2/uncommitted"
            ]
        );
        assert_eq!(plan.refs[2].tip, oid('d'));
    }

    #[test]
    fn a_taken_namespace_is_never_reused_and_the_next_free_one_is_said() {
        let plan = plan(
            "r",
            &work(&[("main", 'a')], None),
            &host(&[
                ("bottle/r/main", 'a'),
                ("bottle/r-2/x/y", 'b'),
                ("bottle/r-3x", 'c'),
            ]),
        )
        .unwrap();
        assert_eq!(plan.taken.as_deref(), Some("bottle/r"));
        assert_eq!(targets(&plan), ["refs/heads/bottle/r-3/main"]);
    }

    #[test]
    fn a_bottle_branch_named_uncommitted_keeps_its_name() {
        let plan = plan(
            "r",
            &work(&[("uncommitted", 'a'), ("uncommitted-2/x", 'b')], Some('c')),
            &host(&[]),
        )
        .unwrap();
        assert_eq!(
            targets(&plan),
            [
                "refs/heads/bottle/r/uncommitted",
                "refs/heads/bottle/r/uncommitted-2/x",
                "refs/heads/bottle/r/uncommitted-3"
            ]
        );
    }

    #[test]
    fn nothing_moved_and_nothing_uncommitted_is_an_empty_plan() {
        let plan = plan("r", &work(&[("main", 'a')], None), &host(&[("main", 'a')])).unwrap();
        assert!(plan.is_empty());
    }

    #[test]
    fn names_git_would_refuse_and_a_branch_called_bottle_are_errors() {
        let w = work(&[("main", 'a')], None);
        assert_eq!(
            plan("x.lock", &w, &host(&[])),
            Err(PlanError::BadName("bottle/x.lock".into()))
        );
        assert_eq!(
            plan("r", &w, &host(&[("bottle", 'a')])),
            Err(PlanError::RootTaken)
        );
    }

    #[test]
    fn the_bottle_name_drops_the_container_prefix() {
        assert_eq!(bottle_name("claude-bottle-reviewer-2"), "reviewer-2");
        assert_eq!(bottle_name("other"), "other");
    }

    #[test]
    fn the_summary_names_each_ref_its_commits_and_how_to_look() {
        let p = plan(
            "r",
            &work(&[("main", 'a'), ("topic", 'b')], Some('c')),
            &host(&[("bottle/r/old", 'd'), ("main", 'e')]),
        )
        .unwrap();
        let written = p
            .refs
            .iter()
            .zip([(3, Some("main")), (1, Some("main")), (1, None)])
            .map(|(r, (n, base))| Written {
                planned: r.clone(),
                new_commits: n,
                compare_with: base.map(str::to_owned),
            })
            .collect();
        let summary = Summary {
            repo: "/src/app".into(),
            taken: p.taken.clone(),
            namespace: p.namespace.clone(),
            written,
        };
        insta::assert_snapshot!(summary.to_string(), @r"
        `bottle/r/` was taken by an earlier session, so the work went to `bottle/r-2/`
        brought the bottle's work home to /src/app:
          bottle/r-2/main         3 new commits; see `git log main..bottle/r-2/main`
          bottle/r-2/topic        1 new commit; see `git log main..bottle/r-2/topic`
          bottle/r-2/uncommitted  1 new commit; see `git show --stat bottle/r-2/uncommitted`
          the uncommitted work as a diff: `git diff bottle/r-2/uncommitted~1 bottle/r-2/uncommitted`
        ");
    }
}
