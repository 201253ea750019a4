//! The gRPC codec of secrets: `GetSecret` and `GetBulkSecret` as the typed requests of
//! [`crate::api::secrets`].

use outrider_proto::runtime::v1 as rt;
use tonic::Status;

use super::status::from_api_for;
use crate::api::ApiState;
use crate::api::secrets::{self, GetBulkSecretRequest, GetSecretRequest};

pub(super) fn get(
    s: &ApiState,
    req: &rt::GetSecretRequest,
) -> Result<rt::GetSecretResponse, Status> {
    let get = GetSecretRequest {
        store_name: &req.store_name,
        key: &req.key,
    };
    let data = secrets::get(s, get).map_err(|e| from_api_for(e, &req.store_name))?;
    Ok(rt::GetSecretResponse { data })
}

pub(super) fn bulk(
    s: &ApiState,
    req: &rt::GetBulkSecretRequest,
) -> Result<rt::GetBulkSecretResponse, Status> {
    let bulk = GetBulkSecretRequest {
        store_name: &req.store_name,
    };
    let all = secrets::bulk(s, bulk).map_err(|e| from_api_for(e, &req.store_name))?;
    let data = all
        .into_iter()
        .map(|(name, secrets)| (name, rt::SecretResponse { secrets }))
        .collect();
    Ok(rt::GetBulkSecretResponse { data })
}
