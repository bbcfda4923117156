//! The table of bad manifests, shared by `manifest.rs` (the loader refuses
//! each, naming the path) and `schema.rs` (the JSON Schema agrees).

#![allow(dead_code, reason = "each test binary uses part of it")]

use serde_json::{Value, json};

/// A manifest with one bottle `default` (the given JSON) and one agent `a` in it.
pub fn with_bottle(bottle: Value) -> Value {
    json!({ "bottles": { "default": bottle }, "agents": { "a": { "bottle": "default" } } })
}

/// A manifest with bottles `default` and `dev` and one agent `a` (the given JSON).
pub fn with_agent(agent: Value) -> Value {
    json!({ "bottles": { "default": {}, "dev": {} }, "agents": { "a": agent } })
}

pub fn with_ssh(entry: Value) -> Value {
    with_bottle(json!({ "ssh": [entry] }))
}

pub fn with_egress(egress: Value) -> Value {
    with_bottle(json!({ "egress": egress }))
}

/// One bad manifest: the path the message must name and a fragment of what it
/// must say was expected.
pub struct Case {
    pub name: &'static str,
    pub manifest: Value,
    pub path: &'static str,
    pub expected: &'static str,
}

pub fn case(
    name: &'static str,
    manifest: Value,
    path: &'static str,
    expected: &'static str,
) -> Case {
    Case {
        name,
        manifest,
        path,
        expected,
    }
}

pub fn cases() -> Vec<Case> {
    vec![
        // The top level.
        case(
            "bottles missing",
            json!({ "agents": { "a": { "bottle": "b" } } }),
            "bottles: required",
            "expected an object mapping bottle names",
        ),
        case(
            "agents missing",
            json!({ "bottles": { "b": {} } }),
            "agents: required",
            "expected an object mapping agent names",
        ),
        case(
            "bottles empty",
            json!({ "bottles": {}, "agents": { "a": { "bottle": "b" } } }),
            "bottles: no bottle is defined",
            "expected at least one bottle",
        ),
        case(
            "agents empty",
            json!({ "bottles": { "b": {} }, "agents": {} }),
            "agents: no agent is defined",
            "expected at least one agent",
        ),
        case(
            "unknown top-level key",
            json!({ "bottles": { "b": {} }, "agents": { "a": { "bottle": "b" } }, "agent": {} }),
            "agent: unknown field",
            "expected one of bottles, agents",
        ),
        case(
            "top level not an object",
            json!([1, 2]),
            "top level",
            "expected an object with `bottles` and `agents`, found an array",
        ),
        case(
            "bottles not an object",
            json!({ "bottles": ["default"], "agents": {} }),
            "bottles",
            "expected an object mapping bottle names to bottle objects, found an array",
        ),
        case(
            "bottle not an object",
            json!({ "bottles": { "b": "x" }, "agents": {} }),
            "bottles.b",
            "expected a bottle object with optional env, ssh, egress, image, found a string",
        ),
        case(
            "empty bottle name",
            json!({ "bottles": { "": {} }, "agents": { "a": { "bottle": "" } } }),
            "bottles[\"\"]",
            "expected a non-empty name",
        ),
        // A bottle.
        case(
            "unknown bottle key",
            with_bottle(json!({ "imag": "x" })),
            "bottles.default.imag: unknown field",
            "expected one of env, ssh, egress, image",
        ),
        case(
            "removed runtime",
            with_bottle(json!({ "runtime": "runsc" })),
            "bottles.default.runtime: the field was removed",
            "gVisor (`runsc`) is now detected automatically and used whenever the Docker daemon has it registered",
        ),
        case(
            "null is not absent",
            with_bottle(json!({ "image": null })),
            "bottles.default.image",
            "expected a string, found null",
        ),
        case(
            "image empty",
            with_bottle(json!({ "image": "" })),
            "bottles.default.image: empty image name",
            "expected an image reference",
        ),
        case(
            "image not a string",
            with_bottle(json!({ "image": 3 })),
            "bottles.default.image",
            "expected a string, found a number",
        ),
        // env
        case(
            "env not an object",
            with_bottle(json!({ "env": ["A=b"] })),
            "bottles.default.env",
            "expected an object mapping variable names to strings, found an array",
        ),
        case(
            "env name invalid",
            with_bottle(json!({ "env": { "1BAD": "x" } })),
            "bottles.default.env.1BAD",
            "expected a name matching `[A-Za-z_][A-Za-z0-9_]*`",
        ),
        case(
            "env name with a dash",
            with_bottle(json!({ "env": { "MY-VAR": "x" } })),
            "bottles.default.env.MY-VAR",
            "expected a name matching",
        ),
        case(
            "env value a number",
            with_bottle(json!({ "env": { "PORT": 8080 } })),
            "bottles.default.env.PORT",
            "expected a string, found a number",
        ),
        case(
            "env value interpolated",
            with_bottle(json!({ "env": { "URL": "a${B}c" } })),
            "bottles.default.env.URL",
            "expected a literal (with `$$` for each literal `$`), or exactly `${VAR}` or `$VAR`",
        ),
        case(
            "env value empty reference",
            with_bottle(json!({ "env": { "X": "${}" } })),
            "bottles.default.env.X",
            "`$$`",
        ),
        case(
            "env value bad reference name",
            with_bottle(json!({ "env": { "X": "$1x" } })),
            "bottles.default.env.X",
            "`$$`",
        ),
        // ssh
        case(
            "ssh not an array",
            with_bottle(json!({ "ssh": { "Host": "x" } })),
            "bottles.default.ssh",
            "expected an array of SSH entry objects, found an object",
        ),
        case(
            "ssh entry not an object",
            with_bottle(json!({ "ssh": ["github.com"] })),
            "bottles.default.ssh[0]",
            "expected an SSH entry object",
        ),
        case(
            "ssh Host missing",
            with_ssh(json!({ "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Host: required",
            "expected a non-empty alias",
        ),
        case(
            "ssh Host empty",
            with_ssh(json!({ "Host": "", "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Host: empty alias",
            "expected a non-empty alias",
        ),
        case(
            "ssh Host with whitespace",
            with_ssh(
                json!({ "Host": "git hub", "HostName": "github.com", "IdentityFile": "~/.ssh/k" }),
            ),
            "bottles.default.ssh[0].Host",
            "without whitespace",
        ),
        case(
            "ssh Host pattern",
            with_ssh(json!({ "Host": "*", "HostName": "github.com", "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Host",
            "pattern characters",
        ),
        case(
            "ssh HostName invalid",
            with_ssh(
                json!({ "Host": "gh", "HostName": "https://github.com", "IdentityFile": "~/.ssh/k" }),
            ),
            "bottles.default.ssh[0].HostName",
            "expected a DNS name or an IP address",
        ),
        case(
            "ssh HostName default not a host",
            with_ssh(json!({ "Host": "-gh", "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Host: HostName is not set, so it defaults to Host",
            "expected a DNS name or an IP address",
        ),
        case(
            "ssh User empty",
            with_ssh(json!({ "Host": "github.com", "User": "", "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].User",
            "expected a user name without whitespace",
        ),
        case(
            "ssh Port zero",
            with_ssh(json!({ "Host": "github.com", "Port": 0, "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Port: 0 is not a valid port",
            "expected an integer from 1 to 65535",
        ),
        case(
            "ssh Port too large",
            with_ssh(json!({ "Host": "github.com", "Port": 65536, "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Port: 65536 is not a valid port",
            "expected an integer from 1 to 65535",
        ),
        case(
            "ssh Port negative",
            with_ssh(json!({ "Host": "github.com", "Port": -22, "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Port: -22 is not a valid port",
            "expected an integer from 1 to 65535",
        ),
        case(
            "ssh Port fractional",
            with_ssh(json!({ "Host": "github.com", "Port": 22.5, "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Port: 22.5 is not a valid port",
            "expected an integer from 1 to 65535",
        ),
        case(
            "ssh Port a string",
            with_ssh(json!({ "Host": "github.com", "Port": "22", "IdentityFile": "~/.ssh/k" })),
            "bottles.default.ssh[0].Port",
            "expected an integer from 1 to 65535, found a string",
        ),
        case(
            "ssh IdentityFile missing",
            with_ssh(json!({ "Host": "github.com" })),
            "bottles.default.ssh[0].IdentityFile: required",
            "expected the path of a private key file",
        ),
        case(
            "ssh IdentityFile empty",
            with_ssh(json!({ "Host": "github.com", "IdentityFile": "" })),
            "bottles.default.ssh[0].IdentityFile: empty path",
            "expected the path of a private key file",
        ),
        case(
            "ssh unknown key",
            with_ssh(
                json!({ "Host": "github.com", "Hostname": "github.com", "IdentityFile": "~/.ssh/k" }),
            ),
            "bottles.default.ssh[0].Hostname: unknown field",
            "expected one of Host, HostName, User, Port, IdentityFile",
        ),
        case(
            "ssh duplicate alias",
            with_bottle(
                json!({ "ssh": [{ "Host": "github.com", "IdentityFile": "~/.ssh/a" }, { "Host": "github.com", "IdentityFile": "~/.ssh/b" }] }),
            ),
            "bottles.default.ssh[1].Host: alias `github.com` is already used by ssh[0]",
            "expected a distinct Host alias",
        ),
        // egress
        case(
            "egress unknown key",
            with_egress(json!({ "alowlist": [] })),
            "bottles.default.egress.alowlist: unknown field",
            "expected one of allowlist, trusted_domains, ip_cidrs",
        ),
        case(
            "egress not an object",
            with_egress(json!(["api.anthropic.com"])),
            "bottles.default.egress",
            "expected an egress object with optional allowlist, trusted_domains, ip_cidrs, found an array",
        ),
        case(
            "allowlist not an array",
            with_egress(json!({ "allowlist": "github.com" })),
            "bottles.default.egress.allowlist",
            "expected an array of strings, found a string",
        ),
        case(
            "allowlist entry not a string",
            with_egress(json!({ "allowlist": ["github.com", 7] })),
            "bottles.default.egress.allowlist[1]",
            "expected a string, found a number",
        ),
        case(
            "allowlist scheme",
            with_egress(
                json!({ "allowlist": ["github.com", "x.com", "https://api.github.com/repos"] }),
            ),
            "bottles.default.egress.allowlist[2]: `https://api.github.com/repos` is a URL",
            "expected a hostname, `*.` followed by at least two labels",
        ),
        case(
            "allowlist port",
            with_egress(json!({ "allowlist": ["github.com:443"] })),
            "bottles.default.egress.allowlist[0]: `github.com:443` has a port",
            "expected a hostname",
        ),
        case(
            "allowlist path",
            with_egress(json!({ "allowlist": ["github.com/org"] })),
            "bottles.default.egress.allowlist[0]: `github.com/org` has a path",
            "expected a hostname",
        ),
        case(
            "allowlist spaces",
            with_egress(json!({ "allowlist": ["git hub.com"] })),
            "bottles.default.egress.allowlist[0]: `git hub.com` contains whitespace",
            "expected a hostname",
        ),
        case(
            "allowlist bare star",
            with_egress(json!({ "allowlist": ["*"] })),
            "bottles.default.egress.allowlist[0]: a bare `*` would admit every host",
            "expected a hostname",
        ),
        case(
            "allowlist top-level wildcard",
            with_egress(json!({ "allowlist": ["*.com"] })),
            "bottles.default.egress.allowlist[0]: `*.com` would admit a whole top-level domain",
            "`*.` followed by at least two labels",
        ),
        case(
            "allowlist inner star",
            with_egress(json!({ "allowlist": ["api.*.com"] })),
            "bottles.default.egress.allowlist[0]: `api.*.com` has a `*` that is not a leading `*.`",
            "expected a hostname",
        ),
        case(
            "allowlist empty entry",
            with_egress(json!({ "allowlist": [""] })),
            "bottles.default.egress.allowlist[0]: empty entry",
            "expected a hostname",
        ),
        case(
            "trusted domain URL",
            with_egress(json!({ "trusted_domains": ["http://git.internal"] })),
            "bottles.default.egress.trusted_domains[0]: `http://git.internal` is a URL",
            "expected an exact hostname",
        ),
        case(
            "trusted domain port",
            with_egress(json!({ "trusted_domains": ["git.internal:22"] })),
            "bottles.default.egress.trusted_domains[0]: `git.internal:22` has a port",
            "expected an exact hostname",
        ),
        case(
            "trusted domain star",
            with_egress(json!({ "trusted_domains": ["*"] })),
            "bottles.default.egress.trusted_domains[0]: a bare `*` would turn the SSRF check off",
            "expected an exact hostname such as `git.internal.example.com`, or `*.` followed by at least two labels",
        ),
        case(
            "trusted domain top-level wildcard",
            with_egress(json!({ "trusted_domains": ["*.com"] })),
            "bottles.default.egress.trusted_domains[0]: `*.com` would trust a whole top-level domain",
            "`*.` followed by at least two labels (like `*.corp.example.com`)",
        ),
        case(
            "trusted domain port after a wildcard",
            with_egress(json!({ "trusted_domains": ["*.corp.example.com", "a.com:22"] })),
            "bottles.default.egress.trusted_domains[1]: `a.com:22` has a port",
            "expected an exact hostname",
        ),
        case(
            "trusted domain https URL",
            with_egress(json!({ "trusted_domains": ["https://a.com"] })),
            "bottles.default.egress.trusted_domains[0]: `https://a.com` is a URL",
            "expected an exact hostname",
        ),
        case(
            "trusted domain inner star",
            with_egress(json!({ "trusted_domains": ["*.*.example.com"] })),
            "bottles.default.egress.trusted_domains[0]: `*.*.example.com` is not `*.` followed by a hostname",
            "expected an exact hostname",
        ),
        case(
            "trusted domain IP",
            with_egress(json!({ "trusted_domains": ["10.0.0.1"] })),
            "bottles.default.egress.trusted_domains[0]: `10.0.0.1` is an IP address",
            "expected an exact hostname",
        ),
        case(
            "ip_cidrs slash zero",
            with_egress(json!({ "ip_cidrs": ["0.0.0.0/0"] })),
            "bottles.default.egress.ip_cidrs[0]: `0.0.0.0/0` would exempt every address",
            "expected a CIDR such as `10.0.0.0/8`, not `/0`, with no host bits set",
        ),
        case(
            "ip_cidrs host bits",
            with_egress(json!({ "ip_cidrs": ["10.0.0.1/8"] })),
            "bottles.default.egress.ip_cidrs[0]: `10.0.0.1/8` has host bits set",
            "expected a CIDR",
        ),
        case(
            "ip_cidrs not a CIDR",
            with_egress(json!({ "ip_cidrs": ["10.0.0.1"] })),
            "bottles.default.egress.ip_cidrs[0]: `10.0.0.1` is not a CIDR",
            "expected a CIDR",
        ),
        // An agent.
        case(
            "agent bottle missing",
            with_agent(json!({ "prompt": "p" })),
            "agents.a.bottle: required",
            "expected the name of a bottle (defined: `default`, `dev`)",
        ),
        case(
            "agent bottle undefined",
            with_agent(json!({ "bottle": "prod" })),
            "agents.a.bottle: bottle `prod` is not defined",
            "expected one of the defined bottles: `default`, `dev`",
        ),
        case(
            "agent not an object",
            with_agent(json!("default")),
            "agents.a",
            "expected an agent object with bottle and optional skills, prompt, found a string",
        ),
        case(
            "agent unknown key",
            with_agent(json!({ "bottle": "dev", "skill": [] })),
            "agents.a.skill: unknown field",
            "expected one of bottle, skills, prompt",
        ),
        case(
            "skills not an array",
            with_agent(json!({ "bottle": "dev", "skills": 3 })),
            "agents.a.skills",
            "expected an array of strings, found a number",
        ),
        case(
            "skill with a slash",
            with_agent(json!({ "bottle": "dev", "skills": ["ok", "a/b"] })),
            "agents.a.skills[1]: `a/b` is not a skill directory name",
            "without `/` or `..`",
        ),
        case(
            "skill with dots",
            with_agent(json!({ "bottle": "dev", "skills": [".."] })),
            "agents.a.skills[0]",
            "without `/` or `..`",
        ),
        case(
            "skill empty",
            with_agent(json!({ "bottle": "dev", "skills": [""] })),
            "agents.a.skills[0]",
            "expected the name of a directory under ~/.claude/skills/",
        ),
        case(
            "prompt not a string",
            with_agent(json!({ "bottle": "dev", "prompt": ["a"] })),
            "agents.a.prompt",
            "expected a string, found an array",
        ),
    ]
}
