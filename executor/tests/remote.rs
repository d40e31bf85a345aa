//! Split and offload through a real worker on 127.0.0.1:0 give the same answer as local
//! execution, an int8 split a quarter of the bytes, and an unreachable worker means a local
//! fallback, not a lost request. (Bad requests: `worker_input.rs`.)

use rlsched_executor::model::activation::WireData;
use rlsched_executor::plan::{Plan, PlanExecutor};
use rlsched_executor::kserve::worker::WorkerConfig;
use rlsched_executor::model::workloads::Workload;
use rlsched_executor::{DeviceChoice, WireTensor};

mod common;
use common::{client, post, start_worker};

fn assert_close(a: &WireTensor, b: &WireTensor, context: &str) {
    assert_eq!(a.shape, b.shape, "{context}");
    let (WireData::F32(x), WireData::F32(y)) = (&a.data, &b.data) else {
        panic!("{context}: expected FP32 outputs");
    };
    let scale = x.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let err = x.iter().zip(y).fold(0.0f32, |m, (p, q)| m.max((p - q).abs())) / scale;
    assert!(err < 1e-4, "{context}: relative error {err}");
}

async fn check_all_plans(workload: Workload) {
    let server = start_worker(WorkerConfig::default()).await;
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client(server.addr)]).unwrap();
    let input = workload.example_input(11);
    let local = executor
        .execute(workload, &Plan::Local { variant: "fp32".into() }, input.clone(), None)
        .await
        .unwrap();
    assert!(local.breakdown.local_ms > 0.0);
    let stages = executor.network(workload, "fp32").unwrap().stage_count();
    let mut plans: Vec<Plan> = (1..stages)
        .map(|cut| Plan::Split { variant: "fp32".into(), cut, worker: 0, int8: false })
        .collect();
    plans.push(Plan::Offload { variant: "fp32".into(), worker: 0 });
    for plan in plans {
        let run = executor.execute(workload, &plan, input.clone(), None).await.unwrap();
        let b = &run.breakdown;
        assert!(b.fallback.is_none(), "{plan:?} fell back: {:?}", b.fallback);
        assert!(b.bytes_up > 0 && b.bytes_down > 0 && b.remote_compute_ms > 0.0, "{plan:?}: {b:?}");
        assert!(b.total_ms >= b.local_ms, "{plan:?}: {b:?}");
        assert_eq!(b.worker_queue_length, Some(0));
        assert_close(&local.output, &run.output, &format!("{workload:?} {plan:?}"));
    }
    let links = executor.link_estimates();
    assert_eq!(links[0].transfers() as usize, stages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digits_split_and_offload_match_local() {
    check_all_plans(Workload::DigitsCnn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobilenetv2_split_and_offload_match_local() {
    check_all_plans(Workload::MobileNetV2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resnet18_split_and_offload_match_local() {
    check_all_plans(Workload::ResNet18).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vgg16_split_and_offload_match_local() {
    check_all_plans(Workload::Vgg16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bert_mini_split_and_offload_match_local() {
    check_all_plans(Workload::BertMini).await;
}

/// An int8 split sends about a quarter of the f32 split's bytes and the worker, which
/// dequantizes it, answers nearly what local execution does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int8_split_sends_a_quarter_and_answers_the_same() {
    let server = start_worker(WorkerConfig::default()).await;
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client(server.addr)]).unwrap();
    let workload = Workload::MobileNetV2;
    let input = workload.example_input(5);
    let local = executor.execute(workload, &Plan::Local { variant: "fp32".into() }, input.clone(), None).await.unwrap();
    let WireData::F32(reference) = &local.output.data else { panic!("f32 logits") };
    for cut in [3, 7, 14] {
        let split = |int8| Plan::Split { variant: "fp32".into(), cut, worker: 0, int8 };
        let f32_run = executor.execute(workload, &split(false), input.clone(), None).await.unwrap();
        let int8_run = executor.execute(workload, &split(true), input.clone(), None).await.unwrap();
        assert!(int8_run.breakdown.fallback.is_none(), "{:?}", int8_run.breakdown.fallback);
        let (full, small) = (f32_run.breakdown.bytes_up as f64, int8_run.breakdown.bytes_up as f64);
        assert!(small < 0.3 * full, "cut {cut}: int8 sent {small} B, f32 {full} B");
        let WireData::F32(answer) = &int8_run.output.data else { panic!("f32 logits") };
        let dot: f32 = reference.iter().zip(answer).map(|(a, b)| a * b).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let cosine = dot / (norm(reference) * norm(answer));
        assert!(cosine > 0.99, "cut {cut}: cosine {cosine}");
    }
}

/// A UINT8 tensor that claims half an int8 range, or a range on an FP32 tensor, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_int8_ranges_are_refused() {
    let server = start_worker(WorkerConfig::default()).await;
    let body = |datatype: &str, data: serde_json::Value, params: serde_json::Value| {
        serde_json::to_vec(&serde_json::json!({
            "parameters": {"start_stage": 1},
            "inputs": [{"name": "x", "shape": [1, 8, 8, 8], "datatype": datatype, "data": data, "parameters": params}]
        }))
        .unwrap()
    };
    let zeros = serde_json::json!(vec![0; 512]);
    for (datatype, params, expected) in [
        ("UINT8", serde_json::json!({"int8_scale": 0.1}), "go together"),
        ("UINT8", serde_json::json!({"int8_scale": "x", "int8_min": 0.0}), "finite number"),
        ("UINT8", serde_json::json!({"int8_scale": -1.0, "int8_min": 0.0}), "negative"),
        ("FP32", serde_json::json!({"int8_scale": 0.1, "int8_min": 0.0}), "need a UINT8 tensor"),
    ] {
        let (status, reply) = post(server.addr, "digits-cnn", body(datatype, zeros.clone(), params)).await;
        assert_eq!(status, 400, "{reply}");
        assert!(reply["error"].as_str().unwrap().contains(expected), "{reply}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_worker_falls_back_to_local() {
    // a port that was just free: nothing listens there
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client(addr)]).unwrap();
    let input = Workload::DigitsCnn.example_input(2);
    let local = executor
        .execute(Workload::DigitsCnn, &Plan::Local { variant: "fp32".into() }, input.clone(), None)
        .await
        .unwrap();
    for plan in [
        Plan::Split { variant: "fp32".into(), cut: 2, worker: 0, int8: false },
        Plan::Offload { variant: "fp32".into(), worker: 0 },
    ] {
        let run = executor.execute(Workload::DigitsCnn, &plan, input.clone(), None).await.unwrap();
        let reason = run.breakdown.fallback.as_deref().unwrap_or_default();
        assert!(reason.contains("remote execution failed"), "{plan:?}: {reason:?}");
        assert_close(&local.output, &run.output, "fallback");
    }
}

/// A worker that accepts the connection and never answers (a stalled link): past the
/// deadline the request is abandoned and finished locally, reusing the split's head, with the
/// same answer as local execution. Without the deadline it would wait as long as the client's
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_path_past_its_deadline_finishes_locally() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // holds every connection open, reads nothing back
    let stalled = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client(addr)]).unwrap();
    let workload = Workload::DigitsCnn;
    let input = workload.example_input(3);
    let local = executor.execute(workload, &Plan::Local { variant: "fp32".into() }, input.clone(), None).await.unwrap();
    let deadline = Some(std::time::Duration::from_millis(200));
    for plan in [Plan::Split { variant: "fp32".into(), cut: 2, worker: 0, int8: false }, Plan::Offload { variant: "fp32".into(), worker: 0 }] {
        let run = executor.execute(workload, &plan, input.clone(), deadline).await.unwrap();
        let b = &run.breakdown;
        assert!(b.fallback.as_deref().is_some_and(|f| f.contains("deadline of 200 ms")), "{plan:?}: {b:?}");
        assert!(b.total_ms >= 200.0 && b.bytes_up > 0, "{plan:?}: {b:?}");
        assert_close(&local.output, &run.output, &format!("{plan:?} after its deadline"));
    }
    stalled.abort();
}
