//! `authzctl audit list|tail|export|verify|prune` and `keys generate-audit`: reading, following,
//! exporting, verifying and pruning the audit trail.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use authz_audit::{
    AuditQuery, AuditStore, ChainReport, Finding, PublicKey, SigningKey, StoredRecord, Tamper,
};
use authz_types::{AuditFilter, RecordKind, now_unix_ms};
use serde_json::json;

use crate::{
    AuditExportArgs, AuditListArgs, AuditPruneArgs, AuditTailArgs, AuditVerifyArgs, Confirmation,
    ExportFormat, Outcome, Output, format_time, with_store, write_table,
};

/// How often `audit tail --follow` asks the store for new records.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Records read per query when paging (export, follow).
const PAGE: u32 = 1_000;

/// How many ids behind the newest record seen `audit tail --follow` reads again on every poll.
/// A record whose transaction commits late can get a smaller id than one already printed (two
/// gateway replicas writing to one Postgres database); reading a window behind, and skipping
/// the ids already printed, still shows it.
const REREAD_WINDOW: i64 = 1_000;

/// A record as JSON: its fields plus its store `id`.
fn record_json(r: &StoredRecord) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(&r.record)?;
    v["id"] = r.id.into();
    Ok(v)
}

fn write_header(out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<8} {:<6} {:<22} {:<10} {:<18} {:<24} {:<26} RULE",
        "TIME", "RECORD", "RESULT", "REASON/OUTCOME", "SUBJECT", "ROLES", "METHOD", "TARGET"
    )
}

/// One record as a table row (columns are fixed so rows can be printed as they arrive).
fn write_row(out: &mut dyn Write, r: &StoredRecord) -> std::io::Result<()> {
    let rec = &r.record;
    writeln!(
        out,
        "{:<24} {:<8} {:<6} {:<22} {:<10} {:<18} {:<24} {:<26} {}",
        format_time(rec.time_ms),
        rec.kind.as_str(),
        rec.decision.as_str(),
        match (rec.kind, rec.repeat_count) {
            // An outcome says how the upstream answered, not the decision's reason again.
            (RecordKind::Outcome, _) => outcome_summary(rec),
            // An aggregate record of identical refusals says how many it stands for.
            (_, Some(n)) => format!("{} x{n}", rec.reason.as_str()),
            (_, None) => rec.reason.as_str().to_owned(),
        },
        rec.subject.as_deref().unwrap_or("-"),
        if rec.roles.is_empty() {
            "-".to_owned()
        } else {
            rec.roles.join(",")
        },
        rec.method,
        rec.target.as_deref().unwrap_or("-"),
        rec.matched_rule.as_deref().unwrap_or("-"),
    )
}

/// An outcome record's cell: how it ended, the upstream status and its latency, e.g.
/// `ok 200 12ms`.
fn outcome_summary(rec: &authz_types::AuditRecord) -> String {
    let mut parts = vec![rec.outcome.clone().unwrap_or_else(|| "-".to_owned())];
    if let Some(status) = rec.upstream_status {
        parts.push(status.to_string());
    }
    if let Some(ms) = rec.upstream_latency_ms {
        parts.push(format!("{ms}ms"));
    }
    parts.join(" ")
}

/// A record as a table row or one JSON line.
fn write_record(out: &mut dyn Write, output: Output, r: &StoredRecord) -> anyhow::Result<()> {
    match output {
        Output::Table => write_row(out, r)?,
        Output::Json | Output::Jsonl => writeln!(out, "{}", record_json(r)?)?,
    }
    Ok(())
}

/// `audit list`.
pub(crate) async fn list(
    a: &AuditListArgs,
    output: Output,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut query = a.filter.to_query(now_unix_ms());
    query.filter.limit = Some(a.limit);
    let records = with_store(&a.store, async |store: &AuditStore, shown: &str| {
        store
            .search(&query)
            .await
            .with_context(|| format!("cannot query the audit store {shown}"))
    })
    .await?;
    match output {
        Output::Json => {
            let rows = records
                .iter()
                .map(record_json)
                .collect::<anyhow::Result<Vec<_>>>()?;
            writeln!(out, "{}", serde_json::Value::Array(rows))?;
        }
        Output::Jsonl => {
            for r in &records {
                write_record(out, output, r)?;
            }
        }
        Output::Table => {
            write_header(out)?;
            for r in &records {
                write_row(out, r)?;
            }
        }
    }
    Ok(())
}

/// How `audit tail --follow` polls and when it stops.
pub struct FollowControl<'a> {
    /// The pause before every poll.
    pub interval: Duration,
    /// Stop (successfully) on Ctrl-C. The binary sets it; tests leave it off so the test
    /// process keeps its own signal handling.
    pub stop_on_ctrl_c: bool,
    /// Called after every poll with the records it printed; returning true stops following.
    pub stop: &'a mut dyn FnMut(&[StoredRecord]) -> bool,
}

impl std::fmt::Debug for FollowControl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowControl")
            .field("interval", &self.interval)
            .field("stop_on_ctrl_c", &self.stop_on_ctrl_c)
            .finish_non_exhaustive()
    }
}

/// `audit tail`: prints the newest `a.limit` matching records (oldest of them first), then with
/// `a.follow` polls for new ones every `control.interval`, printing each as it comes, until
/// `control.stop` says so (or Ctrl-C). Table output prints its header once; JSON output is one
/// object per line.
pub async fn audit_tail(
    a: &AuditTailArgs,
    output: Output,
    out: &mut dyn Write,
    control: FollowControl<'_>,
) -> anyhow::Result<()> {
    let base = a.filter.to_query(now_unix_ms());
    with_store(&a.store, async |store: &AuditStore, shown: &str| {
        let read = || format!("cannot query the audit store {shown}");
        let mut newest = base.clone();
        // At least one record is read even for `-n 0`, to know where following starts.
        newest.filter.limit = Some(a.limit.max(1));
        let mut records = store.search(&newest).await.with_context(read)?;
        let start_id = records.iter().map(|r| r.id).max().unwrap_or(0);
        records.truncate(usize::try_from(a.limit).unwrap_or(usize::MAX));
        records.reverse();
        if output == Output::Table {
            write_header(out)?;
        }
        for r in &records {
            write_record(out, output, r)?;
        }
        out.flush()?;
        if !a.follow {
            return Ok(());
        }
        let mut follower = Follower::new(start_id);
        let ctrl_c = async {
            if !control.stop_on_ctrl_c || tokio::signal::ctrl_c().await.is_err() {
                // Without a handler there is nothing to wait for; the stop condition decides.
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                () = tokio::time::sleep(control.interval) => {}
                () = &mut ctrl_c => break,
            }
            let fresh = follower.poll(store, &base).await.with_context(read)?;
            for r in &fresh {
                write_record(out, output, r)?;
            }
            out.flush()?;
            if (control.stop)(&fresh) {
                break;
            }
        }
        Ok(())
    })
    .await
}

/// Where `audit tail --follow` stands: records after `floor` are new; ids within
/// [`REREAD_WINDOW`] of the highest seen are remembered so a re-read does not print them twice.
struct Follower {
    floor: i64,
    high: i64,
    seen: BTreeSet<i64>,
}

impl Follower {
    fn new(start_id: i64) -> Self {
        Self {
            floor: start_id,
            high: start_id,
            seen: BTreeSet::new(),
        }
    }

    /// The matching records not printed yet, in id order (late commits after them).
    async fn poll(
        &mut self,
        store: &AuditStore,
        base: &AuditQuery,
    ) -> Result<Vec<StoredRecord>, authz_audit::Error> {
        let mut cursor = self.floor.max(self.high.saturating_sub(REREAD_WINDOW));
        let mut fresh = Vec::new();
        loop {
            let mut query = base.clone();
            query.after_id = Some(cursor);
            query.filter.limit = Some(PAGE);
            let page = store.search(&query).await?;
            let full = page.len() >= usize::try_from(PAGE).unwrap_or(usize::MAX);
            for r in page {
                cursor = cursor.max(r.id);
                if self.seen.insert(r.id) {
                    fresh.push(r);
                }
            }
            if !full {
                break;
            }
        }
        self.high = self.high.max(cursor);
        let keep_from = self.high.saturating_sub(REREAD_WINDOW);
        self.seen = self.seen.split_off(&keep_from);
        Ok(fresh)
    }
}

/// Calls `f` on every record `base` matches, oldest first (in id order), a page at a time so
/// memory stays bounded whatever the store holds.
pub(crate) async fn each_record(
    store: &AuditStore,
    base: &AuditQuery,
    shown: &str,
    mut f: impl FnMut(&StoredRecord) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut cursor = i64::MIN;
    loop {
        let mut query = base.clone();
        query.after_id = Some(cursor);
        query.filter.limit = Some(PAGE);
        let page = store
            .search(&query)
            .await
            .with_context(|| format!("cannot read the audit store {shown}"))?;
        for r in &page {
            cursor = r.id;
            f(r)?;
        }
        if page.len() < usize::try_from(PAGE).unwrap_or(usize::MAX) {
            return Ok(());
        }
    }
}

/// A record of something the gateway did, not of a request it refused: a pin step, an
/// approver's decision, a stdio process starting or ending. A refused attempt to decide an
/// approval (`approver_refused`) is a refused request and counts.
fn is_gateway_event(rec: &authz_types::AuditRecord) -> bool {
    let m = rec.method.as_str();
    m.starts_with("pin/")
        || m.starts_with("process/")
        || (m.starts_with("approval/") && rec.reason != authz_types::ReasonCode::ApproverRefused)
}

/// The window `audit stats` covers when `--since` is not given.
const STATS_DEFAULT_WINDOW_MS: i64 = 24 * 3_600_000;

/// Denials counted by one key, most frequent first (ties by key), the first `top`.
fn top_counts(counts: std::collections::HashMap<String, u64>, top: u32) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(usize::try_from(top).unwrap_or(usize::MAX));
    v
}

/// `audit stats`: the denial decisions in the window (default the last 24 h), counted by
/// reason, subject (`-` without an identity) and target (`method target`), an aggregate record
/// counting as the refusals it stands for. Paged, so memory is bounded by the distinct keys.
pub(crate) async fn stats(
    a: &crate::cli::AuditStatsArgs,
    output: Output,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    use std::collections::HashMap;
    let now = now_unix_ms();
    let mut base = a.filter.to_query(now);
    // It counts denials: a --decision asking for anything else is a mistake, not ignored.
    if base.filter.decision == Some(authz_types::Effect::Allow) {
        return Err(crate::exit::UsageError::new(
            "`audit stats` counts denials; for allowed decisions use `audit list --decision allow`",
        )
        .into());
    }
    base.filter.decision = Some(authz_types::Effect::Deny);
    let since = *base
        .filter
        .since_ms
        .get_or_insert(now - STATS_DEFAULT_WINDOW_MS);
    let until = base.filter.until_ms.unwrap_or(now);
    let (mut total, mut records) = (0u64, 0u64);
    let (mut reasons, mut subjects, mut targets) = (HashMap::new(), HashMap::new(), HashMap::new());
    with_store(&a.store, async |store: &AuditStore, shown: &str| {
        each_record(store, &base, shown, |r| {
            let rec = &r.record;
            if rec.kind != RecordKind::Decision || is_gateway_event(rec) {
                return Ok(());
            }
            let n = u64::try_from(rec.repeat_count.unwrap_or(1)).unwrap_or(1);
            total += n;
            records += 1;
            *reasons.entry(rec.reason.as_str().to_owned()).or_insert(0) += n;
            *subjects
                .entry(rec.subject.clone().unwrap_or_else(|| "-".to_owned()))
                .or_insert(0) += n;
            let target = match &rec.target {
                Some(t) => format!("{} {t}", rec.method),
                None => rec.method.clone(),
            };
            *targets.entry(target).or_insert(0) += n;
            Ok(())
        })
        .await
    })
    .await?;
    let (reasons, subjects, targets) = (
        top_counts(reasons, a.top),
        top_counts(subjects, a.top),
        top_counts(targets, a.top),
    );
    match output {
        Output::Json | Output::Jsonl => {
            let list = |v: &[(String, u64)], key: &str| -> Vec<serde_json::Value> {
                v.iter()
                    .map(|(k, n)| json!({ key: k, "denials": n }))
                    .collect()
            };
            let doc = json!({
                "since": format_time(since),
                "until": format_time(until),
                "denials": total,
                "records": records,
                "by_reason": list(&reasons, "reason"),
                "by_subject": list(&subjects, "subject"),
                "by_target": list(&targets, "target"),
            });
            writeln!(out, "{doc}")?;
        }
        Output::Table => {
            writeln!(
                out,
                "{total} denials in {records} records, {} to {}",
                format_time(since),
                format_time(until)
            )?;
            for (title, rows) in [
                ("REASON", &reasons),
                ("SUBJECT", &subjects),
                ("TARGET", &targets),
            ] {
                writeln!(out, "\n{title:<48} DENIALS")?;
                for (key, n) in rows {
                    writeln!(out, "{key:<48} {n}")?;
                }
            }
        }
    }
    Ok(())
}

/// `audit export`: every matching record, oldest first (in id order), paged so memory stays
/// bounded whatever the store holds.
pub(crate) async fn export(a: &AuditExportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let base = a.filter.to_query(now_unix_ms());
    with_store(&a.store, async |store: &AuditStore, shown: &str| {
        match a.format {
            ExportFormat::Json => write!(out, "[")?,
            ExportFormat::Csv => {
                write_csv_row(out, &csv_header())?;
            }
            ExportFormat::Jsonl => {}
        }
        let mut written = 0u64;
        each_record(store, &base, shown, |r| {
            match a.format {
                ExportFormat::Jsonl => writeln!(out, "{}", record_json(r)?)?,
                ExportFormat::Json => {
                    let sep = if written == 0 { "\n" } else { ",\n" };
                    write!(out, "{sep}{}", record_json(r)?)?;
                }
                ExportFormat::Csv => write_csv_row(out, &csv_cells(r))?,
            }
            written += 1;
            Ok(())
        })
        .await?;
        if a.format == ExportFormat::Json {
            writeln!(out, "{}]", if written == 0 { "" } else { "\n" })?;
        }
        out.flush()?;
        Ok(())
    })
    .await
}

/// A CSV cell: its text, and whether that text came from a request (guarded against formula
/// injection) rather than being a number, time or fixed code of ours.
type Cell = (String, bool);

/// How a record's cell in one column is written.
type CellOf = fn(&StoredRecord) -> Cell;

/// The columns of `audit export --format csv`, in order: each header and how a record's cell
/// in it is written.
const CSV_COLUMNS: [(&str, CellOf); 27] = [
    ("id", |r| (r.id.to_string(), false)),
    ("time", |r| (format_time(r.record.time_ms), false)),
    ("time_ms", |r| (r.record.time_ms.to_string(), false)),
    ("request_id", |r| text(&r.record.request_id)),
    ("session_id", |r| opt(&r.record.session_id)),
    ("tenant", |r| opt(&r.record.tenant)),
    ("subject", |r| opt(&r.record.subject)),
    ("issuer", |r| opt(&r.record.issuer)),
    ("client_id", |r| opt(&r.record.client_id)),
    ("actors", |r| text(&r.record.actors.join(" "))),
    ("token_id", |r| opt(&r.record.token_id)),
    ("scopes", |r| text(&r.record.scopes.join(" "))),
    ("roles", |r| text(&r.record.roles.join(" "))),
    ("upstream", |r| text(&r.record.upstream)),
    ("method", |r| text(&r.record.method)),
    ("target", |r| opt(&r.record.target)),
    ("decision", |r| {
        (r.record.decision.as_str().to_owned(), false)
    }),
    ("reason", |r| (r.record.reason.as_str().to_owned(), false)),
    ("matched_rule", |r| opt(&r.record.matched_rule)),
    ("policy_revision", |r| num(r.record.policy_revision)),
    ("http_status", |r| num(r.record.http_status.map(i64::from))),
    ("jsonrpc_error", |r| num(r.record.jsonrpc_error)),
    ("client_addr", |r| opt(&r.record.client_addr)),
    ("repeat_count", |r| num(r.record.repeat_count)),
    ("first_time_ms", |r| num(r.record.first_time_ms)),
    ("first_round_request_id", |r| {
        opt(&r.record.first_round_request_id)
    }),
    ("shadow", |r| opt(&r.record.shadow)),
];

/// A cell of request text.
fn text(v: &str) -> Cell {
    (v.to_owned(), true)
}

/// A cell of optional request text (empty when absent).
fn opt(v: &Option<String>) -> Cell {
    (v.clone().unwrap_or_default(), true)
}

/// A cell of an optional number (empty when absent).
fn num(v: Option<i64>) -> Cell {
    (v.map(|n| n.to_string()).unwrap_or_default(), false)
}

/// The header row of the CSV export.
fn csv_header() -> Vec<Cell> {
    CSV_COLUMNS
        .iter()
        .map(|(name, _)| ((*name).to_owned(), false))
        .collect()
}

/// The cells of a record's CSV row.
fn csv_cells(r: &StoredRecord) -> Vec<Cell> {
    CSV_COLUMNS.iter().map(|(_, cell)| cell(r)).collect()
}

/// Writes one CSV row (RFC 4180 quoting by the `csv` crate: a cell is quoted when it holds a
/// separator, quote or line break). With `guard`, a cell starting with a character spreadsheets
/// read as a formula (`= + - @`, tab, CR) gets a leading `'`, so a crafted tool name or subject
/// cannot run as one when the file is opened.
fn write_csv_row(out: &mut dyn Write, cells: &[Cell]) -> std::io::Result<()> {
    let mut row = csv::WriterBuilder::new()
        .buffer_capacity(1024)
        .from_writer(Vec::new());
    row.write_record(cells.iter().map(|(cell, guard)| {
        if *guard && cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{cell}")
        } else {
            cell.clone()
        }
    }))?;
    let bytes = row
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    out.write_all(&bytes)
}

/// Reads `--public-key`: 64 hex digits, else a file holding the key.
fn load_public_key(given: &str) -> anyhow::Result<PublicKey> {
    if let Ok(key) = PublicKey::from_hex(given) {
        return Ok(key);
    }
    let path = Path::new(given);
    if path.is_file() {
        return PublicKey::from_file(path)
            .with_context(|| format!("cannot load the audit public key {}", path.display()));
    }
    bail!("--public-key `{given}` is neither 64 hex digits nor a readable file")
}

fn tamper_name(kind: Tamper) -> &'static str {
    match kind {
        Tamper::Edited => "edited",
        Tamper::Deleted => "deleted",
        Tamper::Inserted => "inserted",
        Tamper::Reordered => "reordered",
        Tamper::BadCheckpoint => "bad_checkpoint",
    }
}

fn finding_json(f: &Finding) -> serde_json::Value {
    json!({
        "chain_id": f.chain_id, "seq": f.seq, "record_id": f.record_id,
        "kind": tamper_name(f.kind), "detail": f.detail,
    })
}

fn chain_json(c: &ChainReport) -> serde_json::Value {
    json!({
        "chain_id": c.chain_id, "records": c.records, "anchor_seq": c.anchor_seq,
        "last_seq": c.last_seq, "checkpoints": c.checkpoints,
        "signed_through": c.signed_through, "intact": c.problem.is_none(),
        "problem": c.problem.as_ref().map(finding_json),
    })
}

/// `audit verify`: exit 0 when every chain is intact, [`crate::EXIT_TAMPERED`] naming the first
/// bad record of each broken chain otherwise.
pub(crate) async fn verify(
    a: &AuditVerifyArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let key = a.public_key.as_deref().map(load_public_key).transpose()?;
    let report = with_store(&a.store, async |store: &AuditStore, shown: &str| {
        authz_audit::verify(store, a.chain.as_deref(), key.as_ref())
            .await
            .with_context(|| format!("cannot verify the audit store {shown}"))
    })
    .await?;
    if let Some(chain) = &a.chain
        && report
            .chains
            .iter()
            .all(|c| c.records == 0 && c.anchor_seq.is_none() && c.problem.is_none())
    {
        bail!("the audit store has no chain `{chain}`");
    }
    let intact = report.is_intact();
    if json {
        writeln!(
            out,
            "{}",
            json!({
                "intact": intact,
                "signatures_checked": key.is_some(),
                "chains": report.chains.iter().map(chain_json).collect::<Vec<_>>(),
                "unchained_records": report.unchained_records,
                "problem": report.first_problem().map(finding_json),
            })
        )?;
    } else {
        write_verify_table(out, &report.chains, key.is_some())?;
        if report.unchained_records > 0 {
            writeln!(
                out,
                "{} record(s) written without a chain are not covered",
                report.unchained_records
            )?;
        }
        if key.is_none() {
            writeln!(
                out,
                "checkpoint signatures were not checked (pass --public-key)"
            )?;
        }
        if intact {
            let records: u64 = report.chains.iter().map(|c| c.records).sum();
            writeln!(
                out,
                "intact: {} chain(s), {records} record(s) verified",
                report.chains.len()
            )?;
        } else {
            for f in report.chains.iter().filter_map(|c| c.problem.as_ref()) {
                writeln!(
                    out,
                    "TAMPERED: chain {}, seq {}, record id {}: {}: {}",
                    f.chain_id,
                    f.seq,
                    f.record_id
                        .map(|id| id.to_string())
                        .unwrap_or_else(|| "-".into()),
                    tamper_name(f.kind),
                    f.detail
                )?;
            }
        }
    }
    Ok(if intact {
        Outcome::Success
    } else {
        Outcome::Tampered
    })
}

fn write_verify_table(
    out: &mut dyn Write,
    chains: &[ChainReport],
    signatures: bool,
) -> std::io::Result<()> {
    if chains.is_empty() {
        return writeln!(out, "no chained records");
    }
    let rows: Vec<Vec<String>> = chains
        .iter()
        .map(|c| {
            vec![
                c.chain_id.clone(),
                c.records.to_string(),
                c.anchor_seq
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                c.last_seq.to_string(),
                c.checkpoints.to_string(),
                match (signatures, c.signed_through) {
                    (false, _) => "not checked".into(),
                    (true, Some(s)) => s.to_string(),
                    (true, None) => "-".into(),
                },
                c.problem
                    .as_ref()
                    .map(|f| tamper_name(f.kind).to_uppercase())
                    .unwrap_or_else(|| "intact".into()),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "CHAIN",
            "RECORDS",
            "ANCHOR",
            "LAST SEQ",
            "CHECKPOINTS",
            "SIGNED THROUGH",
            "STATUS",
        ],
        &rows,
    )
}

/// `audit prune`: destructive, so confirmed (or `--yes`); `--dry-run` counts.
pub(crate) async fn prune(
    a: &AuditPruneArgs,
    json: bool,
    out: &mut dyn Write,
    confirmation: Confirmation,
) -> anyhow::Result<()> {
    let key = a
        .signing_key
        .as_deref()
        .map(|path| {
            SigningKey::from_seed_file(path)
                .with_context(|| format!("cannot load the audit signing key {}", path.display()))
        })
        .transpose()?;
    let before_ms = a.before.to_unix_ms(now_unix_ms());
    let when = format_time(before_ms);
    with_store(&a.store, async |store: &AuditStore, shown: &str| {
        let older = store
            .count_matching(&AuditQuery {
                filter: AuditFilter {
                    until_ms: Some(before_ms),
                    ..AuditFilter::default()
                },
                ..AuditQuery::default()
            })
            .await
            .with_context(|| format!("cannot read the audit store {shown}"))?;
        if a.dry_run || older == 0 {
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({
                        "before": when, "before_ms": before_ms, "older": older,
                        "deleted": 0, "dry_run": a.dry_run,
                    })
                )?;
            } else if a.dry_run {
                writeln!(
                    out,
                    "dry run: would delete up to {older} record(s) older than {when} (per chain, \
                     only those before its first newer record); nothing was written"
                )?;
            } else {
                writeln!(out, "nothing to delete: no record is older than {when}")?;
            }
            return Ok(());
        }
        crate::confirm(
            confirmation,
            a.confirm.yes,
            &format!("delete up to {older} audit record(s) older than {when}"),
            &[],
        )?;
        let report = store
            .prune_before(before_ms, key.as_ref())
            .await
            .with_context(|| format!("cannot prune the audit store {shown}"))?;
        let deleted = report.chained_deleted + report.unchained_deleted;
        if json {
            let anchors: Vec<serde_json::Value> = report
                .anchors
                .iter()
                .map(|(chain, seq)| json!({"chain_id": chain, "seq": seq}))
                .collect();
            writeln!(
                out,
                "{}",
                json!({
                    "before": when, "before_ms": before_ms, "older": older, "deleted": deleted,
                    "chained_deleted": report.chained_deleted,
                    "unchained_deleted": report.unchained_deleted,
                    "anchors": anchors, "signed": key.is_some(), "dry_run": false,
                })
            )?;
        } else {
            writeln!(
                out,
                "deleted {deleted} record(s) older than {when} ({} chained, {} unchained)",
                report.chained_deleted, report.unchained_deleted
            )?;
            for (chain, seq) in &report.anchors {
                writeln!(
                    out,
                    "  chain {chain}: {} anchor at seq {seq}",
                    if key.is_some() { "signed" } else { "unsigned" }
                )?;
            }
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One cell as [`write_csv_row`] writes it.
    fn csv_escape(cell: &str, guard: bool) -> String {
        let mut out = Vec::new();
        write_csv_row(&mut out, &[(cell.to_owned(), guard)]).expect("write to a Vec");
        let text = String::from_utf8(out).expect("UTF-8");
        text.strip_suffix('\n').unwrap_or(&text).to_owned()
    }

    #[test]
    fn csv_cells_are_quoted_and_guarded() {
        assert_eq!(csv_escape("plain", true), "plain");
        assert_eq!(csv_escape("a,b", true), "\"a,b\"");
        assert_eq!(csv_escape("say \"hi\"", true), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_escape("line\nbreak", true), "\"line\nbreak\"");
        assert_eq!(csv_escape("=HYPERLINK(1)", true), "'=HYPERLINK(1)");
        assert_eq!(csv_escape("-32600", false), "-32600");
    }

    #[test]
    fn a_decision_and_its_outcome_read_differently_in_the_table() {
        let mut decision = authz_types::AuditRecord::unauthenticated(
            "req-1",
            "tickets",
            "tools/call",
            authz_types::ReasonCode::PolicyAllow,
            200,
        );
        decision.decision = authz_types::Effect::Allow;
        decision.http_status = None;
        decision.subject = Some("alice".into());
        let mut outcome = authz_types::AuditRecord::outcome(&decision);
        outcome.time_ms = decision.time_ms;
        outcome.upstream_status = Some(200);
        outcome.upstream_latency_ms = Some(12);
        outcome.outcome = Some("ok".into());
        let row = |record| {
            let mut out = Vec::new();
            write_row(&mut out, &StoredRecord { id: 1, record }).expect("write");
            String::from_utf8(out).expect("UTF-8")
        };
        let (d, o) = (row(decision), row(outcome));
        assert!(
            d.contains(" decision ") && d.contains("policy_allow"),
            "{d}"
        );
        assert!(o.contains(" outcome ") && o.contains("ok 200 12ms"), "{o}");
        assert!(!o.contains("policy_allow"), "{o}");
        let mut header = Vec::new();
        write_header(&mut header).expect("write");
        assert!(String::from_utf8(header).expect("UTF-8").contains("RECORD"));
    }
}
