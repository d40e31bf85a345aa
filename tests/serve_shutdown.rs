//! SIGTERM during load: `rlsched serve --online` stops accepting, answers every request it
//! had admitted, writes a checkpoint that loads, and exits 0.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::{self as helpers, DIGITS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_writes_a_loadable_checkpoint() {
    let runs = std::env::temp_dir().join(format!("rlsched-serve-term-{}", std::process::id()));
    std::fs::remove_dir_all(&runs).ok();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_rlsched"))
        .args(["serve", "--online", "--listen", "127.0.0.1:0", "--config", &format!("{root}/train.toml")])
        .args(["--checkpoint", &format!("{root}/checkpoints/default"), "--runs-dir", runs.to_str().unwrap()])
        .args(["--set", DIGITS, "--set", "online.update_every=8", "--set", "online.reward_window=8", "--set", "online.num_minibatches=2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(serve.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();

    // A fresh connection per request. After the signal a connection the server had not read
    // a request from yet is closed or refused; a request it had read is answered (the count
    // it prints equals the answers the clients received).
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let body = serde_json::to_vec(&helpers::digits_request(serde_json::json!({}))).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, body, url, stop) = (client.clone(), body.clone(), url.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match client.post(format!("{url}/v2/models/digits-cnn/infer")).body(body.clone()).send().await {
                    Ok(response) => {
                        assert_eq!(response.status().as_u16(), 200);
                        response.bytes().await.expect("an admitted request is answered in full");
                        ok += 1;
                    }
                    Err(_) => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (ok, refused)
        }));
    }
    // load until an online update has been swapped in
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        if helpers::sample(&text, "rlsched_online_updates_total") >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no online update:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = Command::new("kill").args(["-TERM", &serve.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || serve.wait().unwrap()).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut ok = 0;
    for task in tasks {
        ok += task.await.unwrap().0;
    }
    assert!(exit.success(), "serve exited with {exit}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let answered: u64 = rest
        .split("answering ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {rest:?}"));
    assert_eq!(answered, ok, "every request serve answered reached its client, and no other");

    let checkpoint = runs.join("checkpoint");
    let (policy, sidecar) = rlsched_agent::checkpoint::load(&checkpoint, &burn::tensor::Device::flex()).unwrap();
    assert!(policy.first_non_finite_parameter().is_none());
    let (_, shipped) = rlsched_agent::checkpoint::load(&std::path::Path::new(root).join("checkpoints/default"), &burn::tensor::Device::flex()).unwrap();
    assert!(sidecar.step > shipped.step, "the checkpoint counts the online steps: {} vs {}", sidecar.step, shipped.step);
    let events = std::fs::read_dir(&runs).unwrap().filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().contains("tfevents"));
    assert!(events, "no TensorBoard event file in {}", runs.display());
    std::fs::remove_dir_all(&runs).ok();
}
