//! Bad input to `rlsched serve` gets a 4xx that says what is wrong: malformed JSON, a wrong
//! shape, a NaN, an oversized body, a missing or wrong token, an unknown model, bad parameters.

mod common;

use common::serve::{self as helpers, DIGITS};
use serde_json::json;

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>, headers: &[(&str, String)]) -> (u16, String) {
    let mut request = client.post(format!("{url}/v2/models/digits-cnn/infer")).body(body);
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx_answers() {
    let mut config = helpers::config(helpers::env(&[DIGITS]));
    config.body.max_bytes = 64 << 10;
    config.token = Some("s3cret".into());
    let server = helpers::start(config).await;
    let client = reqwest::Client::new();
    let url = server.url.as_str();
    let auth = [("authorization", "Bearer s3cret".to_string())];
    let good = serde_json::to_vec(&helpers::digits_request(json!({"slo_ms": 80.0}))).unwrap();

    let (status, text) = post(&client, url, good.clone(), &auth).await;
    assert_eq!(status, 200, "{text}");
    let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["parameters"]["slo_ms"], 80.0, "{reply}");

    let (status, text) = post(&client, url, good.clone(), &[]).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("bearer token"), "{text}");
    let (status, text) = post(&client, url, good.clone(), &[("authorization", "Bearer nope".into())]).await;
    assert_eq!(status, 401, "{text}");
    let metrics = client.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status().as_u16(), 401, "/metrics is an admin route");

    let (status, text) = post(&client, url, b"{\"inputs\": [".to_vec(), &auth).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("malformed inference request"), "{text}");

    let wrong = json!({"inputs": [{"name": "input", "shape": [1, 1, 4, 4], "datatype": "FP32", "data": vec![0.0; 16]}]});
    let (status, text) = post(&client, url, serde_json::to_vec(&wrong).unwrap(), &auth).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("[N, 1, 8, 8]"), "{text}");

    // a NaN cannot be written in JSON: it comes as binary tensor data
    let mut raw: Vec<u8> = Vec::new();
    for i in 0..64 {
        raw.extend_from_slice(&(if i == 5 { f32::NAN } else { 0.5 }).to_le_bytes());
    }
    let header = serde_json::to_vec(&json!({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "parameters": {"binary_data_size": 256}}]})).unwrap();
    let mut body = header.clone();
    body.extend_from_slice(&raw);
    let headers = [auth[0].clone(), ("inference-header-content-length", header.len().to_string())];
    let (status, text) = post(&client, url, body, &headers).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("finite") || text.contains("NaN"), "{text}");

    let (status, text) = post(&client, url, vec![b' '; 128 << 10], &auth).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("limit of 65536 bytes"), "{text}");

    for (parameters, field) in [(json!({"slo_ms": -1.0}), "slo_ms"), (json!({"min_accuracy": 2.0}), "min_accuracy"), (json!({"slo_ms": "fast"}), "slo_ms")] {
        let (status, text) = post(&client, url, serde_json::to_vec(&helpers::digits_request(parameters)).unwrap(), &auth).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(&format!("parameter `{field}`")), "{text}");
    }

    let response = client.post(format!("{url}/v2/models/resnet18/infer")).header("authorization", "Bearer s3cret").body(good).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert!(response.text().await.unwrap().contains("served models: digits-cnn"));

    // the server still serves after all of that
    let (status, text) = post(&client, url, serde_json::to_vec(&helpers::digits_request(json!({}))).unwrap(), &auth).await;
    assert_eq!(status, 200, "{text}");
    server.stop().await;
}
