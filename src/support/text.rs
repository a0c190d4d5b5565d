//! Plain-text helpers shared by every layer: cutting to a length, escaping for Slack's
//! mrkdwn and for GitHub's Markdown, "did you mean…?" ranking and elapsed times. Pure, no
//! dependencies.

/// Cuts `s` to at most `max` characters, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Escapes `&`, `<` and `>` as Slack's mrkdwn requires, so text from a user is shown as typed
/// and never becomes a mention (`<!channel>`, `<@U…>`), a channel link (`<#C…>`) or a link.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for GitHub-flavoured Markdown so that it renders as typed: every character
/// that can start markup inside a line (emphasis, code, links and images, HTML, tables,
/// strike-through, entities, `#123` references) is backslash-escaped, line breaks become
/// spaces, and `@` is followed by a zero-width space, since GitHub turns `@name` into a
/// notification whatever the escaping. Bare URLs stay links (GitHub links them as text). For text from outside the bot
/// (annotations, termination messages, incident text, fix references) in issue bodies.
pub fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '!' | '|' | '<' | '>' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@\u{200B}"),
            // A line break would end the list item the text sits in.
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An elapsed time for people, to the second under an hour: `38 s`, `4 min 12 s`, `2 h 5 min`;
/// a negative one (clocks apart) is `0 s`.
pub fn elapsed(seconds: i64) -> String {
    let s = seconds.max(0);
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec} s"),
        (0, min, sec) => format!("{min} min {sec} s"),
        (h, min, _) => format!("{h} h {min} min"),
    }
}

/// Up to three configured names closest to `wanted` (edit distance, then shared prefix).
pub fn closest<'a>(wanted: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(usize, &str)> = names
        .into_iter()
        .map(|n| {
            let d = edit_distance(wanted, n);
            let bonus = usize::from(n.starts_with(wanted) || wanted.starts_with(n));
            (d.saturating_sub(bonus * 2), n)
        })
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escaping_leaves_no_markup() {
        assert_eq!(
            escape_markdown("[x](http://e) @team <b>*y*</b>\n# h"),
            "\\[x\\](http://e) @\u{200B}team \\<b\\>\\*y\\*\\</b\\> \\# h"
        );
        assert_eq!(
            escape_markdown("Incident: INC-7, https://x.example/a-b"),
            "Incident: INC-7, https://x.example/a-b"
        );
    }

    #[test]
    fn elapsed_times_read_like_people_say_them() {
        assert_eq!(elapsed(38), "38 s");
        assert_eq!(elapsed(252), "4 min 12 s");
        assert_eq!(elapsed(7500), "2 h 5 min");
        assert_eq!(elapsed(-3), "0 s");
    }
}
