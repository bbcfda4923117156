//! Bringing the agent's work home (issue 8 §1): at the end of a session,
//! before anything is removed, the branches of the bottle's repository and
//! one commit of its uncommitted work are fetched into the host repository
//! under `refs/heads/bottle/<name>/...`.
//!
//! - [`bottle`]: the commands run in the bottle (any engine runs them);
//! - [`refs`]: what the bottle said, checked; what comes home, and where;
//! - [`host`]: the host repository, through `git` under a fixed config;
//! - [`kept`]: the record of a bottle kept because its work did not come home;
//! - [`saved`]: without `--cwd`, the repositories the agent made, saved as
//!   bundles under the state directory.

pub mod bottle;
pub mod host;
pub mod kept;
pub mod refs;
pub mod saved;
