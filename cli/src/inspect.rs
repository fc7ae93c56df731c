//! `freshtoken inspect`: a stored session's state, tokens redacted. Reads
//! the record, after finishing a save a killed process left of it (as
//! `token` and `revoke` do): no request, no credentials.

use crate::args::InspectArgs;
use crate::failure::Failure;
use crate::file_store::{describe, FileStore};
use crate::output::{now_ms, redacted, when, Output};
use freshtoken::{ReauthReason, Record, DEFAULT_LEEWAY_SECS};
use serde::Serialize;
use std::fmt::Write;

/// Where a session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Nothing is stored under the key.
    Missing,
    /// The access token is fresh: `token` sends nothing.
    Fresh,
    /// The access token is stale; the refresh token can renew it.
    Refreshable,
    /// The user must authorize again, for this reason.
    Dead(ReauthReason),
}

impl Status {
    /// The status of `record` at `now_ms`, as `token` would find it: a
    /// marked reason first, then freshness (the default leeway), then the
    /// refresh token's presence and sliding lifetime.
    pub fn of(record: Option<&Record>, now_ms: u64) -> Status {
        let Some(record) = record else {
            return Status::Missing;
        };
        if let Some(reason) = record.reauth {
            return Status::Dead(reason);
        }
        let leeway_ms = DEFAULT_LEEWAY_SECS as u64 * 1000;
        if record
            .access_token
            .as_ref()
            .is_some_and(|a| a.is_fresh(now_ms, leeway_ms))
        {
            return Status::Fresh;
        }
        if record.refresh_token.is_none() {
            return Status::Dead(ReauthReason::NoRefreshToken);
        }
        if record.refresh_lapsed(now_ms) {
            return Status::Dead(ReauthReason::RefreshExpired);
        }
        Status::Refreshable
    }

    /// The stable word (`--quiet`, `--json`'s `status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Missing => "missing",
            Status::Fresh => "fresh",
            Status::Refreshable => "refreshable",
            Status::Dead(_) => "reauthorization_required",
        }
    }

    fn reason(self) -> Option<ReauthReason> {
        match self {
            Status::Dead(reason) => Some(reason),
            _ => None,
        }
    }
}

/// The `--json` result: times in Unix ms, tokens redacted.
#[derive(Serialize)]
struct InspectJson<'a> {
    key: &'a str,
    file: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_issued_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_expires_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_expires_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    in_doubt: bool,
    /// Revoked here, but the server may still hold a token: `revoke` again retries.
    revocation_pending: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at_ms: Option<u64>,
}

/// Prints the state of the stored session.
pub async fn run(args: InspectArgs, out: Output) -> Result<(), Failure> {
    let store = FileStore::new(&args.store.store);
    let key = args.store.key.as_str();
    let path = store.path_for(key);
    // What is shown is the record `token` would use: a save a killed
    // process left is finished first, as `token` does. Without the key's
    // lock, held for a whole refresh: `recover` takes the write lock, under
    // which a temporary file is a killed save's, and a holder of the key's
    // lock saves by compare-and-swap, so this ends its save in a conflict,
    // never an overwrite. Finishing it may fail (a read-only directory):
    // the older record is then not shown as the session's state.
    let then = "the record file is older than that save, so it is not shown";
    crate::session_lock::recover_saves(&store, key, then).await?;
    let text = store
        .read(key)
        .map_err(|e| Failure::storage(format!("cannot read the record ({})", describe(&e))))?;
    let record = text.as_deref().map(Record::decode).transpose()?;
    let now = now_ms();
    let status = Status::of(record.as_ref(), now);
    let access = record.as_ref().and_then(|r| r.access_token.as_ref());
    let json = InspectJson {
        key,
        file: path.display().to_string(),
        status: status.as_str(),
        reason: status.reason().map(ReauthReason::as_str),
        access_token: access.map(|a| redacted(a.value.expose())),
        access_issued_at_ms: access.map(|a| a.issued_at_ms),
        access_expires_at_ms: access.map(|a| a.expires_at_ms),
        refresh_token: record
            .as_ref()
            .and_then(|r| r.refresh_token.as_ref())
            .map(|t| redacted(t.expose())),
        refresh_expires_at_ms: record.as_ref().and_then(|r| r.refresh_expires_at_ms),
        id_token: record
            .as_ref()
            .and_then(|r| r.id_token.as_ref())
            .map(|t| redacted(t.expose())),
        scope: record.as_ref().and_then(|r| r.scope.as_deref()),
        in_doubt: record.as_ref().is_some_and(|r| r.in_doubt),
        revocation_pending: record.as_ref().is_some_and(|r| r.revocation_pending(now)),
        updated_at_ms: record.as_ref().map(|r| r.updated_at_ms),
    };
    out.result(|| human(&json, status), Some(status.as_str()), &json)
}

/// The text for people.
fn human(j: &InspectJson<'_>, status: Status) -> String {
    let mut text = format!("Session {} ({})\n", j.key, j.file);
    let line = |text: &mut String, label: &str, value: &str| {
        let _ = writeln!(text, "  {label:<15}{value}");
    };
    let status_text = match status {
        Status::Missing => "missing: nothing stored under this key (link it first)".to_owned(),
        Status::Fresh => "fresh: `freshtoken token` sends no request".to_owned(),
        Status::Refreshable => "refreshable: the next `freshtoken token` refreshes".to_owned(),
        Status::Dead(reason) => {
            format!("reauthorization_required ({reason}): the user must link again")
        }
    };
    line(&mut text, "status", &status_text);
    if status == Status::Missing {
        return text;
    }
    let access = match (&j.access_token, j.access_expires_at_ms) {
        (Some(token), Some(at)) => format!("{token}, expires {}", when(at)),
        _ => "none".to_owned(),
    };
    line(&mut text, "access token", &access);
    line(
        &mut text,
        "refresh token",
        j.refresh_token.as_deref().unwrap_or("none"),
    );
    if let (Some(_), Some(at)) = (&j.refresh_token, j.refresh_expires_at_ms) {
        line(&mut text, "refresh until", &when(at));
    }
    if let Some(id) = &j.id_token {
        line(&mut text, "id token", id);
    }
    if let Some(scope) = j.scope {
        // As the server sent it: a control character (a terminal's escape
        // sequence) is shown as `?`, never written to the terminal.
        let shown: String = scope
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        line(&mut text, "scope", &shown);
    }
    if j.in_doubt {
        line(
            &mut text,
            "in doubt",
            "the last refresh answer was lost; the server may have rotated the token",
        );
    }
    if j.revocation_pending {
        line(
            &mut text,
            "revocation",
            "pending: the server may still hold its tokens; `freshtoken revoke` again retries",
        );
    }
    if let Some(at) = j.updated_at_ms {
        line(&mut text, "updated", &when(at));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshtoken::{AccessToken, Secret};

    fn record(access_expires_at_ms: Option<u64>, refresh: bool) -> Record {
        Record {
            access_token: access_expires_at_ms.map(|at| AccessToken {
                value: Secret::new("access-token-value"),
                issued_at_ms: at.saturating_sub(900_000),
                expires_at_ms: at,
            }),
            refresh_token: refresh.then(|| Secret::new("refresh")),
            refresh_expires_at_ms: refresh.then_some(LAPSES_AT),
            ..Record::default()
        }
    }

    /// The refresh expiry of `record`'s: 2027-01-01 (one before 2026 is
    /// taken as written under a clock far behind, and is no verdict).
    const LAPSES_AT: u64 = 1_798_761_600_000;

    #[test]
    fn statuses_follow_the_core_rules() {
        let now = LAPSES_AT - 5_000_000;
        assert_eq!(Status::of(None, now), Status::Missing);
        assert_eq!(
            Status::of(Some(&record(Some(now + 600_000), true)), now),
            Status::Fresh
        );
        // Inside the leeway: stale.
        assert_eq!(
            Status::of(Some(&record(Some(now + 30_000), true)), now),
            Status::Refreshable
        );
        assert_eq!(
            Status::of(Some(&record(None, false)), now),
            Status::Dead(ReauthReason::NoRefreshToken)
        );
        assert_eq!(
            Status::of(Some(&record(None, true)), LAPSES_AT),
            Status::Dead(ReauthReason::RefreshExpired)
        );
        let mut behind = record(None, true);
        behind.refresh_expires_at_ms = Some(33_264_000_000); // written in 1970
        assert_eq!(Status::of(Some(&behind), LAPSES_AT), Status::Refreshable);
        let mut dead = record(Some(now + 600_000), true);
        dead.reauth = Some(ReauthReason::Revoked);
        assert_eq!(
            Status::of(Some(&dead), now),
            Status::Dead(ReauthReason::Revoked)
        );
    }
}
