//! Policy lines (`p` rules and `g` role assignments): validation, CSV parsing and printing.
//!
//! Every rule is validated before Casbin ever sees it, whether it comes from a file, the SQL
//! store or an admin command: Casbin's `globMatch` compiles the pattern on every call and panics
//! on an invalid one, and it only notices a wrong number of fields when it enforces.
//!
//! Subjects and roles live in separate namespaces: a subject (the token's `sub`) is written
//! `user:<sub>` and a role is a bare name that never starts with `user:`. Subjects come from the
//! identity provider, so without the prefix a user named like a role (`sub = "ticket-admin"`)
//! would hold that role's rights, and a token role named like a user would inherit that user's
//! grants.

use std::fmt;

use authz_types::RuleEffect;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The actions a rule may name: the verbs of [`authz_types::Method::action`] that reach the
/// policy (protocol-level verbs never do), plus `*` for every action.
pub const ACTIONS: &[&str] = &["call", "read", "subscribe", "get", "complete", "task", "*"];

/// The typed prefixes every object pattern starts with.
pub const OBJECT_KINDS: &[&str] = &["tool:", "resource:", "prompt:", "task:"];

/// The tenant value that makes a `p` rule apply in every tenant.
pub const ANY_TENANT: &str = "*";

/// The prefix that marks a subject (a token `sub`) in the policy: `user:alice`. Role names may
/// never start with it.
pub const SUBJECT_PREFIX: &str = "user:";

/// The policy name of the token subject `subject`: always `user:<subject>`, even when `subject`
/// itself starts with `user:`, so that no two subjects ever share a policy name.
pub fn subject_name(subject: &str) -> String {
    format!("{SUBJECT_PREFIX}{subject}")
}

/// Checks a role name: non-empty, printable, no comma or quote, not `*`, and not starting with
/// [`SUBJECT_PREFIX`] (that prefix marks subjects).
pub fn check_role_name(role: &str) -> Result<(), Error> {
    check_name("role", role)?;
    if role.starts_with(SUBJECT_PREFIX) {
        return Err(invalid(format!(
            "role {role:?} may not start with {SUBJECT_PREFIX:?}: that prefix marks subjects \
             (users), and roles are bare names"
        )));
    }
    Ok(())
}

/// Checks the first field of a `p` or `g` line: `user:<subject>` with a valid, non-empty subject,
/// or a role name.
fn check_subject_or_role(value: &str) -> Result<(), Error> {
    match value.strip_prefix(SUBJECT_PREFIX) {
        Some(subject) => check_name("subject", subject).map_err(|_| {
            invalid(format!(
                "subject {value:?} needs a name after {SUBJECT_PREFIX:?} that is \
                     non-empty, printable, without a comma or a quote, and not `*`"
            ))
        }),
        None => check_role_name(value),
    }
}

/// A `p` line: `p, <role or user:subject>, <tenant>, <object pattern>, <action>, <effect>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyRule {
    /// The role the rule is about, or `user:<subject>` for a rule that names a subject directly.
    pub role: String,
    /// The tenant the rule applies in, or [`ANY_TENANT`].
    pub tenant: String,
    /// A glob over typed objects, e.g. `tool:tickets/get_*` or `resource:tickets/**`.
    pub object: String,
    /// One of [`ACTIONS`].
    pub action: String,
    pub effect: RuleEffect,
    /// A condition (CEL, see [`crate::condition`]): the rule applies only when it holds. The
    /// sixth field of a `p` line; `None` for a rule that always applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

impl PolicyRule {
    /// Builds a rule and validates it (see [`PolicyRule::validate`]).
    pub fn new(
        role: &str,
        tenant: &str,
        object: &str,
        action: &str,
        effect: RuleEffect,
    ) -> Result<Self, Error> {
        let rule = Self {
            role: role.to_owned(),
            tenant: tenant.to_owned(),
            object: object.to_owned(),
            action: action.to_owned(),
            effect,
            condition: None,
        };
        rule.validate()?;
        Ok(rule)
    }

    /// The same rule applying only when `condition` holds (validated; an empty condition is
    /// none).
    pub fn with_condition(mut self, condition: Option<&str>) -> Result<Self, Error> {
        self.condition = condition
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        self.validate()?;
        Ok(self)
    }

    /// Checks every field: the role is a role name or `user:<subject>`, names are non-empty and
    /// printable, the tenant is a name or `*`, the action is known, and the object pattern has a
    /// typed prefix and compiles as a glob exactly the way Casbin's `globMatch` compiles it.
    pub fn validate(&self) -> Result<(), Error> {
        check_subject_or_role(&self.role)?;
        if self.tenant != ANY_TENANT {
            check_name("tenant", &self.tenant)?;
        }
        if !ACTIONS.contains(&self.action.as_str()) {
            return Err(invalid(format!(
                "unknown action {:?} (expected one of {})",
                self.action,
                ACTIONS.join(", ")
            )));
        }
        check_object_pattern(&self.object)?;
        // A held call is answered with an approval the agent retries on; only tool calls
        // have that shape (a list, a read or a completion cannot wait for a person).
        if self.effect == RuleEffect::Approve
            && (self.action != "call" || !self.object.starts_with("tool:"))
        {
            return Err(invalid(format!(
                "an approve rule applies to tool calls only (action call, object tool:...), \
                 not {} on {}",
                self.action, self.object
            )));
        }
        if let Some(c) = &self.condition {
            crate::condition::Condition::compile(c)
                .map_err(|e| invalid(format!("condition {c:?}: {e}")))?;
        }
        Ok(())
    }

    /// The stored policy values, in `p = sub, dom, obj, act, eft` order, and the condition as a
    /// sixth when there is one.
    pub fn to_casbin(&self) -> Vec<String> {
        let mut values = vec![
            self.role.clone(),
            self.tenant.clone(),
            self.object.clone(),
            self.action.clone(),
            self.effect.as_str().to_owned(),
        ];
        if let Some(c) = &self.condition {
            values.push(c.clone());
        }
        values
    }

    /// The line Casbin's matcher sees: the five model fields, an `approve` rule as `allow` (Casbin
    /// knows only allow and deny) and no condition (the crate evaluates conditions itself). Rules
    /// that differ only in effect or condition share one such line.
    pub(crate) fn casbin_key(&self) -> Vec<String> {
        let effect = match self.effect {
            RuleEffect::Deny => "deny",
            RuleEffect::Allow | RuleEffect::Approve => "allow",
        };
        vec![
            self.role.clone(),
            self.tenant.clone(),
            self.object.clone(),
            self.action.clone(),
            effect.to_owned(),
        ]
    }

    /// Parses Casbin policy values (without the `p` type) into a validated rule: five fields,
    /// or six with a condition (an empty sixth is none).
    pub fn from_casbin(values: &[String]) -> Result<Self, Error> {
        let (fields, condition) = match values {
            [a, b, c, d, e] => ([a, b, c, d, e], None),
            [a, b, c, d, e, cond] => ([a, b, c, d, e], Some(cond.as_str())),
            _ => {
                return Err(invalid(format!(
                    "a p rule has 5 fields (role, tenant, object, action, effect) and an \
                     optional condition, found {}",
                    values.len()
                )));
            }
        };
        let [role, tenant, object, action, effect] = fields;
        let effect = RuleEffect::parse(effect).ok_or_else(|| {
            invalid(format!(
                "unknown effect {effect:?} (allow, deny or approve)"
            ))
        })?;
        Self::new(role, tenant, object, action, effect)?.with_condition(condition)
    }
}

impl fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = [
            self.role.as_str(),
            self.tenant.as_str(),
            self.object.as_str(),
            self.action.as_str(),
            self.effect.as_str(),
        ];
        write_line(f, "p", &fields)?;
        // A condition is always quoted: it reads as one field whatever it contains.
        match &self.condition {
            Some(c) => write!(f, ", \"{}\"", c.replace('"', "\"\"")),
            None => Ok(()),
        }
    }
}

/// A `g` line: `g, <user:subject or role>, <role>, <tenant>`: the subject holds the role (or one
/// role inherits another) within one tenant.
///
/// `subject` holds the name exactly as stored, so both its `Display` (the `g` line) and its
/// serialized form show `user:alice` for a user and a bare name for an inheriting role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoleAssignment {
    /// `user:<subject>` for a user, or a role name when one role inherits another.
    pub subject: String,
    /// The role held (or inherited); never starts with `user:`.
    pub role: String,
    pub tenant: String,
}

impl RoleAssignment {
    /// Builds an assignment from the names as stored (`user:alice` for a user, a bare name for a
    /// role inheriting `role`) and validates it (see [`RoleAssignment::validate`]).
    pub fn new(subject: &str, role: &str, tenant: &str) -> Result<Self, Error> {
        let assignment = Self {
            subject: subject.to_owned(),
            role: role.to_owned(),
            tenant: tenant.to_owned(),
        };
        assignment.validate()?;
        Ok(assignment)
    }

    /// Builds the assignment of a role to the token subject `subject`, stored as
    /// `user:<subject>`; a `subject` already written `user:<x>` is taken as is (not prefixed
    /// twice). Validated like [`RoleAssignment::new`].
    pub fn for_subject(subject: &str, role: &str, tenant: &str) -> Result<Self, Error> {
        Self::new(&stored_subject(subject), role, tenant)
    }

    /// The token subject this assignment is about (`alice` for `user:alice`), or `None` when it
    /// links one role to another.
    pub fn user(&self) -> Option<&str> {
        self.subject.strip_prefix(SUBJECT_PREFIX)
    }

    /// Checks every field: the subject is `user:<subject>` or a role name, the role a role name.
    /// The tenant must be a concrete tenant: Casbin's role manager matches domains exactly, so a
    /// `*` tenant here would silently never apply.
    pub fn validate(&self) -> Result<(), Error> {
        if self.tenant == ANY_TENANT {
            return Err(invalid(
                "role assignments apply in one tenant; `*` is only allowed in p rules".to_owned(),
            ));
        }
        check_subject_or_role(&self.subject)?;
        check_role_name(&self.role)?;
        check_name("tenant", &self.tenant)?;
        if self.subject == self.role {
            return Err(invalid(format!(
                "{:?} cannot be assigned to itself",
                self.subject
            )));
        }
        Ok(())
    }

    /// The Casbin grouping values, in `g = _, _, _` order.
    pub fn to_casbin(&self) -> Vec<String> {
        vec![self.subject.clone(), self.role.clone(), self.tenant.clone()]
    }

    /// Parses Casbin grouping values (without the `g` type) into a validated assignment.
    pub fn from_casbin(values: &[String]) -> Result<Self, Error> {
        let [subject, role, tenant] = values else {
            return Err(invalid(format!(
                "a g line has 3 fields (subject, role, tenant), found {}",
                values.len()
            )));
        };
        Self::new(subject, role, tenant)
    }
}

impl fmt::Display for RoleAssignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_line(f, "g", &[&self.subject, &self.role, &self.tenant])
    }
}

/// The stored name of a subject given to an admin command: `user:<subject>`, unless it already
/// has the prefix.
pub(crate) fn stored_subject(subject: &str) -> String {
    if subject.starts_with(SUBJECT_PREFIX) {
        subject.to_owned()
    } else {
        subject_name(subject)
    }
}

/// A whole policy: `p` rules and `g` assignments, in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySet {
    pub rules: Vec<PolicyRule>,
    pub assignments: Vec<RoleAssignment>,
}

impl PolicySet {
    /// Parses a Casbin policy CSV. `origin` names the source in errors (a file path, usually).
    ///
    /// Blank lines and lines starting with `#` are skipped. Fields are separated by commas and
    /// trimmed; a field containing a comma (a glob alternation such as `{list,get}_*`) is written
    /// in double quotes, with `""` for a literal quote. Any invalid line fails the whole parse.
    pub fn parse_csv(text: &str, origin: &str) -> Result<Self, Error> {
        Ok(LocatedPolicy::parse_csv(text, origin)?.set)
    }

    /// Appends another set (used when several policy files make one policy).
    pub fn extend(&mut self, other: PolicySet) {
        self.rules.extend(other.rules);
        self.assignments.extend(other.assignments);
    }

    /// Prints the set as a Casbin CSV that [`PolicySet::parse_csv`] reads back.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        for rule in &self.rules {
            out.push_str(&rule.to_string());
            out.push('\n');
        }
        for assignment in &self.assignments {
            out.push_str(&assignment.to_string());
            out.push('\n');
        }
        out
    }
}

/// Where a policy line came from, for lint findings and errors: a file and line, or a row of the
/// SQL store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Line `line` (1-based) of the policy file `path`.
    File { path: String, line: usize },
    /// The row with primary key `id` in the table `table` (`casbin_rule`).
    Row { table: String, id: i64 },
    /// Built in code.
    Unknown,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{path}:{line}"),
            Origin::Row { table, id } => write!(f, "{table} row {id}"),
            Origin::Unknown => f.write_str("(built in code)"),
        }
    }
}

/// A [`PolicySet`] that remembers where each of its lines came from: `rule_origins[i]` is the
/// origin of `set.rules[i]`, `assignment_origins[i]` that of `set.assignments[i]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocatedPolicy {
    pub set: PolicySet,
    pub rule_origins: Vec<Origin>,
    pub assignment_origins: Vec<Origin>,
}

impl LocatedPolicy {
    /// Parses a Casbin policy CSV like [`PolicySet::parse_csv`], recording `path:line` for every
    /// line.
    pub fn parse_csv(text: &str, path: &str) -> Result<Self, Error> {
        let mut located = LocatedPolicy::default();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |source: Error| Error::InvalidPolicy {
                origin: path.to_owned(),
                line: index + 1,
                source: Box::new(source),
            };
            let fields = split_csv_line(line).map_err(at)?;
            let Some((ptype, values)) = fields.split_first() else {
                continue;
            };
            let origin = Origin::File {
                path: path.to_owned(),
                line: index + 1,
            };
            match ptype.as_str() {
                "p" => {
                    located
                        .set
                        .rules
                        .push(PolicyRule::from_casbin(values).map_err(at)?);
                    located.rule_origins.push(origin);
                }
                "g" => {
                    located
                        .set
                        .assignments
                        .push(RoleAssignment::from_casbin(values).map_err(at)?);
                    located.assignment_origins.push(origin);
                }
                other => {
                    return Err(at(invalid(format!(
                        "unknown line type {other:?} (expected p or g)"
                    ))));
                }
            }
        }
        Ok(located)
    }

    /// A policy built in code: every origin is [`Origin::Unknown`].
    pub fn unlocated(set: PolicySet) -> Self {
        Self {
            rule_origins: vec![Origin::Unknown; set.rules.len()],
            assignment_origins: vec![Origin::Unknown; set.assignments.len()],
            set,
        }
    }

    /// Appends another policy (several policy files make one policy).
    pub fn extend(&mut self, other: LocatedPolicy) {
        self.set.extend(other.set);
        self.rule_origins.extend(other.rule_origins);
        self.assignment_origins.extend(other.assignment_origins);
    }

    /// The origin of rule `index`, [`Origin::Unknown`] if none was recorded.
    pub fn rule_origin(&self, index: usize) -> Origin {
        self.rule_origins
            .get(index)
            .cloned()
            .unwrap_or(Origin::Unknown)
    }

    /// The origin of assignment `index`, [`Origin::Unknown`] if none was recorded.
    pub fn assignment_origin(&self, index: usize) -> Origin {
        self.assignment_origins
            .get(index)
            .cloned()
            .unwrap_or(Origin::Unknown)
    }
}

/// Checks an object pattern: a typed prefix and a glob that compiles.
pub fn check_object_pattern(pattern: &str) -> Result<(), Error> {
    check_printable("object", pattern)?;
    if !OBJECT_KINDS.iter().any(|kind| pattern.starts_with(kind)) {
        return Err(invalid(format!(
            "object {pattern:?} must start with one of {}",
            OBJECT_KINDS.join(" ")
        )));
    }
    // The same builder settings as `casbin::function_map::glob_match`, so a pattern that passes
    // here can never make Casbin panic.
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|_| ())
        .map_err(|source| Error::InvalidPattern {
            pattern: pattern.to_owned(),
            source,
        })
}

fn check_name(what: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    check_printable(what, value)?;
    // Names never need commas or quotes, and refusing them keeps every line printable as plain
    // CSV and `*` reserved for "every tenant".
    if value.contains([',', '"']) || value == ANY_TENANT {
        return Err(invalid(format!(
            "{what} {value:?} may not contain a comma or a quote, nor be `*`"
        )));
    }
    Ok(())
}

fn check_printable(what: &str, value: &str) -> Result<(), Error> {
    if value.trim() != value || value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{what} {value:?} has surrounding whitespace or control characters"
        )));
    }
    Ok(())
}

fn invalid(reason: String) -> Error {
    Error::InvalidRule { reason }
}

/// Splits one CSV line into trimmed fields, honouring double quotes.
fn split_csv_line(line: &str) -> Result<Vec<String>, Error> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(invalid("unterminated quoted field".to_owned())),
                }
            }
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => {
                    return Err(invalid(format!("unexpected {c:?} after a quoted field")));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim_end().to_owned());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err(invalid(
                            "a quote may only start a field (quote the whole field)".to_owned(),
                        ));
                    }
                    Some(c) => field.push(c),
                }
            }
            fields.push(field.trim_end().to_owned());
        }
    }
}

/// Prints one policy line the way [`PolicySet::parse_csv`] reads it back.
pub(crate) fn format_line(ptype: &str, fields: &[&str]) -> String {
    struct Line<'a>(&'a str, &'a [&'a str]);
    impl fmt::Display for Line<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_line(f, self.0, self.1)
        }
    }
    Line(ptype, fields).to_string()
}

fn write_line(f: &mut fmt::Formatter<'_>, ptype: &str, fields: &[&str]) -> fmt::Result {
    f.write_str(ptype)?;
    for field in fields {
        f.write_str(", ")?;
        if field.contains([',', '"']) {
            write!(f, "\"{}\"", field.replace('"', "\"\""))?;
        } else {
            f.write_str(field)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quotes_comments_and_blank_lines() {
        let text = "# comment\n\np, reader, default, \"tool:t/{list,get}_*\", call, allow\n  g, user:alice, reader, default  \n";
        let set = PolicySet::parse_csv(text, "inline").expect("valid");
        assert_eq!(set.rules.len(), 1);
        assert_eq!(set.rules[0].object, "tool:t/{list,get}_*");
        assert_eq!(set.assignments[0].subject, "user:alice");
        assert_eq!(set.assignments[0].user(), Some("alice"));
        let printed = set.to_csv();
        assert_eq!(
            PolicySet::parse_csv(&printed, "printed").expect("reparse"),
            set
        );
    }

    #[test]
    fn rejects_bad_lines_with_their_line_number() {
        for (text, needle) in [
            ("p, r, default, tool:t/[, call, allow", "pattern"),
            ("p, r, default, tool:t/x, call", "5 fields"),
            ("p, r, default, tool:t/x, call, maybe", "effect"),
            ("p, r, default, tool:t/x, delete, allow", "action"),
            ("p, r, default, t/x, call, allow", "must start with"),
            ("g, user:alice, reader", "3 fields"),
            ("g, user:alice, reader, *", "one tenant"),
            // Roles never start with `user:`, and a subject needs a name after the prefix.
            (
                "g, user:alice, user:bob, default",
                "may not start with \"user:\"",
            ),
            (
                "g, reader, user:bob, default",
                "may not start with \"user:\"",
            ),
            ("g, user:, reader, default", "needs a name after"),
            ("g, user:*, reader, default", "needs a name after"),
            ("g, user: alice, reader, default", "needs a name after"),
            (
                "p, user:, default, tool:t/x, call, allow",
                "needs a name after",
            ),
            ("x, a, b", "line type"),
            ("p, r, default, \"tool:t/x, call, allow", "unterminated"),
            ("p, , default, tool:t/x, call, allow", "empty"),
        ] {
            let err = PolicySet::parse_csv(&format!("# first\n{text}"), "f.csv").expect_err(text);
            let Error::InvalidPolicy { line, source, .. } = &err else {
                panic!("unexpected error {err:?}");
            };
            assert_eq!(*line, 2, "{text}");
            let chain = format!("{source} {:?}", source);
            assert!(chain.contains(needle), "{text}: {chain}");
        }
    }

    #[test]
    fn subjects_and_roles_have_separate_names() {
        // Users are `user:<sub>`, roles bare; both may head a `g` line and a `p` rule.
        let text = "\
p, user:alice, default, tool:t/own, call, allow
p, reader, default, tool:t/read, call, allow
g, user:alice, reader, default
g, agent, reader, default
";
        let set = PolicySet::parse_csv(text, "inline").expect("valid");
        assert_eq!(set.rules[0].role, "user:alice");
        assert_eq!(set.assignments[0].user(), Some("alice"));
        assert_eq!(set.assignments[1].user(), None);

        assert_eq!(subject_name("alice"), "user:alice");
        assert_eq!(subject_name("user:alice"), "user:user:alice");
        let by_bare = RoleAssignment::for_subject("alice", "reader", "default").expect("valid");
        let by_prefixed =
            RoleAssignment::for_subject("user:alice", "reader", "default").expect("valid");
        assert_eq!(by_bare, by_prefixed);
        assert_eq!(by_bare.to_string(), "g, user:alice, reader, default");

        for bad in ["user:carol", "user:", ""] {
            let err = check_role_name(bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidRule { .. }), "{err:?}");
        }
        let err = RoleAssignment::for_subject("alice", "user:carol", "default").expect_err("role");
        assert!(
            err.to_string().contains("may not start with \"user:\""),
            "{err}"
        );
        check_role_name("ticket-admin").expect("a role name");
        // `user:` as a role's first field is a direct subject grant, which stays possible.
        PolicyRule::new(
            "user:carol",
            "default",
            "tool:t/x",
            "call",
            RuleEffect::Allow,
        )
        .expect("direct grant");
        assert!(
            PolicyRule::new("user:", "default", "tool:t/x", "call", RuleEffect::Allow).is_err()
        );
    }

    #[test]
    fn glob_validation_matches_casbin() {
        // Everything accepted here must compile in Casbin without panicking, and everything
        // refused must be a pattern Casbin would panic on.
        for ok in [
            "tool:t/*",
            "resource:t/**",
            "prompt:t/{a,b}",
            "task:t/[abc]*",
            "tool:t/a**",
        ] {
            check_object_pattern(ok).expect(ok);
            assert!(!casbin::function_map::glob_match("tool:t/zzz", ok) || ok.contains('*'));
        }
        for bad in ["tool:t/[", "tool:t/{a", "tool:t/a\\"] {
            assert!(check_object_pattern(bad).is_err(), "{bad}");
            let caught = std::panic::catch_unwind(|| casbin::function_map::glob_match("x", bad));
            assert!(caught.is_err(), "casbin accepts {bad}");
        }
    }
}
