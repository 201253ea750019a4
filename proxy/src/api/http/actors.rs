//! The HTTP codec of actors: `/v1.0/actors/{type}/{id}/method/{method}` (any verb; the caller's
//! query, headers and body go to the actor, its answer comes back as the app gave it),
//! `…/state/{key}` and `…/state` (a JSON array of `{operation, request}`), as daprd writes
//! them. Timers and reminders answer 501 until they land.

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::api::ApiState;
use crate::api::actors::{self, MethodCall};
use crate::errors::ApiError;
use crate::net::http::Body;

use super::route::Params;

pub(in crate::api) async fn method(
    s: &ApiState,
    p: Params,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let req = super::body::read_request(req, s.max_body_size, s.body_idle_timeout).await?;
    let call = MethodCall {
        actor_type: p.store,
        id: p.id,
        method: p.key,
        req,
    };
    s.actors.invoke(call, None).await
}

pub(in crate::api) async fn get_state(
    s: &ApiState,
    p: &Params,
) -> Result<Response<Body>, ApiError> {
    actors::get_state(&s.actors, &p.store, &p.id, &p.key).await
}

pub(in crate::api) async fn transaction(
    s: &ApiState,
    p: &Params,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: Bytes = super::body::read_body(s, req, u64::MAX).await?;
    actors::transaction(&s.actors, &p.store, &p.id, &body).await?;
    Ok(super::no_content())
}

/// `POST|PUT …/timers/{name}` registers, `DELETE` removes: 204 either way.
pub(in crate::api) async fn timer(
    s: &ApiState,
    p: &Params,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if req.method() == http::Method::DELETE {
        actors::delete_timer(&s.actors, &p.store, &p.id, &p.key)?;
    } else {
        let body: Bytes = super::body::read_body(s, req, u64::MAX).await?;
        actors::create_timer(&s.actors, &p.store, &p.id, &p.key, &body).await?;
    }
    Ok(super::no_content())
}

/// `POST|PUT …/reminders/{name}` makes one, `GET` reads it, `DELETE` removes it.
pub(in crate::api) async fn reminder(
    s: &ApiState,
    p: &Params,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let a = &s.actors;
    match *req.method() {
        http::Method::GET => {
            let v = actors::get_reminder(a, &p.store, &p.id, &p.key).await?;
            let mut rsp = Response::new(crate::net::http::full(format!("{v}\n")));
            rsp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(rsp)
        }
        http::Method::DELETE => {
            actors::delete_reminder(a, &p.store, &p.id, &p.key).await?;
            Ok(super::no_content())
        }
        _ => {
            let body: Bytes = super::body::read_body(s, req, u64::MAX).await?;
            actors::create_reminder(a, &p.store, &p.id, &p.key, &body).await?;
            Ok(super::no_content())
        }
    }
}
