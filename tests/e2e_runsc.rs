//! Check 3 of the isolation suite under runsc: with a runtime named `runsc`
//! registered, the agent container runs under it (the proxy does not), and
//! still no address of the host answers it.
//!
//! When the daemon has no `runsc`, the test registers an alias of runc under
//! that name in /etc/docker/daemon.json and reloads dockerd (SIGHUP), and
//! restores the file and reloads again when it ends, pass or fail. This
//! changes the runtime every session on the machine detects, so the test
//! holds the EXCLUSIVE runtime lock (e2e_support/runtime.rs) and lives in its
//! own binary; tests that depend on the detected runtime hold the shared lock.
//!
//! With the alias, the container's isolation is runc's: the test proves the
//! product applies its network isolation when it selects `runsc` (the
//! configuration is given at create time, which gVisor also honours), not
//! gVisor's own network stack. With a real gVisor registered, it proves both.

mod e2e_support;

use e2e_support::no_way_to_host::assert_no_way_to_host;
use e2e_support::runtime::RunscRegistered;

#[test]
fn no_address_of_the_host_answers_the_agent_under_runsc() {
    if !e2e_support::ready() {
        return;
    }
    let runsc = RunscRegistered::ensure();
    if runsc.is_alias_of_runc {
        eprintln!("e2e: `runsc` is an alias of runc registered by this test");
    }
    assert_no_way_to_host("runsc", "runsc");
}
