//! `cargo xtask lab SCENARIO`: runs one lab scenario and prints its report as
//! JSON. `cargo xtask lab list` lists the scenarios.

use anyhow::Result;
use ensuresec_tests::scenarios;

fn main() -> Result<()> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "list".into());
    if name == "list" {
        for s in scenarios::all(false) {
            println!("{:<20} {}", s.name, s.about);
        }
        return Ok(());
    }
    let scenario = scenarios::find(&name, false)?;
    eprintln!(
        "lab: {} ({:?}): {}",
        scenario.name, scenario.duration, scenario.about
    );
    let report = scenarios::run(&scenario)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    match scenarios::check(&scenario, &report) {
        Ok(()) => eprintln!("lab: {}: as expected", scenario.name),
        Err(e) => eprintln!("lab: NOT as expected: {e:#}"),
    }
    Ok(())
}
