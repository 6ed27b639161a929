//! The terminal: confirming destructive changes and printing tables.

use std::io::Write;

use anyhow::{Context as _, bail};

use crate::UsageError;

/// How a destructive change run without `--yes` is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// Nobody can be asked (stdin is not a terminal): refuse with a usage error (exit 2).
    NonInteractive,
    /// Ask on stderr and read the answer from stdin.
    Terminal,
    /// The answer is known already (tests, or a caller that asked itself).
    Answer(bool),
}
/// Asks before a destructive change unless `yes` was given; see [`Confirmation`]. `preview`
/// lists what will change (shown when asking on a terminal).
pub(crate) fn confirm(
    confirmation: Confirmation,
    yes: bool,
    what: &str,
    preview: &[String],
) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    match confirmation {
        Confirmation::NonInteractive => Err(UsageError::new(format!(
            "refusing to {what} without confirmation: stdin is not a terminal, so pass --yes \
             (or --dry-run to see what would change)"
        ))
        .into()),
        Confirmation::Answer(true) => Ok(()),
        Confirmation::Answer(false) => bail!("did not {what}: not confirmed; nothing was changed"),
        Confirmation::Terminal => {
            let mut err = std::io::stderr().lock();
            for line in preview {
                writeln!(err, "  {line}")?;
            }
            write!(err, "{what}? [y/N] ")?;
            err.flush()?;
            let mut answer = String::new();
            std::io::stdin()
                .read_line(&mut answer)
                .context("cannot read the confirmation")?;
            if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
                Ok(())
            } else {
                bail!("did not {what}: not confirmed; nothing was changed")
            }
        }
    }
}

/// Writes `rows` under `headers` in columns two spaces apart (the last column is not padded).
pub(crate) fn write_table(
    out: &mut dyn Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| -> std::io::Result<()> {
        let cells: Vec<&str> = cells.collect();
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                text.push_str(&format!("{cell:<pad$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(&mut headers.iter().copied())?;
    for row in rows {
        line(&mut row.iter().map(String::as_str))?;
    }
    Ok(())
}
