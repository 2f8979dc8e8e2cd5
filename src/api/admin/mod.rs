//! The admin endpoint, outside `/v2/`: `POST /admin/gc` runs a collection and answers its
//! report, `GET /admin/gc` the collection statistics, `POST /admin/verify` runs a scrub and
//! answers what it found. Jobs run through the registry's [`Maintenance`], one at a time: a
//! request while one runs is answered 409. Who may call it is [`AdminAccess`]; the reports are
//! the JSON of [`crate::maintenance::wire`].
//!
//! [`Maintenance`]: crate::maintenance::Maintenance

mod access;
mod request;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::query::Query;
use crate::api::reply::Reply;
use crate::api::route::Route;
use crate::api::stream::{refuse, BodyReader};
use crate::api::{Peer, Registry};
use crate::maintenance::wire::{GcReportJson, GcStatsJson, VerifyJson};
use crate::maintenance::MaintenanceError;
use crate::storage::StorageError;
pub use access::AdminAccess;

/// Largest request body (a few JSON fields).
const MAX_BODY: usize = 64 << 10;

pub async fn handle(
    reg: &Registry,
    route: Route,
    query: &Query,
    req: Request<Incoming>,
) -> ApiResult<Reply> {
    let access = reg.policy().admin;
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    if !access.allows(peer) {
        let detail = match access {
            AdminAccess::Off => "the admin endpoint is disabled ([admin] allow = \"off\")",
            _ => {
                "the admin endpoint answers loopback peers only \
                 ([admin] allow = \"any\" opens it to every peer)"
            }
        };
        let err = ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Denied).with_detail(detail);
        return Err(refuse(reg, req, err));
    }
    let method = req.method().clone();
    match (route, method) {
        (Route::AdminGc, Method::GET | Method::HEAD) => {
            let m = reg.maintenance();
            json(&GcStatsJson::new(&reg.store().gc_stats(), m.running()))
        }
        (Route::AdminGc, Method::POST) => {
            let body = body(reg, req).await?;
            let request = request::gc_request(query, &body)?;
            let m = reg.maintenance();
            let opts = request.apply(m.gc_defaults()).map_err(request::invalid)?;
            let report = m.gc(opts).await.map_err(job_error)?;
            json(&GcReportJson::from(&report))
        }
        (Route::AdminVerify, Method::POST) => {
            let body = body(reg, req).await?;
            let request = request::verify_request(query, &body)?;
            let m = reg.maintenance();
            let rate = request.rate.map_or(m.scrub_rate(), |r| r.0);
            let outcome = m
                .scrub(rate, request.quarantine.unwrap_or(true))
                .await
                .map_err(job_error)?;
            json(&VerifyJson::from(&outcome))
        }
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
        )),
    }
}

async fn body(reg: &Registry, req: Request<Incoming>) -> ApiResult<bytes::Bytes> {
    BodyReader::new(reg, req, MAX_BODY)
        .read_all(MAX_BODY)
        .await?
        .ok_or_else(|| {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::Unsupported)
                .with_detail(format!("request body larger than {MAX_BODY} bytes"))
        })
}

fn json(value: &impl Serialize) -> ApiResult<Reply> {
    let body = serde_json::to_vec(value).map_err(ApiError::internal)?;
    Ok(Reply::new(StatusCode::OK).json(body))
}

/// A job that could not run or failed. The caller is the operator, so a storage failure's
/// message is passed on (it was logged by the job).
fn job_error(err: MaintenanceError) -> ApiError {
    match err {
        MaintenanceError::Busy(job) => {
            ApiError::new(StatusCode::CONFLICT, ErrorCode::TooManyRequests).with_detail(format!(
                "a {job} is already running; try again when it ends"
            ))
        }
        MaintenanceError::Storage(e @ StorageError::Closed) => ApiError::from(e),
        MaintenanceError::Storage(e) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown)
                .with_detail(e.to_string())
        }
        MaintenanceError::Task(e) => ApiError::internal(e),
    }
}
