//! Parsing of store URLs into backend connect options, and redaction of secrets in them.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use crate::{Error, SQLITE_BUSY_TIMEOUT};

/// Connect options for the backend a URL names.
#[derive(Debug)]
pub(crate) enum Target {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
}

/// Parses `url` into connect options, with the durability settings every store gets: WAL,
/// `synchronous=FULL` (a committed row survives a power cut, not only a crash), a busy timeout and
/// foreign keys on SQLite; `postgres://` or `postgresql://` for Postgres.
pub(crate) fn parse(url: &str) -> Result<Target, Error> {
    let invalid = |reason: &str, source: Option<sqlx::Error>| Error::InvalidUrl {
        url_redacted: redact_url(url),
        reason: reason.to_owned(),
        source,
    };
    if url.starts_with("sqlite:") {
        // An in-memory store would lose every row when the process exits (and every pooled
        // connection would see its own empty database), so it is refused rather than quietly
        // accepted.
        if url.contains(":memory:") || query_param(url, "mode").as_deref() == Some("memory") {
            return Err(invalid(
                "an in-memory SQLite store would lose its rows; use a file",
                None,
            ));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| invalid("not a valid SQLite URL", Some(e)))?;
        // Without an explicit `mode`, the embedded default creates its file on first start;
        // with one (`rwc`, `rw`, `ro`), the URL decides.
        let options = if query_param(url, "mode").is_none() {
            options.create_if_missing(true)
        } else {
            options
        };
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true);
        Ok(Target::Sqlite(options))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| invalid("not a valid Postgres URL", Some(e)))?;
        Ok(Target::Postgres(options))
    } else {
        Err(invalid(
            "unsupported scheme (expected sqlite:PATH, sqlite://PATH or postgres://...)",
            None,
        ))
    }
}

/// The first value of query parameter `key`, if the URL has it.
fn query_param(url: &str, key: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or_default();
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| v.to_owned())
    })
}

/// `url` with its password replaced by `***`, for error messages and logs.
///
/// Redacts the password of `user:password@` (everything between the first `:` after the scheme
/// and the *last* `@`, so a password containing `@` or `/` is still hidden) and the value of any
/// query parameter whose name contains `password`. It over-redacts rather than under-redacts.
pub fn redact_url(url: &str) -> String {
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rfind('@') {
            Some(at) => {
                let (userinfo, host_and_more) = rest.split_at(at);
                match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{scheme}://{user}:***{host_and_more}"),
                    None => url.to_owned(),
                }
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_and_keeps_the_rest() {
        let cases = [
            (
                "postgres://u:secret@127.0.0.1:1/x",
                "postgres://u:***@127.0.0.1:1/x",
            ),
            ("postgres://u@host/db", "postgres://u@host/db"),
            ("postgres://host/db", "postgres://host/db"),
            ("postgres://u:p@ss/w@host/db", "postgres://u:***@host/db"),
            (
                "postgresql://host/db?user=u&password=secret&sslmode=require",
                "postgresql://host/db?user=u&password=***&sslmode=require",
            ),
            (
                "postgres://h/db?sslpassword=secret",
                "postgres://h/db?sslpassword=***",
            ),
            ("sqlite://audit.db?mode=rwc", "sqlite://audit.db?mode=rwc"),
            ("sqlite:audit.db", "sqlite:audit.db"),
        ];
        for (input, want) in cases {
            let got = redact_url(input);
            assert_eq!(got, want, "redacting {input}");
            assert!(!got.contains("secret"));
        }
    }

    #[test]
    fn parses_supported_schemes() {
        assert!(matches!(
            parse("sqlite://a.db?mode=rwc"),
            Ok(Target::Sqlite(_))
        ));
        assert!(matches!(parse("sqlite:a.db"), Ok(Target::Sqlite(_))));
        assert!(matches!(
            parse("postgres://u:p@h:5432/d"),
            Ok(Target::Postgres(_))
        ));
        assert!(matches!(parse("postgresql://h/d"), Ok(Target::Postgres(_))));
    }

    #[test]
    fn rejects_unknown_schemes_and_memory_without_leaking() {
        for url in [
            "mysql://u:secret@h/d",
            "sqlite::memory:",
            "sqlite://x.db?mode=memory",
            "postgres://u:secret@h:notaport/d",
        ] {
            let err = parse(url).expect_err(url);
            assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err:?}");
            assert!(
                !format!("{err} {err:?}").contains("secret"),
                "{url}: {err:?}"
            );
        }
    }

    #[test]
    fn finds_query_params() {
        assert_eq!(
            query_param("sqlite://a?mode=rwc", "mode").as_deref(),
            Some("rwc")
        );
        assert_eq!(
            query_param("sqlite://a?x=1&mode=ro#f", "mode").as_deref(),
            Some("ro")
        );
        assert_eq!(query_param("sqlite://a", "mode"), None);
    }
}
