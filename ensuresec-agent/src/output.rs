//! Plain tables for people and JSON for scripts.

use serde::Serialize;

use crate::cli::OutputFormat;

/// Prints rows as an aligned table (first row is the header) or `value` as JSON.
pub fn print<T: Serialize>(format: OutputFormat, value: &T, rows: Vec<Vec<String>>) {
    match format {
        OutputFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(value).expect("serialisable output")
            );
        }
        OutputFormat::Table => print!("{}", table(&rows)),
    }
}

/// Renders rows as left-aligned columns separated by two spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align() {
        let rows = vec![
            vec!["ENTRY".into(), "REASON".into()],
            vec!["10.0.0.0/8".into(), "scanner".into()],
        ];
        assert_eq!(
            super::table(&rows),
            "ENTRY       REASON\n10.0.0.0/8  scanner\n"
        );
    }
}
