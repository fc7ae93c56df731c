//! The storage contract (a trait the host implements) and the persisted
//! record (versioned JSON, opaque to hosts).

use crate::error::{Error, ReauthReason};
use crate::json::{Json, JsonError, ObjectWriter};
use crate::maybe_send::MaybeSendSync;
use crate::secret::Secret;
use crate::tokens::AccessToken;
use async_trait::async_trait;
use std::fmt;

/// A failure reported by the host's store. Its message reaches the caller in
/// a `storage` error, so it must not contain the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::storage(e.0)
    }
}

/// A stored record and the version a compare-and-swap save must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The record, as the core wrote it.
    pub record: String,
    /// An opaque version string chosen by the store.
    pub version: String,
}

/// The result of a compare-and-swap save.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// Saved; the record's new version.
    Saved {
        /// The new version.
        version: String,
    },
    /// Someone saved a newer version first; nothing was written.
    Conflict,
}

/// Where the host keeps each session's record (a database row, a Keychain
/// item, a file). Records are opaque strings; keys are the session keys.
///
/// `load` and `save` are all a single process needs. The lease and
/// versioned members (DESIGN point 9) let a fleet of processes share one
/// session; their defaults describe a store without them.
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
pub trait TokenStore: MaybeSendSync {
    /// The record saved under `key`, or `None`.
    async fn load(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Saves `record` under `key`, durably, before returning.
    async fn save(&self, key: &str, record: &str) -> Result<(), StoreError>;

    /// Whether [`TokenStore::acquire`] / [`TokenStore::release`] work.
    fn supports_lease(&self) -> bool {
        false
    }

    /// Takes the refresh lease on `key` for `owner` for `ttl_ms`; `false`
    /// if another owner holds it.
    async fn acquire(&self, _key: &str, _owner: &str, _ttl_ms: u64) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Gives the lease back (only if `owner` still holds it).
    async fn release(&self, _key: &str, _owner: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether the versioned members do compare-and-swap.
    fn supports_versions(&self) -> bool {
        false
    }

    /// The record and its version.
    async fn load_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.load(key).await?.map(|record| Versioned {
            record,
            version: String::new(),
        }))
    }

    /// Saves only if the stored version is still `expected` (`None`: only if
    /// nothing is stored).
    async fn save_versioned(
        &self,
        key: &str,
        record: &str,
        _expected: Option<&str>,
    ) -> Result<CasOutcome, StoreError> {
        self.save(key, record).await?;
        Ok(CasOutcome::Saved {
            version: String::new(),
        })
    }
}

/// Everything the core remembers about one user session.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Record {
    /// The current access token, if any.
    pub access_token: Option<AccessToken>,
    /// The granted scope.
    pub scope: Option<String>,
    /// The latest ID token.
    pub id_token: Option<Secret>,
    /// The one live refresh token.
    pub refresh_token: Option<Secret>,
    /// End of the refresh token's sliding lifetime (Unix ms).
    pub refresh_expires_at_ms: Option<u64>,
    /// Set once the session is dead: every call fails fast with this reason.
    pub reauth: Option<ReauthReason>,
    /// The refresh token was sent and the answer was lost: a later
    /// `invalid_grant` means the rotation was lost.
    pub in_doubt: bool,
    /// When the record last changed (Unix ms).
    pub updated_at_ms: u64,
}

/// The schema tag of today's records.
pub const RECORD_SCHEMA_V1: &str = "freshtoken.record/1";

/// Largest stored record read (bytes). A record holds the tokens of one
/// answer of at most [`crate::MAX_RESPONSE_BYTES`], whose text grows at most
/// threefold when escaped again: anything bigger was not written by
/// freshtoken and is refused without being parsed.
pub const MAX_RECORD_BYTES: usize = 4 * crate::MAX_RESPONSE_BYTES;

impl Record {
    /// The record as versioned JSON for the store.
    pub fn encode(&self) -> String {
        let mut w = ObjectWriter::default();
        w.string("schema", RECORD_SCHEMA_V1);
        if let Some(a) = &self.access_token {
            w.string("access_token", a.value.expose())
                .int("issued_at", a.issued_at_ms)
                .int("expires_at", a.expires_at_ms);
        }
        if let Some(scope) = &self.scope {
            w.string("scope", scope);
        }
        if let Some(id_token) = &self.id_token {
            w.string("id_token", id_token.expose());
        }
        if let Some(refresh_token) = &self.refresh_token {
            w.string("refresh_token", refresh_token.expose());
        }
        if let Some(at) = self.refresh_expires_at_ms {
            w.int("refresh_expires_at", at);
        }
        if let Some(reason) = self.reauth {
            w.string("reauth", reason.as_str());
        }
        if self.in_doubt {
            w.bool("in_doubt", true);
        }
        w.int("updated_at", self.updated_at_ms);
        w.finish()
    }

    /// Reads a stored record of any known schema version. Unknown members
    /// are ignored; the error never quotes the record.
    pub fn decode(text: &str) -> Result<Record, Error> {
        let unreadable = |what: &str| Error::storage(format!("the stored record {what}"));
        if text.len() > MAX_RECORD_BYTES {
            return Err(unreadable(&format!(
                "is larger than {MAX_RECORD_BYTES} bytes; it was not read"
            )));
        }
        let json = Json::parse(text.as_bytes()).map_err(|e| match e {
            JsonError::Truncated => unreadable("is truncated"),
            _ => unreadable("is not JSON"),
        })?;
        let wrong = || unreadable("has unknown schema or wrong field types");
        if json.get("schema") != Some(&Json::Str(RECORD_SCHEMA_V1.to_owned())) {
            return Err(wrong());
        }
        let string = |name: &str| match json.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(wrong()),
        };
        let time = |name: &str| match json.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Int(n)) => u64::try_from(*n).map(Some).map_err(|_| wrong()),
            Some(_) => Err(wrong()),
        };
        let access_token = match (
            string("access_token")?,
            time("issued_at")?,
            time("expires_at")?,
        ) {
            (Some(value), issued, Some(expires)) if !value.is_empty() => Some(AccessToken {
                value: Secret::new(value),
                issued_at_ms: issued.unwrap_or(expires).min(expires),
                expires_at_ms: expires,
            }),
            _ => None,
        };
        let reauth = match string("reauth")? {
            None => None,
            Some(reason) => Some(ReauthReason::parse(&reason).ok_or_else(wrong)?),
        };
        let in_doubt = match json.get("in_doubt") {
            None | Some(Json::Null) => false,
            Some(Json::Bool(b)) => *b,
            Some(_) => return Err(wrong()),
        };
        Ok(Record {
            access_token,
            scope: string("scope")?,
            id_token: string("id_token")?.map(Secret::new),
            refresh_token: string("refresh_token")?
                .filter(|s| !s.is_empty())
                .map(Secret::new),
            refresh_expires_at_ms: time("refresh_expires_at")?,
            reauth,
            in_doubt,
            updated_at_ms: time("updated_at")?.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as version 1 wrote it. Later versions must keep reading it.
    const FROZEN_V1: &str = r#"{"schema":"freshtoken.record/1","access_token":"at-1","issued_at":1700000000000,"expires_at":1700000900000,"scope":"openid offline_access accounts","id_token":"idt-1","refresh_token":"rt-1","refresh_expires_at":1731536000000,"reauth":"lost_rotation","in_doubt":true,"updated_at":1700000000001}"#;

    fn sample() -> Record {
        Record {
            access_token: Some(AccessToken {
                value: Secret::new("at-1"),
                issued_at_ms: 1_700_000_000_000,
                expires_at_ms: 1_700_000_900_000,
            }),
            scope: Some("openid offline_access accounts".into()),
            id_token: Some(Secret::new("idt-1")),
            refresh_token: Some(Secret::new("rt-1")),
            refresh_expires_at_ms: Some(1_731_536_000_000),
            reauth: Some(ReauthReason::LostRotation),
            in_doubt: true,
            updated_at_ms: 1_700_000_000_001,
        }
    }

    #[test]
    fn frozen_v1_record_still_decodes() {
        assert_eq!(Record::decode(FROZEN_V1).unwrap(), sample());
    }

    #[test]
    fn encoding_is_stable() {
        assert_eq!(sample().encode(), FROZEN_V1);
    }

    #[test]
    fn minimal_record_round_trips() {
        let r = Record {
            refresh_token: Some(Secret::new("rt")),
            ..Record::default()
        };
        let text = r.encode();
        assert_eq!(
            text,
            r#"{"schema":"freshtoken.record/1","refresh_token":"rt","updated_at":0}"#
        );
        assert_eq!(Record::decode(&text).unwrap(), r);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let text = r#"{"schema":"freshtoken.record/1","refresh_token":"rt","future":{"x":1}}"#;
        assert_eq!(
            Record::decode(text)
                .unwrap()
                .refresh_token
                .unwrap()
                .expose(),
            "rt"
        );
    }

    #[test]
    fn corrupt_records_are_storage_errors_without_content() {
        for text in [
            "",
            "{",
            "null",
            r#"{"schema":"freshtoken.record/99","refresh_token":"SENTINEL"}"#,
            r#"{"refresh_token":"SENTINEL"}"#,
            r#"{"schema":"freshtoken.record/1","refresh_token":["SENTINEL"]}"#,
            r#"{"schema":"freshtoken.record/1","expires_at":"SENTINEL"}"#,
        ] {
            let e = Record::decode(text).unwrap_err();
            assert_eq!(e.code().as_str(), "storage", "{text}");
            assert!(!e.to_string().contains("SENTINEL"), "{e}");
        }
    }

    #[test]
    fn oversize_records_are_refused_unread() {
        let padding = " ".repeat(MAX_RECORD_BYTES);
        let text = format!(r#"{{"schema":"freshtoken.record/1","refresh_token":"rt"}}{padding}"#);
        let e = Record::decode(&text).unwrap_err();
        assert_eq!(e.code().as_str(), "storage");
        assert!(e.to_string().contains("larger than"), "{e}");
        let fits = Record {
            access_token: Some(AccessToken {
                value: Secret::new("\u{1}".repeat(crate::MAX_RESPONSE_BYTES / 6)),
                issued_at_ms: 1,
                expires_at_ms: 2,
            }),
            ..sample()
        };
        assert!(fits.encode().len() <= MAX_RECORD_BYTES);
        assert_eq!(Record::decode(&fits.encode()).unwrap(), fits);
    }

    #[test]
    fn debug_hides_tokens() {
        let shown = format!("{:?}", sample());
        assert!(
            !shown.contains("rt-1") && !shown.contains("at-1"),
            "{shown}"
        );
    }
}
