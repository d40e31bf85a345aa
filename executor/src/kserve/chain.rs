//! Chains of workers (device → edge → cloud): the route a request carries and the per-hop
//! reports its response carries back.
//!
//! A request names the rest of its route in the `next_hops` parameter, `peer@stage,...`: this
//! worker runs its stages up to the first hop's start and forwards the rest to the peer it
//! knows by that name (`rlsched worker --next NAME=URL`), which runs up to the next hop's start
//! and forwards on, and so on; the last hop runs to the model's end. A hop whose next hop
//! starts where it does computes nothing and only relays (a plan that skips a node still
//! crosses its links: the chain is the network's shape). A route holds peer
//! *names* only, never addresses: each worker resolves a name against its own `--next` table,
//! so no request can make a worker connect where its operator did not say (a server-side
//! request forgery hole otherwise). The response's `hops` parameter (a JSON string, since the
//! protocol's parameters are scalars) lists what every hop after the answering worker cost,
//! as the hop before it measured the transfers.

use serde::{Deserialize, Serialize};

use crate::kserve::protocol::ProtocolError;

/// Most hops a route may name after the first worker.
pub const MAX_HOPS: usize = 8;
/// Longest peer name.
pub const MAX_PEER_NAME: usize = 64;
/// Longest `hops` report a client reads (each hop's record is well under 1 KiB).
pub const MAX_HOPS_REPORT_BYTES: usize = 16 << 10;

/// One hop of a route: `peer` runs stages `start..` (up to the next hop's start).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hop {
    pub peer: String,
    pub start: usize,
}

/// A peer name: letters, digits, `-` and `_`, 1 to [`MAX_PEER_NAME`] characters (so it can
/// never be mistaken for, or smuggle, an address).
pub fn check_peer_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_PEER_NAME {
        return Err(format!("peer name `{}` must have 1 to {MAX_PEER_NAME} characters", truncated(name)));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("peer name `{}` may hold only letters, digits, `-` and `_`", truncated(name)));
    }
    Ok(())
}

fn truncated(s: &str) -> String {
    s.chars().take(MAX_PEER_NAME + 8).collect()
}

/// The `next_hops` parameter's text for `hops`.
pub fn encode_route(hops: &[Hop]) -> String {
    hops.iter().map(|h| format!("{}@{}", h.peer, h.start)).collect::<Vec<_>>().join(",")
}

/// Parses `next_hops` for a request whose segment starts at `start` on a model of `stages`
/// stages (see [`check_route`]).
pub fn parse_route(text: &str, start: usize, stages: usize) -> Result<Vec<Hop>, ProtocolError> {
    let error = |m: String| ProtocolError(format!("parameter `next_hops`: {m}"));
    if text.len() > MAX_HOPS * (MAX_PEER_NAME + 24) {
        return Err(error(format!("is {} bytes long, more than {MAX_HOPS} hops take", text.len())));
    }
    let mut hops = Vec::new();
    for part in text.split(',') {
        if hops.len() == MAX_HOPS {
            return Err(error(format!("names more than {MAX_HOPS} hops")));
        }
        let (peer, at) = part.split_once('@').ok_or_else(|| error(format!("hop `{}` is not `peer@stage`", truncated(part))))?;
        check_peer_name(peer).map_err(error)?;
        let hop_start: usize = at.parse().map_err(|_| error(format!("hop `{peer}`: stage `{}` is not a non-negative integer", truncated(at))))?;
        hops.push(Hop { peer: peer.to_string(), start: hop_start });
    }
    check_route(&hops, start, stages).map_err(error)?;
    Ok(hops)
}

/// A route after a segment starting at `start`, on a model of `stages` stages: at most
/// [`MAX_HOPS`] hops, valid names, starts not decreasing (an equal start makes the hop before
/// a relay), from `start` on and before the end.
pub fn check_route(hops: &[Hop], start: usize, stages: usize) -> Result<(), String> {
    if hops.len() > MAX_HOPS {
        return Err(format!("names more than {MAX_HOPS} hops"));
    }
    let mut previous = start;
    for hop in hops {
        check_peer_name(&hop.peer)?;
        if hop.start < previous || hop.start >= stages {
            return Err(format!(
                "hop `{}` starts at stage {}, but it must start at stage {previous} or later and before the model's end ({stages} stages)",
                hop.peer, hop.start
            ));
        }
        previous = hop.start;
    }
    Ok(())
}

/// What one hop of a chain cost, as the hop before it saw the transfers and the hop itself its
/// queue and compute.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HopReport {
    /// The name the previous hop knows it by (`worker N` for the device's own worker).
    pub node: String,
    /// The stages it computed: its own segment (empty for a relay), or on to the model's end
    /// when its next hop failed and it finished the rest itself.
    pub start_stage: usize,
    pub end_stage: usize,
    /// From the request leaving the previous hop until it had arrived here (one round trip in).
    pub upload_ms: f64,
    pub queue_ms: f64,
    /// Its own segment's stages.
    pub compute_ms: f64,
    /// From its own stages' end until it had its answer: the next hop's whole part (or the
    /// abandoned attempt and the remaining stages it then computed itself).
    pub forward_ms: f64,
    /// Reading the response body after its headers, at the previous hop.
    pub download_ms: f64,
    pub bytes_up: usize,
    pub bytes_down: usize,
    pub queue_length: Option<usize>,
    /// Why its next hop was abandoned, when it was.
    pub fallback: Option<String>,
}

/// Reads the `hops` report of a response: bounded in size and count; every time finite and
/// not negative. A report that breaks this is a lying worker: the call fails.
pub fn parse_hops_report(text: &str) -> Result<Vec<HopReport>, ProtocolError> {
    if text.len() > MAX_HOPS_REPORT_BYTES {
        return Err(ProtocolError(format!("response parameter `hops` is {} bytes, more than {MAX_HOPS_REPORT_BYTES}", text.len())));
    }
    let hops: Vec<HopReport> = serde_json::from_str(text).map_err(|e| ProtocolError(format!("response parameter `hops`: {e}")))?;
    if hops.len() > MAX_HOPS {
        return Err(ProtocolError(format!("response parameter `hops` lists {} hops, more than {MAX_HOPS}", hops.len())));
    }
    for hop in &hops {
        let times = [hop.upload_ms, hop.queue_ms, hop.compute_ms, hop.forward_ms, hop.download_ms];
        if times.iter().any(|t| !(t.is_finite() && *t >= 0.0)) || hop.node.len() > MAX_PEER_NAME + 16 || hop.start_stage > hop.end_stage {
            return Err(ProtocolError(format!("response parameter `hops`: hop `{}` has an impossible record", truncated(&hop.node))));
        }
    }
    Ok(hops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_round_trip_and_bad_ones_are_named() {
        let hops = vec![Hop { peer: "edge".into(), start: 3 }, Hop { peer: "cloud_1".into(), start: 5 }];
        assert_eq!(parse_route(&encode_route(&hops), 1, 8).unwrap(), hops);
        let relays = vec![Hop { peer: "edge".into(), start: 1 }, Hop { peer: "cloud".into(), start: 1 }];
        assert_eq!(parse_route(&encode_route(&relays), 1, 8).unwrap(), relays);
        for (text, needle) in [
            ("edge@3,cloud@2", "at stage 3 or later"),
            ("edge@8", "before the model's end"),
            ("edge@0", "at stage 1 or later"),
            ("http://evil@3", "may hold only"),
            ("edge", "is not `peer@stage`"),
            ("edge@-1", "not a non-negative integer"),
            ("", "is not `peer@stage`"),
        ] {
            let e = parse_route(text, 1, 8).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
        let many: Vec<String> = (0..9).map(|i| format!("p@{}", i + 2)).collect();
        assert!(parse_route(&many.join(","), 1, 100).unwrap_err().to_string().contains("more than 8"));
    }

    #[test]
    fn hop_reports_are_bounded() {
        let good = vec![HopReport { node: "cloud".into(), start_stage: 2, end_stage: 4, ..Default::default() }];
        assert_eq!(parse_hops_report(&serde_json::to_string(&good).unwrap()).unwrap(), good);
        let mut bad = good.clone();
        bad[0].upload_ms = -1.0;
        assert!(parse_hops_report(&serde_json::to_string(&bad).unwrap()).is_err());
        let mut empty_range = good.clone();
        empty_range[0].end_stage = 1;
        assert!(parse_hops_report(&serde_json::to_string(&empty_range).unwrap()).is_err());
        assert!(parse_hops_report("[1,2]").is_err());
    }
}
