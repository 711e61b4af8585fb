//! `contextgate check`: everything CI needs, as an exit code and a readable report. Loads the
//! registry (which compiles every schema and script and runs every example and translator case)
//! and prints every problem with its file and line.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::{EXIT_COULD_NOT_RUN, EXIT_OK, EXIT_PROBLEMS, Format};
use crate::registry::{self, RegistryError};

pub fn run(root: &Path, format: Format) -> u8 {
    let result = registry::load(root);
    let mut stdout = std::io::stdout().lock();
    let (code, report) = match &result {
        Ok(registry) => (
            EXIT_OK,
            match format {
                Format::Text => format!("ok: {}\n", registry.summary()),
                Format::Json => format!(
                    "{}\n",
                    json!({"ok": true, "summary": registry.summary(), "problems": []})
                ),
            },
        ),
        Err(RegistryError::Problems(problems)) => (
            EXIT_PROBLEMS,
            match format {
                Format::Text => {
                    let mut text: String = problems
                        .iter()
                        .map(|problem| format!("{problem}\n"))
                        .collect();
                    text.push_str(&format!("{} problem(s) found\n", problems.len()));
                    text
                }
                Format::Json => format!("{}\n", json!({"ok": false, "problems": problems})),
            },
        ),
        Err(error @ RegistryError::Unreadable { .. }) => {
            eprintln!("contextgate check: {error}");
            return EXIT_COULD_NOT_RUN;
        }
    };
    // A closed stdout (e.g. `| head`) must not turn a result into a panic.
    let _ = stdout.write_all(report.as_bytes());
    code
}
