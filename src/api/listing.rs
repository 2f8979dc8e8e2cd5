//! Tag lists and the catalog, paginated with `n`/`last` and a `Link` header to the next page.

use http::header::LINK;
use http::StatusCode;
use serde_json::json;

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::query::{encode, Query};
use crate::api::reply::Reply;
use crate::api::Registry;
use crate::auth::access::Caller;

/// `n` and `last` of a listing request. `n` is capped at the configured page size, which is
/// also the page size when the client gives none.
struct Page {
    n: usize,
    last: Option<String>,
}

impl Page {
    fn from_query(query: &Query, max_page: usize) -> ApiResult<Page> {
        let n = match query.get("n") {
            None | Some("") => max_page,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| {
                    ApiError::bad_request(ErrorCode::Unsupported, format!("invalid n {v:?}"))
                })?
                .min(max_page),
        };
        let last = query
            .get("last")
            .filter(|l| !l.is_empty())
            .map(str::to_owned);
        Ok(Page { n, last })
    }

    /// Trims one extra entry fetched to learn whether another page exists, and returns the
    /// `Link` target of that page.
    fn finish(&self, items: &mut Vec<String>, base: &str) -> Option<String> {
        if items.len() <= self.n {
            return None;
        }
        items.truncate(self.n);
        let last = items.last()?;
        Some(format!(
            "<{base}?n={}&last={}>; rel=\"next\"",
            self.n,
            encode(last)
        ))
    }
}

pub async fn tags(reg: &Registry, name: String, query: &Query) -> ApiResult<Reply> {
    let page = Page::from_query(query, reg.limits().max_page)?;
    let (n, last, repo) = (page.n, page.last.clone(), name.clone());
    let listed = reg
        .blocking(move |s| {
            if n == 0 {
                // The store answers "unknown repository" only through a listing.
                return Ok(s.repository_exists(&repo)?.then(Vec::new));
            }
            s.list_tags(&repo, last.as_deref(), n + 1)
        })
        .await?;
    let Some(mut tags) = listed else {
        return Err(ApiError::not_found(ErrorCode::NameUnknown).with_detail(name));
    };
    let link = page.finish(&mut tags, &format!("/v2/{name}/tags/list"));
    let body =
        serde_json::to_vec(&json!({ "name": name, "tags": tags })).map_err(ApiError::internal)?;
    let reply = Reply::new(StatusCode::OK).json(body);
    Ok(match link {
        Some(link) => reply.header(LINK, link),
        None => reply,
    })
}

pub async fn catalog(reg: &Registry, query: &Query, caller: Option<&Caller>) -> ApiResult<Reply> {
    let page = Page::from_query(query, reg.limits().max_page)?;
    let access = reg.access().zip(caller);
    let mut repos: Vec<String> = Vec::new();
    let mut after = page.last.clone();
    // With access control, read on past the repositories this caller may not see until the
    // page (plus one, to know whether another follows) is full or the catalog ends.
    while page.n > 0 && repos.len() <= page.n {
        let want = (page.n + 1).max(256);
        let from = after.clone();
        let batch = reg
            .blocking(move |s| s.list_repositories(from.as_deref(), want))
            .await?;
        let exhausted = batch.len() < want;
        after = batch.last().cloned();
        repos.extend(match access {
            Some((access, caller)) => access.visible(caller, batch),
            None => batch,
        });
        if exhausted || after.is_none() {
            break;
        }
    }
    let link = page.finish(&mut repos, "/v2/_catalog");
    let body = serde_json::to_vec(&json!({ "repositories": repos })).map_err(ApiError::internal)?;
    let reply = Reply::new(StatusCode::OK).json(body);
    Ok(match link {
        Some(link) => reply.header(LINK, link),
        None => reply,
    })
}
