//! Text output of the access model's commands: aligned columns for lists, and a new robot's
//! secret on a line of its own so scripts can take it with `tail -n 1`.

use crate::config::units::civil_from_days;
use std::fmt::Write;

use crate::auth::audit::{Actor, AuditEvent};
use crate::auth::ops::AdminReply;
use crate::config::units::{format_bytes, format_duration};

pub fn render(reply: &AdminReply, now_ms: u64) -> String {
    match reply {
        AdminReply::Done => String::new(),
        AdminReply::Users(users) => table(
            &["NAME", "ADMIN", "CREATED"],
            users
                .iter()
                .map(|u| vec![u.name.to_string(), yes(u.admin), date(u.created_at_ms)])
                .collect(),
        ),
        AdminReply::Projects(projects) => table(
            &["NAME", "ACCESS", "USED", "QUOTA", "CREATED"],
            projects
                .iter()
                .map(|p| {
                    let access = if p.public { "public" } else { "private" };
                    let quota = p.quota_bytes.map_or("none".into(), format_bytes);
                    let used = p.used_bytes.map_or("-".into(), format_bytes);
                    vec![
                        p.name.to_string(),
                        access.into(),
                        used,
                        quota,
                        date(p.created_at_ms),
                    ]
                })
                .collect(),
        ),
        AdminReply::Members(members) => table(
            &["USER", "ROLE", "ADDED"],
            members
                .iter()
                .map(|m| vec![m.user.to_string(), m.role.to_string(), date(m.added_at_ms)])
                .collect(),
        ),
        AdminReply::Robots(robots) => table(
            &["NAME", "ACTIONS", "EXPIRES"],
            robots
                .iter()
                .map(|r| {
                    vec![
                        r.name.to_string(),
                        r.actions.to_string(),
                        expiry(r.expires_at_ms, now_ms),
                    ]
                })
                .collect(),
        ),
        AdminReply::NewRobot(new) => format!(
            "created {} ({}), expires {}\nits secret is shown only now:\n{}\n",
            new.robot.name,
            new.robot.actions,
            expiry(new.robot.expires_at_ms, now_ms),
            new.secret
        ),
        AdminReply::Rules(rules) => table(
            &["PATTERN", "CREATED"],
            rules
                .iter()
                .map(|r| vec![r.pattern.to_string(), date(r.created_at_ms)])
                .collect(),
        ),
        AdminReply::Events(events) => table(
            &["TIME", "ACTOR", "CLIENT", "ACTION", "SUBJECT"],
            events.iter().map(event_row).collect(),
        ),
    }
}

fn event_row(e: &AuditEvent) -> Vec<String> {
    let actor = match &e.actor {
        Actor::Anonymous => "anonymous".to_owned(),
        Actor::User(n) => n.to_string(),
        Actor::Robot(n) => n.to_string(),
        Actor::Operator => "(operator)".to_owned(),
    };
    let mut subject = String::new();
    if let Some(p) = &e.project {
        subject.push_str(p.as_str());
    }
    if let Some(r) = &e.repository {
        let _ = write!(subject, " {}", r.as_str());
    }
    if let Some(t) = &e.tag {
        let _ = write!(subject, ":{}", t.as_str());
    }
    if let Some(d) = &e.digest {
        let _ = write!(subject, "@{d}");
    }
    if let Some(d) = &e.detail {
        let _ = write!(subject, " {}", serde_json::to_string(d).unwrap_or_default());
    }
    let action = serde_json::to_value(e.action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    vec![
        date(e.at_ms),
        actor,
        e.client.map_or("-".into(), |c| c.to_string()),
        action,
        subject.trim().to_owned(),
    ]
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn expiry(at_ms: Option<u64>, now_ms: u64) -> String {
    match at_ms {
        None => "never".to_owned(),
        Some(at) if at <= now_ms => format!("{} (expired)", date(at)),
        Some(at) => format!(
            "{} (in {})",
            date(at),
            format_duration(std::time::Duration::from_millis(at - now_ms))
        ),
    }
}

/// `2026-11-30 14:05 UTC`.
pub fn date(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(date(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(date(1_767_225_600_000 + 3_660_000), "2026-01-01 01:01 UTC");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], vec![vec!["long".into(), "x".into()]]);
        assert_eq!(t, "A     BB\nlong  x\n");
    }
}
