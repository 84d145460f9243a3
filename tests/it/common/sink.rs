//! A local HTTP server standing in for a chat webhook: it keeps what is posted to it and
//! answers as a test says.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// How the sink answers.
#[derive(Clone, Copy)]
pub enum Answer {
    Ok,
    ServerError,
    /// Never, within any timeout a test sets.
    Hang,
}

/// A local HTTP server keeping every request's path and JSON body.
#[derive(Clone)]
pub struct Sink {
    pub url: String,
    pub received: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Sink {
    pub async fn start(answer: Answer) -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received: Arc<Mutex<Vec<(String, Value)>>> = Default::default();
        let kept = received.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let kept = kept.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let kept = kept.clone();
                            async move {
                                let path = request.uri().path().to_owned();
                                let body = request.into_body().collect().await?.to_bytes();
                                let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
                                    panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body))
                                });
                                kept.lock().unwrap().push((path, json));
                                let status = match answer {
                                    Answer::Ok => 200,
                                    Answer::ServerError => 500,
                                    Answer::Hang => {
                                        tokio::time::sleep(Duration::from_secs(3600)).await;
                                        200
                                    }
                                };
                                Ok::<_, hyper::Error>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::from_static(b"ok")))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Sink { url, received }
    }

    /// The bodies posted to `path`.
    pub fn at(&self, path: &str) -> Vec<Value> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}
