//! The README's table of `-o` options (section "## csi-cos") is `cos_fuse::options` rendered: this
//! test fails, naming the row, when the two disagree. Fix the table row (or the README) and copy
//! the expected line this test prints.

use cos_fuse::options::readme_table;

const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));

/// The first cell of a table line, which names the option.
fn key(line: &str) -> &str {
    line.trim_start_matches('|')
        .split('|')
        .next()
        .unwrap_or_default()
        .trim()
}

/// The lines of the table under `header` in the README's csi-cos section, if there is one.
fn readme_rows(header: &str) -> Option<Vec<&'static str>> {
    let section = README.split("\n## ").find(|s| s.starts_with("csi-cos\n"))?;
    let mut lines = section.lines().skip_while(|l| l.trim() != header);
    lines.next()?;
    Some(lines.take_while(|l| l.starts_with('|')).collect())
}

#[test]
fn the_readme_options_table_is_the_modules() {
    let want = readme_table();
    let (header, want_rows) = want.split_first().expect("a header");
    let Some(got) = readme_rows(header) else {
        panic!(
            "the README's `## csi-cos` section has no options table headed\n{header}\n\
             cos_fuse::options renders it as:\n{}",
            want.join("\n")
        );
    };
    let mut problems = Vec::new();
    for row in want_rows {
        match got.iter().find(|g| key(g) == key(row)) {
            None => problems.push(format!(
                "row {}: missing from the README; add\n    {row}",
                key(row)
            )),
            Some(line) if line != row => problems.push(format!(
                "row {}: the README says\n    {line}\n  cos_fuse::options says\n    {row}",
                key(row)
            )),
            Some(_) => {}
        }
    }
    for line in &got {
        if !want_rows.iter().any(|w| key(w) == key(line)) {
            problems.push(format!(
                "row {}: in the README but not in cos_fuse::options::OPTIONS; remove\n    {line}",
                key(line)
            ));
        }
    }
    if problems.is_empty() {
        // The same rows: the first one out of place names itself.
        if let Some((readme, table)) = got.iter().zip(want_rows).find(|(g, w)| key(g) != key(w)) {
            problems.push(format!(
                "row {}: out of order; the table has row {} here",
                key(readme),
                key(table)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the README's options table (## csi-cos) disagrees with cos_fuse::options:\n{}",
        problems.join("\n")
    );
}
