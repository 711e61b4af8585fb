//! `contextgate asyncapi`: one context's AsyncAPI 3.0 document, as JSON on standard output.
//! Whoever reads the folder sees it whole, as the operator does. The broker comes from the same
//! `--amqp-url` and `--amqp-prefix` (and their variables) as `serve`'s: without a URL the
//! server is a placeholder, and the channel names use the prefix given (none by default).

use std::path::Path;

use super::{EXIT_COULD_NOT_RUN, EXIT_OK};
use crate::asyncapi::{Broker, document};
use crate::map::Viewer;
use crate::registry::ContextName;

pub fn run(root: &Path, context: &ContextName, amqp_url: Option<&str>, amqp_prefix: &str) -> u8 {
    let broker = match Broker::new(amqp_url.filter(|url| !url.is_empty()), amqp_prefix) {
        Ok(broker) => broker,
        Err(error) => {
            eprintln!("contextgate asyncapi: {error}");
            return EXIT_COULD_NOT_RUN;
        }
    };
    let Some(registry) = super::load_registry(root, "asyncapi") else {
        return EXIT_COULD_NOT_RUN;
    };
    match document(&registry, context, &Viewer::Operator, &broker) {
        Ok(document) => {
            let mut text =
                serde_json::to_string_pretty(&document).expect("a JSON value always serializes");
            text.push('\n');
            super::print(&text);
            EXIT_OK
        }
        Err(error) => {
            let known: Vec<&str> = registry.contexts.keys().map(|c| c.as_str()).collect();
            eprintln!(
                "contextgate asyncapi: {error} in the registry (its contexts: {})",
                known.join(", ")
            );
            EXIT_COULD_NOT_RUN
        }
    }
}
