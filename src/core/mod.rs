//! Backend-agnostic logic: everything about a session that does not depend on
//! how bottles are made real.

pub mod agent_env;
pub mod allowlist_change;
pub mod egress;
pub mod egress_log;
pub mod env;
pub mod host_git;
pub mod pipelock;
pub mod provision;
pub mod secret_handoff;
pub mod slug;
pub mod spec;
pub mod subnet;
pub mod work_home;
