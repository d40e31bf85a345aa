//! `rlsched serve --chain`: a request to serve runs as a chain over real worker processes
//! (serve → `rlsched worker --next cloud=URL` → `rlsched worker`), answers what local execution
//! does, and reports every hop, placed by the policy (the default) or by the DP; with the cloud
//! killed, the edge finishes and the answer is
//! still right.

use std::path::Path;

use rlsched::serve::chain::{ChainPlacement, ChainSpec};
use rlsched_executor::plan::{Plan, PlanExecutor};
use rlsched_executor::{DeviceChoice, Workload};
use serde_json::Value;

mod common;
use common::serve;

fn logits(reply: &Value) -> Vec<f32> {
    reply["outputs"][0]["data"].as_array().unwrap_or_else(|| panic!("no output in {reply}")).iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_chain_placed_by_the_policy_and_the_edge_finishes_when_the_cloud_dies() {
    chain_through_processes(ChainPlacement::Policy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_chain_placed_by_the_dp_and_the_edge_finishes_when_the_cloud_dies() {
    chain_through_processes(ChainPlacement::DpStatic).await;
}

async fn chain_through_processes(placement: ChainPlacement) {
    let (mut cloud, cloud_url) = serve::spawn_worker("127.0.0.1:0", &[]);
    let next = format!("cloud={cloud_url}");
    let (mut edge, edge_url) = serve::spawn_worker("127.0.0.1:0", &["--next", &next]);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/chain3.toml");
    let mut env = rlsched::config::load(&path, true, &[]).unwrap().env;
    env.workloads.retain(|w| w.name == "mobilenetv2");
    // a device and an edge a hundred times slower than measured: the placement goes to the cloud
    env.nodes[0].time_factor = 100.0;
    env.nodes[1].time_factor = 100.0;
    let mut config = serve::config(env);
    config.chain = Some(ChainSpec { placement, ..ChainSpec::parse(&format!("edge={edge_url},cloud")).unwrap() });
    let running = serve::start(config).await;
    let client = reqwest::Client::new();
    let local = PlanExecutor::new(DeviceChoice::Flex, vec![]).unwrap();
    let infer = |index: usize| {
        let client = client.clone();
        let url = running.url.clone();
        async move {
            let body = common::stream::request(Workload::MobileNetV2, index);
            let response = client.post(format!("{url}/v2/models/mobilenetv2/infer")).header("content-type", "application/json").body(body).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    // the placement picks the variant too (the policy may pick a compressed one)
    let expected = |index: usize, reply: &Value| {
        let local = &local;
        let variant = reply["parameters"]["variant"].as_str().unwrap_or_else(|| panic!("no variant in {reply}")).to_string();
        async move {
            let run = local.execute(Workload::MobileNetV2, &Plan::Local { variant }, Workload::MobileNetV2.example_input(1000 + index as u64), None).await.unwrap();
            let rlsched_executor::model::activation::WireData::F32(v) = run.output.data else { panic!("f32 logits") };
            v
        }
    };

    let reply = infer(0).await;
    let p = &reply["parameters"];
    assert_eq!(p["strategy"], "chain", "{p}");
    assert_eq!(p["placement"], placement.name(), "{p}");
    assert!(p["plan"].as_str().unwrap().contains("cloud["), "{p}");
    let hops: Vec<rlsched_executor::kserve::chain::HopReport> = serde_json::from_str(p["hops"].as_str().unwrap()).unwrap();
    let nodes: Vec<&str> = hops.iter().map(|h| h.node.as_str()).collect();
    assert_eq!(nodes.last(), Some(&"cloud"), "{hops:?}");
    assert!(hops.iter().all(|h| h.fallback.is_none() && h.bytes_up > 0), "{hops:?}");
    assert!(p.get("fallback").is_none(), "{p}");
    assert_eq!(logits(&reply), expected(0, &reply).await, "the chain answers what local execution of its variant does");

    cloud.kill().unwrap();
    cloud.wait().unwrap();
    let reply = infer(1).await;
    let p = &reply["parameters"];
    let hops: Vec<rlsched_executor::kserve::chain::HopReport> = serde_json::from_str(p["hops"].as_str().unwrap()).unwrap();
    assert_eq!(hops.len(), 1, "{hops:?}");
    assert!(hops[0].fallback.as_deref().is_some_and(|f| f.contains("next hop `cloud` abandoned")), "{hops:?}");
    assert_eq!(logits(&reply), expected(1, &reply).await, "the edge's fallback answers what local execution of its variant does");
    running.stop().await;
    edge.kill().unwrap();
    edge.wait().unwrap();
}

#[test]
fn chain_specs_name_peers() {
    let spec = ChainSpec::parse("edge=http://127.0.0.1:1,cloud").unwrap();
    assert_eq!(spec.placement, ChainPlacement::Policy, "the policy places chain requests unless told otherwise");
    assert_eq!("dp-static".parse::<ChainPlacement>(), Ok(ChainPlacement::DpStatic));
    assert!("greedy".parse::<ChainPlacement>().unwrap_err().contains("expected policy or dp-static"));
    assert_eq!((spec.name.as_str(), spec.url.as_str(), spec.peers.as_slice()), ("edge", "http://127.0.0.1:1", &["cloud".to_string()][..]));
    for (bad, needle) in [("http://127.0.0.1:1", "expected NAME=URL"), ("edge=http://x,cl.oud", "may hold only"), ("e dge=http://x", "may hold only")] {
        let e = ChainSpec::parse(bad).unwrap_err();
        assert!(e.contains(needle), "{bad}: {e}");
    }
}
