//! `berth user|project|member|robot|immutable|audit` on a stopped registry's data directory:
//! each command becomes one `AdminOp`, applied to `auth.redb` as the operator and recorded in
//! the audit trail; the reply is printed as text or, with `--json`, as JSON.
//!
//! The data directory is created if missing; an existing one must be empty or already hold a
//! registry (`segments/` or `auth.redb`), so a mistyped path does not litter another directory.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::api::manage::project_groups;
use crate::auth::audit::{Actor, AuditFilter, AuditLimits, AuditLog};
use crate::auth::db::{AuthDb, FILE_NAME};
use crate::auth::error::AuthError;
use crate::auth::model::Project;
use crate::auth::model::{ProjectName, TagPattern, UserName};
use crate::auth::ops::{apply, AdminOp, AdminReply, Caller, Secret};
use crate::auth::password::first_line;
use crate::auth::robot::RobotName;
use crate::cli::auth_render::render;
use crate::cli::remote::{self, Endpoint};
use crate::cli::CliError;
use crate::config::auth::{
    AuthCommand, AuthTarget, ImmutableCommand, MemberCommand, PasswordInput, ProjectCommand,
    RobotCommand, UserCommand,
};
use crate::config::AuthSettings;
use crate::storage::{Store, StoreOptions};

/// Runs one administrative command.
pub fn run(cmd: AuthCommand) -> ExitCode {
    match execute(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn execute(cmd: AuthCommand) -> Result<(), CliError> {
    let (target, op, json) = to_op(cmd)?;
    let reply = match (&target.data, &target.url) {
        (Some(dir), _) => local(dir, op)?,
        (None, Some(url)) => remote(url, &target, &op)?,
        (None, None) => return Err(CliError::Usage("give --data DIR or --url URL".into())),
    };
    let out = if let (true, AdminReply::Events(events)) = (json, &reply) {
        // The audit trail as JSON lines, one event each, for log shippers and `jq`.
        let mut s = String::new();
        for e in events {
            s.push_str(&serde_json::to_string(e).map_err(|e| CliError::Usage(e.to_string()))?);
            s.push('\n');
        }
        s
    } else if json {
        let value = match &reply {
            AdminReply::Done => serde_json::json!({"ok": true}),
            other => reply_items(other),
        };
        let mut s =
            serde_json::to_string_pretty(&value).map_err(|e| CliError::Usage(e.to_string()))?;
        s.push('\n');
        s
    } else {
        render(&reply, now_ms())
    };
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

/// Applies `op` to the data directory's `auth.redb` as the operator; a project listing also
/// shows what each project holds when the directory has a store.
fn local(dir: &Path, op: AdminOp) -> Result<AdminReply, CliError> {
    let db = Arc::new(open(dir)?);
    let audit = AuditLog::open(db.clone(), AuditLimits::default())?;
    let caller = Caller {
        actor: Actor::Operator,
        client: None,
    };
    match apply(&db, Some(&audit), &caller, op)? {
        AdminReply::Projects(projects) if dir.join("segments").is_dir() => {
            Ok(AdminReply::Projects(with_usage(dir, projects)?))
        }
        other => Ok(other),
    }
}

fn with_usage(dir: &Path, mut projects: Vec<Project>) -> Result<Vec<Project>, CliError> {
    let store = Store::open(dir, StoreOptions::default())?;
    let default = AuthSettings::default().default_project;
    for p in &mut projects {
        p.used_bytes = Some(store.linked_bytes(&project_groups(p.name.as_str(), &default))?);
    }
    store.close()?;
    Ok(projects)
}

/// Sends `op` to a running registry's admin API.
fn remote(url: &str, target: &AuthTarget, op: &AdminOp) -> Result<AdminReply, CliError> {
    let endpoint = Endpoint::parse(url)?;
    let login = target.login.as_deref().unwrap_or("admin");
    let password = match &target.login_password_file {
        Some(path) => first_line(&std::fs::read_to_string(path)?).to_owned(),
        None => std::env::var("BERTH_LOGIN_PASSWORD").map_err(|_| {
            CliError::Usage(
                "--url needs the administrator's password: BERTH_LOGIN_PASSWORD or \
                 --login-password-file FILE"
                    .into(),
            )
        })?,
    };
    let authorization = format!(
        "Basic {}",
        crate::auth::b64::encode_std(format!("{login}:{password}").as_bytes())
    );
    let body = serde_json::to_vec(op).map_err(|e| CliError::Usage(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = runtime.block_on(remote::post_as(
        &endpoint,
        target.ca_cert.as_deref(),
        "/api/v1/ops",
        body,
        Some(&authorization),
    ))?;
    if !answer.status.is_success() {
        return Err(CliError::Remote(format!(
            "the registry answered {}: {}",
            answer.status,
            answer.error_text()
        )));
    }
    serde_json::from_slice(&answer.body)
        .map_err(|e| CliError::Remote(format!("unreadable answer from the registry: {e}")))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The JSON of a reply's payload alone (a list, or the new robot), as scripts want it.
fn reply_items(reply: &AdminReply) -> serde_json::Value {
    let v = serde_json::to_value(reply).unwrap_or_default();
    v.get("items").cloned().unwrap_or(v)
}

fn open(dir: &Path) -> Result<AuthDb, CliError> {
    if !dir.exists() {
        // A first command before the first start, as `berth serve` would create it.
        std::fs::create_dir_all(dir)?;
    }
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let known = dir.join("segments").is_dir() || dir.join(FILE_NAME).is_file();
    let empty = std::fs::read_dir(dir)?.next().is_none();
    if !known && !empty {
        return Err(CliError::Usage(format!(
            "{} is not a berth data directory (no segments/ or {FILE_NAME}) and not empty",
            dir.display()
        )));
    }
    Ok(AuthDb::open(dir)?)
}

fn user(s: &str) -> Result<UserName, CliError> {
    Ok(UserName::parse(s)?)
}

fn project(s: &str) -> Result<ProjectName, CliError> {
    Ok(ProjectName::parse(s)?)
}

fn robot(p: &str, name: &str) -> Result<RobotName, CliError> {
    Ok(RobotName::new(project(p)?, name)?)
}

fn pattern(s: &str) -> Result<TagPattern, CliError> {
    Ok(TagPattern::parse(s)?)
}

/// The password from stdin, a file or `BERTH_PASSWORD`, in that order of the flags given.
fn read_password(input: &PasswordInput) -> Result<Secret, CliError> {
    let text = if input.password_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        first_line(&s).to_owned()
    } else if let Some(path) = &input.password_file {
        first_line(&std::fs::read_to_string(path)?).to_owned()
    } else if let Ok(pw) = std::env::var("BERTH_PASSWORD") {
        pw
    } else {
        let hint = if std::io::stdin().is_terminal() {
            " (passwords are not read from the terminal or the command line)"
        } else {
            ""
        };
        return Err(CliError::Usage(format!(
            "give the password with --password-stdin, --password-file FILE or BERTH_PASSWORD{hint}"
        )));
    };
    if text.is_empty() {
        return Err(CliError::Usage("the password is empty".into()));
    }
    Ok(Secret(text))
}

fn to_op(cmd: AuthCommand) -> Result<(AuthTarget, AdminOp, bool), CliError> {
    use AdminOp as Op;
    Ok(match cmd {
        AuthCommand::User(c) => match c {
            UserCommand::Add {
                name,
                admin,
                password,
                target,
            } => {
                let op = Op::UserAdd {
                    name: user(&name)?,
                    password: read_password(&password)?,
                    admin,
                };
                (target, op, false)
            }
            UserCommand::Del { name, target } => {
                (target, Op::UserDel { name: user(&name)? }, false)
            }
            UserCommand::Passwd {
                name,
                password,
                target,
            } => {
                let op = Op::UserPasswd {
                    name: user(&name)?,
                    password: read_password(&password)?,
                };
                (target, op, false)
            }
            UserCommand::List { json, target } => (target, Op::UserList, json),
        },
        AuthCommand::Project(c) => match c {
            ProjectCommand::Add {
                name,
                public,
                quota,
                target,
            } => {
                let op = Op::ProjectAdd {
                    name: project(&name)?,
                    public,
                    quota_bytes: quota.and_then(|q| q.0),
                };
                (target, op, false)
            }
            ProjectCommand::Del { name, target } => (
                target,
                Op::ProjectDel {
                    name: project(&name)?,
                },
                false,
            ),
            ProjectCommand::List { json, target } => (target, Op::ProjectList, json),
            ProjectCommand::SetPublic { name, target } => (
                target,
                Op::ProjectSetPublic {
                    name: project(&name)?,
                    public: true,
                },
                false,
            ),
            ProjectCommand::SetPrivate { name, target } => (
                target,
                Op::ProjectSetPublic {
                    name: project(&name)?,
                    public: false,
                },
                false,
            ),
            ProjectCommand::Quota { name, size, target } => (
                target,
                Op::ProjectQuota {
                    name: project(&name)?,
                    quota_bytes: size.0,
                },
                false,
            ),
        },
        AuthCommand::Member(c) => match c {
            MemberCommand::Add {
                project: p,
                user: u,
                role,
                target,
            } => (
                target,
                Op::MemberAdd {
                    project: project(&p)?,
                    user: user(&u)?,
                    role,
                },
                false,
            ),
            MemberCommand::Del {
                project: p,
                user: u,
                target,
            } => (
                target,
                Op::MemberDel {
                    project: project(&p)?,
                    user: user(&u)?,
                },
                false,
            ),
            MemberCommand::List {
                project: p,
                json,
                target,
            } => (
                target,
                Op::MemberList {
                    project: project(&p)?,
                },
                json,
            ),
        },
        AuthCommand::Robot(c) => match c {
            RobotCommand::Add {
                project: p,
                name,
                actions,
                expires,
                json,
                target,
            } => (
                target,
                Op::RobotAdd {
                    name: robot(&p, &name)?,
                    actions,
                    expiry: expires,
                },
                json,
            ),
            RobotCommand::Del {
                project: p,
                name,
                target,
            } => (
                target,
                Op::RobotDel {
                    name: robot(&p, &name)?,
                },
                false,
            ),
            RobotCommand::List {
                project: p,
                json,
                target,
            } => {
                let p = p.as_deref().map(project).transpose()?;
                (target, Op::RobotList { project: p }, json)
            }
        },
        AuthCommand::Immutable(c) => match c {
            ImmutableCommand::Add {
                project: p,
                pattern: t,
                target,
            } => (
                target,
                Op::ImmutableAdd {
                    project: project(&p)?,
                    pattern: pattern(&t)?,
                },
                false,
            ),
            ImmutableCommand::Del {
                project: p,
                pattern: t,
                target,
            } => (
                target,
                Op::ImmutableDel {
                    project: project(&p)?,
                    pattern: pattern(&t)?,
                },
                false,
            ),
            ImmutableCommand::List {
                project: p,
                json,
                target,
            } => (
                target,
                Op::ImmutableList {
                    project: project(&p)?,
                },
                json,
            ),
        },
        AuthCommand::Audit(c) => {
            let since_ms = c.since.map(|d| since(d.0));
            let filter = AuditFilter {
                since_ms,
                user: c.user,
                project: c.project,
                limit: c.limit,
            };
            (c.target, Op::Audit { filter }, c.json)
        }
    })
}

fn since(ago: Duration) -> u64 {
    let now = crate::auth::clock::SystemClock;
    crate::auth::clock::Clock::now_ms(&now).saturating_sub(ago.as_millis() as u64)
}

impl From<AuthError> for CliError {
    fn from(e: AuthError) -> CliError {
        match e {
            AuthError::Invalid { .. } => CliError::Usage(e.to_string()),
            other => CliError::Auth(other),
        }
    }
}
