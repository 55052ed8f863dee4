//! `cargo xtask train`: the anomaly model's training pipeline (Python, in
//! models/) in a virtualenv under target/ with the pinned requirements.

use std::{path::Path, process::Command};

use anyhow::{Result, bail};

use crate::run;

/// Creates target/venv and installs models/requirements.txt once per
/// version of that file.
fn venv(root: &Path) -> Result<std::path::PathBuf> {
    let venv = root.join("target/venv");
    let python = venv.join("bin/python");
    let requirements = root.join("models/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)?;
    let stamp = venv.join("ensuresec-requirements.txt");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(python);
    }
    if !python.exists() {
        run::status(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run::status(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(&requirements),
    )?;
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}

pub fn train(root: &Path, dataset: &Path) -> Result<()> {
    let dataset = root.join(dataset);
    for schema in ["schema.json", "schema-destinations.json"] {
        if !dataset.join(schema).exists() {
            bail!(
                "no dataset in {} ({schema} missing): run `cargo xtask dataset` first",
                dataset.display()
            );
        }
    }
    let python = venv(root)?;
    run::status(
        Command::new(python)
            .arg(root.join("models/train.py"))
            .arg("--dataset")
            .arg(&dataset)
            .arg("--out")
            .arg(root.join("models")),
    )
}
