//! The alert rules in `monitoring/` are valid Prometheus rules, and their
//! unit tests (`alerts_test.yml`: input series, expected alerts) pass in
//! promtool, so a rule that would never fire, or fire on a steady counter,
//! fails here. Until the monitoring issue ships Prometheus in the stack,
//! this is how the panic alert is proven.

use std::process::Command;

use e2e::repo;

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool").args(args).current_dir(repo().join("monitoring")).output().expect("promtool runs (scripts/setup installs Debian's prometheus)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_panic_alert_is_a_valid_rule_that_fires_on_one_panic_and_not_on_a_steady_counter() {
    let _panics = e2e::PanicWatch::start();
    assert!(promtool(&["check", "rules", "alerts.yml"]).contains("SUCCESS: 1 rules found"));
    assert!(promtool(&["test", "rules", "alerts_test.yml"]).contains("SUCCESS"));
}
