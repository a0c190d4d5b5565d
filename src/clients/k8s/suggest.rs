//! "Did you mean…?" for unknown Deployment names: a small edit-distance ranking.

/// Up to three candidates closest to `wanted`, best first: names within an edit distance of
/// a third of the longer name (at least 2), plus names that contain or are contained in
/// `wanted` (`checkout` for `checkout-api`).
pub fn closest_names<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let wanted_lower = wanted.to_lowercase();
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let lower = c.to_lowercase();
            let distance = levenshtein(&wanted_lower, &lower);
            let limit = (wanted.chars().count().max(c.chars().count()) / 3).max(2);
            let related = !wanted_lower.is_empty()
                && (lower.contains(&wanted_lower) || wanted_lower.contains(&lower));
            (distance <= limit || related).then_some((distance, c))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_owned())
        .collect()
}

/// Levenshtein distance over characters.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("checkout", "checkout"), 0);
    }

    #[test]
    fn suggestions_rank_typos_and_prefixes() {
        let names = ["checkout", "checkout-worker", "payments", "search"];
        assert_eq!(closest_names("chekout", names), ["checkout"]);
        assert_eq!(
            closest_names("checkout-", names),
            ["checkout", "checkout-worker"]
        );
        assert_eq!(closest_names("payment", names), ["payments"]);
        assert!(closest_names("zzzzzz", names).is_empty());
    }
}
