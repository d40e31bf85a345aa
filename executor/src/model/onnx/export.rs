//! ONNX export of a built-in chain network (convolutions with bias or batch norm, max pooling,
//! global average pooling, dense layers, their ReLU/ReLU6 activations), written with onnx-ir's
//! protobuf bindings, opset 13. It exists so that a trained built-in (the digits CNN) can make
//! the round trip a user's model makes: export, import, same accuracy.

use onnx_ir::{AttributeProto, AttributeType, Message, ModelProto, NodeProto, TensorProto, ValueInfoProto};

use crate::model::layers::{Act, Layer};
use crate::{ExecError, Network};

fn tensor(name: &str, dims: &[usize], values: Vec<f32>) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = 1;
    t.dims = dims.iter().map(|&d| d as i64).collect();
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into();
    t
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = values.to_vec();
    a
}

fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<AttributeProto>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = output.into();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![output.into()];
    n.attribute = attributes;
    n
}

fn value_info(name: &str, dims: &[usize], symbolic_batch: bool) -> ValueInfoProto {
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    let tensor_type = v.type_.mut_or_insert_default().mut_tensor_type();
    tensor_type.elem_type = 1;
    let shape = tensor_type.shape.mut_or_insert_default();
    for (i, &d) in dims.iter().enumerate() {
        shape.dim.push(Default::default());
        let dim = shape.dim.last_mut().expect("just pushed");
        if i == 0 && symbolic_batch {
            dim.set_dim_param("N".into());
        } else {
            dim.set_dim_value(d as i64);
        }
    }
    v
}

fn values<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>, ExecError> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().map_err(|e| ExecError::Backend(format!("{e:?}")))
}

/// The ONNX bytes of `network` (fp32; its input named `input`, output `output`).
pub fn export(network: &Network) -> Result<Vec<u8>, ExecError> {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut current = "input".to_string();
    let mut dims = network.boundary_dims[0].clone();
    let mut counter = 0;
    let mut fresh = |what: &str| {
        counter += 1;
        format!("{what}{counter}")
    };
    let activation = |act: Act, input: &str, nodes: &mut Vec<NodeProto>, inits: &mut Vec<TensorProto>, name: String| -> Result<String, ExecError> {
        match act {
            Act::None => Ok(input.to_string()),
            Act::Relu => {
                nodes.push(node("Relu", &[input], &name, vec![]));
                Ok(name)
            }
            Act::Relu6 => {
                inits.push(tensor(&format!("{name}_lo"), &[], vec![0.0]));
                inits.push(tensor(&format!("{name}_hi"), &[], vec![6.0]));
                nodes.push(node("Clip", &[input, &format!("{name}_lo"), &format!("{name}_hi")], &name, vec![]));
                Ok(name)
            }
            other => Err(ExecError::Import(format!("export: activation {other:?} is not written"))),
        }
    };
    for stage in &network.stages {
        for layer in &stage.layers {
            let next_dims = layer.output_dims(&dims);
            match layer {
                Layer::Conv(c) if c.int8.is_none() => {
                    let g = c.geometry;
                    let name = fresh("conv");
                    let weight = c.conv.weight.val();
                    let w_dims = weight.dims().to_vec();
                    inits.push(tensor(&format!("{name}_w"), &w_dims, values(weight)?));
                    let mut inputs = vec![current.clone(), format!("{name}_w")];
                    if let Some(bias) = &c.conv.bias {
                        inits.push(tensor(&format!("{name}_b"), &[g.c_out], values(bias.val())?));
                        inputs.push(format!("{name}_b"));
                    }
                    let p = g.padding as i64;
                    let attributes = vec![
                        ints("strides", &[g.stride as i64; 2]),
                        ints("pads", &[p, p, p, p]),
                        ints("kernel_shape", &[g.kernel as i64; 2]),
                        {
                            let mut a = AttributeProto::new();
                            a.name = "group".into();
                            a.type_ = AttributeType::INT.into();
                            a.i = g.groups as i64;
                            a
                        },
                    ];
                    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                    nodes.push(node("Conv", &refs, &name, attributes));
                    current = name;
                    if let Some(bn) = &c.bn {
                        let bn_name = fresh("bn");
                        let parts = [
                            ("scale", values(bn.gamma.val())?),
                            ("bias", values(bn.beta.val())?),
                            ("mean", values(bn.running_mean.value())?),
                            ("var", values(bn.running_var.value())?),
                        ];
                        let mut inputs = vec![current.clone()];
                        for (part, v) in parts {
                            inits.push(tensor(&format!("{bn_name}_{part}"), &[g.c_out], v));
                            inputs.push(format!("{bn_name}_{part}"));
                        }
                        let mut eps = AttributeProto::new();
                        eps.name = "epsilon".into();
                        eps.type_ = AttributeType::FLOAT.into();
                        eps.f = bn.epsilon as f32;
                        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                        nodes.push(node("BatchNormalization", &refs, &bn_name, vec![eps]));
                        current = bn_name;
                    }
                    current = activation(c.act, &current, &mut nodes, &mut inits, fresh("act"))?;
                }
                Layer::MaxPool(p) => {
                    let name = fresh("pool");
                    let pad = p.padding as i64;
                    let attributes = vec![ints("kernel_shape", &[p.kernel as i64; 2]), ints("strides", &[p.stride as i64; 2]), ints("pads", &[pad; 4])];
                    nodes.push(node("MaxPool", &[&current], &name, attributes));
                    current = name;
                }
                Layer::GlobalAvgPool(_) => {
                    let pooled = fresh("gap");
                    nodes.push(node("GlobalAveragePool", &[&current], &pooled, vec![]));
                    let flat = fresh("flatten");
                    nodes.push(node("Flatten", &[&pooled], &flat, vec![]));
                    current = flat;
                }
                Layer::Dense(d) if d.int8.is_none() => {
                    if dims.len() != 2 {
                        let flat = fresh("flatten");
                        nodes.push(node("Flatten", &[&current], &flat, vec![]));
                        current = flat;
                    }
                    let name = fresh("fc");
                    // burn's Linear stores [d_in, d_out]: Gemm's B without transB
                    inits.push(tensor(&format!("{name}_w"), &[d.d_in, d.d_out], values(d.linear.weight.val())?));
                    let mut inputs = vec![current.clone(), format!("{name}_w")];
                    if let Some(bias) = &d.linear.bias {
                        inits.push(tensor(&format!("{name}_b"), &[d.d_out], values(bias.val())?));
                        inputs.push(format!("{name}_b"));
                    }
                    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                    nodes.push(node("Gemm", &refs, &name, vec![]));
                    current = activation(d.act, &name, &mut nodes, &mut inits, fresh("act"))?;
                }
                other => return Err(ExecError::Import(format!("export: layer {} is not written", format!("{other:?}").chars().take(40).collect::<String>()))),
            }
            dims = next_dims;
        }
    }
    nodes.push(node("Identity", &[&current], "output", vec![]));
    let mut model = ModelProto::new();
    model.ir_version = 8;
    model.producer_name = "rlsched".into();
    model.opset_import.push(Default::default());
    model.opset_import[0].version = 13;
    let graph = model.graph.mut_or_insert_default();
    graph.name = network.workload.clone();
    graph.node = nodes;
    graph.initializer = inits;
    graph.input = vec![value_info("input", &network.boundary_dims[0], true)];
    graph.output = vec![value_info("output", network.boundary_dims.last().expect("non-empty"), true)];
    model.write_to_bytes().map_err(|e| ExecError::Import(format!("export: {e}")))
}
