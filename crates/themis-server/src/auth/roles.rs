//! Who may do what: roles per database and the server-wide superuser.
//!
//! A user's roles are stored in its [`UserRecord`](themis_storage::UserRecord) as
//! JSON: `{"superuser": false, "databases": {"shop": "readwrite", "*": "readonly"}}`.
//! `"*"` grants a role on every database; a database's own entry wins over `"*"`.
//!
//! | role        | read (READ, read-only QUERY, SUBSCRIBE, BEGIN, list/stats) | write (CREATE, UPDATE, DELETE, writing QUERY) | admin (collections, indexes, roles on the database) |
//! |-------------|:---:|:---:|:---:|
//! | `readonly`  | yes | no  | no  |
//! | `readwrite` | yes | yes | no  |
//! | `admin`     | yes | yes | yes |
//!
//! A superuser may do everything, including creating and dropping databases and
//! managing users.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a request needs on its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    Read,
    Write,
    Admin,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        })
    }
}

/// A role on one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Readonly,
    Readwrite,
    Admin,
}

impl Role {
    /// The strongest permission this role holds.
    pub fn permission(self) -> Permission {
        match self {
            Role::Readonly => Permission::Read,
            Role::Readwrite => Permission::Write,
            Role::Admin => Permission::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Readonly => "readonly",
            Role::Readwrite => "readwrite",
            Role::Admin => "admin",
        }
    }

    /// Parses `admin`, `readwrite` or `readonly`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Role, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "admin" => Ok(Role::Admin),
            "readwrite" | "rw" => Ok(Role::Readwrite),
            "readonly" | "ro" => Ok(Role::Readonly),
            other => Err(format!(
                "unknown role '{other}': use admin, readwrite or readonly"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every database (in [`Roles::databases`]).
pub const ALL_DATABASES: &str = "*";

/// A user's grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    #[serde(default)]
    pub superuser: bool,
    #[serde(default)]
    pub databases: BTreeMap<String, Role>,
}

impl Roles {
    /// The roles stored in a user record; a record written before roles existed (or
    /// damaged) grants nothing.
    pub fn from_value(value: &serde_json::Value) -> Roles {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The role on `database`: its own entry, else the `"*"` entry.
    pub fn role_on(&self, database: &str) -> Option<Role> {
        self.databases
            .get(database)
            .or_else(|| self.databases.get(ALL_DATABASES))
            .copied()
    }

    /// Whether these roles allow `permission` on `database`.
    pub fn allows(&self, database: &str, permission: Permission) -> bool {
        self.superuser
            || self
                .role_on(database)
                .is_some_and(|role| role.permission() >= permission)
    }

    /// Whether `after` takes away anything these roles allow: the superuser flag, or
    /// a permission on some database.
    pub fn weakened_by(&self, after: &Roles) -> bool {
        if self.superuser && !after.superuser {
            return true;
        }
        if after.superuser {
            return false;
        }
        self.databases.iter().any(|(db, role)| {
            after
                .role_on(db)
                .is_none_or(|new| new.permission() < role.permission())
        })
    }

    /// Whether the holder may see that `database` exists (any role on it).
    pub fn sees(&self, database: &str) -> bool {
        self.superuser || self.role_on(database).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(json: serde_json::Value) -> Roles {
        Roles::from_value(&json)
    }

    #[test]
    fn each_role_allows_its_permission_and_weaker_ones_only() {
        let r = roles(
            serde_json::json!({"databases": {"a": "readonly", "b": "readwrite", "c": "admin"}}),
        );
        let table = [
            ("a", [true, false, false]),
            ("b", [true, true, false]),
            ("c", [true, true, true]),
            ("d", [false, false, false]),
        ];
        for (db, expected) in table {
            let got =
                [Permission::Read, Permission::Write, Permission::Admin].map(|p| r.allows(db, p));
            assert_eq!(got, expected, "database {db}");
        }
    }

    #[test]
    fn star_grants_every_database_and_an_own_entry_wins() {
        let r = roles(serde_json::json!({"databases": {"*": "readonly", "mine": "admin"}}));
        assert!(r.allows("any", Permission::Read));
        assert!(!r.allows("any", Permission::Write));
        assert!(r.allows("mine", Permission::Admin));
        let r = roles(serde_json::json!({"databases": {"*": "admin", "locked": "readonly"}}));
        assert!(!r.allows("locked", Permission::Write));
    }

    #[test]
    fn superuser_may_do_everything_and_old_records_grant_nothing() {
        assert!(roles(serde_json::json!({"superuser": true})).allows("x", Permission::Admin));
        let old = roles(serde_json::json!("free-form"));
        assert_eq!(old, Roles::default());
        assert!(!old.allows("x", Permission::Read));
    }

    #[test]
    fn weakened_by_sees_every_loss_and_no_gain() {
        let base = roles(serde_json::json!({"databases": {"a": "readwrite"}}));
        let same = base.clone();
        let more = roles(serde_json::json!({"databases": {"a": "admin", "b": "readonly"}}));
        let less = roles(serde_json::json!({"databases": {"a": "readonly"}}));
        let gone = roles(serde_json::json!({"databases": {"b": "admin"}}));
        let star = roles(serde_json::json!({"databases": {"*": "admin"}}));
        assert!(!base.weakened_by(&same));
        assert!(!base.weakened_by(&more));
        assert!(!base.weakened_by(&star));
        assert!(base.weakened_by(&less));
        assert!(base.weakened_by(&gone));
        let su = roles(serde_json::json!({"superuser": true}));
        assert!(su.weakened_by(&base));
        assert!(!base.weakened_by(&su));
        // Losing "*" loses every database it covered.
        assert!(star.weakened_by(&base));
    }

    #[test]
    fn roles_parse_and_print() {
        for role in [Role::Admin, Role::Readwrite, Role::Readonly] {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("owner")
            .unwrap_err()
            .contains("admin, readwrite or readonly"));
        let r = roles(serde_json::json!({"superuser": false, "databases": {"a": "readwrite"}}));
        assert_eq!(Roles::from_value(&r.to_value()), r);
    }
}
