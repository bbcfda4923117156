//! The slug: the agent name made safe for resource names.

/// Lowercases `agent`, replaces every run of characters outside `[a-z0-9]` with
/// `-`, and trims leading and trailing `-`. Falls back to `agent` when nothing
/// is left, so a resource name is never empty.
pub fn slugify(agent: &str) -> String {
    let mut out = String::with_capacity(agent.len());
    for c in agent.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "agent".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::slugify;

    #[test]
    fn slug_rules() {
        assert_eq!(slugify("Reviewer"), "reviewer");
        assert_eq!(slugify("my agent!!v2"), "my-agent-v2");
        assert_eq!(slugify("--x__y--"), "x-y");
        assert_eq!(slugify("Ünïcode"), "n-code");
        assert_eq!(slugify("!!!"), "agent");
    }
}
