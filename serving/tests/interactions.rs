//! `POST /api/v1/interactions`: shopper activity becomes an event on the `interactions` topic,
//! keyed by the user, answered 202 with a token; bad input is a 4xx JSON error.

mod support;

use serde_json::{json, Value};
use support::spawn_app;

#[tokio::test]
async fn interactions_are_accepted_on_the_users_partition_and_bad_ones_refused() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/interactions", app.base);

    for body in [
        json!({"type": "product.viewed", "user_id": "u-1", "product_id": "p-1"}),
        json!({"type": "recommendation.clicked", "user_id": "u-1", "product_id": "p-2", "source": "similar"}),
        json!({"type": "search.performed", "user_id": "u-1", "query": "kettle"}),
    ] {
        let response = client.post(&url).json(&body).send().await?;
        assert_eq!(response.status(), 202, "{body}");
        let accepted: Value = response.json().await?;
        let token = accepted["consistency_token"].as_str().unwrap();
        let expected = shopflow_events::partition_for(b"u-1", 4);
        assert!(token.starts_with(&format!("interactions:{expected}:")), "{token}");
    }

    for (body, status, code) in [
        (json!({"type": "product.exploded", "user_id": "u", "product_id": "p"}), 422, "invalid_body"),
        (json!({"type": "product.viewed", "user_id": "u"}), 422, "invalid_body"),
        (json!({"type": "search.performed", "user_id": "u", "query": " "}), 422, "validation_failed"),
        (json!({"type": "product.viewed", "user_id": "bad id", "product_id": "p"}), 422, "validation_failed"),
    ] {
        let response = client.post(&url).json(&body).send().await?;
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error: Value = response.json().await?;
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
    }
    app.stop().await;
    Ok(())
}
