//! `contextgate map`: the registry's context map on standard output, as Mermaid (the default),
//! DOT, SVG or JSON. Whoever reads the folder sees it whole, as the operator does.

use std::path::Path;

use super::{EXIT_COULD_NOT_RUN, EXIT_OK};
use crate::map::{Format, Map};

pub fn run(root: &Path, format: Format) -> u8 {
    let Some(registry) = super::load_registry(root, "map") else {
        return EXIT_COULD_NOT_RUN;
    };
    super::print(&format.render(&Map::of(&registry)));
    EXIT_OK
}
