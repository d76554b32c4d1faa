//! `POST /v1/embeddings`.

use base64::Engine;
use serde_json::{Value, json};
use switchyard_mock::MockOptions;

use crate::common::start;

const PATH: &str = "/v1/embeddings";

fn floats(embedding: &Value) -> Vec<f64> {
    embedding
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[tokio::test]
async fn one_unit_vector_per_input() {
    let mock = start(MockOptions::default()).await;
    let (status, body) = mock
        .post_json(
            PATH,
            &json!({"model": "emb", "input": ["first text", "second", "first text"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "emb");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5})
    );
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let vectors: Vec<Vec<f64>> = data
        .iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i);
            floats(&item["embedding"])
        })
        .collect();
    for v in &vectors {
        assert_eq!(v.len(), 8, "default dimensions");
        assert!((norm(v) - 1.0).abs() < 1e-5, "{}", norm(v));
    }
    assert_eq!(vectors[0], vectors[2], "same input, same vector");
    assert_ne!(vectors[0], vectors[1]);

    // A single string gives the same vector as inside an array.
    let (_, single) = mock
        .post_json(PATH, &json!({"model": "emb", "input": "first text"}))
        .await;
    assert_eq!(floats(&single["data"][0]["embedding"]), vectors[0]);
}

#[tokio::test]
async fn dimensions_and_token_inputs() {
    let mock = start(MockOptions::default()).await;
    let (status, body) = mock
        .post_json(
            PATH,
            &json!({"model": "emb", "input": [[1, 2, 3], [4]], "dimensions": 37}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    for item in body["data"].as_array().unwrap() {
        let v = floats(&item["embedding"]);
        assert_eq!(v.len(), 37);
        assert!((norm(&v) - 1.0).abs() < 1e-5);
    }
    let (_, body) = mock
        .post_json(PATH, &json!({"model": "emb", "input": [5, 6]}))
        .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["usage"]["prompt_tokens"], 2);
}

#[tokio::test]
async fn base64_is_little_endian_f32_of_the_same_vector() {
    let mock = start(MockOptions::default()).await;
    let request = |format: &str| json!({"model": "emb", "input": ["a b", "c"], "dimensions": 12, "encoding_format": format});
    let (_, as_floats) = mock.post_json(PATH, &request("float")).await;
    let (status, as_base64) = mock.post_json(PATH, &request("base64")).await;
    assert_eq!(status, 200);
    for i in 0..2 {
        // What the official SDKs do: base64-decode, read little-endian f32.
        let encoded = as_base64["data"][i]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(bytes.len(), 12 * 4);
        let decoded: Vec<f64> = bytes
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect();
        let expected = floats(&as_floats["data"][i]["embedding"]);
        for (d, e) in decoded.iter().zip(&expected) {
            assert!((d - e).abs() < 1e-7, "{d} vs {e}");
        }
        assert!((norm(&decoded) - 1.0).abs() < 1e-5);
    }
    assert_eq!(as_base64["usage"], as_floats["usage"]);
}

#[tokio::test]
async fn bad_inputs_are_refused() {
    let mock = start(MockOptions::default()).await;
    for (request, param) in [
        (json!({"model": "emb"}), "input"),
        (json!({"model": "emb", "input": ""}), "input"),
        (json!({"model": "emb", "input": []}), "input"),
        (json!({"model": "emb", "input": ["ok", ""]}), "input"),
        (
            json!({"model": "emb", "input": "x", "dimensions": 0}),
            "dimensions",
        ),
        (
            json!({"model": "emb", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (json!({"input": "x"}), "model"),
    ] {
        let (status, body) = mock.post_json(PATH, &request).await;
        assert_eq!(status, 400, "{request}");
        assert_eq!(body["error"]["param"], param, "{request}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}
