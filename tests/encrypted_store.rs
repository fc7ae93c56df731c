//! Sessions whose records are encrypted at rest (`EncryptedStore` over a
//! `MemoryStore`), against the emulator over loopback: the store's raw
//! contents never hold a token, a tampered or moved record is a `storage`
//! error naming the key id, key rotation rewrites the record on its next
//! save, plain records are migrated (or refused), and a fleet of clients
//! shares one encrypted session with one refresh per expiry window.

mod common;

use common::{
    one_refresh_per_window, plain_client as client, refreshes, wall_ms, OffsetClock, CLIENT_ID,
};
use freshtoken::{
    EncryptedStore, EncryptionKey, EncryptionKeys, Error, ManualClock, MemoryStore, Seed,
    TokenClient, TokenStore,
};
use freshtoken_emulator::{Emulator, Options, TokenState};
use std::sync::Arc;

const KEY_2025: [u8; 32] = [0x25; 32];
const KEY_2026: [u8; 32] = [0x26; 32];

fn keys(current: (&str, &[u8; 32]), old: &[(&str, &[u8; 32])]) -> EncryptionKeys {
    let key = |(id, bytes): (&str, &[u8; 32])| EncryptionKey::new(id, bytes).unwrap();
    EncryptionKeys::new(key(current))
        .with_old(old.iter().map(|k| key(*k)))
        .unwrap()
}

fn encrypted(inner: &Arc<MemoryStore>, keys: EncryptionKeys) -> Arc<EncryptedStore> {
    Arc::new(EncryptedStore::new(inner.clone(), keys))
}

/// The envelope's key id, read from the raw stored text.
fn kid(inner: &MemoryStore, key: &str) -> String {
    let raw = inner.get(key).expect("a stored record");
    let envelope: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(envelope["schema"], "freshtoken.encrypted/1", "{raw}");
    envelope["kid"].as_str().unwrap().to_owned()
}

/// Asserts that no token in `tokens` appears in the raw store contents.
fn no_token_in(inner: &MemoryStore, key: &str, tokens: &[&str]) {
    let raw = inner.get(key).expect("a stored record");
    for token in tokens {
        assert!(token.len() > 8, "a real token");
        assert!(!raw.contains(token), "a token in the raw record");
    }
    assert!(
        !raw.contains("refresh_token") && !raw.contains("access_token"),
        "{raw}"
    );
}

async fn seed(session: &freshtoken::UserSession, refresh_token: &str) {
    session
        .seed(Seed {
            refresh_token: refresh_token.to_owned().into(),
            ..Seed::default()
        })
        .await
        .expect("seed saves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_through_an_encrypted_store_leave_no_token_in_its_raw_contents() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let inner = Arc::new(MemoryStore::new());
    let store = encrypted(&inner, keys(("2026", &KEY_2026), &[]));
    let c = client(&emu, clock.clone());
    let family = emu.seed(CLIENT_ID, "openid offline_access");
    let session = c.session("user-42", store.clone()).unwrap();
    seed(&session, &family.refresh_token).await;
    no_token_in(&inner, "user-42", &[&family.refresh_token]);

    let mut seen = vec![family.refresh_token.clone()];
    for window in 1..=3 {
        let access = session.access_token().await.unwrap();
        assert_eq!(refreshes(&emu), window);
        let record = freshtoken::Record::decode(&store.load("user-42").await.unwrap().unwrap())
            .expect("the decrypted record");
        let refresh = record.refresh_token.unwrap().expose().to_owned();
        assert_eq!(record.access_token.unwrap().value.expose(), access);
        assert_eq!(emu.refresh_token_state(&refresh), TokenState::Active);
        seen.push(refresh);
        seen.push(access);
        let all: Vec<&str> = seen.iter().map(String::as_str).collect();
        no_token_in(&inner, "user-42", &all);
        clock.advance(900_000);
    }
    // A new client (a restart) reads the encrypted record and carries on.
    let restarted = client(&emu, clock.clone());
    restarted
        .session("user-42", store.clone())
        .unwrap()
        .access_token()
        .await
        .unwrap();
    assert_eq!(refreshes(&emu), 4);
    assert_eq!(emu.counters().reuse_detected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_moved_record_is_a_storage_error_naming_the_key_id() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let inner = Arc::new(MemoryStore::new());
    let store = encrypted(&inner, keys(("2026-11", &KEY_2026), &[]));
    let c = client(&emu, clock.clone());
    let family = emu.seed(CLIENT_ID, "openid offline_access");
    seed(
        &c.session("alice", store.clone()).unwrap(),
        &family.refresh_token,
    )
    .await;
    let original = inner.get("alice").unwrap();

    // One byte of the ciphertext altered (one base64url character changed).
    let mut envelope: serde_json::Value = serde_json::from_str(&original).unwrap();
    let ciphertext = envelope["ciphertext"].as_str().unwrap().to_owned();
    let i = ciphertext.len() / 2;
    let swapped = if &ciphertext[i..=i] == "A" { "B" } else { "A" };
    envelope["ciphertext"] =
        format!("{}{swapped}{}", &ciphertext[..i], &ciphertext[i + 1..]).into();
    inner.save("alice", &envelope.to_string()).await.unwrap();
    let fresh = client(&emu, clock.clone());
    let error = fresh
        .session("alice", store.clone())
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Storage { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(r#"key id "2026-11""#) && message.contains(r#""alice""#),
        "{message}"
    );
    assert!(!message.contains(&family.refresh_token));
    assert_eq!(refreshes(&emu), 0, "nothing sent");

    // The intact record copied under another user's key.
    inner.save("alice", &original).await.unwrap();
    inner.save("mallory", &original).await.unwrap();
    let error = fresh
        .session("mallory", store.clone())
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(error.code().as_str(), "storage");
    assert!(error.to_string().contains(r#""mallory""#), "{error}");
    assert_eq!(refreshes(&emu), 0, "nothing sent");
    // The original still serves its own key.
    fresh
        .session("alice", store.clone())
        .unwrap()
        .access_token()
        .await
        .unwrap();
    assert_eq!(refreshes(&emu), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_keys_rewrites_the_record_under_the_current_key_on_its_next_save() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let inner = Arc::new(MemoryStore::new());
    let family = emu.seed(CLIENT_ID, "openid offline_access");
    let before = client(&emu, clock.clone());
    let old_store = encrypted(&inner, keys(("2025", &KEY_2025), &[]));
    let session = before.session("u", old_store).unwrap();
    seed(&session, &family.refresh_token).await;
    let first = session.access_token().await.unwrap();
    assert_eq!(kid(&inner, "u"), "2025");

    // Restarted with a new current key; the old one kept for reading.
    let after = client(&emu, clock.clone());
    let rotated = encrypted(&inner, keys(("2026", &KEY_2026), &[("2025", &KEY_2025)]));
    let session = after.session("u", rotated.clone()).unwrap();
    assert_eq!(
        session.access_token().await.unwrap(),
        first,
        "read under the old key"
    );
    assert_eq!(kid(&inner, "u"), "2025", "a read rewrites nothing");
    clock.advance(900_000);
    let second = session.access_token().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(
        kid(&inner, "u"),
        "2026",
        "the next save used the current key"
    );

    // The old key can be dropped now; a store with only the old key fails loudly.
    let only_new = encrypted(&inner, keys(("2026", &KEY_2026), &[]));
    let third = client(&emu, clock.clone());
    assert_eq!(
        third
            .session("u", only_new)
            .unwrap()
            .access_token()
            .await
            .unwrap(),
        second
    );
    let only_old = encrypted(&inner, keys(("2025", &KEY_2025), &[]));
    let error = client(&emu, clock.clone())
        .session("u", only_old)
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(error.code().as_str(), "storage");
    assert!(error.to_string().contains(r#"key id "2026""#), "{error}");
    assert_eq!(refreshes(&emu), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_records_are_read_and_encrypted_on_their_next_save_or_refused() {
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let inner = Arc::new(MemoryStore::new());
    let family = emu.seed(CLIENT_ID, "openid offline_access");
    // Written before encryption was switched on.
    let plain = client(&emu, clock.clone());
    let session = plain.session("u", inner.clone()).unwrap();
    seed(&session, &family.refresh_token).await;
    let first = session.access_token().await.unwrap();
    assert!(inner.get("u").unwrap().contains(&first), "plain text");

    let strict = encrypted(&inner, keys(("k", &KEY_2026), &[]).refuse_plaintext(true));
    let error = client(&emu, clock.clone())
        .session("u", strict.clone())
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(error.code().as_str(), "storage");
    assert!(error.to_string().contains("not encrypted"), "{error}");
    assert!(!error.to_string().contains(&first));

    let migrating = encrypted(&inner, keys(("k", &KEY_2026), &[]));
    let session = client(&emu, clock.clone()).session("u", migrating).unwrap();
    assert_eq!(session.access_token().await.unwrap(), first);
    clock.advance(900_000);
    let second = session.access_token().await.unwrap();
    assert_eq!(kid(&inner, "u"), "k");
    no_token_in(&inner, "u", &[&first, &second, &family.refresh_token]);
    // Once migrated, the strict store reads it.
    let served = client(&emu, clock.clone())
        .session("u", strict)
        .unwrap()
        .access_token()
        .await
        .unwrap();
    assert_eq!(served, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_shares_one_encrypted_session_with_one_refresh_per_window() {
    let emu = Emulator::start(Options::default()).unwrap();
    // Real sleeps: waiting for another client's lease takes real time.
    let clock = Arc::new(OffsetClock::default());
    let inner = Arc::new(MemoryStore::with_leases(clock.clone()));
    let store = encrypted(&inner, keys(("fleet", &KEY_2026), &[]));
    assert!(store.supports_lease() && store.supports_versions());
    let clients: Vec<TokenClient> = (0..4).map(|_| client(&emu, clock.clone())).collect();
    let family = emu.seed(CLIENT_ID, "openid offline_access");
    seed(
        &clients[0].session("u1", store.clone()).unwrap(),
        &family.refresh_token,
    )
    .await;

    let mut tokens_seen = vec![family.refresh_token.clone()];
    tokens_seen.extend(one_refresh_per_window(&emu, &clients, store.clone(), &clock, 10).await);
    let c = emu.counters();
    assert_eq!((c.reuse_detected, c.invalid_grant), (0, 0));
    let all: Vec<&str> = tokens_seen.iter().map(String::as_str).collect();
    no_token_in(&inner, "u1", &all);
    let (_, version) = inner
        .load_versioned("u1")
        .await
        .unwrap()
        .map(|v| (v.record, v.version))
        .unwrap();
    assert_eq!(
        version, "21",
        "the seed, then per window the write-ahead marker and the rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_no_key_opens_is_replaced_by_a_re_link() {
    // A compare-and-swap store (MemoryStore's versions) holds a record under
    // a key that was removed too early: every call on it is a storage error,
    // but the user's re-link (seed) must replace it, not fail on it.
    let emu = Emulator::start(Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(wall_ms()));
    let inner = Arc::new(MemoryStore::new());
    let family = emu.seed(CLIENT_ID, "openid offline_access");
    seed(
        &client(&emu, clock.clone())
            .session("u", encrypted(&inner, keys(("2025", &KEY_2025), &[])))
            .unwrap(),
        &family.refresh_token,
    )
    .await;
    let only_new = encrypted(&inner, keys(("2026", &KEY_2026), &[]));
    let c = client(&emu, clock.clone());
    let session = c.session("u", only_new.clone()).unwrap();
    let error = session.access_token().await.unwrap_err();
    assert_eq!(error.code().as_str(), "storage", "{error}");

    let relinked = emu.seed(CLIENT_ID, "openid offline_access");
    seed(&session, &relinked.refresh_token).await;
    assert_eq!(
        kid(&inner, "u"),
        "2026",
        "the new link is saved under the current key"
    );
    let stored = only_new
        .load("u")
        .await
        .unwrap()
        .expect("a record the current key opens");
    assert!(stored.contains(&relinked.refresh_token));
    let fresh = client(&emu, clock.clone());
    fresh
        .session("u", only_new)
        .unwrap()
        .access_token()
        .await
        .expect("another process serves the new link");
    assert_eq!(refreshes(&emu), 1);
}
