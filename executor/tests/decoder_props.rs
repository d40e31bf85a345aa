//! Property tests of the KServe V2 request decoder, called directly (no server) so that
//! thousands of cases take seconds: whatever bytes, shapes, datatypes and sizes arrive, decoding
//! answers Ok or Err, never panics (a panic fails the property), and its errors name the input.
//! The worker's handler runs exactly these functions before anything else looks at a request.

use proptest::prelude::*;
use rlsched_executor::kserve::protocol::{self, InferRequest, MAX_ELEMENTS};
use rlsched_executor::model::activation::{element_count, WireData};
use rlsched_executor::WireTensor;
use serde_json::{json, Value};

/// Splits, parses and decodes a body as the worker does; `Err` carries the message.
fn decode(body: &[u8], header_length: Option<usize>) -> Result<WireTensor, String> {
    let (head, binary) = protocol::split_body(body, header_length).map_err(|e| e.0)?;
    let request: InferRequest = serde_json::from_slice(head).map_err(|e| e.to_string())?;
    let tensor = protocol::decode_input(&request, binary).map_err(|e| e.0);
    if let (Err(message), [input]) = (&tensor, request.inputs.as_slice()) {
        assert!(message.contains(&format!("input `{}`", input.name)), "error does not name the input: {message}");
    }
    tensor
}

/// What every decoded tensor must satisfy: its data fills its shape, within the limits.
fn assert_well_formed(tensor: &WireTensor) {
    let elements = element_count(&tensor.shape).expect("a decoded shape's size fits usize");
    assert_eq!(elements, tensor.data.len());
    assert!(elements <= MAX_ELEMENTS);
    assert!(tensor.shape.len() <= protocol::MAX_RANK);
    if let WireData::F32(values) = &tensor.data {
        assert!(values.iter().all(|v| v.is_finite()));
    }
}

/// Dimensions that stress the arithmetic: small ones that make valid tensors, and huge and
/// negative ones whose products overflow.
fn dimension() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..4,
        1 => Just(1i64 << 31),
        1 => Just(1i64 << 61),
        1 => Just(1i64 << 62),
        1 => Just(i64::MAX),
        1 => -3i64..0,
        1 => any::<i64>(),
    ]
}

fn datatype() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("FP32".to_string()),
        Just("INT64".to_string()),
        Just("UINT8".to_string()),
        Just("BOOL".to_string()),
        "[A-Za-z0-9]{0,6}",
    ]
}

/// A JSON data value: numbers, the strings clients use for NaN and infinity, wrong types,
/// nested arrays.
fn data_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::from),
        (0u8..=255).prop_map(Value::from),
        any::<f64>().prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        prop_oneof![Just("NaN"), Just("inf"), Just("-Infinity"), Just("1e39"), Just("0.5"), Just("x")].prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 64, 8, |inner| prop::collection::vec(inner, 0..8).prop_map(Value::Array))
}

/// `binary_data_size` as a client might (mis)send it.
fn binary_data_size() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        2 => Just(None),
        2 => (0u64..64).prop_map(|n| Some(Value::from(n))),
        1 => any::<u64>().prop_map(|n| Some(Value::from(n))),
        1 => any::<i64>().prop_map(|n| Some(Value::from(n))),
        1 => Just(Some(json!("16"))),
        1 => Just(Some(json!(2.5))),
    ]
}

prop_compose! {
    fn request_body()(
        name in "[a-z]{0,4}",
        shape in prop::collection::vec(dimension(), 0..10),
        datatype in datatype(),
        size in binary_data_size(),
        data in prop::option::of(data_value()),
        int8 in prop::option::of((any::<f64>(), any::<f64>())),
        start_stage in prop::option::of(prop_oneof![any::<i64>().prop_map(Value::from), Just(json!(1.5)), Just(json!("1"))]),
        extra_inputs in 0usize..3,
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) -> (Vec<u8>, usize) {
        let mut parameters = serde_json::Map::new();
        if let Some(size) = size {
            parameters.insert("binary_data_size".into(), size);
        }
        if let Some((scale, min)) = int8 {
            parameters.insert("int8_scale".into(), serde_json::Number::from_f64(scale).map_or(Value::Null, Value::Number));
            parameters.insert("int8_min".into(), serde_json::Number::from_f64(min).map_or(Value::Null, Value::Number));
        }
        let mut input = json!({"name": name, "shape": shape, "datatype": datatype, "parameters": parameters});
        if let Some(data) = data {
            input["data"] = data;
        }
        // mostly one input, sometimes none or several
        let inputs = match extra_inputs {
            0 => vec![input],
            1 => vec![],
            n => vec![input; n],
        };
        let mut request = json!({"inputs": inputs});
        if let Some(start) = start_stage {
            request["parameters"] = json!({"start_stage": start});
        }
        let mut body = serde_json::to_vec(&request).unwrap();
        let header = body.len();
        body.extend_from_slice(&tail);
        (body, header)
    }
}

fn small_tensor() -> impl Strategy<Value = WireTensor> {
    prop::collection::vec(0usize..4, 1..5).prop_flat_map(|shape| {
        let n: usize = shape.iter().product();
        prop_oneof![
            prop::collection::vec(-1e6f32..1e6, n).prop_map(WireData::F32),
            prop::collection::vec(any::<i64>(), n).prop_map(WireData::I64),
            prop::collection::vec(any::<u8>(), n).prop_map(WireData::U8),
        ]
        .prop_map(move |data| WireTensor::new(shape.clone(), data).unwrap())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes at all, with or without a header length (in range or not).
    #[test]
    fn arbitrary_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..256),
        header in prop::option::of(prop_oneof![0usize..300, any::<usize>()]),
    ) {
        if let Ok(tensor) = decode(&body, header) {
            assert_well_formed(&tensor);
        }
    }

    /// Well-formed JSON requests with arbitrary shapes, datatypes, sizes and data, read both
    /// as a binary request (header length given) and as a plain JSON one.
    #[test]
    fn arbitrary_requests_never_panic((body, header) in request_body()) {
        for header in [Some(header), None] {
            if let Ok(tensor) = decode(&body, header) {
                assert_well_formed(&tensor);
            }
        }
    }

    /// Shapes whose size overflows, or is past the limits, are refused naming the `shape`.
    #[test]
    fn oversized_shapes_are_refused_by_name(
        shape in prop::collection::vec(prop_oneof![Just(1i64 << 31), Just(1i64 << 61), Just(i64::MAX)], 2..12),
        size in 0u64..16,
    ) {
        let request = json!({"inputs": [{"name": "x", "shape": shape, "datatype": "INT64", "parameters": {"binary_data_size": size}}]});
        let body = serde_json::to_vec(&request).unwrap();
        let header = body.len();
        let message = decode(&body, Some(header)).unwrap_err();
        prop_assert!(message.contains("input `x`: `shape`"), "{}", message);
    }

    /// What the client encodes, the worker decodes to the same tensor, in JSON or binary.
    #[test]
    fn encoded_requests_decode_to_the_same_tensor(tensor in small_tensor()) {
        let (body, header) = protocol::encode_binary_request(InferRequest::default(), &tensor, Default::default()).unwrap();
        prop_assert_eq!(decode(&body, Some(header)).unwrap(), tensor.clone());
        let request = json!({"inputs": [{"name": "x", "shape": tensor.shape, "datatype": tensor.datatype().name(), "data": protocol::json_values(&tensor)}]});
        prop_assert_eq!(decode(&serde_json::to_vec(&request).unwrap(), None).unwrap(), tensor);
    }

    /// The client's side: a worker's reply with any shape, datatype and data is Ok or Err.
    #[test]
    fn arbitrary_replies_never_panic(
        shape in prop::collection::vec(prop_oneof![0u64..4, Just(1u64 << 31), Just(1u64 << 62), Just(u64::MAX)], 0..10),
        datatype in datatype(),
        data in prop::option::of(data_value()),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut output = json!({"name": "output", "shape": shape, "datatype": datatype});
        if let Some(data) = data {
            output["data"] = data;
        }
        let mut body = serde_json::to_vec(&json!({"model_name": "m", "outputs": [output]})).unwrap();
        let header = body.len();
        body.extend_from_slice(&tail);
        for header in [Some(header), None] {
            if let Ok((_, tensor)) = protocol::decode_response(&body, header) {
                assert_well_formed(&tensor);
            }
        }
    }
}
