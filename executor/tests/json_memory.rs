//! Decoding a JSON tensor costs memory in proportion to the body, within what the request
//! memory budget reserves for it (`budget::decode_reservation`). A `serde_json::Value` per
//! number made one 16 MB JSON infer take 2.4 GB (147× the body).
//!
//! The allocator of this test binary counts live bytes, so the peak is measured, not timed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::HeaderMap;
use rlsched_executor::kserve::budget::decode_reservation;
use rlsched_executor::kserve::http::parse_infer;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(live, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let live = LIVE.fetch_add(new_size - layout.size(), Ordering::SeqCst) + new_size - layout.size();
            PEAK.fetch_max(live, Ordering::SeqCst);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes held at once while `f` runs, beyond what was live before it.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst) - before)
}

/// A JSON infer body of `count` values written as `text` (the smallest numbers cost the most
/// memory per byte of JSON).
fn body(datatype: &str, count: usize, text: &str) -> Vec<u8> {
    let mut body = format!(r#"{{"inputs":[{{"name":"input","shape":[1,{count}],"datatype":"{datatype}","data":["#).into_bytes();
    for i in 0..count {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(text.as_bytes());
    }
    body.extend_from_slice(b"]}]}");
    body
}

#[test]
fn decoding_a_16_mb_json_tensor_stays_within_its_reservation() {
    for (datatype, text) in [("FP32", "0"), ("FP32", "0.123456"), ("INT64", "7"), ("UINT8", "1")] {
        let body = body(datatype, (16 << 20) / (text.len() + 1), text);
        let (parsed, peak) = peak_during(|| parse_infer(&HeaderMap::new(), &body));
        let parsed = parsed.unwrap_or_else(|e| panic!("{datatype}: {}", e.1));
        assert_eq!(parsed.input.shape[1], (16 << 20) / (text.len() + 1));
        let reserved = decode_reservation(body.len());
        println!("{datatype} written as {text:?}: {} byte body, peak {peak} bytes while decoding ({:.2}× the body)", body.len(), peak as f64 / body.len() as f64);
        assert!(
            peak <= reserved,
            "{datatype} written as {text:?}: decoding a {} byte body held {peak} bytes ({:.1}× the body), more than the {reserved} reserved",
            body.len(),
            peak as f64 / body.len() as f64
        );
    }
}
