//! The OpenAPI document against the live router: it is OpenAPI 3.1 JSON, every documented
//! operation is served, every other method on a documented path is a 405, error responses
//! carry the error schema, admin routes their security, and the lag headers appear exactly
//! where the document says.
//!
//! Routes enter the router only through `OpenApiRouter::routes` in `routes/mod.rs`, which
//! takes path and method from the handler's `#[utoipa::path]` for the route and the document
//! alike; this test checks what that cannot guarantee by construction: that the document's
//! templates are what axum matches, that no method is served undocumented on a documented
//! path, and that the wrappers (`read(...)`, extractors) agree with the annotations.

mod support;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::*;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
const ERROR_REF: &str = "#/components/schemas/ErrorBody";

async fn document(app: &TestApp) -> Result<Value> {
    let response = app.client.get(app.url("/api/v1/openapi.json")).send().await?;
    ensure!(response.status() == StatusCode::OK, "status {}", response.status());
    let content_type = response.headers().get("content-type").context("content type")?.to_str()?.to_owned();
    ensure!(content_type == "application/json", "content type {content_type}");
    Ok(serde_json::from_slice(&response.bytes().await?)?)
}

/// `(path, method, operation)` for every documented operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                all.push((path.clone(), method.to_owned(), operation.clone()));
            }
        }
    }
    all
}

/// A concrete URL path for a template: every `{param}` becomes a valid id.
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("closed parameter") + start;
        out.push_str(&rest[..start]);
        out.push_str("probe-1");
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn is_event_stream(response: &reqwest::Response) -> bool {
    response.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_matches_what_the_server_serves() -> Result<()> {
    let app = spawn_app().await;
    let doc = document(&app).await?;

    ensure!(doc["openapi"] == "3.1.0", "openapi {}", doc["openapi"]);
    ensure!(doc["info"]["title"].as_str().is_some_and(|t| !t.is_empty()), "title");
    ensure!(doc["info"]["version"] == env!("CARGO_PKG_VERSION"), "version {}", doc["info"]["version"]);
    // The served document is the one the router was built from.
    let built = serde_json::to_value(shopflow_serving::document(&app.state))?;
    ensure!(built == doc, "served document differs from the generated one");

    let ops = operations(&doc);
    ensure!(ops.len() >= 20, "only {} operations documented", ops.len());
    let mut ids = std::collections::HashSet::new();
    for (path, method, operation) in &ops {
        let id = operation["operationId"].as_str().context("operationId")?;
        ensure!(ids.insert(id.to_owned()), "operationId {id} of {method} {path} is not unique");
    }
    ensure!(
        ops.iter().any(|(p, m, _)| p == "/api/v1/openapi.json" && m == "get"),
        "the document documents itself"
    );

    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    for path in paths {
        let url = concrete(path);
        for method in METHODS {
            let documented = doc["paths"][path].get(method).is_some();
            let request = app
                .admin(Method::from_bytes(method.to_uppercase().as_bytes())?, &url)
                .header("content-type", "application/json")
                .body("{}");
            let response = request.send().await?;
            let status = response.status();
            // A live view (SSE) answers with a stream that does not end: its status is the answer.
            let body: Value = if is_event_stream(&response) { Value::Null } else { response.json().await.unwrap_or(Value::Null) };
            let code = body["error"]["code"].as_str().unwrap_or("");
            if documented {
                ensure!(
                    status != StatusCode::METHOD_NOT_ALLOWED && code != "route_not_found",
                    "{method} {path} is documented but not served: {status} {body}"
                );
            } else {
                ensure!(
                    status == StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is served ({status}) but not documented"
                );
            }
        }
    }
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn errors_reference_the_error_schema_and_secured_routes_their_scheme() -> Result<()> {
    let app = spawn_app().await;
    let doc = document(&app).await?;

    // Request bodies refuse unknown fields (422), and the document says so.
    for variant in doc["components"]["schemas"]["Interaction"]["oneOf"].as_array().context("Interaction")? {
        ensure!(variant["additionalProperties"] == false, "open Interaction variant: {variant}");
    }
    let error = &doc["components"]["schemas"]["ErrorBody"];
    ensure!(error["properties"]["error"].is_object(), "ErrorBody: {error}");
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    ensure!(scheme["type"] == "http" && scheme["scheme"] == "bearer", "bearer scheme: {scheme}");

    let mut errors = 0;
    for (path, method, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().context("responses")?;
        ensure!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} documents no success"
        );
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                ensure!(schema == ERROR_REF, "{method} {path} {status} does not reference ErrorBody: {response}");
                errors += 1;
            }
        }
        let secured = operation["security"]
            .as_array()
            .is_some_and(|list| list.iter().any(|requirement| requirement.get("bearer").is_some()));
        if secured {
            ensure!(responses.contains_key("401"), "{method} {path} is secured but documents no 401");
        }
        // The annotation is true: without a token a secured route answers 401, an open one
        // does not.
        let response = app
            .client
            .request(Method::from_bytes(method.to_uppercase().as_bytes())?, app.url(&concrete(&path)))
            .json(&serde_json::json!({}))
            .send()
            .await?;
        let unauthorized = response.status() == StatusCode::UNAUTHORIZED;
        ensure!(secured == unauthorized, "{method} {path}: secured {secured}, without a token {}", response.status());
    }
    ensure!(errors > 40, "only {errors} error responses documented");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn lag_headers_appear_exactly_on_the_operations_that_document_them() -> Result<()> {
    let app = spawn_app().await;
    let doc = document(&app).await?;
    let mut reads = 0;
    for (path, method, operation) in operations(&doc).into_iter().filter(|(_, m, _)| m == "get") {
        let success = &operation["responses"]["200"];
        let documented = success["headers"].get("x-view-frontier").is_some();
        let response = app.client.get(app.url(&concrete(&path))).send().await?;
        let served = response.headers().contains_key("x-view-frontier");
        ensure!(
            documented == served,
            "{method} {path} ({}): lag headers documented {documented}, served {served}",
            response.status()
        );
        reads += usize::from(documented);
    }
    ensure!(reads >= 9, "only {reads} read operations");
    app.stop().await;
    Ok(())
}
