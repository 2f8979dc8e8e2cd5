//! The access model as a request sees it: every role against every action, robots in both
//! name forms and their expiry, immutable tags, a change seen by the next request, the login
//! cache sparing the slow hash, failed-login limits that engage and release, the audit
//! trail's bounds, and no secret ever reaching it.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth::auth::audit::{Actor, AuditAction, AuditEvent, AuditFilter, AuditLimits, AuditLog};
use berth::auth::clock::ManualClock;
use berth::auth::db::{AuthDb, AuthDbOptions};
use berth::auth::login::{Authenticator, AuthenticatorSettings, LoginError};
use berth::auth::model::{ActionSet, ProjectName, Role, TagPattern, UserName};
use berth::auth::ops::{apply, AdminOp, AdminReply, Caller, Secret};
use berth::auth::password::HashParams;
use berth::auth::policy::{Action, Policy, PolicySettings, Principal, ProjectCreation};
use berth::auth::ratelimit::RateLimitSettings;
use berth::auth::robot::{Expiry, RobotName};

const T0: u64 = 1_800_000_000_000;

fn open(dir: &Path, clock: &Arc<ManualClock>) -> Arc<AuthDb> {
    let options = AuthDbOptions {
        hash: HashParams::insecure_fast(),
        clock: clock.clone(),
    };
    Arc::new(AuthDb::open_with(dir, options).unwrap())
}

fn user(name: &str) -> Principal {
    Principal::User {
        name: name.into(),
        admin: false,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn p(s: &str) -> ProjectName {
    ProjectName::parse(s).unwrap()
}

fn u(s: &str) -> UserName {
    UserName::parse(s).unwrap()
}

#[test]
fn roles_against_actions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_at(T0);
    let db = open(dir.path(), &clock);
    db.add_project(&p("team"), false, None).unwrap();
    let roles = [
        ("pa", Some(Role::ProjectAdmin), [true, true, true, true]),
        ("ma", Some(Role::Maintainer), [true, true, true, true]),
        ("dev", Some(Role::Developer), [true, true, false, true]),
        ("gu", Some(Role::Guest), [true, false, false, true]),
        ("lg", Some(Role::LimitedGuest), [true, false, false, false]),
        ("outsider", None, [false, false, false, false]),
    ];
    for (name, role, _) in &roles {
        db.add_user(&u(name), "password-123", false).unwrap();
        if let Some(r) = role {
            db.add_member(&p("team"), &u(name), *r).unwrap();
        }
    }
    let policy = Policy::new(db.clone(), PolicySettings::default());
    let actions = [Action::Pull, Action::Push, Action::Delete, Action::List];
    for (name, _, expected) in &roles {
        for (action, want) in actions.iter().zip(expected) {
            assert_eq!(
                policy.allowed(&user(name), "team/app", *action),
                *want,
                "{name} {action:?}"
            );
        }
        assert!(!policy.allowed(&user(name), "other/app", Action::Pull));
    }
    assert!(policy.may_manage_project(&user("pa"), "team"));
    assert!(!policy.may_manage_project(&user("ma"), "team"));

    let admin = Principal::User {
        name: "root".into(),
        admin: true,
    };
    for action in actions {
        assert!(policy.allowed(&admin, "anything/at/all", action));
        assert!(!policy.allowed(&Principal::Anonymous, "team/app", action));
    }
    assert!(policy.may_create_project(&admin));
    assert!(!policy.may_create_project(&user("dev")));
    let open_policy = Policy::new(
        db.clone(),
        PolicySettings {
            project_creation: ProjectCreation::Authenticated,
            ..PolicySettings::default()
        },
    );
    assert!(open_policy.may_create_project(&user("dev")));
    assert!(!open_policy.may_create_project(&Principal::Anonymous));

    // A public project: anyone pulls and lists, nobody else pushes; `app` is `library/app`.
    db.add_project(&p("library"), true, Some(10 << 30)).unwrap();
    assert!(policy.allowed(&Principal::Anonymous, "app", Action::Pull));
    assert!(policy.allowed(&Principal::Anonymous, "library/app", Action::List));
    assert!(!policy.allowed(&Principal::Anonymous, "app", Action::Push));
    assert_eq!(policy.quota_bytes("app"), Some(10 << 30));
    let visible =
        policy.visible_repositories(&user("lg"), ["team/app", "app", "other/x", "team/b"]);
    assert_eq!(visible, vec!["app"]);
    let visible = policy.visible_repositories(&user("gu"), ["team/app", "app", "other/x"]);
    assert_eq!(visible, vec!["team/app", "app"]);
}

#[test]
fn robots_log_in_by_either_name_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_at(T0);
    let db = open(dir.path(), &clock);
    db.add_project(&p("team"), false, None).unwrap();
    let name = RobotName::parse("robot$team+ci").unwrap();
    let actions: ActionSet = "pull,push".parse().unwrap();
    let new = db
        .add_robot(&name, actions, Expiry::After(Duration::from_secs(86_400)))
        .unwrap();
    let auth = Authenticator::new(db.clone(), None, None, AuthenticatorSettings::default());
    let policy = Policy::new(db.clone(), PolicySettings::default());
    for form in ["robot$team+ci", "robot_team+ci"] {
        let principal = auth
            .authenticate_basic(form, &new.secret, ip("10.0.0.1"))
            .unwrap();
        assert_eq!(principal.name(), Some("robot$team+ci"));
        assert!(policy.allowed(&principal, "team/app", Action::Push));
        assert!(!policy.allowed(&principal, "team/app", Action::Delete));
        assert!(!policy.allowed(&principal, "other/app", Action::Pull));
    }
    assert_eq!(
        auth.authenticate_basic("robot$team+ci", "wrong", ip("10.0.0.1")),
        Err(LoginError::Invalid)
    );
    let principal = auth
        .authenticate_basic("robot_team+ci", &new.secret, ip("10.0.0.1"))
        .unwrap();
    clock.advance(Duration::from_secs(86_400));
    assert!(matches!(
        auth.authenticate_basic("robot$team+ci", &new.secret, ip("10.0.0.1")),
        Err(LoginError::Expired(_))
    ));
    assert!(!policy.allowed(&principal, "team/app", Action::Pull));

    let forever = RobotName::parse("robot_team+nightly").unwrap();
    let new = db.add_robot(&forever, actions, Expiry::Never).unwrap();
    let principal = auth
        .authenticate_basic("robot$team+nightly", &new.secret, ip("10.0.0.1"))
        .unwrap();
    assert!(policy.allowed(&principal, "team/app", Action::Pull));
    db.delete_robot(&forever).unwrap();
    assert!(!policy.allowed(&principal, "team/app", Action::Pull));
    assert_eq!(
        auth.authenticate_basic("robot$team+nightly", &new.secret, ip("10.0.0.1")),
        Err(LoginError::Invalid)
    );
}

#[test]
fn immutable_rules_match_tags_of_their_project() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_at(T0);
    let db = open(dir.path(), &clock);
    db.add_project(&p("team"), false, None).unwrap();
    db.add_project(&p("library"), true, None).unwrap();
    let policy = Policy::new(db.clone(), PolicySettings::default());
    assert!(!policy.tag_is_immutable("team/app", "v1.0"));
    db.add_immutable(&p("team"), &TagPattern::parse("v*").unwrap())
        .unwrap();
    db.add_immutable(&p("library"), &TagPattern::parse("release-*").unwrap())
        .unwrap();
    assert!(policy.tag_is_immutable("team/app", "v1.0"));
    assert!(!policy.tag_is_immutable("team/app", "latest"));
    assert!(!policy.tag_is_immutable("other/app", "v1.0"));
    assert!(policy.tag_is_immutable("app", "release-7"));
    assert!(!policy.tag_is_immutable("app", "v1.0"));
    db.delete_immutable(&p("team"), &TagPattern::parse("v*").unwrap())
        .unwrap();
    assert!(!policy.tag_is_immutable("team/app", "v1.0"));
}

#[test]
fn a_change_is_seen_by_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_at(T0);
    let db = open(dir.path(), &clock);
    let policy = Policy::new(db.clone(), PolicySettings::default());
    db.add_user(&u("alice"), "password-123", false).unwrap();
    db.add_project(&p("team"), false, None).unwrap();
    let g = db.generation();
    assert!(!policy.allowed(&user("alice"), "team/app", Action::Push));
    db.add_member(&p("team"), &u("alice"), Role::Developer)
        .unwrap();
    assert!(db.generation() > g);
    assert!(policy.allowed(&user("alice"), "team/app", Action::Push));
    db.set_public(&p("team"), true).unwrap();
    assert!(policy.allowed(&Principal::Anonymous, "team/app", Action::Pull));
    db.delete_user(&u("alice")).unwrap();
    assert!(!policy.allowed(&user("alice"), "team/app", Action::Push));
    // A revoked administrator loses everything at once, whatever the login said.
    db.add_user(&u("boss"), "password-123", true).unwrap();
    let boss = Principal::User {
        name: "boss".into(),
        admin: true,
    };
    assert!(policy.allowed(&boss, "x/y", Action::Delete));
    db.set_admin(&u("boss"), false).unwrap();
    assert!(!policy.allowed(&boss, "x/y", Action::Delete));
}

#[test]
fn the_login_cache_spares_the_slow_hash() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_at(T0);
    let db = open(dir.path(), &clock);
    db.add_user(&u("alice"), "password-123", false).unwrap();
    let auth = Authenticator::new(db.clone(), None, None, AuthenticatorSettings::default());
    let a = ip("10.0.0.1");
    for _ in 0..20 {
        assert!(auth.authenticate_basic("alice", "password-123", a).is_ok());
    }
    assert_eq!(auth.slow_verifications(), 1);
    // A wrong password is never served from the cache.
    assert!(auth.authenticate_basic("alice", "password-124", a).is_err());
    assert_eq!(auth.slow_verifications(), 2);
    db.set_password(&u("alice"), "password-456").unwrap();
    assert_eq!(
        auth.authenticate_basic("alice", "password-123", a),
        Err(LoginError::Invalid)
    );
    assert!(auth.authenticate_basic("alice", "password-456", a).is_ok());
    assert!(auth.authenticate_basic("alice", "password-456", a).is_ok());
    assert_eq!(auth.slow_verifications(), 4);
}

#[test]
fn failed_logins_are_limited_then_released() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_at(T0);
    let db = open(dir.path(), &clock);
    db.add_user(&u("alice"), "password-123", false).unwrap();
    let settings = AuthenticatorSettings {
        rate_limit: RateLimitSettings {
            per_address: 3,
            per_user: 6,
            window: Duration::from_secs(60),
            ..RateLimitSettings::default()
        },
        ..AuthenticatorSettings::default()
    };
    let auth = Authenticator::new(db.clone(), None, None, settings);
    let home = ip("10.0.0.1");
    assert!(auth
        .authenticate_basic("alice", "password-123", home)
        .is_ok());
    let attacker = ip("192.0.2.7");
    for _ in 0..3 {
        assert_eq!(
            auth.authenticate_basic("alice", "guess", attacker),
            Err(LoginError::Invalid)
        );
    }
    let hashed = auth.slow_verifications();
    let Err(LoginError::RateLimited { retry_after }) =
        auth.authenticate_basic("alice", "password-123", attacker)
    else {
        panic!("not limited")
    };
    assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(20));
    assert_eq!(
        auth.slow_verifications(),
        hashed,
        "a refused login hashes nothing"
    );
    // From elsewhere the attacker fills alice's own bucket, but her usual address still works.
    for i in 0..6u8 {
        let _ = auth.authenticate_basic("alice", "guess", IpAddr::from([198, 51, 100, i]));
    }
    assert!(matches!(
        auth.authenticate_basic("alice", "password-123", ip("203.0.113.1")),
        Err(LoginError::RateLimited { .. })
    ));
    assert!(auth
        .authenticate_basic("alice", "password-123", home)
        .is_ok());
    clock.advance(Duration::from_secs(60));
    assert!(auth
        .authenticate_basic("alice", "password-123", attacker)
        .is_ok());
    assert!(auth
        .authenticate_basic("alice", "password-123", ip("203.0.113.1"))
        .is_ok());
}

#[test]
fn the_audit_trail_stays_within_its_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_at(T0);
    let db = open(dir.path(), &clock);
    let limits = AuditLimits {
        max_rows: 50,
        max_age: Some(Duration::from_secs(3600)),
        prune_batch: 10,
        jsonl: None,
    };
    let log = AuditLog::open(db.clone(), limits.clone()).unwrap();
    for i in 0..200u64 {
        let e = AuditEvent::new(T0 + i, Actor::Anonymous, AuditAction::Pull);
        log.record(&e).unwrap();
        assert!(log.len() <= 50, "{} rows after {i}", log.len());
    }
    assert!(log.len() >= 40);
    let all = log
        .list(&AuditFilter {
            limit: 1000,
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(all.len() as u64, log.len());
    assert_eq!(all[0].at_ms, T0 + 199, "newest first");
    assert!(all.iter().all(|e| e.at_ms >= T0 + 150));
    drop(log);
    let log = AuditLog::open(db.clone(), limits).unwrap();
    assert!(log.len() >= 40 && log.len() <= 50);
    // Old events leave once they pass the age bound.
    clock.advance(Duration::from_secs(7200));
    for i in 0..20u64 {
        let e = AuditEvent::new(clock_ms(&clock) + i, Actor::Operator, AuditAction::Login);
        log.record(&e).unwrap();
    }
    let all = log
        .list(&AuditFilter {
            limit: 1000,
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(all.len(), 20);
    assert!(all.iter().all(|e| e.actor == Actor::Operator));
}

fn clock_ms(c: &ManualClock) -> u64 {
    berth::auth::clock::Clock::now_ms(c)
}

#[test]
fn no_secret_reaches_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_at(T0);
    let db = open(dir.path(), &clock);
    let jsonl = dir.path().join("audit.jsonl");
    let limits = AuditLimits {
        jsonl: Some(jsonl.clone()),
        ..AuditLimits::default()
    };
    let log = Arc::new(AuditLog::open(db.clone(), limits).unwrap());
    let caller = Caller {
        actor: Actor::Operator,
        client: None,
    };
    let password = "Sup3r-Secret-Passw0rd";
    let run = |op| apply(&db, Some(&log), &caller, op).unwrap();
    run(AdminOp::UserAdd {
        name: u("alice"),
        password: Secret(password.into()),
        admin: false,
    });
    run(AdminOp::UserPasswd {
        name: u("alice"),
        password: Secret(format!("{password}-2")),
    });
    run(AdminOp::ProjectAdd {
        name: p("team"),
        public: false,
        quota_bytes: None,
    });
    let AdminReply::NewRobot(robot) = run(AdminOp::RobotAdd {
        name: RobotName::parse("robot$team+ci").unwrap(),
        actions: "pull".parse().unwrap(),
        expiry: Expiry::default(),
    }) else {
        panic!("no robot")
    };
    let auth = Authenticator::new(
        db.clone(),
        None,
        Some(log.clone()),
        AuthenticatorSettings::default(),
    );
    let a = ip("10.0.0.1");
    assert!(auth.authenticate_basic("alice", password, a).is_err());
    assert!(auth
        .authenticate_basic("alice", &format!("{password}-2"), a)
        .is_ok());
    assert!(auth
        .authenticate_basic("robot_team+ci", &robot.secret, a)
        .is_ok());
    // A password typed into the user field is not a valid name, so it is not recorded either.
    assert!(auth.authenticate_basic(password, "x", a).is_err());

    let events = log
        .list(&AuditFilter {
            limit: 1000,
            ..AuditFilter::default()
        })
        .unwrap();
    let actions: Vec<_> = events.iter().map(|e| e.action).collect();
    assert!(actions.contains(&AuditAction::LoginFailed));
    assert!(actions.contains(&AuditAction::Login));
    assert!(actions.contains(&AuditAction::RobotAdd));
    assert!(actions.contains(&AuditAction::UserPassword));
    let stored = serde_json::to_string(&events).unwrap();
    let shipped = std::fs::read_to_string(&jsonl).unwrap();
    assert_eq!(shipped.lines().count(), events.len());
    for text in [&stored, &shipped] {
        assert!(!text.contains("Sup3r"), "{text}");
        assert!(!text.contains(&robot.secret), "{text}");
    }
    let alice = log
        .list(&AuditFilter {
            user: Some("alice".into()),
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(alice.len(), 2);
    let team = log
        .list(&AuditFilter {
            project: Some("team".into()),
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(team.len(), 2);
}
