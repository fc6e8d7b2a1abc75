//! "Did you mean": the known name closest to a mistyped one.
//!
//! Used for unknown keys (and the environment variables that set them), unknown names
//! (an archetype in a spawn table, a spawn table in a region), formula variables and
//! functions, and values of a fixed set (`mode = "Dev"`).

/// Names longer than this (in characters) get no suggestion: the distance is quadratic in
/// the lengths, and a name this long is no typo of ours.
const NAME_CHARS_COMPARED_MAX: usize = 128;

/// The candidate closest to `typed`, when it is close enough to be a likely typo; ties go
/// to the earliest candidate, so callers list the likeliest first.
///
/// Close enough: a case-insensitive edit distance (insertions, deletions, substitutions
/// and swaps of two adjacent characters) of at most a third of the longer name's length,
/// rounded up, and at most 3; and less than that length, so that `z` is not taken for `x`
/// (but `yy` is for `y`).
pub(super) fn closest<'c>(
    typed: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let typed_lower: Vec<char> = typed.chars().flat_map(char::to_lowercase).collect();
    if typed_lower.len() > NAME_CHARS_COMPARED_MAX {
        return None;
    }
    let mut best: Option<(usize, &'c str)> = None;
    for candidate in candidates {
        if candidate == typed {
            continue;
        }
        let lower: Vec<char> = candidate.chars().flat_map(char::to_lowercase).collect();
        if lower.len() > NAME_CHARS_COMPARED_MAX {
            continue;
        }
        let longer = typed_lower.len().max(lower.len());
        let limit = longer.div_ceil(3).clamp(1, 3);
        // The distance is at least the difference in length.
        if typed_lower.len().abs_diff(lower.len()) > limit {
            continue;
        }
        let d = distance(&typed_lower, &lower);
        if d <= limit && d < longer && best.is_none_or(|(best_d, _)| d < best_d) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// `; did you mean "name"?` for the closest candidate, or nothing.
pub(super) fn did_you_mean<'c>(
    typed: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> String {
    closest(typed, candidates)
        .map(|c| format!("; did you mean {c:?}?"))
        .unwrap_or_default()
}

/// Optimal string alignment distance: the fewest insertions, deletions, substitutions and
/// swaps of adjacent characters turning `a` into `b` (no substring edited twice).
pub(super) fn distance(a: &[char], b: &[char]) -> usize {
    // Three rows of the dynamic programme: i - 2, i - 1 and i.
    let width = b.len() + 1;
    let mut before: Vec<usize> = vec![0; width];
    let mut previous: Vec<usize> = (0..width).collect();
    let mut current: Vec<usize> = vec![0; width];
    for (i, &ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let mut d = (previous[j] + cost)
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
            if i > 0 && j > 0 && a[i - 1] == cb && ca == b[j - 1] {
                d = d.min(before[j - 1] + 1);
            }
            current[j + 1] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}
