//! Accounts' share of a partition: users, their addresses and their sessions, and the two
//! decisions that must come from the log, not from whichever replica answered:
//!
//! - **The e-mail is unique.** The user id is derived from the e-mail
//!   (`shopflow_events::user_id_for_email`) and `users` is keyed by user id, so every
//!   registration of one e-mail lands in this one partition. The first in offset order wins;
//!   a later one (a second replica that accepted the same e-mail at the same moment, or
//!   anyone registering a taken address) changes nothing. The account row names the winning
//!   event, and the replica that wrote a losing one answers `409`.
//! - **A refresh token is used once.** A refresh presenting the session's current token
//!   rotates it; one presenting a token the session already rotated away is reuse (a stolen
//!   token, or a client replaying one) and revokes the session, whichever came first being a
//!   matter of log order alone.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use shopflow_events::types::SessionRefreshed;
use shopflow_events::{Envelope, Event, Id};

use super::fold::{rows, upsert};
use super::{Fold, StatePart};
use crate::base::Changes;
use crate::views::{AccountRow, AddressRow, SessionRow};

/// How many rotated-away refresh digests a session remembers for reuse detection. A client
/// refreshing every 15 minutes for 30 days rotates ~2,900 times; a digest older than this is
/// refused as unknown (401) without revoking the session.
pub const ROTATED_DIGESTS_KEPT: usize = 4_096;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountsState {
    pub(crate) accounts: HashMap<Id, AccountRow>,
    pub(crate) addresses: HashMap<(Id, Id), AddressRow>,
    pub(crate) sessions: HashMap<Id, SessionRow>,
    /// Per session, the digests of refresh tokens already rotated away, oldest first.
    rotated: HashMap<Id, Vec<String>>,
}

impl StatePart for AccountsState {
    const SECTION: &'static str = "accounts";
    const VERSION: u32 = 1;

    fn apply(&mut self, _: &Fold, envelope: &Envelope, out: &mut Changes) {
        let ts = envelope.ts;
        match &envelope.event {
            Event::UserRegistered(e) => {
                if self.accounts.contains_key(&e.user_id) {
                    return; // the e-mail is taken: the first registration stands
                }
                let row = AccountRow {
                    user_id: e.user_id.clone(),
                    email: shopflow_events::normalize_email(&e.email),
                    name: e.name.clone(),
                    phone: e.phone.clone(),
                    role: e.role,
                    password_hash: e.password_hash.clone(),
                    registered_event: envelope.id,
                    created_at: ts,
                    updated_at: ts,
                };
                upsert(&mut self.accounts, e.user_id.clone(), Some(row), &mut out.accounts);
            }
            Event::ProfileUpdated(e) => self.edit(&e.user_id, ts, out, |row| {
                if let Some(name) = &e.name {
                    row.name = name.clone();
                }
                if let Some(phone) = &e.phone {
                    row.phone = phone.clone();
                }
            }),
            Event::RoleChanged(e) => self.edit(&e.user_id, ts, out, |row| row.role = e.role),
            Event::AddressAdded(e) => {
                if !self.accounts.contains_key(&e.user_id) {
                    return;
                }
                if e.is_default {
                    self.clear_default(&e.user_id, out);
                }
                let row = AddressRow {
                    user_id: e.user_id.clone(),
                    address_id: e.address_id.clone(),
                    street: e.street.clone(),
                    city: e.city.clone(),
                    state: e.state.clone(),
                    country: e.country.clone(),
                    zip: e.zip.clone(),
                    is_default: e.is_default,
                    created_at: ts,
                };
                upsert(&mut self.addresses, (e.user_id.clone(), e.address_id.clone()), Some(row), &mut out.addresses);
            }
            Event::SessionStarted(e) => {
                // Only for an account that exists, and a session id is never reused.
                if !self.accounts.contains_key(&e.user_id) || self.sessions.contains_key(&e.session_id) {
                    return;
                }
                let row = SessionRow {
                    session_id: e.session_id.clone(),
                    user_id: e.user_id.clone(),
                    refresh_hash: e.refresh_hash.clone(),
                    started_at: e.issued_at,
                    issued_at: e.issued_at,
                    expires_at: e.expires_at,
                    client_ip: e.client_ip.clone(),
                    token_type: "refresh".to_owned(),
                    rotations: 0,
                    revoked: None,
                };
                upsert(&mut self.sessions, e.session_id.clone(), Some(row), &mut out.sessions);
            }
            Event::SessionRefreshed(e) => self.refresh(e, out),
            Event::SessionRevoked(e) => {
                let reason = if e.reason.is_empty() { "revoked" } else { e.reason.as_str() };
                self.revoke(&e.session_id, &e.user_id, reason, out);
            }
            _ => {}
        }
    }

    fn insertions(&self, out: &mut Changes) {
        out.accounts.extend(rows(&self.accounts));
        out.addresses.extend(rows(&self.addresses));
        out.sessions.extend(rows(&self.sessions));
    }
}

impl AccountsState {
    fn edit(&mut self, user: &Id, ts: i64, out: &mut Changes, change: impl FnOnce(&mut AccountRow)) {
        let Some(current) = self.accounts.get(user) else { return };
        let mut next = current.clone();
        change(&mut next);
        if next != *current {
            next.updated_at = ts;
            upsert(&mut self.accounts, user.clone(), Some(next), &mut out.accounts);
        }
    }

    fn clear_default(&mut self, user: &Id, out: &mut Changes) {
        let defaults: Vec<(Id, Id)> =
            self.addresses.iter().filter(|(k, a)| &k.0 == user && a.is_default).map(|(k, _)| k.clone()).collect();
        for key in defaults {
            let mut row = self.addresses[&key].clone();
            row.is_default = false;
            upsert(&mut self.addresses, key, Some(row), &mut out.addresses);
        }
    }

    fn refresh(&mut self, e: &SessionRefreshed, out: &mut Changes) {
        let Some(current) = self.sessions.get(&e.session_id) else { return };
        if current.user_id != e.user_id || current.revoked.is_some() {
            return;
        }
        if current.refresh_hash == e.presented_hash {
            let mut next = current.clone();
            next.refresh_hash = e.refresh_hash.clone();
            next.issued_at = e.issued_at;
            next.expires_at = e.expires_at;
            next.client_ip = e.client_ip.clone();
            next.rotations += 1;
            let rotated = self.rotated.entry(e.session_id.clone()).or_default();
            rotated.push(e.presented_hash.clone());
            if rotated.len() > ROTATED_DIGESTS_KEPT {
                rotated.remove(0);
            }
            upsert(&mut self.sessions, e.session_id.clone(), Some(next), &mut out.sessions);
        } else if self.rotated.get(&e.session_id).is_some_and(|r| r.contains(&e.presented_hash)) {
            self.revoke(&e.session_id, &e.user_id, "refresh_reuse", out);
        }
    }

    fn revoke(&mut self, session: &Id, user: &Id, reason: &str, out: &mut Changes) {
        let Some(current) = self.sessions.get(session) else { return };
        if &current.user_id != user || current.revoked.is_some() {
            return;
        }
        let mut next = current.clone();
        next.revoked = Some(reason.to_owned());
        // Revoked for good: the digests are no longer needed to detect anything.
        self.rotated.remove(session);
        upsert(&mut self.sessions, session.clone(), Some(next), &mut out.sessions);
    }
}

#[cfg(test)]
mod tests {
    use shopflow_events::types::{Role, SessionRevoked, SessionStarted, UserRegistered};

    use super::*;
    use crate::jobs::weights::InteractionWeights;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    fn digest(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn apply(state: &mut AccountsState, event: Event) -> (Changes, uuid::Uuid) {
        let envelope = Envelope::new(event);
        let mut out = Changes::default();
        state.apply(&Fold::new(&InteractionWeights::default()), &envelope, &mut out);
        (out, envelope.id)
    }

    fn register(state: &mut AccountsState, email: &str) -> uuid::Uuid {
        let user_id = shopflow_events::user_id_for_email(email);
        let event = Event::UserRegistered(UserRegistered {
            user_id,
            email: email.into(),
            name: "A".into(),
            phone: String::new(),
            password_hash: HASH.into(),
            role: Role::Customer,
        });
        apply(state, event).1
    }

    #[test]
    fn the_first_registration_of_an_email_wins() {
        let mut state = AccountsState::default();
        let first = register(&mut state, "Ann@Example.com");
        let second = register(&mut state, "ann@example.com ");
        assert_ne!(first, second);
        let user = shopflow_events::user_id_for_email("ann@example.com");
        assert_eq!(state.accounts.len(), 1);
        assert_eq!(state.accounts[&user].registered_event, first);
        assert_eq!(state.accounts[&user].email, "ann@example.com");
    }

    fn start(state: &mut AccountsState, user: &Id, session: &str, refresh: u8) {
        apply(
            state,
            Event::SessionStarted(SessionStarted {
                user_id: user.clone(),
                session_id: Id::from(session),
                refresh_hash: digest(refresh),
                issued_at: 1,
                expires_at: 2,
                client_ip: "127.0.0.1".into(),
            }),
        );
    }

    fn refresh(state: &mut AccountsState, user: &Id, session: &str, presented: u8, next: u8) {
        apply(
            state,
            Event::SessionRefreshed(SessionRefreshed {
                user_id: user.clone(),
                session_id: Id::from(session),
                presented_hash: digest(presented),
                refresh_hash: digest(next),
                issued_at: 3,
                expires_at: 4,
                client_ip: String::new(),
            }),
        );
    }

    #[test]
    fn refresh_rotates_and_reuse_revokes_the_session() {
        let mut state = AccountsState::default();
        register(&mut state, "a@example.com");
        let user = shopflow_events::user_id_for_email("a@example.com");
        start(&mut state, &user, "s1", 1);
        refresh(&mut state, &user, "s1", 1, 2);
        let session = &state.sessions[&Id::from("s1")];
        assert_eq!((session.refresh_hash.as_str(), session.rotations, session.revoked.as_deref()), (digest(2).as_str(), 1, None));
        // A digest never issued is refused without consequences...
        refresh(&mut state, &user, "s1", 9, 3);
        assert_eq!(state.sessions[&Id::from("s1")].revoked, None);
        // ...the rotated-away one is reuse.
        refresh(&mut state, &user, "s1", 1, 3);
        assert_eq!(state.sessions[&Id::from("s1")].revoked.as_deref(), Some("refresh_reuse"));
        // And nothing rotates a revoked session.
        refresh(&mut state, &user, "s1", 2, 4);
        assert_eq!(state.sessions[&Id::from("s1")].refresh_hash, digest(2));
    }

    #[test]
    fn sessions_need_an_account_and_revocation_is_by_owner() {
        let mut state = AccountsState::default();
        start(&mut state, &Id::from("nobody"), "s0", 1);
        assert!(state.sessions.is_empty());
        register(&mut state, "b@example.com");
        let user = shopflow_events::user_id_for_email("b@example.com");
        start(&mut state, &user, "s1", 1);
        let revoke = |user: &Id| {
            Event::SessionRevoked(SessionRevoked { user_id: user.clone(), session_id: Id::from("s1"), reason: "logout".into() })
        };
        apply(&mut state, revoke(&Id::from("someone-else")));
        assert_eq!(state.sessions[&Id::from("s1")].revoked, None);
        apply(&mut state, revoke(&user));
        assert_eq!(state.sessions[&Id::from("s1")].revoked.as_deref(), Some("logout"));
    }
}
