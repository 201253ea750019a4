//! Every store as a tower [`Service`], so the same layers that wrap HTTP calls (timeouts,
//! retries, circuit breakers) can wrap state calls: one request type, one response type, one
//! error type for all stores.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use super::{
    BoxFuture, DeleteRequest, Item, Metadata, Operation, Query, QueryPage, SetRequest, StateError,
    StateStore,
};

/// A state operation.
#[derive(Clone, Debug)]
pub enum StateRequest {
    /// Read one key.
    Get {
        /// The stored key.
        key: String,
        /// Request metadata.
        metadata: Metadata,
    },
    /// Write one key.
    Set(SetRequest),
    /// Delete one key.
    Delete(DeleteRequest),
    /// Apply operations atomically.
    Multi(Vec<Operation>),
    /// Query the values under a key prefix.
    Query {
        /// Only keys starting with this.
        prefix: String,
        /// The query.
        query: Query,
    },
}

/// The answer to a [`StateRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateResponse {
    /// A read's result.
    Item(Option<Item>),
    /// A write, delete or transaction succeeded.
    Done,
    /// A query's page.
    Page(QueryPage),
}

/// A store as a service. Cloning is cheap; the store is shared.
#[derive(Clone)]
pub struct StateService {
    store: Arc<dyn StateStore>,
}

impl StateService {
    /// Serves `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self { store }
    }
}

impl Service<StateRequest> for StateService {
    type Response = StateResponse;
    type Error = StateError;
    type Future = BoxFuture<Result<StateResponse, StateError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), StateError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: StateRequest) -> Self::Future {
        let s = &self.store;
        match req {
            StateRequest::Get { key, metadata } => {
                let f = s.get(key, metadata);
                Box::pin(async move { f.await.map(StateResponse::Item) })
            }
            StateRequest::Set(r) => done(s.set(r)),
            StateRequest::Delete(r) => done(s.delete(r)),
            StateRequest::Multi(ops) => done(s.multi(ops)),
            StateRequest::Query { prefix, query } => {
                let f = s.query(prefix, query);
                Box::pin(async move { f.await.map(StateResponse::Page) })
            }
        }
    }
}

fn done(f: BoxFuture<Result<(), StateError>>) -> BoxFuture<Result<StateResponse, StateError>> {
    Box::pin(async move { f.await.map(|()| StateResponse::Done) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;
    use bytes::Bytes;
    use tower::ServiceExt;

    #[tokio::test]
    async fn dispatches_every_request_to_the_store() {
        let svc = StateService::new(Arc::new(MemoryStore::new()));
        let set = SetRequest {
            key: "k".into(),
            value: Bytes::from_static(b"1"),
            ..Default::default()
        };
        assert_eq!(
            svc.clone().oneshot(StateRequest::Set(set)).await,
            Ok(StateResponse::Done)
        );
        let got = svc
            .clone()
            .oneshot(StateRequest::Get {
                key: "k".into(),
                metadata: Metadata::new(),
            })
            .await
            .unwrap();
        let StateResponse::Item(Some(item)) = got else {
            panic!("{got:?}")
        };
        assert_eq!(item.data.as_ref(), b"1");
        let q = Query::parse(&serde_json::json!({})).unwrap();
        let page = svc
            .clone()
            .oneshot(StateRequest::Query {
                prefix: String::new(),
                query: q,
            })
            .await
            .unwrap();
        assert!(matches!(page, StateResponse::Page(p) if p.items.len() == 1));
        let del = DeleteRequest {
            key: "k".into(),
            etag: Some("stale".into()),
            ..Default::default()
        };
        assert!(matches!(
            svc.clone().oneshot(StateRequest::Delete(del)).await,
            Err(StateError::EtagMismatch(_))
        ));
        assert_eq!(
            svc.oneshot(StateRequest::Multi(Vec::new())).await,
            Ok(StateResponse::Done)
        );
    }
}
