//! The context map: contexts as nodes, routes as edges labelled with their relationship as a DDD
//! context map names it (CF, OHS/PL, ACL, enrichment) and the upstream/downstream roles of
//! Context Mapper's notation (`[U,OHS,PL]` → `[D]`), the message types each route carries and
//! whether it keeps an order. Rendered as Mermaid, Graphviz DOT, SVG (drawn here: no external
//! tool) or JSON. Built from a loaded registry; it does no I/O.
//!
//! What a caller may see of it is one rule, [`Viewer::sees`]: the operator sees everything; a
//! context sees its own routes and every route that carries a type it may read (published, or
//! its own), and of each route only those types, never another context's internal contracts.

use std::collections::{BTreeSet, HashMap};
use std::f64::consts::{PI, TAU};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize, Serializer};

use crate::registry::{ContextName, ContractId, Mode, Registry, Route, RouteName, Visibility};

/// The map of a registry, or the part of it one viewer sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Map {
    /// The contexts, by name.
    pub nodes: Vec<Node>,
    /// The routes, in the order `contextgate.toml` lists them.
    pub edges: Vec<Edge>,
}

/// A bounded context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Node {
    #[schema(value_type = String)]
    pub name: ContextName,
}

/// A route: messages flow from `upstream` to `downstream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Edge {
    /// The route's name.
    #[schema(value_type = String)]
    pub route: RouteName,
    #[schema(value_type = String)]
    pub upstream: ContextName,
    /// The context that receives, and owns the route.
    #[schema(value_type = String)]
    pub downstream: ContextName,
    /// The route's mode: conformist, open-host, anti-corruption or enrich.
    #[schema(value_type = String)]
    pub mode: Mode,
    /// The relationship's label on a context map.
    pub relationship: Relationship,
    /// Context Mapper's roles of the upstream end: `U`, with `OHS` and `PL` for open-host.
    #[schema(value_type = Vec<String>)]
    pub upstream_roles: &'static [&'static str],
    /// Context Mapper's roles of the downstream end: `D`, with `CF` or `ACL`.
    #[schema(value_type = Vec<String>)]
    pub downstream_roles: &'static [&'static str],
    /// The contract versions the route takes from upstream (`orders/OrderPlaced@2`).
    #[schema(value_type = Vec<String>)]
    pub types: Vec<Carried>,
    /// The contract version a translating or enriching route delivers downstream; `null` when
    /// the route forwards its input unchanged (conformist).
    #[schema(value_type = Option<String>)]
    pub output: Option<Carried>,
    /// Whether the route keeps an order (it has an ordering key).
    pub ordered: bool,
}

/// A contract version on an edge, with its visibility: what [`Viewer::sees`] decides on. It
/// serializes as its id only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    pub id: ContractId,
    pub visibility: Visibility,
}

impl Serialize for Carried {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.id.serialize(serializer)
    }
}

/// A relationship as a context map labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Relationship {
    /// Conformist: downstream takes upstream's model as it is.
    #[serde(rename = "CF")]
    Conformist,
    /// Open host service with a published language: upstream translates for everyone.
    #[serde(rename = "OHS/PL")]
    OpenHost,
    /// Anti-corruption layer: downstream translates into its own model.
    #[serde(rename = "ACL")]
    AntiCorruption,
    /// Downstream looks up what upstream does not send.
    #[serde(rename = "enrichment")]
    Enrichment,
}

impl Relationship {
    pub fn of(mode: Mode) -> Self {
        match mode {
            Mode::Conformist => Self::Conformist,
            Mode::OpenHost => Self::OpenHost,
            Mode::AntiCorruption => Self::AntiCorruption,
            Mode::Enrich => Self::Enrichment,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Conformist => "CF",
            Self::OpenHost => "OHS/PL",
            Self::AntiCorruption => "ACL",
            Self::Enrichment => "enrichment",
        }
    }

    /// The upstream end's roles in Context Mapper's notation.
    pub fn upstream_roles(self) -> &'static [&'static str] {
        match self {
            Self::OpenHost => &["U", "OHS", "PL"],
            Self::Conformist | Self::AntiCorruption | Self::Enrichment => &["U"],
        }
    }

    /// The downstream end's roles. Enrichment has no role of its own in Context Mapper: its
    /// downstream is a plain `D`, and the edge says `enrichment`.
    pub fn downstream_roles(self) -> &'static [&'static str] {
        match self {
            Self::Conformist => &["D", "CF"],
            Self::AntiCorruption => &["D", "ACL"],
            Self::OpenHost | Self::Enrichment => &["D"],
        }
    }
}

/// Who looks at the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// Sees the whole map.
    Operator,
    /// Sees what this context may read.
    Context(ContextName),
}

impl Viewer {
    /// Whether this viewer may read a contract of `owner` with `visibility`: the operator every
    /// one, a context the published ones and its own.
    pub fn may_read(&self, owner: &ContextName, visibility: Visibility) -> bool {
        match self {
            Viewer::Operator => true,
            Viewer::Context(me) => visibility == Visibility::Published || owner == me,
        }
    }

    /// What of `edge` this viewer sees, or `None` when it sees nothing of it. The operator sees
    /// every edge whole. A context sees, of any edge, the types it may read — published ones and
    /// its own — and sees the edge when it is upstream or downstream of it or may read at least
    /// one of its types: a route between two other contexts that carries only internal types
    /// does not exist for it, and another context's internal contract never shows.
    pub fn sees(&self, edge: &Edge) -> Option<Edge> {
        let Viewer::Context(me) = self else {
            return Some(edge.clone());
        };
        let readable = |carried: &Carried| self.may_read(carried.id.context(), carried.visibility);
        let types: Vec<Carried> = edge.types.iter().filter(|c| readable(c)).cloned().collect();
        let output = edge.output.clone().filter(readable);
        let party = &edge.upstream == me || &edge.downstream == me;
        (party || !types.is_empty() || output.is_some()).then(|| Edge {
            types,
            output,
            ..edge.clone()
        })
    }
}

impl Edge {
    pub fn new(
        route: RouteName,
        upstream: ContextName,
        downstream: ContextName,
        mode: Mode,
        types: Vec<Carried>,
        output: Option<Carried>,
        ordered: bool,
    ) -> Self {
        let relationship = Relationship::of(mode);
        Self {
            route,
            upstream,
            downstream,
            mode,
            relationship,
            upstream_roles: relationship.upstream_roles(),
            downstream_roles: relationship.downstream_roles(),
            types,
            output,
            ordered,
        }
    }

    /// A route of the registry as an edge of the map.
    pub fn of(route: &Route) -> Self {
        let carried = |version: &crate::registry::ContractVersion| Carried {
            id: version.id.clone(),
            visibility: version.visibility,
        };
        Self::new(
            route.name.clone(),
            route.upstream.clone(),
            route.downstream.clone(),
            route.mode,
            route
                .accepts
                .iter()
                .map(|version| carried(version))
                .collect(),
            route.output.as_deref().map(carried),
            route.ordering_key.is_some(),
        )
    }

    /// `orders-to-shipping: ACL`.
    fn title(&self) -> String {
        format!("{}: {}", self.route, self.relationship.label())
    }

    /// `[U,OHS,PL] → [D]`.
    fn roles(&self) -> String {
        format!(
            "[{}] → [{}]",
            self.upstream_roles.join(","),
            self.downstream_roles.join(",")
        )
    }

    /// `a, b → c`: what it takes, and what it delivers when that differs; `None` when the
    /// viewer sees none of its types.
    fn carried(&self) -> Option<String> {
        let taken: Vec<String> = self.types.iter().map(|c| c.id.to_string()).collect();
        let taken = taken.join(", ");
        match (&self.output, taken.is_empty()) {
            (None, true) => None,
            (None, false) => Some(taken),
            (Some(output), true) => Some(format!("→ {}", output.id)),
            (Some(output), false) => Some(format!("{taken} → {}", output.id)),
        }
    }

    /// The lines of its label: title, types, and `ordered` when it keeps an order (the roles
    /// go at the ends where a format can put them there).
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![self.title()];
        lines.extend(self.carried());
        if self.ordered {
            lines.push("ordered".to_owned());
        }
        lines
    }
}

/// The formats a map is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
    /// An SVG drawing.
    Svg,
    /// The map as JSON.
    Json,
}

impl Format {
    pub fn parse(input: &str) -> Option<Self> {
        Some(match input {
            "mermaid" => Self::Mermaid,
            "dot" => Self::Dot,
            "svg" => Self::Svg,
            "json" => Self::Json,
            _ => return None,
        })
    }

    pub fn render(self, map: &Map) -> String {
        match self {
            Self::Mermaid => map.mermaid(),
            Self::Dot => map.dot(),
            Self::Svg => map.svg(),
            Self::Json => map.json(),
        }
    }
}

impl Map {
    /// The whole map of a registry: every context, every route.
    pub fn of(registry: &Registry) -> Self {
        Self {
            nodes: registry
                .contexts
                .keys()
                .map(|name| Node { name: name.clone() })
                .collect(),
            edges: registry
                .routes
                .iter()
                .map(|route| Edge::of(route))
                .collect(),
        }
    }

    /// What `viewer` sees: the edges [`Viewer::sees`] gives, and as nodes every context for the
    /// operator; for a context, itself and the ends of the edges it sees.
    pub fn seen_by(&self, viewer: &Viewer) -> Self {
        let edges: Vec<Edge> = self
            .edges
            .iter()
            .filter_map(|edge| viewer.sees(edge))
            .collect();
        let nodes = match viewer {
            Viewer::Operator => self.nodes.clone(),
            Viewer::Context(me) => {
                let shown: BTreeSet<&ContextName> = edges
                    .iter()
                    .flat_map(|edge| [&edge.upstream, &edge.downstream])
                    .chain([me])
                    .collect();
                self.nodes
                    .iter()
                    .filter(|node| shown.contains(&node.name))
                    .cloned()
                    .collect()
            }
        };
        Self { nodes, edges }
    }

    /// As JSON, pretty-printed, with a final newline.
    pub fn json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a map always serializes");
        text.push('\n');
        text
    }

    /// A Mermaid flowchart, left to right: a node `ctx_<name>` per context, an edge per route
    /// with its label's lines and the roles.
    pub fn mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for name in self.drawn() {
            let _ = writeln!(
                out,
                "  {}[\"{}\"]",
                mermaid_id(name),
                mermaid_text(name.as_str())
            );
        }
        for edge in &self.edges {
            let mut lines = edge.lines();
            lines.insert(1, edge.roles());
            let label: Vec<String> = lines.iter().map(|line| mermaid_text(line)).collect();
            let _ = writeln!(
                out,
                "  {} -->|\"{}\"| {}",
                mermaid_id(&edge.upstream),
                label.join("<br/>"),
                mermaid_id(&edge.downstream)
            );
        }
        out
    }

    /// Graphviz DOT, left to right: the roles at the ends of each edge (`taillabel`,
    /// `headlabel`), its lines as the label.
    pub fn dot(&self) -> String {
        let mut out = String::from(
            "digraph context_map {\n  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n",
        );
        for name in self.drawn() {
            let _ = writeln!(out, "  \"{}\";", dot_text(name.as_str()));
        }
        for edge in &self.edges {
            let label: Vec<String> = edge.lines().iter().map(|line| dot_text(line)).collect();
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\" [label=\"{}\", taillabel=\"{}\", headlabel=\"{}\"];",
                dot_text(edge.upstream.as_str()),
                dot_text(edge.downstream.as_str()),
                label.join("\\n"),
                dot_text(&edge.upstream_roles.join(",")),
                dot_text(&edge.downstream_roles.join(","))
            );
        }
        out.push_str("}\n");
        out
    }

    /// An SVG drawing: the contexts as boxes on a circle (clockwise from the top, in the map's
    /// order), each route a curve from upstream to downstream with an arrowhead, bent to the
    /// left of its direction so that routes between the same two contexts (either way) part,
    /// its label's lines at the curve's apex and its roles near its ends. Deterministic: the
    /// same map gives the same bytes.
    pub fn svg(&self) -> String {
        let names = self.drawn();
        let count = names.len();
        let radius = if count <= 1 {
            0.0
        } else {
            (90.0 * count as f64).max(220.0)
        };
        let boxes: HashMap<&ContextName, NodeBox> = names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let angle = -PI / 2.0 + TAU * index as f64 / count.max(1) as f64;
                let center = Point {
                    x: radius * angle.cos(),
                    y: radius * angle.sin(),
                };
                let half_width = (NODE_PADDING + NODE_CHAR_WIDTH * chars(name.as_str())) / 2.0;
                (*name, NodeBox { center, half_width })
            })
            .collect();
        let mut bounds = Bounds::default();
        let mut edges = String::new();
        let mut between: HashMap<(&ContextName, &ContextName), usize> = HashMap::new();
        for edge in &self.edges {
            let from = boxes[&edge.upstream];
            let to = boxes[&edge.downstream];
            let nth = between
                .entry((&edge.upstream, &edge.downstream))
                .or_default();
            let curve = Curve::between(from, to, *nth);
            *nth += 1;
            draw_edge(&mut edges, &mut bounds, edge, &curve);
        }
        let mut nodes = String::new();
        for name in &names {
            let node = boxes[name];
            bounds.include(node.center, node.half_width, NODE_HEIGHT / 2.0);
            let _ = writeln!(
                nodes,
                "<g class=\"node\" data-context=\"{name}\"><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"6\"/><text x=\"{cx}\" y=\"{cy}\">{name}</text></g>",
                name = xml(name.as_str()),
                x = num(node.center.x - node.half_width),
                y = num(node.center.y - NODE_HEIGHT / 2.0),
                w = num(2.0 * node.half_width),
                h = num(NODE_HEIGHT),
                cx = num(node.center.x),
                cy = num(node.center.y),
            );
        }
        let (x, y, width, height) = bounds.view_box();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"{x} {y} {width} {height}\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\">",
            x = num(x),
            y = num(y),
            width = num(width),
            height = num(height),
        );
        out.push_str(SVG_HEAD);
        out.push_str(&edges);
        out.push_str(&nodes);
        out.push_str("</svg>\n");
        out
    }

    /// The contexts to draw: the nodes in order, then any edge's end the nodes lack.
    fn drawn(&self) -> Vec<&ContextName> {
        let mut names: Vec<&ContextName> = self.nodes.iter().map(|node| &node.name).collect();
        for edge in &self.edges {
            for end in [&edge.upstream, &edge.downstream] {
                if !names.contains(&end) {
                    names.push(end);
                }
            }
        }
        names
    }
}

/// The title, style and arrowhead every drawing shares.
const SVG_HEAD: &str = r##"<title>Context map</title>
<style>
.node rect { fill: #eef3fb; stroke: #34558b; stroke-width: 1.5px }
.node text { font-size: 14px; fill: #1b2b44; text-anchor: middle; dominant-baseline: central }
.edge path { fill: none; stroke: #6b7280; stroke-width: 1.4px }
.label, .roles { paint-order: stroke; stroke: #ffffff; stroke-width: 4px; stroke-linejoin: round; text-anchor: middle; dominant-baseline: central }
.label { font-size: 11px; fill: #111827 }
.roles { font-size: 10px; font-weight: bold; fill: #9a3412 }
</style>
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker></defs>
"##;

const NODE_HEIGHT: f64 = 34.0;
const NODE_PADDING: f64 = 24.0;
/// An estimate of a character's width at the nodes' 14 px (no font metrics here).
const NODE_CHAR_WIDTH: f64 = 8.5;
/// The same at the labels' 11 px.
const LABEL_CHAR_WIDTH: f64 = 6.6;
const LINE_HEIGHT: f64 = 13.0;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    x: f64,
    y: f64,
}

/// A context's box: its center and half its width (its height is `NODE_HEIGHT`).
#[derive(Debug, Clone, Copy)]
struct NodeBox {
    center: Point,
    half_width: f64,
}

impl NodeBox {
    /// Where the ray from the center toward `toward` leaves the box.
    fn exit(self, toward: Point) -> Point {
        let (dx, dy) = (toward.x - self.center.x, toward.y - self.center.y);
        let reach = |half: f64, delta: f64| {
            if delta.abs() < 1e-9 {
                f64::INFINITY
            } else {
                half / delta.abs()
            }
        };
        let t = reach(self.half_width, dx)
            .min(reach(NODE_HEIGHT / 2.0, dy))
            .min(1.0);
        Point {
            x: self.center.x + dx * t,
            y: self.center.y + dy * t,
        }
    }
}

/// An edge's curve: a quadratic Bézier, or a cubic loop when a route starts and ends at one
/// context.
enum Curve {
    Quadratic(Point, Point, Point),
    Loop(Point, Point, Point, Point),
}

impl Curve {
    /// The `nth` curve from `from` to `to`, bent further left the more there are before it.
    fn between(from: NodeBox, to: NodeBox, nth: usize) -> Self {
        let bend = 40.0 + 45.0 * nth as f64;
        let (dx, dy) = (to.center.x - from.center.x, to.center.y - from.center.y);
        let length = dx.hypot(dy);
        if length < 1e-9 {
            let top = from.center.y - NODE_HEIGHT / 2.0;
            let spread = from.half_width.min(30.0);
            return Self::Loop(
                Point {
                    x: from.center.x - spread,
                    y: top,
                },
                Point {
                    x: from.center.x - spread - bend,
                    y: top - 1.5 * bend,
                },
                Point {
                    x: from.center.x + spread + bend,
                    y: top - 1.5 * bend,
                },
                Point {
                    x: from.center.x + spread,
                    y: top,
                },
            );
        }
        // Left of the direction of travel on screen (y grows downwards): (dy, -dx).
        let control = Point {
            x: (from.center.x + to.center.x) / 2.0 + 2.0 * bend * dy / length,
            y: (from.center.y + to.center.y) / 2.0 - 2.0 * bend * dx / length,
        };
        Self::Quadratic(from.exit(control), control, to.exit(control))
    }

    fn at(&self, t: f64) -> Point {
        let u = 1.0 - t;
        match *self {
            Self::Quadratic(a, b, c) => Point {
                x: u * u * a.x + 2.0 * u * t * b.x + t * t * c.x,
                y: u * u * a.y + 2.0 * u * t * b.y + t * t * c.y,
            },
            Self::Loop(a, b, c, d) => Point {
                x: u * u * u * a.x
                    + 3.0 * u * u * t * b.x
                    + 3.0 * u * t * t * c.x
                    + t * t * t * d.x,
                y: u * u * u * a.y
                    + 3.0 * u * u * t * b.y
                    + 3.0 * u * t * t * c.y
                    + t * t * t * d.y,
            },
        }
    }

    fn path(&self) -> String {
        match *self {
            Self::Quadratic(a, b, c) => format!(
                "M{},{} Q{},{} {},{}",
                num(a.x),
                num(a.y),
                num(b.x),
                num(b.y),
                num(c.x),
                num(c.y)
            ),
            Self::Loop(a, b, c, d) => format!(
                "M{},{} C{},{} {},{} {},{}",
                num(a.x),
                num(a.y),
                num(b.x),
                num(b.y),
                num(c.x),
                num(c.y),
                num(d.x),
                num(d.y)
            ),
        }
    }
}

/// One edge: its curve with an arrowhead, its roles near the ends, its label at the apex.
fn draw_edge(out: &mut String, bounds: &mut Bounds, edge: &Edge, curve: &Curve) {
    let ordered = if edge.ordered { " ordered" } else { "" };
    let _ = writeln!(
        out,
        "<g class=\"edge{ordered}\" data-route=\"{}\"><path d=\"{}\" marker-end=\"url(#arrow)\"/>",
        xml(edge.route.as_str()),
        curve.path()
    );
    for (t, roles) in [
        (0.14, edge.upstream_roles.join(",")),
        (0.86, edge.downstream_roles.join(",")),
    ] {
        let at = curve.at(t);
        bounds.include(
            at,
            chars(&roles) * LABEL_CHAR_WIDTH / 2.0,
            LINE_HEIGHT / 2.0,
        );
        let _ = writeln!(
            out,
            "<text class=\"roles\" x=\"{}\" y=\"{}\">{}</text>",
            num(at.x),
            num(at.y),
            xml(&roles)
        );
    }
    let lines = edge.lines();
    let apex = curve.at(0.5);
    let widest = lines.iter().map(|line| chars(line)).fold(0.0, f64::max);
    bounds.include(
        apex,
        widest * LABEL_CHAR_WIDTH / 2.0,
        lines.len() as f64 * LINE_HEIGHT / 2.0,
    );
    out.push_str("<text class=\"label\">");
    let first = apex.y - (lines.len() as f64 - 1.0) * LINE_HEIGHT / 2.0;
    for (index, line) in lines.iter().enumerate() {
        let _ = write!(
            out,
            "<tspan x=\"{}\" y=\"{}\">{}</tspan>",
            num(apex.x),
            num(first + index as f64 * LINE_HEIGHT),
            xml(line)
        );
    }
    out.push_str("</text></g>\n");
}

/// What the drawing covers, grown as things are placed.
#[derive(Debug)]
struct Bounds {
    min: Point,
    max: Point,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            min: Point {
                x: f64::INFINITY,
                y: f64::INFINITY,
            },
            max: Point {
                x: f64::NEG_INFINITY,
                y: f64::NEG_INFINITY,
            },
        }
    }
}

impl Bounds {
    fn include(&mut self, center: Point, half_width: f64, half_height: f64) {
        self.min.x = self.min.x.min(center.x - half_width);
        self.min.y = self.min.y.min(center.y - half_height);
        self.max.x = self.max.x.max(center.x + half_width);
        self.max.y = self.max.y.max(center.y + half_height);
    }

    /// x, y, width and height with a margin; a small empty canvas when nothing was placed.
    fn view_box(&self) -> (f64, f64, f64, f64) {
        const MARGIN: f64 = 20.0;
        if self.min.x > self.max.x {
            return (0.0, 0.0, 2.0 * MARGIN, 2.0 * MARGIN);
        }
        (
            (self.min.x - MARGIN).floor(),
            (self.min.y - MARGIN).floor(),
            (self.max.x - self.min.x + 2.0 * MARGIN).ceil(),
            (self.max.y - self.min.y + 2.0 * MARGIN).ceil(),
        )
    }
}

/// A coordinate with one decimal, `-0` written `0`: the same map gives the same bytes.
fn num(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded == 0.0 {
        "0".to_owned()
    } else {
        format!("{rounded}")
    }
}

fn chars(text: &str) -> f64 {
    text.chars().count() as f64
}

/// Text for XML: element content and attribute values alike.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A Mermaid node id: `ctx_` and the name with `-` as `_` (context names have no `_`, so two
/// names never share an id, and none is a Mermaid keyword such as `end`).
fn mermaid_id(name: &ContextName) -> String {
    format!("ctx_{}", name.as_str().replace('-', "_"))
}

/// Text inside a quoted Mermaid label: quotes and markup as Mermaid's entity codes.
fn mermaid_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            c => out.push(c),
        }
    }
    out
}

/// Text inside a quoted DOT string.
fn dot_text(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(name: &str) -> ContextName {
        ContextName::parse(name).unwrap()
    }

    fn published(id: &str) -> Carried {
        Carried {
            id: ContractId::parse(id).unwrap(),
            visibility: Visibility::Published,
        }
    }

    fn internal(id: &str) -> Carried {
        Carried {
            id: ContractId::parse(id).unwrap(),
            visibility: Visibility::Internal,
        }
    }

    fn edge(
        route: &str,
        (upstream, downstream): (&str, &str),
        mode: Mode,
        types: Vec<Carried>,
        output: Option<Carried>,
        ordered: bool,
    ) -> Edge {
        Edge::new(
            RouteName::parse(route).unwrap(),
            context(upstream),
            context(downstream),
            mode,
            types,
            output,
            ordered,
        )
    }

    /// Two contexts, a conformist route one way and an open-host route back.
    fn small() -> Map {
        Map {
            nodes: vec![
                Node {
                    name: context("customers"),
                },
                Node {
                    name: context("orders"),
                },
            ],
            edges: vec![
                edge(
                    "orders-to-customers",
                    ("orders", "customers"),
                    Mode::Conformist,
                    vec![published("orders/OrderPlaced@2")],
                    None,
                    true,
                ),
                edge(
                    "customers-to-orders",
                    ("customers", "orders"),
                    Mode::OpenHost,
                    vec![internal("customers/Changed@1")],
                    Some(published("customers/CustomerUpdated@1")),
                    false,
                ),
            ],
        }
    }

    /// Four contexts: routes between others carrying published, internal-only and mixed types.
    fn shop() -> Map {
        let nodes = ["billing", "customers", "notifications", "orders"]
            .into_iter()
            .map(|name| Node {
                name: context(name),
            })
            .collect();
        Map {
            nodes,
            edges: vec![
                // customers' internal type in, its published one out.
                edge(
                    "customers-to-notifications",
                    ("customers", "notifications"),
                    Mode::OpenHost,
                    vec![internal("customers/RecordChanged@1")],
                    Some(published("customers/CustomerUpdated@1")),
                    false,
                ),
                // Only internal types, between two contexts other than orders.
                edge(
                    "billing-to-notifications",
                    ("billing", "notifications"),
                    Mode::Enrich,
                    vec![internal("billing/Ledger@1")],
                    Some(internal("notifications/Receipt@1")),
                    false,
                ),
                // orders' own route: another's internal type in, orders' own internal out.
                edge(
                    "customers-to-orders",
                    ("customers", "orders"),
                    Mode::OpenHost,
                    vec![internal("customers/RecordChanged@1")],
                    Some(internal("orders/Customer@1")),
                    true,
                ),
            ],
        }
    }

    #[test]
    fn relationships_carry_context_mapper_labels_and_roles() {
        let cases = [
            (
                Mode::Conformist,
                "CF",
                ["U"].as_slice(),
                ["D", "CF"].as_slice(),
            ),
            (Mode::OpenHost, "OHS/PL", &["U", "OHS", "PL"], &["D"]),
            (Mode::AntiCorruption, "ACL", &["U"], &["D", "ACL"]),
            (Mode::Enrich, "enrichment", &["U"], &["D"]),
        ];
        for (mode, label, upstream, downstream) in cases {
            let relationship = Relationship::of(mode);
            assert_eq!(relationship.label(), label);
            assert_eq!(relationship.upstream_roles(), upstream);
            assert_eq!(relationship.downstream_roles(), downstream);
            assert_eq!(
                serde_json::to_value(relationship).unwrap(),
                serde_json::json!(label)
            );
        }
    }

    #[test]
    fn the_operator_sees_every_edge_whole() {
        let map = shop();
        assert_eq!(map.seen_by(&Viewer::Operator), map);
    }

    #[test]
    fn a_context_never_sees_another_contexts_internal_types() {
        let map = shop().seen_by(&Viewer::Context(context("orders")));
        let routes: Vec<&str> = map.edges.iter().map(|e| e.route.as_str()).collect();
        // billing-to-notifications carries only internal types of others: not there at all.
        assert_eq!(
            routes,
            ["customers-to-notifications", "customers-to-orders"]
        );
        let shown: Vec<String> = map
            .edges
            .iter()
            .flat_map(|edge| edge.types.iter().chain(&edge.output))
            .map(|carried| carried.id.to_string())
            .collect();
        // customers' internal RecordChanged is hidden even on orders' own route; orders' own
        // internal Customer shows.
        assert_eq!(shown, ["customers/CustomerUpdated@1", "orders/Customer@1"]);
        let nodes: Vec<&str> = map.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(nodes, ["customers", "notifications", "orders"]);
    }

    #[test]
    fn a_context_sees_its_own_routes_even_when_it_may_read_none_of_their_types() {
        let hidden = edge(
            "customers-to-orders",
            ("customers", "orders"),
            Mode::OpenHost,
            vec![internal("customers/RecordChanged@1")],
            None,
            false,
        );
        for party in ["customers", "orders"] {
            let seen = Viewer::Context(context(party)).sees(&hidden).unwrap();
            assert_eq!(seen.route, hidden.route);
        }
        let seen = Viewer::Context(context("orders")).sees(&hidden).unwrap();
        assert!(seen.types.is_empty(), "{seen:?}");
        assert_eq!(
            Viewer::Context(context("customers")).sees(&hidden).unwrap(),
            hidden
        );
        assert_eq!(Viewer::Context(context("billing")).sees(&hidden), None);
        // A context that sees no edge sees itself only.
        let mut map = shop();
        map.edges
            .retain(|edge| edge.route.as_str() == "billing-to-notifications");
        map.nodes.push(Node {
            name: context("shipping"),
        });
        let alone = map.seen_by(&Viewer::Context(context("shipping")));
        assert!(alone.edges.is_empty(), "{alone:?}");
        assert_eq!(
            alone.nodes,
            [Node {
                name: context("shipping")
            }]
        );
    }

    #[test]
    fn json_has_the_documented_field_names() {
        let value: serde_json::Value = serde_json::from_str(&small().json()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "nodes": [{"name": "customers"}, {"name": "orders"}],
                "edges": [
                    {
                        "route": "orders-to-customers",
                        "upstream": "orders",
                        "downstream": "customers",
                        "mode": "conformist",
                        "relationship": "CF",
                        "upstream_roles": ["U"],
                        "downstream_roles": ["D", "CF"],
                        "types": ["orders/OrderPlaced@2"],
                        "output": null,
                        "ordered": true
                    },
                    {
                        "route": "customers-to-orders",
                        "upstream": "customers",
                        "downstream": "orders",
                        "mode": "open-host",
                        "relationship": "OHS/PL",
                        "upstream_roles": ["U", "OHS", "PL"],
                        "downstream_roles": ["D"],
                        "types": ["customers/Changed@1"],
                        "output": "customers/CustomerUpdated@1",
                        "ordered": false
                    }
                ]
            })
        );
    }

    #[test]
    fn mermaid_is_a_flowchart_with_labelled_edges() {
        assert_eq!(
            small().mermaid(),
            "flowchart LR\n\
             \x20 ctx_customers[\"customers\"]\n\
             \x20 ctx_orders[\"orders\"]\n\
             \x20 ctx_orders -->|\"orders-to-customers: CF<br/>[U] → [D,CF]<br/>orders/OrderPlaced@2<br/>ordered\"| ctx_customers\n\
             \x20 ctx_customers -->|\"customers-to-orders: OHS/PL<br/>[U,OHS,PL] → [D]<br/>customers/Changed@1 → customers/CustomerUpdated@1\"| ctx_orders\n"
        );
    }

    #[test]
    fn dot_puts_the_roles_at_the_ends() {
        assert_eq!(
            small().dot(),
            "digraph context_map {\n  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n\
             \x20 \"customers\";\n\
             \x20 \"orders\";\n\
             \x20 \"orders\" -> \"customers\" [label=\"orders-to-customers: CF\\norders/OrderPlaced@2\\nordered\", taillabel=\"U\", headlabel=\"D,CF\"];\n\
             \x20 \"customers\" -> \"orders\" [label=\"customers-to-orders: OHS/PL\\ncustomers/Changed@1 → customers/CustomerUpdated@1\", taillabel=\"U,OHS,PL\", headlabel=\"D\"];\n\
             }\n"
        );
    }

    #[test]
    fn text_is_escaped_for_each_format() {
        assert_eq!(
            xml(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;"
        );
        assert_eq!(mermaid_text(r#"a "b" <c>"#), "a #quot;b#quot; #lt;c#gt;");
        assert_eq!(dot_text(r#"a "b" \n"#), r#"a \"b\" \\n"#);
        assert_eq!(mermaid_id(&context("order-history")), "ctx_order_history");
    }

    /// Every `<text>`'s content, its `<tspan>`s one per line.
    fn svg_texts(svg: &str) -> (Vec<String>, roxmltree::Document<'_>) {
        let document = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
        let texts = document
            .descendants()
            .filter(|node| node.has_tag_name("text") || node.has_tag_name("tspan"))
            .filter_map(|node| node.text().map(str::to_owned))
            .collect();
        (texts, document)
    }

    #[test]
    fn svg_is_well_formed_and_shows_every_node_and_edge_label() {
        for map in [small(), shop()] {
            let svg = map.svg();
            let (texts, document) = svg_texts(&svg);
            let root = document.root_element();
            assert_eq!(root.tag_name().name(), "svg");
            assert_eq!(
                root.tag_name().namespace(),
                Some("http://www.w3.org/2000/svg")
            );
            for node in &map.nodes {
                assert!(
                    texts.contains(&node.name.to_string()),
                    "{} in {texts:?}",
                    node.name
                );
            }
            for edge in &map.edges {
                for line in edge.lines() {
                    assert!(texts.contains(&line), "{line} in {texts:?}");
                }
                for roles in [&edge.upstream_roles, &edge.downstream_roles] {
                    assert!(texts.contains(&roles.join(",")), "{roles:?} in {texts:?}");
                }
            }
            let paths = document
                .descendants()
                .filter(|node| node.has_tag_name("path") && node.attribute("marker-end").is_some())
                .count();
            assert_eq!(paths, map.edges.len());
            // The same map, the same bytes.
            assert_eq!(map.svg(), svg);
        }
    }

    #[test]
    fn svg_draws_self_loops_ends_missing_from_the_nodes_and_empty_maps() {
        // A self-loop and an edge whose ends are not among the nodes.
        let mut map = small();
        map.nodes.clear();
        map.edges.push(edge(
            "orders-to-orders",
            ("orders", "orders"),
            Mode::Conformist,
            vec![published("orders/OrderPlaced@2")],
            None,
            false,
        ));
        let (texts, _) = svg_texts(&map.svg());
        assert!(
            texts.contains(&"orders-to-orders: CF".to_owned()),
            "{texts:?}"
        );
        assert!(texts.contains(&"customers".to_owned()), "{texts:?}");
        let empty = Map {
            nodes: Vec::new(),
            edges: Vec::new(),
        };
        roxmltree::Document::parse(&empty.svg()).unwrap();
    }

    #[test]
    fn formats_parse_by_their_names() {
        for (name, format) in [
            ("mermaid", Format::Mermaid),
            ("dot", Format::Dot),
            ("svg", Format::Svg),
            ("json", Format::Json),
        ] {
            assert_eq!(Format::parse(name), Some(format));
        }
        assert_eq!(Format::parse("png"), None);
    }
}
