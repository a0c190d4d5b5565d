//! The binary starts and describes itself. Being an integration test of this package, it also
//! makes plain `cargo test` build `service_simulator`, which the bot's own tests start
//! (`tests/support/simulator.rs` finds it next to the `rollback-bot` binary).

use std::process::Command;

#[test]
fn help_names_the_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_service_simulator"))
        .arg("--help")
        .output()
        .expect("run service_simulator --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--namespace") && text.contains("--deployment"),
        "{text}"
    );
}
