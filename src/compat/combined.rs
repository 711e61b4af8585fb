//! Combined schemas (`allOf`, `anyOf`, `oneOf`), after Confluent's `CombinedSchemaDiff` and the
//! combined-versus-plain cases of `SchemaDiff.compare`: subschemas are paired by a maximum
//! bipartite matching over the compatible pairs.

use super::diff::{self, Cx, Found};
use super::kind::ChangeKind;
use super::model::{Criterion, Member, Node, Part, Shape};

/// The special cases where exactly one side is combined. Returns whether it settled the pair.
pub(crate) fn compare_with_plain<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: &Node<'a>,
    update: &Node<'a>,
) -> bool {
    let plain = |node: &Node<'a>| Member {
        at: node.at,
        part: node.part,
    };
    match (&original.shape, &update.shape) {
        (Shape::Combined { .. }, Shape::Combined { .. }) => false,
        (
            _,
            Shape::Combined {
                criterion, members, ..
            },
        ) => {
            // A plain schema fits a union if it fits one of its members.
            let singleton = members.len() == 1;
            if !singleton && *criterion == Criterion::All {
                return fits_every_member(cx, out, plain(original), members);
            }
            for member in members {
                let found = diff::trial(cx, plain(original), *member);
                if cx.all_compatible(&found) {
                    out.extend(found);
                    if !singleton {
                        cx.add(out, ChangeKind::SumTypeExtended);
                    }
                    return true;
                }
            }
            false
        }
        (
            Shape::Combined {
                criterion, members, ..
            },
            _,
        ) => {
            // An intersection fits a plain schema if one of its members does.
            let singleton = members.len() == 1;
            if !singleton && *criterion != Criterion::All {
                return false;
            }
            for member in members {
                let found = diff::trial(cx, *member, plain(update));
                if cx.all_compatible(&found) {
                    out.extend(found);
                    if !singleton {
                        cx.add(out, ChangeKind::ProductTypeNarrowed);
                    }
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

/// Ours (Confluent calls it a type change): a plain schema fits an intersection when it fits
/// every member, as `{"enum": ["a"]}` fits `{"type": "string", "enum": ["a"]}`. Returns whether
/// it settled the pair (then with the members' differences, all compatible).
fn fits_every_member<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: Member<'a>,
    members: &[Member<'a>],
) -> bool {
    let mut found = Vec::new();
    for member in members {
        let differences = diff::trial(cx, original, *member);
        if !cx.all_compatible(&differences) {
            return false;
        }
        found.extend(differences);
    }
    out.extend(found);
    true
}

/// Two combined schemas: criterion change, then members matched pairwise.
pub(crate) fn compare<'a>(
    cx: &mut Cx<'a, '_>,
    out: &mut Vec<Found>,
    original: &Node<'a>,
    update: &Node<'a>,
) {
    let (
        Shape::Combined {
            criterion: old_criterion,
            members: old_members,
            synthetic: old_synthetic,
        },
        Shape::Combined {
            criterion: new_criterion,
            members: new_members,
            ..
        },
    ) = (&original.shape, &update.shape)
    else {
        return;
    };
    if let Some(kind) = criterion_change(
        *old_criterion,
        old_members.len(),
        *new_criterion,
        new_members.len(),
    ) {
        cx.add(out, kind);
        if kind == ChangeKind::CombinedTypeChanged {
            return;
        }
    }
    let old_members = distinct(old_members);
    let new_members = distinct(new_members);
    let size_kind = match (old_members.len().cmp(&new_members.len()), *new_criterion) {
        (std::cmp::Ordering::Less, Criterion::All) => Some(ChangeKind::ProductTypeExtended),
        (std::cmp::Ordering::Less, _) => Some(ChangeKind::SumTypeExtended),
        (std::cmp::Ordering::Greater, Criterion::All) => Some(ChangeKind::ProductTypeNarrowed),
        (std::cmp::Ordering::Greater, _) => Some(ChangeKind::SumTypeNarrowed),
        (std::cmp::Ordering::Equal, _) => None,
    };
    if let Some(kind) = size_kind {
        cx.add(out, kind);
    }
    let mut edges: Vec<Vec<Option<Vec<Found>>>> = Vec::with_capacity(old_members.len());
    for (index, old_member) in old_members.iter().enumerate() {
        let segment = (old_criterion.keyword(), index);
        let row = member_row(
            cx,
            *old_member,
            &new_members,
            (!old_synthetic).then_some(segment),
        );
        edges.push(row);
        if cx.stopped() {
            return;
        }
    }
    let matching = maximum_matching(&edges, new_members.len());
    for (old_index, new_index) in matching.iter().enumerate() {
        if let Some(found) = new_index.and_then(|new_index| edges[old_index][new_index].as_ref()) {
            out.extend(found.iter().cloned());
        }
    }
    let matched = matching.iter().filter(|pair| pair.is_some()).count();
    if matched < old_members.len().min(new_members.len()) {
        cx.add(out, ChangeKind::CombinedTypeSubschemasChanged);
    }
}

/// The compatible pairs of one original member, with their differences.
fn member_row<'a>(
    cx: &mut Cx<'a, '_>,
    old_member: Member<'a>,
    new_members: &[Member<'a>],
    segment: Option<(&'static str, usize)>,
) -> Vec<Option<Vec<Found>>> {
    let mut row = Vec::with_capacity(new_members.len());
    for new_member in new_members {
        let found = match segment {
            Some((keyword, index)) => cx.within_index(keyword, index, |cx| {
                diff::trial(cx, old_member, *new_member)
            }),
            None => diff::trial(cx, old_member, *new_member),
        };
        row.push(cx.all_compatible(&found).then_some(found));
    }
    row
}

/// Confluent's `compareCriteria`: which criterion changes keep old documents valid.
fn criterion_change(
    original: Criterion,
    original_size: usize,
    update: Criterion,
    update_size: usize,
) -> Option<ChangeKind> {
    if original == update {
        return None;
    }
    let extended = match update {
        Criterion::Any => true,
        Criterion::One => original_size == 1,
        Criterion::All => original_size == 1 && update_size == 1,
    };
    Some(if extended {
        ChangeKind::CombinedTypeExtended
    } else {
        ChangeKind::CombinedTypeChanged
    })
}

/// Drops members equal to an earlier one (Confluent collects them in a set).
fn distinct<'a>(members: &[Member<'a>]) -> Vec<Member<'a>> {
    let mut kept: Vec<Member<'a>> = Vec::with_capacity(members.len());
    for member in members {
        let duplicate = member.part == Part::Whole
            && kept.iter().any(|other| {
                other.part == Part::Whole && diff::json_equal(other.at.value, member.at.value)
            });
        if !duplicate {
            kept.push(*member);
        }
    }
    kept
}

/// Kuhn's augmenting paths: for each original member, the update member it is matched with.
fn maximum_matching<T>(edges: &[Vec<Option<T>>], n_right: usize) -> Vec<Option<usize>> {
    let mut right_owner: Vec<Option<usize>> = vec![None; n_right];
    for left in 0..edges.len() {
        let mut visited = vec![false; n_right];
        augment(edges, left, &mut visited, &mut right_owner);
    }
    let mut matching = vec![None; edges.len()];
    for (right, owner) in right_owner.iter().enumerate() {
        if let Some(left) = owner {
            matching[*left] = Some(right);
        }
    }
    matching
}

fn augment<T>(
    edges: &[Vec<Option<T>>],
    left: usize,
    visited: &mut [bool],
    right_owner: &mut [Option<usize>],
) -> bool {
    for right in 0..right_owner.len() {
        let has_edge = edges[left].get(right).is_some_and(Option::is_some);
        if !has_edge || visited[right] {
            continue;
        }
        visited[right] = true;
        let free = match right_owner[right] {
            None => true,
            Some(owner) => augment(edges, owner, visited, right_owner),
        };
        if free {
            right_owner[right] = Some(left);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_reassigns_to_cover_both_sides() {
        // 0 fits 0 and 1; 1 fits only 0: the greedy choice 0-0 must be undone.
        let edges = vec![vec![Some(()), Some(())], vec![Some(()), None]];
        assert_eq!(maximum_matching(&edges, 2), vec![Some(1), Some(0)]);
    }

    #[test]
    fn only_any_of_or_singletons_widen_the_criterion() {
        use Criterion as C;
        assert_eq!(
            criterion_change(C::One, 2, C::Any, 2),
            Some(ChangeKind::CombinedTypeExtended)
        );
        assert_eq!(
            criterion_change(C::Any, 2, C::One, 2),
            Some(ChangeKind::CombinedTypeChanged)
        );
        assert_eq!(
            criterion_change(C::Any, 1, C::All, 2),
            Some(ChangeKind::CombinedTypeChanged)
        );
        assert_eq!(criterion_change(C::All, 2, C::All, 3), None);
    }
}
