//! Everything the emulator remembers: clients, the clock offset, the
//! lifetimes in force, authorization codes, token families and their tokens.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::counters::Counters;
use crate::discovery::DiscoveryMode;
use crate::endless::Streams;
use crate::faults::FaultQueue;
use crate::hold::Holds;
use crate::options::Options;
use crate::tokens::{self, IdClaims};

/// The lifecycle state of a refresh token (serialized in lowercase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    /// Live: the next refresh with it succeeds.
    Active,
    /// Already used once (rotated away).
    Consumed,
    /// Live when its family was revoked (reuse detected, its code reused,
    /// or a revocation request).
    Revoked,
    /// Live but past its sliding lifetime.
    Expired,
    /// Never issued (or forgotten by a reset).
    Unknown,
}

/// A newly minted token family, as returned by `seed` and `POST /admin/seed`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seeded {
    /// The family's live refresh token.
    pub refresh_token: String,
    /// An access token valid for `expires_in` seconds.
    pub access_token: String,
    /// The access token's lifetime in seconds.
    pub expires_in: u64,
    /// The granted scope.
    pub scope: String,
    /// A fake unsigned `id_token`.
    pub id_token: String,
}

impl fmt::Debug for Seeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seeded")
            .field("refresh_token", &"<redacted>")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The lifetimes and switches that `/admin/config` can change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Config {
    pub access_ttl_secs: u64,
    pub client_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub reuse_detection: bool,
}

/// A chain of refresh tokens descending from one grant.
pub(crate) struct Family {
    pub client_id: String,
    pub scope: String,
    pub sub: String,
    pub nonce: Option<String>,
    pub revoked: bool,
    /// Refresh tokens minted in this family so far (the next one's generation).
    pub refresh_minted: u64,
}

/// Where a refresh token is in its life (expiry is computed from the clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefreshStatus {
    Active,
    Consumed,
    Revoked,
}

/// One issued refresh token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RefreshRecord {
    pub family: u64,
    /// Its place in the family's chain: 0 for the first refresh token, one
    /// more for each rotation.
    pub generation: u64,
    pub status: RefreshStatus,
    pub expires_at: u64,
}

/// Where a refresh token sits in its family's chain, for
/// `POST /admin/refresh-token-state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Lineage {
    /// The family's number (families are numbered from 1 since start or reset).
    pub family: u64,
    /// This token's generation: 0 for the family's first refresh token.
    pub generation: u64,
    /// The generation of the family's newest refresh token.
    pub latest_generation: u64,
    /// The state of the token that replaced this one, or `None` if none did.
    pub successor_state: Option<TokenState>,
}

/// One issued access token.
pub(crate) struct AccessRecord {
    pub client_id: String,
    pub scope: String,
    pub expires_at: u64,
    pub family: Option<u64>,
    /// Revoked by a revocation request naming this token.
    pub revoked: bool,
}

/// One issued authorization code.
#[derive(Clone)]
pub(crate) struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub challenge: String,
    pub expires_at: u64,
    pub used: bool,
    pub family: Option<u64>,
}

/// The tokens minted for one user grant.
pub(crate) struct Minted {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: String,
    pub expires_in: u64,
}

/// The emulator's whole mutable state, behind one mutex.
pub(crate) struct State {
    pub clients: HashMap<String, Option<String>>,
    pub config: Config,
    initial_config: Config,
    clock_offset: u64,
    pub families: HashMap<u64, Family>,
    next_family: u64,
    pub refresh_tokens: HashMap<String, RefreshRecord>,
    pub access_tokens: HashMap<String, AccessRecord>,
    pub codes: HashMap<String, CodeRecord>,
    pub seen_jtis: HashSet<String>,
    pub faults: FaultQueue,
    pub counters: Counters,
    /// What `GET /.well-known/openid-configuration` answers.
    pub discovery: DiscoveryMode,
    pub in_flight: u64,
    /// Connections accepted and not yet closed (`GET /admin/connections`).
    pub open_connections: u64,
}

/// Seconds since the Unix epoch by the system clock.
pub(crate) fn real_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl State {
    /// The state at start: `opts`' clients and lifetimes, nothing issued.
    pub(crate) fn new(opts: &Options) -> Self {
        let config = Config {
            access_ttl_secs: opts.access_ttl_secs,
            client_ttl_secs: opts.client_ttl_secs,
            refresh_ttl_secs: opts.refresh_ttl_secs,
            reuse_detection: opts.reuse_detection,
        };
        State {
            clients: opts
                .clients
                .iter()
                .map(|c| (c.id.clone(), c.secret.clone()))
                .collect(),
            config,
            initial_config: config,
            clock_offset: 0,
            families: HashMap::new(),
            next_family: 1,
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            codes: HashMap::new(),
            seen_jtis: HashSet::new(),
            faults: FaultQueue::default(),
            counters: Counters::default(),
            discovery: DiscoveryMode::default(),
            in_flight: 0,
            open_connections: 0,
        }
    }

    /// The emulator's clock: system time plus the advanced offset.
    pub fn now(&self) -> u64 {
        real_now().saturating_add(self.clock_offset)
    }

    /// Moves the clock forward; returns the total offset.
    pub fn advance_clock(&mut self, secs: u64) -> u64 {
        self.clock_offset = self.clock_offset.saturating_add(secs);
        self.clock_offset
    }

    /// Forgets tokens, codes, counters and faults, and restores the clock,
    /// the start-up lifetimes and reuse detection, and the normal discovery
    /// document. Clients are kept.
    pub fn reset(&mut self) {
        let in_flight = self.in_flight;
        let open_connections = self.open_connections;
        let clients = std::mem::take(&mut self.clients);
        let config = self.initial_config;
        *self = State::new(&Options {
            clients: Vec::new(),
            ..Options::default()
        });
        self.clients = clients;
        self.config = config;
        self.initial_config = config;
        self.in_flight = in_flight;
        self.open_connections = open_connections;
    }

    /// Starts a new token family.
    pub fn new_family(&mut self, client_id: &str, scope: &str, nonce: Option<String>) -> u64 {
        let id = self.next_family;
        self.next_family += 1;
        self.families.insert(
            id,
            Family {
                client_id: client_id.to_owned(),
                scope: scope.to_owned(),
                sub: format!("user/{id}"),
                nonce,
                revoked: false,
                refresh_minted: 0,
            },
        );
        id
    }

    /// Mints an access token living `ttl` seconds.
    pub fn mint_access(
        &mut self,
        client_id: &str,
        scope: &str,
        family: Option<u64>,
        ttl: u64,
    ) -> String {
        let token = tokens::random_token();
        let record = AccessRecord {
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            expires_at: self.now().saturating_add(ttl),
            family,
            revoked: false,
        };
        self.access_tokens.insert(token.clone(), record);
        token
    }

    /// Mints the family's next live refresh token (sliding lifetime from now).
    fn mint_refresh(&mut self, family: u64) -> String {
        let token = tokens::random_token();
        let generation = match self.families.get_mut(&family) {
            Some(f) => {
                f.refresh_minted += 1;
                f.refresh_minted - 1
            }
            None => 0,
        };
        let record = RefreshRecord {
            family,
            generation,
            status: RefreshStatus::Active,
            expires_at: self.now().saturating_add(self.config.refresh_ttl_secs),
        };
        self.refresh_tokens.insert(token.clone(), record);
        token
    }

    /// Mints an access token, an `id_token` and, if asked, a refresh token
    /// for `family`, granting `scope`.
    pub fn mint_user_tokens(
        &mut self,
        issuer: &str,
        family: u64,
        scope: &str,
        with_refresh: bool,
    ) -> Minted {
        let (client_id, sub, nonce) = match self.families.get(&family) {
            Some(f) => (f.client_id.clone(), f.sub.clone(), f.nonce.clone()),
            None => (String::new(), String::new(), None),
        };
        let ttl = self.config.access_ttl_secs;
        let access_token = self.mint_access(&client_id, scope, Some(family), ttl);
        let refresh_token = with_refresh.then(|| self.mint_refresh(family));
        let iat = self.now();
        let id_token = tokens::id_token(&IdClaims {
            iss: issuer,
            sub: &sub,
            aud: &client_id,
            iat,
            exp: iat.saturating_add(ttl),
            nonce: nonce.as_deref(),
        });
        Minted {
            access_token,
            refresh_token,
            id_token,
            expires_in: ttl,
        }
    }

    /// Revokes a family: its live refresh token and its access tokens stop
    /// working.
    pub fn revoke_family(&mut self, family: u64) {
        if let Some(f) = self.families.get_mut(&family) {
            f.revoked = true;
        }
        for rec in self.refresh_tokens.values_mut() {
            if rec.family == family && rec.status == RefreshStatus::Active {
                rec.status = RefreshStatus::Revoked;
            }
        }
    }

    /// Whether a family was revoked (unknown families count as revoked).
    pub fn family_revoked(&self, family: u64) -> bool {
        self.families.get(&family).is_none_or(|f| f.revoked)
    }

    /// The state of a refresh token right now.
    pub fn refresh_state(&self, token: &str) -> TokenState {
        match self.refresh_tokens.get(token) {
            None => TokenState::Unknown,
            Some(r) => match r.status {
                RefreshStatus::Consumed => TokenState::Consumed,
                RefreshStatus::Revoked => TokenState::Revoked,
                RefreshStatus::Active if self.family_revoked(r.family) => TokenState::Revoked,
                RefreshStatus::Active if self.now() >= r.expires_at => TokenState::Expired,
                RefreshStatus::Active => TokenState::Active,
            },
        }
    }

    /// Where a known refresh token sits in its family's chain.
    pub fn lineage(&self, token: &str) -> Option<Lineage> {
        let r = self.refresh_tokens.get(token)?;
        let latest_generation = self
            .families
            .get(&r.family)
            .map_or(r.generation, |f| f.refresh_minted.saturating_sub(1));
        let successor_state = self
            .refresh_tokens
            .iter()
            .find(|(_, s)| s.family == r.family && s.generation == r.generation + 1)
            .map(|(t, _)| self.refresh_state(t));
        Some(Lineage {
            family: r.family,
            generation: r.generation,
            latest_generation,
            successor_state,
        })
    }

    /// The record of an access token that is known, unexpired and not
    /// revoked (by itself or with its family).
    pub fn valid_access(&self, token: &str) -> Option<&AccessRecord> {
        let rec = self.access_tokens.get(token)?;
        let revoked = rec.revoked || rec.family.is_some_and(|f| self.family_revoked(f));
        (self.now() < rec.expires_at && !revoked).then_some(rec)
    }

    /// Mints a new family for `client_id` with a refresh token, as if a user
    /// had just granted `scope`.
    pub fn seed(&mut self, issuer: &str, client_id: &str, scope: &str) -> Seeded {
        let family = self.new_family(client_id, scope, None);
        let m = self.mint_user_tokens(issuer, family, scope, true);
        Seeded {
            refresh_token: m.refresh_token.unwrap_or_default(),
            access_token: m.access_token,
            expires_in: m.expires_in,
            scope: scope.to_owned(),
            id_token: m.id_token,
        }
    }
}

/// The state plus the fixed facts every handler needs.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// `http://127.0.0.1:PORT`, also the issuer.
    pub base_url: String,
    /// Log one line per request to stderr.
    pub verbose: bool,
    /// Token and revocation requests held by the `hold` fault.
    pub holds: Holds,
    /// What the `endless` fault's responses wrote.
    pub streams: Streams,
}

impl Shared {
    /// Shared state for an emulator listening at `base_url`.
    pub fn new(opts: &Options, base_url: String) -> Self {
        Shared {
            state: Mutex::new(State::new(opts)),
            base_url,
            verbose: opts.verbose,
            holds: Holds::default(),
            streams: Streams::default(),
        }
    }

    /// Forgets tokens, codes, counters, faults and endless streams, restores
    /// the start-up settings, then releases the held requests (which meet
    /// the new state, but none of the faults queued after the reset: those
    /// are the next test's, and a request it did not send must not take one).
    pub fn reset(&self) {
        self.lock().reset();
        self.streams.reset();
        self.holds.release_for_reset();
    }

    /// Locks the state (a poisoned lock is recovered, never a panic).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token endpoint URL, the only valid `audience`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/connect/token", self.base_url)
    }

    /// The revocation endpoint URL (RFC 7009).
    pub fn revocation_endpoint(&self) -> String {
        format!("{}/connect/revocation", self.base_url)
    }

    /// The authorization endpoint URL.
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/connect/authorize", self.base_url)
    }
}
