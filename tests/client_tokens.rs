//! Client-credentials tokens against the emulator: cached per scope set,
//! single flight, re-requested when stale, never a refresh token.

mod common;

use common::{joined_then_released, Harness};
use freshtoken_emulator::{Fault, Options};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_per_sorted_scope_set_and_renewed_after_expiry() {
    let h = Harness::new();
    let a = h
        .client
        .client_token(&["accounts", "balances"])
        .await
        .unwrap();
    assert_eq!(
        h.client
            .client_token(&["balances", "accounts", "balances"])
            .await
            .unwrap(),
        a
    );
    assert_eq!(h.grant_requests("client_credentials"), 1);

    let other = h.client.client_token(&["transactions"]).await.unwrap();
    assert_ne!(other, a);
    assert_eq!(h.grant_requests("client_credentials"), 2);
    assert_eq!(h.emu.counters().last_audience, Some(h.emu.token_endpoint()));

    // 3600 s tokens, 60 s leeway.
    h.clock.advance(3_539_000);
    assert_eq!(
        h.client
            .client_token(&["accounts", "balances"])
            .await
            .unwrap(),
        a
    );
    assert_eq!(h.grant_requests("client_credentials"), 2);
    h.clock.advance(1_000);
    let renewed = h
        .client
        .client_token(&["accounts", "balances"])
        .await
        .unwrap();
    assert_ne!(renewed, a);
    assert_eq!(h.grant_requests("client_credentials"), 3);
    assert_eq!(h.refresh_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_request() {
    let h = Harness::new();
    // The request is held until every caller has asked.
    h.emu.push_fault(Fault::hold());
    let callers = (0..50).map(|i| {
        let scopes: &[&str] = if i % 2 == 0 {
            &["accounts", "balances"]
        } else {
            &["balances", "accounts"]
        };
        h.client.client_token(scopes)
    });
    let tokens = joined_then_released(&h.emu, callers).await;
    let tokens: Vec<String> = tokens.into_iter().map(Result::unwrap).collect();
    assert_eq!(tokens.len(), 50);
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    assert_eq!(h.grant_requests("client_credentials"), 1);
    assert_eq!(h.emu.counters().max_concurrent_token_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_forces_a_new_token_and_errors_are_typed() {
    let h = Harness::new();
    let a = h.client.client_token(&["accounts"]).await.unwrap();
    h.client.client_tokens().invalidate(&["accounts"]).unwrap();
    h.emu.push_fault(Fault::status(500));
    let b = h.client.client_token(&["accounts"]).await.unwrap();
    assert_ne!(a, b);
    assert_eq!(h.grant_requests("client_credentials"), 3);

    h.emu.push_fault(Fault::body(
        400,
        r#"{"error":"invalid_scope","error_description":"no such scope"}"#,
    ));
    h.client.client_tokens().invalidate(&["x"]).unwrap();
    let e = h.client.client_token(&["x"]).await.unwrap_err();
    assert_eq!(
        (e.code().as_str(), e.oauth_error()),
        ("oauth", Some("invalid_scope"))
    );
    assert_eq!(
        h.client
            .client_token(&["two words"])
            .await
            .unwrap_err()
            .code()
            .as_str(),
        "config"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_in_a_client_credentials_answer_is_ignored() {
    let h = Harness::new();
    h.emu.push_fault(Fault::body(
        200,
        r#"{"access_token":"cc-token","token_type":"Bearer","expires_in":3600,"refresh_token":"must-not-be-kept"}"#,
    ));
    assert_eq!(h.client.client_token(&["a"]).await.unwrap(), "cc-token");
    assert!(h.store.inner.get("a").is_none());
}

/// Sends each `client_token_issued` event's scope to a channel.
struct Issued(std::sync::Mutex<std::sync::mpsc::Sender<String>>);

impl freshtoken::EventSink for Issued {
    fn on_event(&self, event: &freshtoken::Event) {
        if event.kind == freshtoken::EventKind::ClientTokenIssued {
            let scope = event.scope.clone().unwrap_or_default();
            let _ = self.0.lock().unwrap().send(scope);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_caller_gave_up_is_finished_and_cached() {
    // DESIGN point 15: a caller that gives up (a cancelled coroutine, an
    // aborted task) never stops the shared request. Before, a client
    // token's request paused with its last caller: its answer was never
    // read or cached, and the next caller, however much later, resumed it
    // and got `timeout` (its deadline long past) with nothing sent.
    let (tx, issued) = std::sync::mpsc::channel();
    let sink = Arc::new(Issued(std::sync::Mutex::new(tx)));
    let h = Harness::with(Options::default(), |b| b.on_event(sink));
    h.emu.push_fault(Fault::hold());
    let client = h.client.clone();
    let caller = tokio::spawn(async move { client.client_token(&["accounts"]).await });
    common::abandoned_once_held(&h.emu, caller).await;

    assert_eq!(h.emu.release_held(), 1);
    let scope = tokio::task::spawn_blocking(move || issued.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the request went on without its caller and its token was cached");
    assert_eq!(scope, "accounts");
    let cached = h.client.client_token(&["accounts"]).await.unwrap();
    assert_eq!(
        h.grant_requests("client_credentials"),
        1,
        "served from the cache"
    );

    // An hour later the cached token is stale: a new one, never the old answer.
    h.clock.advance(3_600_000);
    let renewed = h.client.client_token(&["accounts"]).await.unwrap();
    assert_ne!(renewed, cached);
    assert_eq!(h.grant_requests("client_credentials"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_sets_whose_tokens_lapsed_or_failed_are_not_kept_forever() {
    // A service that asks per-tenant or per-request scope sets: before,
    // every scope set ever asked (failed ones too) stayed in the cache for
    // the client's life, so memory grew without limit. Now a scope set
    // whose token has expired, or that never got one, is dropped as the
    // cache grows; live tokens stay (revoke_client_tokens revokes them).
    let h = Harness::new();
    for i in 0..100 {
        h.client
            .client_token(&[format!("tenant:{i}")])
            .await
            .unwrap();
    }
    h.emu
        .push_fault(Fault::body(400, r#"{"error":"invalid_scope"}"#).times(20));
    for i in 0..20 {
        let asked = h.client.client_token(&[format!("unknown:{i}")]).await;
        assert_eq!(asked.unwrap_err().oauth_error(), Some("invalid_scope"));
    }
    assert_eq!(h.client.client_tokens().scope_sets(), 120);

    // An hour later those tokens have all expired.
    h.clock.advance(3_600_000);
    for i in 0..100 {
        h.client.client_token(&[format!("next:{i}")]).await.unwrap();
    }
    let kept = h.client.client_tokens().scope_sets();
    assert!(kept < 128, "{kept} scope sets kept");
    assert_eq!(h.grant_requests("client_credentials"), 220);
    // The live ones are still served from the cache.
    h.client.client_token(&["next:99"]).await.unwrap();
    assert_eq!(h.grant_requests("client_credentials"), 220);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_forgotten_once_not_by_every_worker_that_saw_it() {
    // Many workers share one client token; the API revokes it, and each
    // worker that saw it rejected says so. Only the first report forgets
    // it: the others find the replacement, which they keep. A forgotten
    // token that still lives is revoked with the rest.
    let h = Harness::new();
    let tokens = h.client.client_tokens();
    let first = h.client.client_token(&["accounts"]).await.unwrap();
    tokens.token_rejected(&["accounts"], &first).unwrap();
    let second = h.client.client_token(&["accounts"]).await.unwrap();
    assert_ne!(first, second);
    assert_eq!(h.grant_requests("client_credentials"), 2);
    for _ in 0..5 {
        tokens.token_rejected(&["accounts"], &first).unwrap();
        assert_eq!(h.client.client_token(&["accounts"]).await.unwrap(), second);
    }
    assert_eq!(h.grant_requests("client_credentials"), 2);
    // Another scope set, or one never asked for: nothing to forget.
    tokens.token_rejected(&["balances"], &second).unwrap();
    assert_eq!(h.client.client_token(&["accounts"]).await.unwrap(), second);
    assert!(tokens.token_rejected(&["a b"], &second).is_err());

    h.client.revoke_client_tokens().await.unwrap();
    assert_eq!(h.emu.counters().tokens_revoked, 2, "the forgotten one too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_invalidated_while_it_lives_is_still_revoked() {
    let h = Harness::new();
    h.client.client_token(&["accounts"]).await.unwrap();
    h.client.client_tokens().invalidate(&["accounts"]).unwrap();
    h.client.client_token(&["accounts"]).await.unwrap();
    assert_eq!(h.grant_requests("client_credentials"), 2);
    h.client.revoke_client_tokens().await.unwrap();
    assert_eq!(h.emu.counters().tokens_revoked, 2);
}
