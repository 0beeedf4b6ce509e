//! The first admin: created by an operator with access to the log (`shopflow admin create`,
//! or `shopflow up --admin-email`), never by a built-in password and never over HTTP.

use shopflow_events::types::{Role, RoleChanged, UserRegistered};
use shopflow_events::{Envelope, Event, Id};
use shopflow_ingest::{EventLog, LogError, OutRecord};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("the password must be {} to {} characters long", super::password::MIN_LEN, super::password::MAX_LEN)]
    Password,
    #[error("invalid account: {0}")]
    Invalid(#[from] shopflow_events::ValidationError),
    #[error("hashing the password failed")]
    Hash,
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Registers `email` as an admin with `password`, or, if the e-mail is registered already,
/// makes that account an admin (its password stays). Both events go to the account's
/// partition in one append; the pipeline applies whichever applies. Returns the user id.
/// Hashes on the calling thread: call it from a blocking context.
pub async fn create(log: &dyn EventLog, email: &str, name: &str, password: &str) -> Result<Id, AdminError> {
    let length = password.chars().count();
    if !(super::password::MIN_LEN..=super::password::MAX_LEN).contains(&length) {
        return Err(AdminError::Password);
    }
    let user_id = shopflow_events::user_id_for_email(email);
    let password_hash = tokio::task::block_in_place(|| super::password::hash_blocking(password)).ok_or(AdminError::Hash)?;
    let events = [
        Event::UserRegistered(UserRegistered {
            user_id: user_id.clone(),
            email: shopflow_events::normalize_email(email),
            name: name.to_owned(),
            phone: String::new(),
            password_hash,
            role: Role::Admin,
        }),
        Event::RoleChanged(RoleChanged { user_id: user_id.clone(), role: Role::Admin }),
    ];
    let mut records = Vec::new();
    for event in events {
        event.validate()?;
        let envelope = Envelope::new(event);
        records.push(OutRecord::of(&envelope));
    }
    log.append(records).await?;
    tracing::info!(user_id = %user_id, "admin account created or promoted");
    Ok(user_id)
}
