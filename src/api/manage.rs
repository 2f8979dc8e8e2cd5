//! `/api/v1/`: the administrative operations of `berth user|project|member|robot|immutable|
//! audit` against a running registry, for system administrators. One endpoint,
//! `POST /api/v1/ops`, takes an operation as JSON (`{"op":"project-add","name":"team",…}`, the
//! same shape the command line builds) and answers with its result.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::query::Query;
use crate::api::reply::Reply;
use crate::api::stream::BodyReader;
use crate::api::Registry;
use crate::auth::access::{AccessControl, Caller};
use crate::auth::audit::Actor;
use crate::auth::error::AuthError;
use crate::auth::model::Project;
use crate::auth::ops::{self, AdminOp, AdminReply};
use crate::storage::RepoGroup;

/// An operation is a few hundred bytes; a robot's grants or an audit filter a few more.
const MAX_BODY: usize = 64 << 10;

pub async fn handle(
    reg: &Registry,
    access: &Arc<AccessControl>,
    path: &str,
    _query: &Query,
    req: Request<Incoming>,
    caller: Option<Caller>,
) -> ApiResult<Reply> {
    if path != "ops" {
        return Err(ApiError::not_found(ErrorCode::Unsupported)
            .with_detail("the admin API has one endpoint: POST /api/v1/ops"));
    }
    if req.method() != Method::POST {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
        ));
    }
    let body = BodyReader::new(reg, req, MAX_BODY)
        .read_all(MAX_BODY)
        .await?
        .ok_or_else(|| {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::Unsupported)
                .with_detail(format!("request body larger than {MAX_BODY} bytes"))
        })?;
    let op: AdminOp = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(ErrorCode::Unsupported, format!("bad operation: {e}"))
    })?;
    let who = ops::Caller {
        actor: caller
            .as_ref()
            .map_or(Actor::Anonymous, |c| Actor::of(&c.principal)),
        client: caller.as_ref().map(|c| c.client),
    };
    let access = access.clone();
    let reply = tokio::task::spawn_blocking(move || {
        if matches!(op, AdminOp::Audit { .. }) {
            access.flush_audit();
        }
        ops::apply(access.db(), Some(access.audit()), &who, op)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(auth_error)?;
    let reply = match reply {
        AdminReply::Projects(projects) => AdminReply::Projects(with_usage(reg, projects).await?),
        other => other,
    };
    Ok(Reply::new(StatusCode::OK).json(serde_json::to_vec(&reply).map_err(ApiError::internal)?))
}

/// Fills in what each project's repositories hold (the store knows it, not `auth.redb`).
pub async fn with_usage(reg: &Registry, mut projects: Vec<Project>) -> ApiResult<Vec<Project>> {
    let default = reg
        .access()
        .map(|a| a.settings().default_project.clone())
        .unwrap_or_default();
    let names: Vec<String> = projects
        .iter()
        .map(|p| p.name.as_str().to_owned())
        .collect();
    let used = reg
        .blocking(move |s| {
            names
                .iter()
                .map(|p| s.linked_bytes(&project_groups(p, &default)))
                .collect::<Result<Vec<u64>, _>>()
        })
        .await?;
    for (p, used) in projects.iter_mut().zip(used) {
        p.used_bytes = Some(used);
    }
    Ok(projects)
}

/// The repositories a project holds: `<project>/…`, and for the default project also every
/// single-component name.
pub fn project_groups<'a>(project: &'a str, default: &str) -> Vec<RepoGroup<'a>> {
    let mut groups = vec![RepoGroup::Under(project)];
    if project == default {
        groups.push(RepoGroup::TopLevel);
    }
    groups
}

/// An administrative failure in the OCI error format.
pub fn auth_error(e: AuthError) -> ApiError {
    let status = match &e {
        AuthError::Invalid { .. } => StatusCode::BAD_REQUEST,
        AuthError::NotFound { .. } => StatusCode::NOT_FOUND,
        AuthError::Exists { .. } | AuthError::Refused(_) => StatusCode::CONFLICT,
        _ => return ApiError::internal(e),
    };
    ApiError::new(status, ErrorCode::Unsupported).with_detail(e.to_string())
}
