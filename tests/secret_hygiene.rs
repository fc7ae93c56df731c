//! Secret hygiene (issue 6, DESIGN point 10) in Rust: with a sentinel client
//! secret and the real tokens the emulator hands out, run the common flows
//! and failures while capturing every log line (a `log` logger at trace
//! level) and every panic message, then check that no secret shows there, in
//! any error's `Display`/`Debug`, or in the `Debug` of the public types.
//! Failing checks name the case, never the text.

mod common;

use common::{wall_ms, TestStore};
use freshtoken::{Config, ErrorCode, EventKeys, ManualClock, Record, Seed, TokenClient};
use freshtoken_emulator::{ClientSpec, Emulator, Fault, Options};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

const CLIENT: &str = "sentinel-client";
const SECRET: &str = "secret-SENTINEL-7f3a-a b+c/=&%";

/// Every log line, at every level, from every crate.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

static LOGS: Capture = Capture(Mutex::new(Vec::new()));
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The ways a value can show up in text: as is, form- and percent-encoded.
fn spellings(value: &str) -> Vec<String> {
    let form: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    vec![value.to_owned(), form.replace('+', "%20"), form]
}

fn client(emu: &Emulator, secret: &str) -> TokenClient {
    let config = Config::builder(emu.token_endpoint(), CLIENT)
        .client_secret(secret)
        .build()
        .expect("valid config");
    let http = Arc::new(freshtoken::NativeHttp::new().expect("http client"));
    TokenClient::new(config, http, Arc::new(ManualClock::new(wall_ms())))
}

#[tokio::test]
async fn no_secret_in_logs_errors_panics_or_debug() {
    log::set_logger(&LOGS).expect("the only logger in this test binary");
    log::set_max_level(log::LevelFilter::Trace);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.lock().unwrap().push(info.to_string());
        previous(info);
    }));

    let emu = Emulator::start(Options {
        clients: vec![ClientSpec::confidential(CLIENT, SECRET)],
        ..Options::default()
    })
    .expect("emulator starts");
    let mut sentinels: Vec<String> = spellings(SECRET);
    let mut shown: Vec<String> = Vec::new();
    let mut errors: Vec<freshtoken::Error> = Vec::new();

    // The happy path: seed, two rotations, a client token.
    let family = emu.seed(CLIENT, "openid offline_access accounts");
    sentinels.extend(spellings(&family.refresh_token));
    let good = client(&emu, SECRET);
    let store = TestStore::new();
    let session = good.session("user", store.clone()).unwrap();
    let seed = Seed {
        refresh_token: family.refresh_token.clone().into(),
        ..Seed::default()
    };
    shown.push(format!("{seed:?}"));
    session.seed(seed).await.expect("seed saves");
    for _ in 0..2 {
        let info = session.refresh().await.expect("refresh");
        sentinels.extend(spellings(&info.access_token));
        sentinels.extend(info.id_token.iter().flat_map(|t| spellings(t)));
        shown.push(format!("{info:?}"));
    }
    let rotated = store
        .refresh_token("user")
        .expect("a rotated refresh token");
    sentinels.extend(spellings(&rotated));
    let client_token = good
        .client_token(&["accounts"])
        .await
        .expect("client token");
    sentinels.extend(spellings(&client_token));
    let record = Record::decode(&store.inner.get("user").unwrap()).unwrap();
    shown.extend([
        format!("{record:?}"),
        format!("{:?}", good.config()),
        format!("{good:?}"),
        format!("{session:?}"),
        format!("{:?}", store.inner),
    ]);

    // Failures: a wrong secret, a garbled answer holding a token, a save
    // that fails, a lost answer, then the dead refresh token.
    let wrong = client(&emu, &format!("{SECRET}-wrong"));
    sentinels.extend(spellings(&format!("{SECRET}-wrong")));
    errors.push(wrong.client_token(&["accounts"]).await.unwrap_err());
    emu.push_fault(Fault::body(
        200,
        format!(r#"{{"access_token":"{SECRET}","token_type":"mac"}}"#),
    ));
    errors.push(session.refresh().await.unwrap_err());
    emu.push_fault(Fault::body(
        503,
        format!(r#"{{"error":"temporarily_unavailable","error_description":"echo {rotated}"}}"#),
    ));
    store.fail_saves.store(1, Ordering::SeqCst);
    errors.push(session.refresh().await.unwrap_err());
    let saved = session.refresh().await.expect("saves and refreshes");
    sentinels.extend(spellings(&saved.access_token));
    let latest = store.refresh_token("user").expect("record");
    sentinels.extend(spellings(&latest));
    emu.push_fault(Fault::drop_after_commit());
    errors.push(session.refresh().await.unwrap_err());
    errors.push(session.refresh().await.unwrap_err());
    let reused = good.session("reuse", TestStore::new()).unwrap();
    reused
        .seed(Seed {
            refresh_token: family.refresh_token.clone().into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    errors.push(reused.refresh().await.unwrap_err());

    // A client whose events hide session keys hides them from log lines
    // too: a key may name a person.
    let person = "person-SENTINEL@example.com";
    let hiding = Config::builder(emu.token_endpoint(), CLIENT)
        .client_secret(SECRET)
        .event_keys(EventKeys::Hidden)
        .build()
        .expect("valid config");
    let hiding = TokenClient::new(
        hiding,
        Arc::new(freshtoken::NativeHttp::new().expect("http client")),
        Arc::new(ManualClock::new(wall_ms())),
    );
    let linked = emu.seed(CLIENT, "openid offline_access accounts");
    sentinels.extend(spellings(&linked.refresh_token));
    let leaving = hiding.session(person, TestStore::new()).unwrap();
    leaving
        .seed(Seed {
            refresh_token: linked.refresh_token.clone().into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    leaving.revoke().await.expect("revoked");
    // A refresh token the server refuses ends the session: logged too.
    let dying = hiding.session(person, TestStore::new()).unwrap();
    dying
        .seed(Seed {
            refresh_token: "rt-never-issued-0000".into(),
            ..Seed::default()
        })
        .await
        .unwrap();
    let refused = dying.access_token().await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::ReauthorizationRequired);

    let codes: Vec<ErrorCode> = errors.iter().map(|e| e.code()).collect();
    assert!(codes.contains(&ErrorCode::InvalidClient), "{codes:?}");
    assert!(codes.contains(&ErrorCode::InvalidResponse), "{codes:?}");
    assert!(codes.contains(&ErrorCode::Storage), "{codes:?}");
    assert!(
        codes.contains(&ErrorCode::ReauthorizationRequired),
        "{codes:?}"
    );
    let logs = LOGS.0.lock().unwrap().clone();
    assert!(
        logs.iter().any(|l| l.contains("freshtoken")),
        "the core logged its requests ({} lines)",
        logs.len()
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("session (key hidden) revoked")),
        "the hidden key's revocation was logged without it"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("session (key hidden) needs reauthorization")),
        "the hidden key's invalid_grant was logged without it"
    );
    assert!(
        !logs.iter().any(|l| l.contains(person)),
        "a log line shows a session key the client hides"
    );
    let panics = PANICS.lock().unwrap().clone();
    assert!(
        panics.is_empty(),
        "{} panic(s) during the run",
        panics.len()
    );

    let error_texts = errors
        .iter()
        .flat_map(|e| [e.to_string(), format!("{e:?}")]);
    let texts: Vec<(String, String)> = shown
        .into_iter()
        .map(|t| ("a Debug print".to_owned(), t))
        .chain(error_texts.map(|t| ("an error".to_owned(), t)))
        .chain(logs.into_iter().map(|t| ("a log line".to_owned(), t)))
        .collect();
    for (what, text) in &texts {
        for secret in sentinels.iter().filter(|s| s.len() >= 8) {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows a token or the client secret"
            );
        }
    }
}

/// A store whose failing plain saves quote the refresh token of the row
/// they could not replace, as text (as a database constraint error might).
#[derive(Default)]
struct QuotingStore {
    inner: freshtoken::MemoryStore,
    fail: std::sync::atomic::AtomicBool,
}

#[freshtoken::async_trait]
impl freshtoken::TokenStore for QuotingStore {
    async fn load(&self, key: &str) -> Result<Option<String>, freshtoken::StoreError> {
        self.inner.load(key).await
    }
    async fn save(&self, key: &str, record: &str) -> Result<(), freshtoken::StoreError> {
        let marker = Record::decode(record).is_ok_and(|r| r.in_doubt);
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) && !marker {
            let stored = self.inner.get(key).and_then(|t| Record::decode(&t).ok());
            let quoted = stored
                .and_then(|r| r.refresh_token)
                .map(|t| t.expose().to_owned());
            return Err(freshtoken::StoreError(format!(
                "row locked; current token value {}",
                quoted.unwrap_or_default()
            )));
        }
        self.inner.save(key, record).await
    }
}

/// A seed over a rotation whose save failed: the store still holds the
/// record before that rotation, and a failing save quoting its refresh
/// token shows none of it (the state keeps every stored record's tokens
/// known until a save lands).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_quoting_the_row_a_seed_could_not_replace_shows_no_token() {
    let emu = Emulator::start(Options::default()).unwrap();
    let client = common::Harness::client_on(
        &emu,
        Config::builder(emu.token_endpoint(), common::CLIENT_ID)
            .client_secret(common::CLIENT_SECRET)
            .build()
            .unwrap(),
        std::sync::Arc::new(ManualClock::new(wall_ms())),
    );
    let store = std::sync::Arc::new(QuotingStore::default());
    let family = emu.seed(common::CLIENT_ID, "openid offline_access accounts");
    let session = client.session("u1", store.clone()).unwrap();
    let seed = |rt: &str| Seed {
        refresh_token: rt.to_owned().into(),
        ..Seed::default()
    };
    session.seed(seed(&family.refresh_token)).await.unwrap();
    store.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let stranded = session.access_token().await.unwrap_err();
    assert_eq!(stranded.code(), ErrorCode::Storage, "{stranded}");
    common::assert_no_secret(&stranded, &[&family.refresh_token]);

    // The user re-links while the rotation is still unsaved.
    let other = emu.seed(common::CLIENT_ID, "openid offline_access accounts");
    let relinked = session.seed(seed(&other.refresh_token)).await.unwrap_err();
    assert!(relinked.to_string().contains("row locked"), "{relinked}");
    common::assert_no_secret(&relinked, &[&family.refresh_token]);
}
