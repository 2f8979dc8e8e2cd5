//! Flags of `berth user`, `project`, `member`, `robot`, `immutable` and `audit`: the access
//! model's administration on a stopped registry's data directory (`--data DIR`) or a running
//! registry (`--url URL`). Every command turns into one `auth::ops::AdminOp`, applied locally
//! or sent to the registry's admin API.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Subcommand};

use crate::auth::model::{ActionSet, Role};
use crate::auth::robot::Expiry;
use crate::config::units::{ByteRate, HumanDuration};

/// Where the command works: a stopped registry's data directory, or a running registry.
#[derive(Debug, Clone, Args)]
pub struct AuthTarget {
    /// Data directory of a stopped registry (its auth.redb is created if missing).
    #[arg(
        long,
        value_name = "DIR",
        env = "BERTH_DATA",
        required_unless_present = "url",
        conflicts_with = "url"
    )]
    pub data: Option<PathBuf>,
    /// A running registry (`http://host:port`): the command goes to its admin API,
    /// `POST /api/v1/ops`, as the administrator given by --login.
    #[arg(long, value_name = "URL", env = "BERTH_URL")]
    pub url: Option<String>,
    /// CA certificate to trust for an https:// --url.
    #[arg(long, value_name = "FILE", requires = "url")]
    pub ca_cert: Option<PathBuf>,
    /// Administrator to log in as with --url; the password comes from --login-password-file
    /// or the variable BERTH_LOGIN_PASSWORD [default: admin].
    #[arg(long, value_name = "USER", requires = "url")]
    pub login: Option<String>,
    /// File whose first line is the --login password.
    #[arg(long, value_name = "FILE", requires = "url")]
    pub login_password_file: Option<PathBuf>,
}

/// Where a new password comes from; never a command-line argument, which other users of the
/// machine can read in the process list.
#[derive(Debug, Clone, Args)]
pub struct PasswordInput {
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "password_file")]
    pub password_stdin: bool,
    /// Read the password from the first line of this file. Without either flag the variable
    /// BERTH_PASSWORD is used.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Add a user.
    Add {
        name: String,
        /// Make the user a system administrator.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        password: PasswordInput,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// Delete a user and their memberships.
    Del {
        name: String,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// Set a user's password.
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordInput,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: AuthTarget,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum ProjectCommand {
    /// Add a project (private unless --public).
    Add {
        name: String,
        /// Anyone, anonymous clients included, may pull from it.
        #[arg(long)]
        public: bool,
        /// Storage quota, e.g. 10GiB.
        #[arg(long, value_name = "SIZE")]
        quota: Option<Quota>,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// Delete a project with its members, robots and rules (its repositories stay stored).
    Del {
        name: String,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// List projects.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// Let anyone pull from the project.
    SetPublic {
        name: String,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// Let only members pull from the project.
    SetPrivate {
        name: String,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// Set the project's quota (e.g. 10GiB, 500MB), or `none`.
    Quota {
        name: String,
        size: Quota,
        #[command(flatten)]
        target: AuthTarget,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum MemberCommand {
    /// Add a user to a project, or change their role.
    Add {
        project: String,
        user: String,
        /// projectAdmin, maintainer, developer, guest or limitedGuest.
        #[arg(long)]
        role: Role,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// Remove a user from a project.
    Del {
        project: String,
        user: String,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// List a project's members.
    List {
        project: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: AuthTarget,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum RobotCommand {
    /// Add a robot account robot$<project>+<name>; prints its secret, once.
    Add {
        project: String,
        name: String,
        /// What it may do in the project: pull, push, delete, list (comma-separated).
        #[arg(long, default_value = "pull")]
        actions: ActionSet,
        /// Lifetime, e.g. 30d or 1w, or `never`.
        #[arg(long, value_name = "DURATION", default_value = "30d")]
        expires: Expiry,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// Delete a robot account.
    Del {
        project: String,
        name: String,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// List robot accounts (of one project, or all) with their expiry.
    List {
        project: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: AuthTarget,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum ImmutableCommand {
    /// Make the project's tags matching PATTERN (e.g. v*, release-*) immutable.
    Add {
        project: String,
        pattern: String,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// Remove an immutability rule.
    Del {
        project: String,
        pattern: String,
        #[command(flatten)]
        target: AuthTarget,
    },
    /// List a project's immutability rules.
    List {
        project: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: AuthTarget,
    },
}

/// `berth audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditCommand {
    /// Only events of the last DURATION, e.g. 1h or 7d.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<HumanDuration>,
    /// Only events by this user or robot.
    #[arg(long)]
    pub user: Option<String>,
    /// Only events of this project.
    #[arg(long)]
    pub project: Option<String>,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// JSON lines: one event per line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: AuthTarget,
}

/// One administrative command.
#[derive(Debug, Clone)]
pub enum AuthCommand {
    User(UserCommand),
    Project(ProjectCommand),
    Member(MemberCommand),
    Robot(RobotCommand),
    Immutable(ImmutableCommand),
    Audit(AuditCommand),
}

/// A quota: a size with a unit (`10GiB`, `500MB`; decimal and binary units as for rates),
/// or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota(pub Option<u64>);

impl FromStr for Quota {
    type Err = String;
    fn from_str(s: &str) -> Result<Quota, String> {
        if s.trim().eq_ignore_ascii_case("none") {
            return Ok(Quota(None));
        }
        s.parse::<ByteRate>()
            .map(|r| Quota(r.0))
            .map_err(|_| format!("{s:?} is not a size such as \"10GiB\" or \"500MB\", or \"none\""))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Command};

    #[test]
    fn commands_parse() {
        let cli = Cli::try_parse_from([
            "berth",
            "robot",
            "add",
            "team",
            "ci",
            "--actions",
            "pull,push",
            "--expires",
            "30d",
            "--data",
            "/d",
        ])
        .unwrap();
        let Command::Robot(RobotCommand::Add {
            actions, expires, ..
        }) = cli.command
        else {
            panic!("not robot add")
        };
        assert_eq!(actions.to_string(), "pull,push");
        assert_eq!(expires, "30d".parse().unwrap());
        assert_eq!("10GiB".parse::<Quota>(), Ok(Quota(Some(10 << 30))));
        assert_eq!("none".parse::<Quota>(), Ok(Quota(None)));
        assert!("lots".parse::<Quota>().is_err());
        assert!(Cli::try_parse_from([
            "berth", "member", "add", "t", "u", "--role", "owner", "--data", "/d"
        ])
        .is_err());
        assert!(Cli::try_parse_from([
            "berth",
            "user",
            "add",
            "u",
            "--password-stdin",
            "--password-file",
            "f",
            "--data",
            "/d"
        ])
        .is_err());
    }
}
