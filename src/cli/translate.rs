//! `contextgate translate`: a dry run of one message (a structured CloudEvent) through one
//! route, printing the verdict as JSON. Look-ups of enrich routes are really made; nothing is
//! published.

use std::io::Read;
use std::path::Path;

use anyhow::Context as _;

use super::{EXIT_COULD_NOT_RUN, EXIT_OK, EXIT_PROBLEMS};
use crate::message::MAX_MESSAGE_BYTES;
use crate::pipeline::{Delivery, Outcome, Pipeline};
use crate::registry::RouteName;

pub async fn run(root: &Path, route: &str, file: Option<&Path>) -> anyhow::Result<u8> {
    let Some(registry) = super::load_registry(root, "translate") else {
        return Ok(EXIT_COULD_NOT_RUN);
    };
    let name = RouteName::parse(route).context("invalid --route")?;
    let Some(route) = registry.route(&name).cloned() else {
        eprintln!("contextgate translate: the registry has no route {name}");
        return Ok(EXIT_COULD_NOT_RUN);
    };
    let mut body = Vec::new();
    let limit = MAX_MESSAGE_BYTES as u64 + 1;
    match file {
        Some(path) if path != Path::new("-") => std::fs::File::open(path)
            .with_context(|| format!("cannot open {}", path.display()))?
            .take(limit)
            .read_to_end(&mut body)
            .with_context(|| format!("cannot read {}", path.display()))?,
        _ => std::io::stdin()
            .take(limit)
            .read_to_end(&mut body)
            .context("cannot read standard input")?,
    };
    let pipeline = Pipeline::new(std::sync::Arc::new(registry));
    let verdict = pipeline
        .process_on(&route, &Delivery::structured(body), 1)
        .await;
    let mut text = serde_json::to_string_pretty(&verdict).expect("verdicts serialize");
    text.push('\n');
    super::print(&text);
    Ok(match verdict.outcome {
        Outcome::Forward { .. } | Outcome::Drop { .. } => EXIT_OK,
        Outcome::Retry { .. } | Outcome::DeadLetter { .. } => EXIT_PROBLEMS,
    })
}
