//! The storage contract (a trait the host implements) and the persisted
//! record (versioned JSON, opaque to hosts).

use crate::error::{Error, ReauthReason};
use crate::json_text::{self, JsonError, Scalar};
use crate::maybe_send::MaybeSendSync;
use crate::response::is_printable_token;
use crate::secret::Secret;
use crate::tokens::AccessToken;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
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

    /// This store as the crate's [`crate::MemoryStore`], which sessions
    /// share their record objects with instead of saving text. Every other
    /// store keeps the default, `None`.
    #[doc(hidden)]
    fn in_memory(&self) -> Option<&crate::MemoryStore> {
        None
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

    /// The version of the record stored under `key` (`None`: nothing is
    /// stored), without the record: what a deliberate replacement (`seed`, a
    /// code exchange) compares and swaps against. The default reads it
    /// through [`TokenStore::load_versioned`]. A wrapper whose read can fail
    /// on the record itself ([`crate::EncryptedStore`]: a key no longer
    /// given, an altered envelope) passes its inner store's version through,
    /// so that a re-link can still replace a record no key opens.
    async fn load_version(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.load_versioned(key).await?.map(|v| v.version))
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
#[derive(Clone, PartialEq, Eq, Default)]
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
    /// The fingerprint of the authorization code (with its PKCE verifier
    /// and redirect URI) whose exchange issued this record: a truncated
    /// SHA-256, never the code. A repeat of that exchange, in any process,
    /// finds it here and sends nothing (a code sent twice makes the server
    /// revoke what its first use issued). Only a code exchange sets it; the
    /// records a refresh rotates to keep it (the same link), a seed has none.
    pub from_code: Option<String>,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("access_token", &self.access_token)
            .field("scope", &self.scope)
            .field("id_token", &self.id_token)
            .field("refresh_token", &self.refresh_token)
            .field("refresh_expires_at_ms", &self.refresh_expires_at_ms)
            .field("reauth", &self.reauth)
            .field("in_doubt", &self.in_doubt)
            .field("updated_at_ms", &self.updated_at_ms)
            // Shown only as set: a record read from a store may carry any
            // text there, a token's included.
            .field("from_code", &self.from_code.as_ref().map(|_| ".."))
            .finish()
    }
}

/// Longest `from_code` read: today's are [`FROM_CODE_CHARS`] characters.
const MAX_FROM_CODE_CHARS: usize = 64;

/// The length of the `from_code` a code exchange writes (base64url of 12
/// bytes of SHA-256: 96 bits, collision-free for one key's codes).
pub(crate) const FROM_CODE_CHARS: usize = 16;

/// Whether `value` can be a `from_code` (base64url, not too long). Anything
/// else there is ignored: the member is advisory, and a record must not
/// become unreadable for it.
fn is_from_code(value: &str) -> bool {
    (1..=MAX_FROM_CODE_CHARS).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The schema tag of today's records.
pub const RECORD_SCHEMA_V1: &str = "freshtoken.record/1";

/// Largest stored record read (bytes). A record holds the tokens of one
/// answer of at most [`crate::MAX_RESPONSE_BYTES`], whose text grows at most
/// threefold when escaped again: anything bigger was not written by
/// freshtoken and is refused without being parsed.
pub const MAX_RECORD_BYTES: usize = 4 * crate::MAX_RESPONSE_BYTES;

/// Largest text the core stores (bytes): a record, or an `EncryptedStore`
/// envelope around the largest one. A file store reads no more of a file.
pub const MAX_STORED_BYTES: usize = if crate::encrypted_store::MAX_ENVELOPE_BYTES > MAX_RECORD_BYTES
{
    crate::encrypted_store::MAX_ENVELOPE_BYTES
} else {
    MAX_RECORD_BYTES
};

/// Whether `bytes` are one whole JSON object no longer than
/// [`MAX_STORED_BYTES`], read as UTF-8 with a damaged byte replaced: how a
/// file store tells a temporary file that a killed save wrote in full from
/// one cut off (the bindings' stores and the command-line tool ask it). Not
/// whether freshtoken can read it as a record: its load says that.
pub fn is_whole_json_object(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    json_text::from_slice::<serde::de::IgnoredAny>(text.as_bytes(), MAX_STORED_BYTES).is_ok()
}

/// `freshtoken.record/1` as written: the members in this order, absent
/// ones left out (`in_doubt` only when true). `from_code` was added within
/// version 1: optional, and readers that predate it skip it as they skip
/// every unknown member.
#[derive(Serialize)]
struct RecordV1<'a> {
    schema: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reauth: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_doubt: Option<bool>,
    updated_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_code: Option<&'a str>,
}

/// A stored record's members as read (`null` is absent, unknown members
/// are skipped); [`Record::decode`] checks their types.
#[derive(Deserialize)]
struct StoredV1 {
    schema: Option<Scalar>,
    access_token: Option<Scalar>,
    issued_at: Option<Scalar>,
    expires_at: Option<Scalar>,
    scope: Option<Scalar>,
    id_token: Option<Scalar>,
    refresh_token: Option<Scalar>,
    refresh_expires_at: Option<Scalar>,
    reauth: Option<Scalar>,
    in_doubt: Option<Scalar>,
    updated_at: Option<Scalar>,
    from_code: Option<Scalar>,
}

/// A time as written. JavaScript numbers hold integers exactly up to
/// 2^53 - 1 ms (the year 287396); the wasm build writes later ones as that.
fn time(ms: u64) -> u64 {
    if cfg!(target_arch = "wasm32") {
        ms.min((1 << 53) - 1)
    } else {
        ms
    }
}

impl Record {
    /// Whether the refresh token's sliding lifetime ran out by `now_ms`
    /// (DESIGN point 7). An expiry before 2026 was written under a clock
    /// far behind (a device back in 1970 before NTP) and is no verdict: the
    /// token is sent, and the server's `invalid_grant` ends a dead grant.
    pub fn refresh_lapsed(&self, now_ms: u64) -> bool {
        self.refresh_expires_at_ms
            .is_some_and(|t| t >= crate::clock::EARLIEST_PLAUSIBLE_EXPIRY_MS && now_ms >= t)
    }

    /// Whether `revoke()` marked it revoked while the server may still hold
    /// one of its tokens (the refresh token, or an access token live at
    /// `now_ms`): calling `revoke()` again retries.
    pub fn revocation_pending(&self, now_ms: u64) -> bool {
        crate::revoke::revocation_pending(self, now_ms)
    }

    /// The record as versioned JSON for the store.
    pub fn encode(&self) -> String {
        let access = self.access_token.as_ref();
        let wire = RecordV1 {
            schema: RECORD_SCHEMA_V1,
            access_token: access.map(|a| a.value.expose()),
            issued_at: access.map(|a| time(a.issued_at_ms)),
            expires_at: access.map(|a| time(a.expires_at_ms)),
            scope: self.scope.as_deref(),
            id_token: self.id_token.as_ref().map(Secret::expose),
            refresh_token: self.refresh_token.as_ref().map(Secret::expose),
            refresh_expires_at: self.refresh_expires_at_ms.map(time),
            reauth: self.reauth.map(ReauthReason::as_str),
            in_doubt: self.in_doubt.then_some(true),
            updated_at: time(self.updated_at_ms),
            from_code: self.from_code.as_deref().filter(|v| is_from_code(v)),
        };
        // Strings, bools and integers within range: writing cannot fail.
        json_text::to_string(&wire).unwrap_or_default()
    }

    /// Reads a stored record of any known schema version. Unknown members
    /// are ignored; the error never quotes the record.
    pub fn decode(text: &str) -> Result<Record, Error> {
        let unreadable = |what: &str| Error::storage(format!("the stored record {what}"));
        let wrong = || unreadable("has unknown schema or wrong field types");
        let stored: StoredV1 =
            json_text::from_slice(text.as_bytes(), MAX_RECORD_BYTES).map_err(|e| match e {
                JsonError::TooLarge => unreadable(&format!(
                    "is larger than {MAX_RECORD_BYTES} bytes; it was not read"
                )),
                JsonError::Truncated => unreadable("is truncated"),
                JsonError::Syntax => unreadable("is not JSON"),
                JsonError::Shape => wrong(),
            })?;
        let string = |member: Option<Scalar>| match member {
            None => Ok(None),
            Some(Scalar::Str(s)) => Ok(Some(s)),
            Some(_) => Err(wrong()),
        };
        let time = |member: Option<Scalar>| match member {
            None => Ok(None),
            Some(Scalar::Int(n)) => u64::try_from(n).map(Some).map_err(|_| wrong()),
            Some(_) => Err(wrong()),
        };
        if string(stored.schema)?.as_deref() != Some(RECORD_SCHEMA_V1) {
            return Err(wrong());
        }
        let access_token = match (
            string(stored.access_token)?,
            time(stored.issued_at)?,
            time(stored.expires_at)?,
        ) {
            // One that could not be sent in a header (empty, a control
            // character) is no token: the session refreshes.
            (Some(value), issued, Some(expires)) if is_printable_token(&value) => {
                Some(AccessToken {
                    value: Secret::new(value),
                    issued_at_ms: issued.unwrap_or(expires).min(expires),
                    expires_at_ms: expires,
                })
            }
            _ => None,
        };
        let reauth = match string(stored.reauth)? {
            None => None,
            Some(reason) => Some(ReauthReason::parse(&reason).ok_or_else(wrong)?),
        };
        let in_doubt = match stored.in_doubt {
            None => false,
            Some(Scalar::Bool(b)) => b,
            Some(_) => return Err(wrong()),
        };
        Ok(Record {
            access_token,
            scope: string(stored.scope)?,
            id_token: string(stored.id_token)?.map(Secret::new),
            refresh_token: string(stored.refresh_token)?
                .filter(|s| !s.is_empty())
                .map(Secret::new),
            refresh_expires_at_ms: time(stored.refresh_expires_at)?,
            reauth,
            in_doubt,
            updated_at_ms: time(stored.updated_at)?.unwrap_or(0),
            from_code: match stored.from_code {
                Some(Scalar::Str(value)) if is_from_code(&value) => Some(value),
                _ => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as version 1 wrote it. Later versions must keep reading it.
    const FROZEN_V1: &str = r#"{"schema":"freshtoken.record/1","access_token":"at-1","issued_at":1700000000000,"expires_at":1700000900000,"scope":"openid offline_access accounts","id_token":"idt-1","refresh_token":"rt-1","refresh_expires_at":1731536000000,"reauth":"lost_rotation","in_doubt":true,"updated_at":1700000000001}"#;

    #[test]
    fn a_whole_json_object_and_nothing_cut_off() {
        let whole = FROZEN_V1.as_bytes();
        assert!(is_whole_json_object(whole));
        for n in 0..whole.len() {
            assert!(!is_whole_json_object(&whole[..n]), "cut after {n} bytes");
        }
        let mut damaged = whole.to_vec();
        damaged[40] = 0xff; // inside the access token's string
        assert!(is_whole_json_object(&damaged), "a damaged byte is no cut");
        for other in ["[]", "\"x\"", "null", "{} {}", "{\"a\":1,}", "\0\0\0"] {
            assert!(!is_whole_json_object(other.as_bytes()), "{other}");
        }
        let deep = format!("{{\"a\":{}", "[".repeat(1_000_000));
        assert!(!is_whole_json_object(deep.as_bytes()), "no stack overflow");
        // An encrypted store's envelope is longer than a record may be.
        let envelope = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_RECORD_BYTES + 1024));
        assert!(is_whole_json_object(envelope.as_bytes()));
        let cap = crate::encrypted_store::MAX_ENVELOPE_BYTES;
        let large = format!("{{\"a\":\"{}\"}}", "x".repeat(cap));
        assert!(!is_whole_json_object(large.as_bytes()));
    }

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
            from_code: None,
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

    /// Records written by the hand-written writer this crate had before it
    /// used serde (captured from that writer's output), and what they hold.
    fn written_before_serde() -> Vec<(&'static str, Record)> {
        let texts = [
        "{\"schema\":\"freshtoken.record/1\",\"refresh_token\":\"rt\",\"updated_at\":0}",
        "{\"schema\":\"freshtoken.record/1\",\"access_token\":\"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln\",\"issued_at\":1764547200000,\"expires_at\":1764548100000,\"scope\":\"openid offline_access accounts transactions\",\"id_token\":\"idt.x.y\",\"refresh_token\":\"rt-9F3kQ_x-~.+/=\",\"refresh_expires_at\":1796083200000,\"updated_at\":1764547200123}",
        "{\"schema\":\"freshtoken.record/1\",\"scope\":\"q\\\" b\\\\ s/ \\b\\f\\n\\r\\t \\u0001\\u001f\u{7f} é 😀 \u{2028}\",\"refresh_token\":\"rt\",\"reauth\":\"no_refresh_token\",\"in_doubt\":true,\"updated_at\":5}",
        "{\"schema\":\"freshtoken.record/1\",\"access_token\":\"at\",\"issued_at\":0,\"expires_at\":9007199254740991,\"refresh_expires_at\":0,\"reauth\":\"refresh_expired\",\"updated_at\":0}",
        "{\"schema\":\"freshtoken.record/1\",\"refresh_token\":\"rt\",\"reauth\":\"invalid_grant\",\"in_doubt\":true,\"updated_at\":1}",
        ];
        let at = |value: &str, issued_at_ms, expires_at_ms| AccessToken {
            value: Secret::new(value),
            issued_at_ms,
            expires_at_ms,
        };
        let records = [
            Record {
                refresh_token: Some(Secret::new("rt")),
                ..Record::default()
            },
            Record {
                access_token: Some(at(
                    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln",
                    1_764_547_200_000,
                    1_764_548_100_000,
                )),
                scope: Some("openid offline_access accounts transactions".into()),
                id_token: Some(Secret::new("idt.x.y")),
                refresh_token: Some(Secret::new("rt-9F3kQ_x-~.+/=")),
                refresh_expires_at_ms: Some(1_796_083_200_000),
                reauth: None,
                in_doubt: false,
                updated_at_ms: 1_764_547_200_123,
                from_code: None,
            },
            Record {
                scope: Some("q\" b\\ s/ \u{8}\u{c}\n\r\t \u{1}\u{1f}\u{7f} é 😀 \u{2028}".into()),
                refresh_token: Some(Secret::new("rt")),
                reauth: Some(ReauthReason::NoRefreshToken),
                in_doubt: true,
                updated_at_ms: 5,
                ..Record::default()
            },
            Record {
                access_token: Some(at("at", 0, 9_007_199_254_740_991)),
                reauth: Some(ReauthReason::RefreshExpired),
                refresh_expires_at_ms: Some(0),
                ..Record::default()
            },
            Record {
                refresh_token: Some(Secret::new("rt")),
                reauth: Some(ReauthReason::InvalidGrant),
                in_doubt: true,
                updated_at_ms: 1,
                ..Record::default()
            },
        ];
        texts.into_iter().zip(records).collect()
    }

    #[test]
    fn records_written_before_serde_still_load() {
        for (text, record) in written_before_serde() {
            assert_eq!(Record::decode(text).as_ref(), Ok(&record), "{text}");
        }
    }

    #[test]
    fn the_writer_writes_what_it_wrote_before_serde() {
        for (text, record) in written_before_serde() {
            assert_eq!(record.encode(), text);
        }
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
    fn a_stored_access_token_no_header_can_carry_reads_as_none() {
        for value in ["", "at\nX-Injected: 1", "at with spaces", "at\u{e9}"] {
            let text = format!(
                r#"{{"schema":"freshtoken.record/1","access_token":{},"issued_at":0,"expires_at":900000,"refresh_token":"rt"}}"#,
                crate::json_text::to_string(&value).unwrap()
            );
            let record = Record::decode(&text).unwrap();
            assert!(record.access_token.is_none(), "{value:?}");
            assert_eq!(
                record.refresh_token,
                Some(Secret::new("rt")),
                "the session stays"
            );
        }
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

    /// A code exchange's record: `from_code` last, and read back.
    const WITH_FROM_CODE: &str = r#"{"schema":"freshtoken.record/1","refresh_token":"rt","updated_at":7,"from_code":"AbC-_0123456789x"}"#;

    #[test]
    fn from_code_round_trips_and_older_readers_skip_it() {
        let record = Record {
            refresh_token: Some(Secret::new("rt")),
            updated_at_ms: 7,
            from_code: Some("AbC-_0123456789x".into()),
            ..Record::default()
        };
        assert_eq!(record.encode(), WITH_FROM_CODE);
        assert_eq!(Record::decode(WITH_FROM_CODE).unwrap(), record);
        // The reader before `from_code` existed: the same members less it,
        // and no `deny_unknown_fields` (serde then skips the member).
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Before {
            schema: Option<Scalar>,
            refresh_token: Option<Scalar>,
            updated_at: Option<Scalar>,
        }
        let before: Before = json_text::from_slice(WITH_FROM_CODE.as_bytes(), 1024).unwrap();
        assert!(matches!(before.refresh_token, Some(Scalar::Str(s)) if s == "rt"));
        // Records written before it load without it.
        assert_eq!(Record::decode(FROZEN_V1).unwrap().from_code, None);
    }

    #[test]
    fn a_from_code_that_is_no_fingerprint_is_ignored_and_never_shown() {
        for member in [
            r#"1"#,
            r#"true"#,
            r#"{"x":1}"#,
            r#""""#,
            r#""has space""#,
            r#""rt-secret-0123456789""#,
        ] {
            let text = format!(
                r#"{{"schema":"freshtoken.record/1","refresh_token":"rt","from_code":{member}}}"#
            );
            let record = Record::decode(&text).unwrap();
            let expected =
                (member == r#""rt-secret-0123456789""#).then(|| "rt-secret-0123456789".to_owned());
            assert_eq!(record.from_code, expected, "{member}");
            assert_eq!(Record::decode(&record.encode()).unwrap(), record);
            assert!(!format!("{record:?}").contains("secret"), "{record:?}");
        }
        let long = format!(
            r#"{{"schema":"freshtoken.record/1","from_code":"{}"}}"#,
            "a".repeat(65)
        );
        assert_eq!(Record::decode(&long).unwrap().from_code, None);
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
            id_token: Some(Secret::new("\u{1}".repeat(crate::MAX_RESPONSE_BYTES / 6))),
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
