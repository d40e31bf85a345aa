//! `rlsched serve` under load: 2,000 requests from 32 concurrent clients against a small
//! admission queue. Every request is answered, 200 or 503 (with a message saying why), and the
//! counts in `/metrics` add up to what the clients saw.

mod common;

use common::serve::{self as helpers, DIGITS};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_requests_from_32_clients_are_all_answered_and_counted() {
    let mut config = helpers::config(helpers::env(&[DIGITS]));
    config.max_queue = 8;
    let server = helpers::start(config).await;
    let client = reqwest::Client::new();
    let body = serde_json::to_vec(&helpers::digits_request(serde_json::json!({}))).unwrap();
    let (clients, total) = (32, 2000);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, body, url) = (client.clone(), body.clone(), server.url.clone());
        let count = total / clients + usize::from(c < total % clients);
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut busy) = (0u64, 0u64);
            for _ in 0..count {
                let response = client
                    .post(format!("{url}/v2/models/digits-cnn/infer"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("every request gets an answer");
                let status = response.status().as_u16();
                let reply: serde_json::Value = response.json().await.unwrap();
                match status {
                    200 => {
                        assert_eq!(reply["parameters"]["strategy"], "local", "{reply}");
                        assert_eq!(reply["outputs"][0]["shape"], serde_json::json!([1, 10]));
                        ok += 1;
                    }
                    503 => {
                        assert!(reply["error"].as_str().unwrap().contains("server busy"), "{reply}");
                        busy += 1;
                    }
                    other => panic!("unexpected status {other}: {reply}"),
                }
            }
            (ok, busy)
        }));
    }
    let (mut ok, mut busy) = (0, 0);
    for task in tasks {
        let (o, b) = task.await.unwrap();
        ok += o;
        busy += b;
    }
    assert_eq!(ok + busy, total as u64);
    assert!(ok > 0);
    let metrics = client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert_eq!(helpers::sample(&metrics, r#"rlsched_responses_total{code="200"}"#), ok as f64, "{metrics}");
    assert_eq!(helpers::sample(&metrics, r#"rlsched_responses_total{code="503"}"#), busy as f64, "{metrics}");
    let served: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("rlsched_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(served, ok as f64, "{metrics}");
    assert_eq!(helpers::sample(&metrics, "rlsched_in_flight"), 0.0, "{metrics}");
    assert_eq!(helpers::sample(&metrics, "rlsched_decision_seconds_count"), ok as f64, "{metrics}");
    let summary = server.stop().await;
    assert_eq!(summary.answered, total as u64);
}
