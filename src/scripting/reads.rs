//! What a translator reads of its input, found once in its AST, so that only that much of the
//! input is converted for it.
//!
//! A script that uses its input (the first parameter of `translate`) only through chains of
//! property reads (`data.a.b`, `data.a.b.len()`, `data.items[0]`, `data.a.b.f(x)`) can see no
//! difference between the whole input and a map that holds just the members those chains reach:
//! each chain ends on a member that is converted whole, and nothing else of the input can be
//! observed. Any other use — the input passed, returned, stored, shadowed, captured, indexed at
//! the top, assigned to, or a method called on it directly — makes the script read it whole, as
//! before. One more step: a member that every chain only measures (`.len()`, `.is_empty()`) and
//! that is an array is given as an array of as many units, when the real one would be within
//! the sandbox's size limits (the engine checks the size of what a method is called on).

use std::collections::BTreeMap;

use rhai::{AST, ASTNode, Expr, Stmt};

use crate::registry::translator::ENTRY_POINT;

/// What a translator reads of its input.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Reads {
    /// All of it.
    #[default]
    Whole,
    /// Only these members of it (none: it never reads it).
    Members(BTreeMap<String, Read>),
}

/// What a translator reads of one member.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// The whole member.
    Whole,
    /// Only its length (`len()`, `is_empty()`).
    Length,
    /// Only these members of it.
    Members(BTreeMap<String, Read>),
}

/// What one chain does with the member it ends on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Use {
    Whole,
    Length,
}

/// Finds what `translate` in `ast` reads of its first parameter.
pub fn reads(ast: &AST) -> Reads {
    let Some(param) = ast
        .iter_functions()
        .find(|function| function.name == ENTRY_POINT)
        .and_then(|function| function.params.first().map(|param| (*param).to_owned()))
    else {
        return Reads::Whole;
    };
    let translate = ast.clone_functions_only_filtered(|_, _, _, name, _| name == ENTRY_POINT);
    let mut members = BTreeMap::new();
    let mut whole = false;
    translate.walk(&mut |path: &[ASTNode<'_>]| {
        match path.last() {
            Some(ASTNode::Stmt(Stmt::Var(declared, ..))) if declared.0.name.as_str() == param => {
                whole = true;
            }
            Some(ASTNode::Stmt(Stmt::Share(..))) => whole = true,
            Some(ASTNode::Expr(variable @ Expr::Variable(name, ..)))
                if name.1.as_str() == param =>
            {
                match chain_from(path, variable) {
                    Some((steps, used)) => add(&mut members, &steps, used),
                    None => whole = true,
                }
            }
            _ => {}
        }
        !whole
    });
    if whole {
        return Reads::Whole;
    }
    // A script's own `len` or `is_empty` is called in place of the built-in one (as a method,
    // with the member as `this`): it may read the member, so the member is given whole.
    if ast
        .iter_functions()
        .any(|function| MEASURES.contains(&function.name))
    {
        measured_whole(&mut members);
    }
    Reads::Members(members)
}

/// The methods that only measure a built-in array.
const MEASURES: [&str; 2] = ["len", "is_empty"];

/// Every member read only for its length, read whole instead.
fn measured_whole(members: &mut BTreeMap<String, Read>) {
    for read in members.values_mut() {
        match read {
            Read::Length => *read = Read::Whole,
            Read::Members(inner) => measured_whole(inner),
            Read::Whole => {}
        }
    }
}

/// The chain of property reads that starts at `variable` (the last node of `path`), if that is
/// all it is: the members it goes through and what it does with the last.
fn chain_from(path: &[ASTNode<'_>], variable: &Expr) -> Option<(Vec<String>, Use)> {
    let parent = path.len().checked_sub(2)?;
    let ASTNode::Expr(Expr::Dot(chain, ..)) = path[parent] else {
        return None;
    };
    if !std::ptr::eq(&chain.lhs, variable) {
        return None;
    }
    // Never what something is assigned to, however far down the chain the assignment is.
    for (index, node) in path.iter().enumerate() {
        if let ASTNode::Stmt(Stmt::Assignment(assignment)) = node {
            let target = &assignment.1.lhs;
            if let Some(ASTNode::Expr(child)) = path.get(index + 1)
                && std::ptr::eq(*child, target)
            {
                return None;
            }
        }
    }
    steps(&chain.rhs)
}

fn steps(expr: &Expr) -> Option<(Vec<String>, Use)> {
    match expr {
        Expr::Property(property, _) => Some((vec![property.2.to_string()], Use::Whole)),
        Expr::Index(chain, ..) => {
            let Expr::Property(property, _) = &chain.lhs else {
                return None;
            };
            Some((vec![property.2.to_string()], Use::Whole))
        }
        Expr::Dot(chain, ..) => {
            let Expr::Property(property, _) = &chain.lhs else {
                return None;
            };
            let name = property.2.to_string();
            match &chain.rhs {
                Expr::MethodCall(call, _) => {
                    let measures = MEASURES.contains(&call.name.as_str()) && call.args.is_empty();
                    Some((vec![name], if measures { Use::Length } else { Use::Whole }))
                }
                rest => {
                    let (mut rest, used) = steps(rest)?;
                    rest.insert(0, name);
                    Some((rest, used))
                }
            }
        }
        _ => None,
    }
}

/// Adds one chain to what is read.
fn add(members: &mut BTreeMap<String, Read>, steps: &[String], used: Use) {
    let Some((first, rest)) = steps.split_first() else {
        return;
    };
    let leaf = match used {
        Use::Whole => Read::Whole,
        Use::Length => Read::Length,
    };
    match members.get_mut(first) {
        None => {
            let mut read = leaf;
            for step in rest.iter().rev() {
                read = Read::Members(BTreeMap::from([(step.clone(), read)]));
            }
            members.insert(first.clone(), read);
        }
        Some(Read::Whole) => {}
        Some(existing @ Read::Length) => {
            if !(rest.is_empty() && used == Use::Length) {
                *existing = Read::Whole;
            }
        }
        Some(existing @ Read::Members(_)) => {
            if rest.is_empty() {
                *existing = Read::Whole;
            } else if let Read::Members(inner) = existing {
                add(inner, rest, used);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads_of(body: &str) -> Reads {
        let script = format!("fn helper(x) {{ x }}\nfn translate(data) {{\n{body}\n}}");
        reads(&crate::scripting::engine().compile(&script).unwrap())
    }

    fn members(entries: &[(&str, Read)]) -> Reads {
        Reads::Members(
            entries
                .iter()
                .map(|(name, read)| ((*name).to_owned(), read.clone()))
                .collect(),
        )
    }

    fn inner(entries: &[(&str, Read)]) -> Read {
        let Reads::Members(map) = members(entries) else {
            unreachable!()
        };
        Read::Members(map)
    }

    #[test]
    fn chains_of_property_reads_read_only_what_they_reach() {
        assert_eq!(
            reads_of(
                "#{ a: data.order_id, b: data.shipping.city, c: data.shipping.country, \
                 n: data.items.len(), e: data.lines.is_empty() }"
            ),
            members(&[
                ("items", Read::Length),
                ("lines", Read::Length),
                ("order_id", Read::Whole),
                (
                    "shipping",
                    inner(&[("city", Read::Whole), ("country", Read::Whole)])
                ),
            ])
        );
        assert_eq!(reads_of("#{ x: 1 }"), members(&[]));
        assert_eq!(
            reads_of("let t = data.items[0].sku; helper(data.a.b) + data.a.to_upper()"),
            members(&[("a", Read::Whole), ("items", Read::Whole)])
        );
        assert_eq!(
            reads_of("data.items.len() + data.items[0]"),
            members(&[("items", Read::Whole)])
        );
        assert_eq!(
            reads_of("if data?.a?.b == 1 { data.a.c } else { data.a }"),
            members(&[("a", Read::Whole)])
        );
        assert_eq!(
            reads_of("for item in data.items { print(item) } data.n"),
            members(&[("items", Read::Whole), ("n", Read::Whole)])
        );
    }

    #[test]
    fn a_script_s_own_len_or_is_empty_reads_the_member_whole() {
        for own in ["fn len() { this[0].qty }", "fn is_empty(x) { x }"] {
            let script = format!(
                "{own}\nfn translate(data) {{ #{{ n: data.items.len(), o: data.a.b.is_empty() }} }}"
            );
            assert_eq!(
                reads(&crate::scripting::engine().compile(&script).unwrap()),
                members(&[("a", inner(&[("b", Read::Whole)])), ("items", Read::Whole)]),
                "{own}"
            );
        }
        let (before, after) = both_ways(
            "fn len() { this[0].qty }\nfn translate(data) { #{ first: data.items.len() } }",
            r#"{"items":[{"qty":2},{"qty":3}]}"#,
        );
        assert_eq!(before, after);
        assert!(before.contains('2'), "{before}");
    }

    #[test]
    fn any_other_use_reads_it_whole() {
        for body in [
            "data",
            "#{ all: data }",
            "helper(data)",
            "data.len()",
            "data.keys()",
            "\"a\" in data",
            "data[\"a\"]",
            "let k = \"a\"; data[k]",
            "data.a = 1; data.b",
            "data.a.b = 1; data.a.c",
            "data.items[0] = 1; data.items",
            "data.a += 1; 0",
            "let data = #{}; data.a",
            "let f = || data.a; f.call()",
            "`${data}`",
            "type_of(data)",
            "data.helper()",
            "data.a.helper().b",
        ] {
            assert_eq!(reads_of(body), Reads::Whole, "{body}");
        }
    }

    /// What a script returns (or the error it fails with) on the input converted whole, as
    /// before, and converted only as far as it reads it.
    fn both_ways(script: &str, input: &str) -> (String, String) {
        use crate::message::document::Document;
        use crate::scripting::{
            ConversionError, document_to_dynamic_reading, engine, to_dynamic, to_json,
            with_deadline,
        };
        use rhai::{Dynamic, Scope};

        let ast = engine().compile(script).unwrap();
        let reads = reads(&ast);
        let document = Document::parse(input.as_bytes()).unwrap().document;
        let value: serde_json::Value = serde_json::from_str(input).unwrap();
        let run = |converted: Result<Dynamic, ConversionError>| match converted {
            Err(error) => format!("conversion: {error}"),
            Ok(data) => match with_deadline(|| {
                engine().call_fn::<Dynamic>(&mut Scope::new(), &ast, "translate", (data,))
            }) {
                Ok(returned) => format!("{:?}", to_json(&returned)),
                Err(error) => format!("error: {error}"),
            },
        };
        (
            run(to_dynamic(&value)),
            run(document_to_dynamic_reading(&document, &reads)),
        )
    }

    #[test]
    fn a_script_sees_the_same_input_however_little_is_converted() {
        let items: Vec<String> = (0..8)
            .map(|i| format!(r#"{{"sku":"S-{i}","quantity":{i},"tags":["a","b"]}}"#))
            .collect();
        let event = format!(
            r#"{{"order_id":"o-1","express":true,"note":"long text","shipping":{{"city":"A","country":"NL","street":"K 1"}},"items":[{}],"s":"héllo","o":{{"a":1,"b":2}},"e":[],"total":1.5}}"#,
            items.join(",")
        );
        let many = format!(r#"{{"big":[{}]}}"#, vec!["1"; 10_001].join(","));
        let long = format!(
            r#"{{"big":["{}","{}"]}}"#,
            "x".repeat(40_000),
            "y".repeat(40_000)
        );
        let deep = format!(r#"{{"a":1,"d":{}1{}}}"#, "[".repeat(70), "]".repeat(70));
        let cases = [
            (
                "fn translate(data) { #{ id: \"p-\" + data.order_id, city: data.shipping.city, \
                 c: data.shipping.country, n: data.items.len(), t: data.total, \
                 p: if data.express { \"high\" } else { \"normal\" } } }",
                event.as_str(),
            ),
            (
                "fn translate(data) { #{ n: data.s.len(), m: data.o.len(), e: data.e.is_empty(), f: data.items.is_empty() } }",
                &event,
            ),
            (
                "fn translate(data) { #{ x: data.items[1].sku, y: data.items[-1].tags.len(), z: data.missing } }",
                &event,
            ),
            (
                "fn translate(data) { #{ x: data.shipping.nowhere, y: data.shipping } }",
                &event,
            ),
            ("fn translate(data) { data.s.nothing }", &event),
            ("fn translate(data) { data.missing.x }", &event),
            ("fn translate(data) { data.items[20] }", &event),
            ("fn translate(data) { #{ n: data.big.len() } }", &many),
            ("fn translate(data) { #{ n: data.big.len() } }", &long),
            ("fn translate(data) { #{ n: data.a } }", &deep),
            (
                "fn translate(data) { #{ n: data.a } }",
                r#"{"a":1,"b":18446744073709551615}"#,
            ),
            ("fn translate(data) { #{ n: data.a } }", r#"[1,2]"#),
            ("fn translate(data) { #{ n: data.a } }", r#""text""#),
            (
                "fn translate(data) { let x = data.items; x.push(1); #{ n: data.items.len(), m: x.len() } }",
                &event,
            ),
            (
                "fn translate(data) { data.items.push(1); #{ n: data.items.len() } }",
                &event,
            ),
            (
                "fn translate(data) { #{ n: data.items.map(|i| i.sku) } }",
                &event,
            ),
            (
                "fn translate(data) {\n  let t = data.order_id;\n  throw \"no \" + t;\n}",
                &event,
            ),
        ];
        for (script, input) in cases {
            let (whole, read) = both_ways(script, input);
            assert_eq!(whole, read, "{script}");
        }
    }

    #[test]
    fn a_script_without_translate_reads_whole() {
        let ast = crate::scripting::engine()
            .compile("fn other(x) { x }")
            .unwrap();
        assert_eq!(reads(&ast), Reads::Whole);
    }
}
