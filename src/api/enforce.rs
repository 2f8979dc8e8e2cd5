//! The project rules handlers apply once a request is allowed: a first push creates its
//! project, quotas refuse a push that would pass them, immutable tags neither move nor go,
//! a mount only links what the caller may pull, and pushes, pulls and deletes reach the audit
//! log. With access control off (`caller` is `None`) every function here lets things be.

use http::StatusCode;

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::manage::project_groups;
use crate::api::Registry;
use crate::auth::access::{Caller, Verdict};
use crate::auth::audit::{Actor, AuditAction, AuditEvent, Repository, Tag};
use crate::auth::model::{Action, ProjectName};
use crate::oci::digest::Digest;
use crate::storage::Reference;

fn denied(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Denied).with_detail(detail)
}

/// Before a push into `repository`: creates its project on a first push by someone who may.
pub fn project_for_push(
    reg: &Registry,
    caller: Option<&Caller>,
    repository: &str,
) -> ApiResult<()> {
    let (Some(access), Some(caller)) = (reg.access(), caller) else {
        return Ok(());
    };
    access
        .ensure_project(&caller.principal, repository)
        .map_err(ApiError::internal)
}

/// Refuses a push of `adding` new bytes into `repository` that would pass its project's
/// quota. `digest` (if known) counts nothing when the project already holds it.
pub async fn quota(
    reg: &Registry,
    caller: Option<&Caller>,
    repository: &str,
    digest: Option<&Digest>,
    adding: u64,
) -> ApiResult<()> {
    let (Some(access), Some(_)) = (reg.access(), caller) else {
        return Ok(());
    };
    let Some(limit) = access.policy().quota_bytes(repository) else {
        return Ok(());
    };
    let project = access.policy().project_of(repository).to_owned();
    let default = access.settings().default_project.clone();
    let (p, d) = (project.clone(), digest.cloned());
    let (used, present) = reg
        .blocking(move |s| {
            let groups = project_groups(&p, &default);
            let used = s.linked_bytes(&groups)?;
            let present = match &d {
                Some(d) => s.project_holds(&groups, d)?,
                None => false,
            };
            Ok((used, present))
        })
        .await?;
    if !present && used.saturating_add(adding) > limit {
        return Err(denied(format!(
            "quota exceeded: project {project} uses {used} of {limit} bytes; this push adds {adding}"
        )));
    }
    Ok(())
}

/// Refuses moving an immutable tag to another manifest.
pub async fn tags_may_move(
    reg: &Registry,
    caller: Option<&Caller>,
    repository: &str,
    tags: &[String],
    digest: &Digest,
) -> ApiResult<()> {
    let (Some(access), Some(_)) = (reg.access(), caller) else {
        return Ok(());
    };
    for tag in tags {
        if !access.policy().tag_is_immutable(repository, tag) {
            continue;
        }
        let (r, t) = (repository.to_owned(), tag.clone());
        let current = reg
            .blocking(move |s| s.get_manifest(&r, &Reference::Tag(t)))
            .await?;
        if current.is_some_and(|m| m.digest != *digest) {
            return Err(
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Denied).with_detail(format!(
                "tag {tag} of {repository} is immutable; it cannot be moved to another manifest"
            )),
            );
        }
    }
    Ok(())
}

/// Refuses deleting an immutable tag, or a manifest an immutable tag names.
pub async fn may_delete(
    reg: &Registry,
    caller: Option<&Caller>,
    repository: &str,
    tag: Option<&str>,
    digest: Option<&Digest>,
) -> ApiResult<()> {
    let (Some(access), Some(_)) = (reg.access(), caller) else {
        return Ok(());
    };
    if let Some(tag) = tag {
        if access.policy().tag_is_immutable(repository, tag) {
            return Err(denied(format!(
                "tag {tag} of {repository} is immutable; it cannot be deleted"
            )));
        }
    }
    if let Some(digest) = digest {
        let (r, d) = (repository.to_owned(), digest.clone());
        let tags = reg.blocking(move |s| s.tags_of(&r, &d)).await?;
        if let Some(t) = tags
            .iter()
            .find(|t| access.policy().tag_is_immutable(repository, t))
        {
            return Err(denied(format!(
                "manifest {digest} is tagged {t}, an immutable tag of {repository}; it cannot be deleted"
            )));
        }
    }
    Ok(())
}

/// Whether a cross-repository mount may link from `from` (`None`: a mount without `from`,
/// which could link any stored digest, so only administrators get it).
pub fn may_mount_from(reg: &Registry, caller: Option<&Caller>, from: Option<&str>) -> bool {
    let (Some(access), Some(caller)) = (reg.access(), caller) else {
        return true;
    };
    match from {
        Some(from) => access.decide(caller, from, Action::Pull) == Verdict::Allow,
        None => access.is_admin(caller),
    }
}

/// Records a push, pull or delete in the audit log.
pub fn audit(
    reg: &Registry,
    caller: Option<&Caller>,
    action: AuditAction,
    repository: &str,
    digest: Option<&Digest>,
    tag: Option<&str>,
) {
    let (Some(access), Some(caller)) = (reg.access(), caller) else {
        return;
    };
    if action == AuditAction::Pull && !access.settings().audit_pulls {
        return;
    }
    let mut event =
        AuditEvent::new(access.db().now_ms(), actor(caller), action).client(caller.client);
    if let Ok(p) = ProjectName::parse(access.policy().project_of(repository)) {
        event = event.project(p);
    }
    if let Ok(r) = Repository::parse(repository) {
        event = event.repository(r);
    }
    if let Some(d) = digest {
        event = event.digest(d.clone());
    }
    if let Some(t) = tag.and_then(|t| Tag::parse(t).ok()) {
        event = event.tag(t);
    }
    access.record(event);
}

fn actor(caller: &Caller) -> Actor {
    match (&caller.token, caller.external) {
        (Some(t), true) => Actor::claimed(&t.sub),
        _ => Actor::of(&caller.principal),
    }
}
