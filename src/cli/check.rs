//! `contextgate check`: everything CI needs, as an exit code and a readable report. Loads the
//! registry (which compiles every schema and script and runs every example and translator case)
//! and prints every problem with its file and line. With `--against REV|DIR` it also compares
//! the registry with a baseline — a git revision of the repository the registry is in, or a
//! folder — as [`crate::evolution`] says: published versions unchanged, new versions compatible
//! at their contract's level.
//!
//! Formats: `text` (`file:line: error: message`), `json`, `github` (workflow annotations) and
//! `junit` (one test case per finding, for CI dashboards). Errors make the exit code 1; warnings
//! and notices are printed but do not fail the check.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use super::{EXIT_COULD_NOT_RUN, EXIT_OK, EXIT_PROBLEMS, Format};
use crate::evolution::{self, Finding, Severity};
use crate::registry::{self, RegistryError};

pub fn run(root: &Path, format: Format, against: Option<&str>) -> u8 {
    let result = registry::load(root);
    let (summary, findings) = match result {
        Ok(registry) => {
            let mut findings = match against {
                None => Vec::new(),
                Some(against) => match Baseline::resolve(root, against) {
                    Ok(baseline) => evolution::against(&registry, baseline.root()),
                    Err(error) => {
                        eprintln!("contextgate check: --against {against}: {error}");
                        return EXIT_COULD_NOT_RUN;
                    }
                },
            };
            // The history inside the folder, each version against the earlier ones; what
            // `--against` judged already is not said twice.
            for finding in evolution::history(&registry) {
                let said = findings.iter().any(|known| {
                    known.rule == finding.rule
                        && known.file == finding.file
                        && known.message == finding.message
                });
                if !said {
                    findings.push(finding);
                }
            }
            findings.extend(undeclared_drafts(&registry));
            findings.extend(unknown_formats(&registry));
            findings.extend(expansions(&registry));
            (Some(registry.summary()), findings)
        }
        Err(RegistryError::Problems(problems)) => (
            None,
            problems
                .into_iter()
                .map(|problem| Finding {
                    severity: Severity::Error,
                    rule: "registry",
                    file: problem.file.display().to_string(),
                    line: problem.line,
                    column: problem.column,
                    message: problem.message,
                    compatibility: None,
                })
                .collect(),
        ),
        Err(error @ RegistryError::Unreadable { .. }) => {
            eprintln!("contextgate check: {error}");
            return EXIT_COULD_NOT_RUN;
        }
    };
    let errors = findings
        .iter()
        .filter(|finding| finding.severity == Severity::Error)
        .count();
    let report = match format {
        Format::Text => text(summary.as_deref(), &findings, errors),
        Format::Json => format!(
            "{}\n",
            json!({"ok": errors == 0, "summary": summary, "problems": findings})
        ),
        Format::Github => github(&findings),
        Format::Junit => junit(&findings),
    };
    // A closed stdout (e.g. `| head`) must not turn a result into a panic.
    let _ = std::io::stdout().lock().write_all(report.as_bytes());
    if errors == 0 { EXIT_OK } else { EXIT_PROBLEMS }
}

/// A notice when contract versions declare no `$schema`: which draft they are read as.
fn undeclared_drafts(registry: &registry::Registry) -> Option<Finding> {
    let undeclared: Vec<String> = registry
        .contracts
        .values()
        .flat_map(|contract| contract.versions.values())
        .filter(|version| version.schema.get("$schema").is_none())
        .map(|version| version.id.to_string())
        .collect();
    let first = undeclared.first()?;
    let draft = crate::registry::contract::draft_label(registry.default_draft);
    Some(Finding::notice(
        "default-draft",
        "contextgate.toml".to_owned(),
        format!(
            "{} contract version(s) declare no $schema ({first}{}) and are read as draft {draft}, \
             the registry's default_draft",
            undeclared.len(),
            if undeclared.len() > 1 { ", ..." } else { "" },
        ),
    ))
}

/// A notice for each pattern in a route's `accepts`: what it expanded to, and what it matched
/// but left out.
fn expansions(registry: &registry::Registry) -> Vec<Finding> {
    let config = std::fs::read_to_string(registry.root.join(registry::load::CONFIG_FILE))
        .unwrap_or_default();
    let list = |ids: &mut dyn Iterator<Item = String>| ids.collect::<Vec<_>>().join(", ");
    registry
        .routes
        .iter()
        .flat_map(|route| {
            route.expansions.iter().map(|expansion| {
                let quoted = format!("{:?}", expansion.pattern);
                let line = config
                    .lines()
                    .position(|line| line.contains(&quoted))
                    .map(|index| index + 1);
                let mut message = format!(
                    "route {}: accepts {quoted} takes {} version(s): {}",
                    route.name,
                    expansion.taken.len(),
                    list(&mut expansion.taken.iter().map(ToString::to_string))
                );
                if !expansion.left_out.is_empty() {
                    message.push_str(&format!(
                        "; left out {}: {}",
                        expansion.left_out.len(),
                        list(
                            &mut expansion
                                .left_out
                                .iter()
                                .map(|(id, why)| format!("{id} ({why})"))
                        )
                    ));
                }
                Finding {
                    line,
                    ..Finding::notice(
                        "accepts-pattern",
                        registry::load::CONFIG_FILE.to_owned(),
                        message,
                    )
                }
            })
        })
        .collect()
}

/// A warning for each `format` the validator does not check under the version's draft: an
/// annotation, as the specification says — or a typo.
fn unknown_formats(registry: &registry::Registry) -> Vec<Finding> {
    let mut findings = Vec::new();
    for version in registry
        .contracts
        .values()
        .flat_map(|contract| contract.versions.values())
    {
        let draft = version
            .resolved
            .get("$schema")
            .and_then(serde_json::Value::as_str)
            .and_then(registry::contract::draft_named)
            .unwrap_or(registry.default_draft);
        let mut formats = Vec::new();
        formats_in(&version.schema, String::new(), &mut formats);
        formats.retain(|(_, name)| !registry::contract::format_checked(draft, name));
        if formats.is_empty() {
            continue;
        }
        let file = format!(
            "contracts/{}/{}/v{}.json",
            version.id.context(),
            version.id.name().name(),
            version.id.version()
        );
        let text = std::fs::read_to_string(registry.root.join(&file)).unwrap_or_default();
        for (pointer, name) in formats {
            let (line, column) = registry::resources::position(&text, &pointer).unzip();
            findings.push(Finding {
                line,
                column,
                ..Finding::new(
                    Severity::Warning,
                    "unknown-format",
                    file.clone(),
                    format!(
                        "format {name:?} is not one the gateway checks under draft {}: it is an \
                         annotation, not checked",
                        registry::contract::draft_label(draft)
                    ),
                )
            });
        }
    }
    findings
}

/// Every string `format` in a schema, by JSON pointer (data under `enum`, `const`, `default`
/// and `examples` left out).
fn formats_in(value: &serde_json::Value, pointer: String, found: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, child) in object {
                let at = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (key.as_str(), child) {
                    ("format", serde_json::Value::String(name)) => {
                        found.push((at, name.clone()));
                    }
                    ("enum" | "const" | "default" | "examples", _) => {}
                    _ => formats_in(child, at, found),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                formats_in(item, format!("{pointer}/{index}"), found);
            }
        }
        _ => {}
    }
}

fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Notice => "notice",
    }
}

fn place(finding: &Finding) -> String {
    match (finding.line, finding.column) {
        (Some(line), Some(column)) => format!("{}:{line}:{column}", finding.file),
        (Some(line), None) => format!("{}:{line}", finding.file),
        _ => finding.file.clone(),
    }
}

fn text(summary: Option<&str>, findings: &[Finding], errors: usize) -> String {
    let mut text: String = findings
        .iter()
        .map(|finding| match finding.severity {
            // Errors as compilers print them; the rest say what they are.
            Severity::Error => format!("{}: {}\n", place(finding), finding.message),
            other => format!(
                "{}: {}: {} [{}]\n",
                place(finding),
                severity(other),
                finding.message,
                finding.rule
            ),
        })
        .collect();
    match (summary, errors) {
        (Some(summary), 0) => text.push_str(&format!("ok: {summary}\n")),
        _ => text.push_str(&format!("{errors} problem(s) found\n")),
    }
    text
}

/// GitHub Actions workflow commands: `::error file=…,line=…,title=…::message`.
fn github(findings: &[Finding]) -> String {
    let escape = |text: &str| {
        text.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let property = |text: &str| escape(text).replace(':', "%3A").replace(',', "%2C");
    findings
        .iter()
        .map(|finding| {
            let mut properties = format!("file={}", property(&finding.file));
            if let Some(line) = finding.line {
                properties.push_str(&format!(",line={line}"));
            }
            properties.push_str(&format!(",title={}", property(finding.rule)));
            format!(
                "::{} {properties}::{}\n",
                severity(finding.severity),
                escape(&finding.message)
            )
        })
        .collect()
}

/// JUnit XML: one test case per finding; errors are failures, the rest pass with their message.
fn junit(findings: &[Finding]) -> String {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let failures = findings
        .iter()
        .filter(|finding| finding.severity == Severity::Error)
        .count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"contextgate check\" tests=\"{0}\" failures=\"{failures}\">\n<testsuite name=\"contextgate check\" tests=\"{0}\" failures=\"{failures}\">\n",
        findings.len().max(1)
    );
    if findings.is_empty() {
        xml.push_str("<testcase classname=\"registry\" name=\"the registry loads\"/>\n");
    }
    for finding in findings {
        let name = format!("{} {}", finding.rule, place(finding));
        xml.push_str(&format!(
            "<testcase classname=\"{}\" name=\"{}\">",
            escape(&finding.file),
            escape(&name)
        ));
        if finding.severity == Severity::Error {
            xml.push_str(&format!(
                "<failure message=\"{}\" type=\"{}\"/>",
                escape(&finding.message),
                finding.rule
            ));
        } else {
            xml.push_str(&format!(
                "<system-out>{}: {}</system-out>",
                severity(finding.severity),
                escape(&finding.message)
            ));
        }
        xml.push_str("</testcase>\n");
    }
    xml.push_str("</testsuite>\n</testsuites>\n");
    xml
}

/// The baseline registry folder: the folder given, or the registry's files at a git revision,
/// extracted into a temporary folder that goes when this is dropped.
struct Baseline {
    root: PathBuf,
    extracted: Option<PathBuf>,
}

impl Baseline {
    fn resolve(registry: &Path, against: &str) -> Result<Self, String> {
        let folder = Path::new(against);
        if folder.is_dir() {
            if !folder.join("contextgate.toml").is_file() {
                return Err(format!(
                    "the folder {} holds no contextgate.toml: it is not a registry",
                    folder.display()
                ));
            }
            return Ok(Self {
                root: folder.to_path_buf(),
                extracted: None,
            });
        }
        let git = |args: &[&str]| -> Result<String, String> {
            let output = Command::new("git")
                .arg("-C")
                .arg(registry)
                .args(args)
                .output()
                .map_err(|error| format!("cannot run git: {error}"))?;
            if output.status.success() {
                Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
            } else {
                Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
            }
        };
        git(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{against}^{{commit}}"),
        ])
        .map_err(|_| {
            "neither a folder nor a git revision of the registry's repository".to_owned()
        })?;
        let top = git(&["rev-parse", "--show-toplevel"])?;
        let prefix = git(&["rev-parse", "--show-prefix"])?;
        let extracted = std::env::temp_dir().join(format!(
            "contextgate-baseline-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&extracted)
            .map_err(|error| format!("cannot create {}: {error}", extracted.display()))?;
        let baseline = Self {
            root: extracted.join(&prefix),
            extracted: Some(extracted.clone()),
        };
        // A literal pathspec: a folder name with `*` or `[` is not a pattern.
        let contracts = format!(":(literal){prefix}contracts");
        // Only the contracts matter; a revision without any has an empty baseline.
        let listed = Command::new("git")
            .arg("-C")
            .arg(&top)
            .args(["ls-tree", "--name-only", against, "--", &contracts])
            .output()
            .map_err(|error| format!("cannot run git: {error}"))?;
        if !listed.status.success() {
            return Err(format!(
                "git ls-tree failed: {}",
                String::from_utf8_lossy(&listed.stderr).trim()
            ));
        }
        if listed.stdout.is_empty() {
            return Ok(baseline);
        }
        let mut archive = Command::new("git")
            .arg("-C")
            .arg(&top)
            .args(["archive", "--format=tar", against, "--", &contracts])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run git archive: {error}"))?;
        let stream = archive.stdout.take().ok_or("git archive gave no output")?;
        let unpacked = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&extracted)
            .stdin(stream)
            .status()
            .map_err(|error| format!("cannot run tar: {error}"))?;
        let archived = archive
            .wait()
            .map_err(|error| format!("git archive failed: {error}"))?;
        if !archived.success() || !unpacked.success() {
            return Err(format!("could not extract {contracts} at {against}"));
        }
        Ok(baseline)
    }

    fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if let Some(extracted) = &self.extracted {
            let _ = std::fs::remove_dir_all(extracted);
        }
    }
}
