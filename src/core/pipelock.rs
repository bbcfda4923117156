//! The pipelock 2.3.0 config generated from an [`EgressPolicy`].

use crate::core::egress::EgressPolicy;

/// Renders the pipelock YAML for `policy`.
pub fn render(policy: &EgressPolicy) -> String {
    let _ = policy;
    String::new() // placeholder until the generator lands
}
