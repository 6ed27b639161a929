//! Argument conditions: the `when` expression of a rule, in CEL, over the call's arguments
//! (`args`) and the caller (`principal`).
//!
//! A rule with a condition applies only when its condition holds: an allow (or approve) rule
//! then allows, a deny rule denies. Whatever goes wrong while evaluating — an argument that is
//! missing or of another type, arguments too large to look at, a result that is not a boolean —
//! resolves to the restrictive side: an allow rule does not apply, a deny rule does. Nothing
//! about a condition can let a call through that its rules without the condition would refuse.
//!
//! Conditions are compiled when the policy loads ([`Condition::compile`]): the expression must
//! parse, name no variables but `args` and `principal` (and those its macros bind) and no
//! field of `principal` it lacks, call only the functions in [`FUNCTIONS`], nest no
//! comprehension (`all`, `exists`, `map`, `filter`) inside another, and type-check as far as
//! types are known without the call — literals, the principal's fields, what operators and
//! functions return (`size(principal.roles) > 'two'` or `1 + 2` as a whole condition are
//! refused; `args.amount <= 500` is checked when the call comes, as arguments have no schema in
//! the policy). With the input bounded too (at most [`MAX_INPUT_BYTES`] of the arguments a
//! condition names, [`MAX_DEPTH`] levels deep), an evaluation costs at most the expression's size
//! times the input's: no condition can spin.
//!
//! What a condition sees: `args` is the `tools/call` or `prompts/get` arguments object, or
//! `{"uri": …}` for a resource (`resources/read`, `subscribe`, `completion/complete` on a
//! resource); `principal` is `{subject, issuer, tenant, client_id, actors, roles, scopes,
//! claims}`, where `actors` is the `act` chain (outermost, current actor first) and `claims` the
//! token's other claims. Only the `args` fields the expression names are converted.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use authz_types::Principal;
use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use serde_json::Value as Json;

/// The longest condition accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1024;
/// How much of the arguments (string bytes, plus 8 per value) a condition may look at; more
/// makes the condition fail (restrictively).
pub const MAX_INPUT_BYTES: usize = 64 * 1024;
/// How deep the arguments (and claims) a condition looks at may nest.
pub const MAX_DEPTH: usize = 32;

/// The named functions a condition may call (CEL's standard ones, without regular expressions
/// or time); operators are always allowed.
pub const FUNCTIONS: &[&str] = &[
    "size",
    "startsWith",
    "endsWith",
    "contains",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
];

static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));

/// A compiled condition.
pub struct Condition {
    source: String,
    program: cel::Program,
    /// The top-level `args` fields the expression names, or `None` when it uses `args` as a
    /// whole (`size(args)`, `args[k]`, `'x' in args`).
    fields: Option<Vec<String>>,
    uses_args: bool,
    uses_principal: bool,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

/// How a condition came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    True,
    False,
    /// It could not be decided (the reason, for explain and the audit record); treated as the
    /// restrictive answer.
    Error(String),
}

impl Outcome {
    /// `true`, `false` or `error: …`.
    pub fn describe(&self) -> String {
        match self {
            Outcome::True => "true".to_owned(),
            Outcome::False => "false".to_owned(),
            Outcome::Error(e) => format!("error: {e}"),
        }
    }
}

/// What a condition is evaluated against.
#[derive(Debug, Clone, Copy)]
pub enum Arguments<'a> {
    /// The call's arguments (a JSON object; anything else is seen as no fields).
    Known(&'a Json),
    /// No call to look at (deciding whether a list shows an item): a condition that names
    /// `args` may or may not hold.
    Unknown,
}

impl Condition {
    /// Compiles and checks `source` (see the module documentation).
    pub fn compile(source: &str) -> Result<Condition, String> {
        let source = source.trim();
        if source.is_empty() {
            return Err("the condition is empty".to_owned());
        }
        if source.len() > MAX_SOURCE_BYTES {
            return Err(format!(
                "the condition is longer than {MAX_SOURCE_BYTES} bytes"
            ));
        }
        if source.chars().any(char::is_control) {
            return Err("the condition contains a control character (write it on one line)".into());
        }
        let program = ENV
            .compile(source)
            .map_err(|e| format!("the condition does not parse: {e}"))?;
        let mut check = Check::default();
        check.root(program.expression())?;
        Ok(Condition {
            source: source.to_owned(),
            program,
            fields: (!check.whole_args).then(|| {
                let mut f: Vec<String> = check.fields.into_iter().collect();
                f.sort();
                f
            }),
            uses_args: check.uses_args,
            uses_principal: check.uses_principal,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression looks at the call's arguments.
    pub fn uses_args(&self) -> bool {
        self.uses_args
    }

    /// Evaluates the condition; with [`Arguments::Unknown`] a condition that names `args` is
    /// `None` (undecidable without the call). The arguments and the principal are lent to the
    /// evaluator as they are (no copy of their strings).
    pub fn eval(&self, args: Arguments<'_>, principal: &Principal) -> Option<Outcome> {
        let args = match args {
            Arguments::Known(a) => Some(a),
            Arguments::Unknown if self.uses_args => return None,
            Arguments::Unknown => None,
        };
        let mut ctx = cel::Context::with_env(Arc::clone(&ENV));
        let mut budget = MAX_INPUT_BYTES;
        if self.uses_args {
            let value: Box<dyn Val + '_> = match (&self.fields, args) {
                (Some(fields), Some(Json::Object(obj))) => {
                    let mut map = HashMap::with_capacity(fields.len());
                    for f in fields {
                        if let Some((k, v)) = obj.get_key_value(f) {
                            let Some(v) = val(v, 1, &mut budget) else {
                                return Some(too_large());
                            };
                            map.insert(CelMapKey::from(k.as_str()), v);
                        }
                    }
                    Box::new(CelMap::from(map))
                }
                (Some(_), _) | (None, None) => Box::new(CelMap::from(HashMap::new())),
                (None, Some(whole)) => match val(whole, 0, &mut budget) {
                    Some(v) => v,
                    None => return Some(too_large()),
                },
            };
            ctx.add_variable_as_val("args", value);
        }
        if self.uses_principal {
            match principal_val(principal) {
                Some(p) => ctx.add_variable_as_val("principal", p),
                None => return Some(too_large()),
            }
        }
        // A panic in the evaluator (a third-party interpreter) is an undecided condition, not a
        // failed request: `decide` never panics.
        let executed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.program.execute(&ctx)));
        Some(match executed {
            Ok(Ok(cel::Value::Bool(true))) => Outcome::True,
            Ok(Ok(cel::Value::Bool(false))) => Outcome::False,
            Ok(Ok(other)) => Outcome::Error(format!("not a boolean: {:?}", other.type_of())),
            Ok(Err(e)) => Outcome::Error(e.to_string()),
            Err(_) => Outcome::Error("the evaluator panicked".to_owned()),
        })
    }

    /// The argument values the condition looked at, for explain: the fields it names (all of
    /// `args` when it uses them as a whole).
    pub fn seen(&self, args: &Json) -> Json {
        match (&self.fields, args) {
            (_, _) if !self.uses_args => Json::Object(serde_json::Map::new()),
            (Some(fields), Json::Object(obj)) => Json::Object(
                fields
                    .iter()
                    .filter_map(|f| obj.get(f).map(|v| (f.clone(), v.clone())))
                    .collect(),
            ),
            (Some(_), _) => Json::Object(serde_json::Map::new()),
            (None, whole) => whole.clone(),
        }
    }
}

fn too_large() -> Outcome {
    Outcome::Error(format!(
        "the arguments it names are larger than {MAX_INPUT_BYTES} bytes or deeper than {MAX_DEPTH}"
    ))
}

/// A JSON value as a CEL value borrowing its strings, within `budget` (bytes left) and
/// [`MAX_DEPTH`].
fn val<'v>(v: &'v Json, depth: usize, budget: &mut usize) -> Option<Box<dyn Val + 'v>> {
    if depth > MAX_DEPTH {
        return None;
    }
    *budget = budget.checked_sub(8)?;
    Some(match v {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Box::new(CelInt::from(i)),
            (None, Some(u), _) => Box::new(CelUInt::from(u)),
            (None, None, Some(f)) => Box::new(CelDouble::from(f)),
            _ => return None,
        },
        Json::String(s) => {
            *budget = budget.checked_sub(s.len())?;
            Box::new(CelString::from(s.as_str()))
        }
        Json::Array(items) => Box::new(CelList::from(
            items
                .iter()
                .map(|i| val(i, depth + 1, budget))
                .collect::<Option<Vec<_>>>()?,
        )),
        Json::Object(obj) => Box::new(CelMap::from(object(obj, depth, budget)?)),
    })
}

fn object<'v>(
    obj: &'v serde_json::Map<String, Json>,
    depth: usize,
    budget: &mut usize,
) -> Option<HashMap<CelMapKey<'v>, Box<dyn Val + 'v>>> {
    let mut map = HashMap::with_capacity(obj.len());
    for (k, v) in obj {
        *budget = budget.checked_sub(k.len())?;
        map.insert(CelMapKey::from(k.as_str()), val(v, depth + 1, budget)?);
    }
    Some(map)
}

/// `principal` as a condition sees it, borrowing its strings.
fn principal_val(p: &Principal) -> Option<Box<dyn Val + '_>> {
    fn s(v: &str) -> Box<dyn Val + '_> {
        Box::new(CelString::from(v))
    }
    fn list(items: &[String]) -> Box<dyn Val + '_> {
        Box::new(CelList::from(
            items.iter().map(|i| s(i)).collect::<Vec<_>>(),
        ))
    }
    let mut budget = MAX_INPUT_BYTES;
    let claims = object(&p.claims, 1, &mut budget)?;
    let mut map: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = HashMap::with_capacity(8);
    map.insert(CelMapKey::from("subject"), s(&p.subject));
    map.insert(CelMapKey::from("issuer"), s(&p.issuer));
    map.insert(CelMapKey::from("tenant"), s(p.tenant_or_default()));
    let client: Box<dyn Val> = match &p.client_id {
        Some(c) => s(c),
        None => Box::new(CelNull),
    };
    map.insert(CelMapKey::from("client_id"), client);
    map.insert(CelMapKey::from("actors"), list(&p.actors));
    map.insert(CelMapKey::from("roles"), list(&p.roles));
    map.insert(CelMapKey::from("scopes"), list(&p.scopes));
    map.insert(CelMapKey::from("claims"), Box::new(CelMap::from(claims)));
    Some(Box::new(CelMap::from(map)))
}

/// What the load-time check knows of a value's type: `Dyn` for whatever depends on the call
/// (arguments, claims) or on what a macro binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bool,
    Int,
    UInt,
    Double,
    String,
    List,
    Map,
    Null,
    Dyn,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Bool => "a boolean",
            Ty::Int => "an int",
            Ty::UInt => "a uint",
            Ty::Double => "a double",
            Ty::String => "a string",
            Ty::List => "a list",
            Ty::Map => "a map",
            Ty::Null => "null",
            Ty::Dyn => "a value",
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::UInt | Ty::Double)
    }

    /// Whether a value of this type could be `want` (a `Dyn` could be anything).
    fn can_be(self, want: &[Ty]) -> bool {
        self == Ty::Dyn || want.contains(&self)
    }
}

/// The type of `principal.<field>`.
fn principal_field(field: &str) -> Result<Ty, String> {
    Ok(match field {
        "subject" | "issuer" | "tenant" => Ty::String,
        "client_id" => Ty::Dyn,
        "actors" | "roles" | "scopes" => Ty::List,
        "claims" => Ty::Map,
        other => {
            return Err(format!(
                "principal has no field `{other}` (subject, issuer, tenant, client_id, actors, \
                 roles, scopes, claims)"
            ));
        }
    })
}

/// The load-time checks over a parsed expression: names, functions, nesting, and the types
/// that can be known without the call (literals, the principal's fields, what operators and
/// functions return). The whole expression must be able to be a boolean.
#[derive(Default)]
struct Check {
    fields: std::collections::BTreeSet<String>,
    whole_args: bool,
    uses_args: bool,
    uses_principal: bool,
}

impl Check {
    fn root(&mut self, e: &IdedExpr) -> Result<(), String> {
        let ty = self.walk(e, &mut vec![], 0)?;
        if ty.can_be(&[Ty::Bool]) {
            Ok(())
        } else {
            Err(format!("the condition is {}, not a boolean", ty.name()))
        }
    }

    /// Walks `e` with `bound` the names macros bind here and `loops` comprehensions around it;
    /// returns its type as far as it is known.
    fn walk(&mut self, e: &IdedExpr, bound: &mut Vec<String>, loops: usize) -> Result<Ty, String> {
        match &e.expr {
            Expr::Ident(name) => self.ident(name, bound),
            Expr::Select(sel) => {
                if let Expr::Ident(name) = &sel.operand.expr
                    && !bound.iter().any(|b| b == name)
                {
                    if name == "args" {
                        self.uses_args = true;
                        self.fields.insert(sel.field.clone());
                        return Ok(if sel.test { Ty::Bool } else { Ty::Dyn });
                    }
                    if name == "principal" {
                        self.uses_principal = true;
                        let ty = principal_field(&sel.field)?;
                        return Ok(if sel.test { Ty::Bool } else { ty });
                    }
                }
                let operand = self.walk(&sel.operand, bound, loops)?;
                if !operand.can_be(&[Ty::Map]) {
                    return Err(format!("`.{}` on {}", sel.field, operand.name()));
                }
                Ok(if sel.test { Ty::Bool } else { Ty::Dyn })
            }
            Expr::Call(call) => self.call(call, bound, loops),
            Expr::Comprehension(c) => {
                if loops >= 1 {
                    return Err(
                        "a comprehension (all, exists, map, filter) inside another is not allowed"
                            .to_owned(),
                    );
                }
                let range = self.walk(&c.iter_range, bound, loops)?;
                if !range.can_be(&[Ty::List, Ty::Map]) {
                    return Err(format!("a comprehension over {}", range.name()));
                }
                self.walk(&c.accu_init, bound, loops)?;
                let before = bound.len();
                bound.push(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    bound.push(v.clone());
                }
                bound.push(c.accu_var.clone());
                self.walk(&c.loop_cond, bound, loops + 1)?;
                self.walk(&c.loop_step, bound, loops + 1)?;
                let result = self.walk(&c.result, bound, loops + 1)?;
                bound.truncate(before);
                Ok(result)
            }
            Expr::List(list) => {
                for i in &list.elements {
                    self.walk(i, bound, loops)?;
                }
                Ok(Ty::List)
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(m) => {
                            self.walk(&m.key, bound, loops)?;
                            self.walk(&m.value, bound, loops)?;
                        }
                        EntryExpr::StructField(_) => {
                            return Err("struct literals are not allowed".to_owned());
                        }
                    }
                }
                Ok(Ty::Map)
            }
            Expr::Literal(lit) => Ok(match lit {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::UInt(_) => Ty::UInt,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::Null => Ty::Null,
                LiteralValue::Bytes(_) => Ty::Dyn,
            }),
            Expr::Struct(_) => Err("struct literals are not allowed".to_owned()),
            Expr::Unspecified => Err("the condition is incomplete".to_owned()),
        }
    }

    fn call(
        &mut self,
        call: &cel::common::ast::CallExpr,
        bound: &mut Vec<String>,
        loops: usize,
    ) -> Result<Ty, String> {
        let name = call.func_name.as_str();
        let operator =
            name.starts_with('_') || name.starts_with('@') || name == "!_" || name == "-_";
        if !operator && !FUNCTIONS.contains(&name) {
            return Err(format!(
                "unknown function `{name}` (allowed: {})",
                FUNCTIONS.join(", ")
            ));
        }
        let target = match &call.target {
            Some(t) => Some(self.walk(t, bound, loops)?),
            None => None,
        };
        let mut args = Vec::with_capacity(call.args.len());
        for a in &call.args {
            args.push(self.walk(a, bound, loops)?);
        }
        let wrong =
            |what: &str, ty: Ty| Err(format!("`{}` {what}, not {}", shown(name), ty.name()));
        const NUMBERS: &[Ty] = &[Ty::Int, Ty::UInt, Ty::Double];
        match (name, target, args.as_slice()) {
            ("_&&_" | "_||_", None, [a, b]) => {
                for t in [*a, *b] {
                    if !t.can_be(&[Ty::Bool]) {
                        return wrong("needs booleans", t);
                    }
                }
                Ok(Ty::Bool)
            }
            ("!_", None, [a]) if !a.can_be(&[Ty::Bool]) => wrong("needs a boolean", *a),
            ("!_" | "@not_strictly_false", None, _) => Ok(Ty::Bool),
            ("_==_" | "_!=_", None, [a, b]) => {
                let comparable = *a == Ty::Dyn
                    || *b == Ty::Dyn
                    || a == b
                    || (a.numeric() && b.numeric())
                    || *a == Ty::Null
                    || *b == Ty::Null;
                if comparable {
                    Ok(Ty::Bool)
                } else {
                    Err(format!("comparing {} with {}", a.name(), b.name()))
                }
            }
            ("_<_" | "_<=_" | "_>_" | "_>=_", None, [a, b]) => {
                let ok = *a == Ty::Dyn
                    || *b == Ty::Dyn
                    || (a.numeric() && b.numeric())
                    || (a == b && matches!(a, Ty::String | Ty::Bool));
                if ok {
                    Ok(Ty::Bool)
                } else {
                    Err(format!("ordering {} against {}", a.name(), b.name()))
                }
            }
            ("_+_", None, [a, b]) => match (*a, *b) {
                (Ty::Dyn, t) | (t, Ty::Dyn)
                    if t.can_be(&[Ty::Int, Ty::UInt, Ty::Double, Ty::String, Ty::List]) =>
                {
                    Ok(Ty::Dyn)
                }
                (x, y)
                    if x == y
                        && matches!(x, Ty::String | Ty::List | Ty::Int | Ty::UInt | Ty::Double) =>
                {
                    Ok(x)
                }
                (x, y) => Err(format!("adding {} and {}", x.name(), y.name())),
            },
            ("_-_" | "_*_" | "_/_" | "_%_", None, [a, b]) => {
                for t in [*a, *b] {
                    if !t.can_be(NUMBERS) {
                        return wrong("needs numbers", t);
                    }
                }
                Ok(if a == b { *a } else { Ty::Dyn })
            }
            ("-_", None, [a]) if a.can_be(NUMBERS) => Ok(*a),
            ("-_", None, [a]) => wrong("needs a number", *a),
            ("@in", None, [_, b]) if b.can_be(&[Ty::List, Ty::Map]) => Ok(Ty::Bool),
            ("@in", None, [_, b]) => Err(format!("`in` needs a list or a map, not {}", b.name())),
            ("_[_]" | "_[?_]", None, [a, _]) if a.can_be(&[Ty::List, Ty::Map]) => Ok(Ty::Dyn),
            ("_[_]" | "_[?_]", None, [a, _]) => Err(format!("indexing {}", a.name())),
            ("_?_:_", None, [c, _, _]) if !c.can_be(&[Ty::Bool]) => {
                Err(format!("a condition that is {}", c.name()))
            }
            ("_?_:_", None, [_, a, b]) => Ok(if a == b { *a } else { Ty::Dyn }),
            ("size", None, [a]) if !a.can_be(&[Ty::String, Ty::List, Ty::Map]) => {
                wrong("needs a string, list or map", *a)
            }
            ("size", Some(a), []) if !a.can_be(&[Ty::String, Ty::List, Ty::Map]) => {
                wrong("needs a string, list or map", a)
            }
            ("size", _, _) => Ok(Ty::Int),
            ("startsWith" | "endsWith" | "contains", Some(t), [a]) => {
                for ty in [t, *a] {
                    if !ty.can_be(&[Ty::String]) {
                        return wrong("needs strings", ty);
                    }
                }
                Ok(Ty::Bool)
            }
            ("int", None, [_]) => Ok(Ty::Int),
            ("uint", None, [_]) => Ok(Ty::UInt),
            ("double", None, [_]) => Ok(Ty::Double),
            ("string", None, [_]) => Ok(Ty::String),
            ("bool", None, [_]) => Ok(Ty::Bool),
            _ => Ok(Ty::Dyn),
        }
    }

    fn ident(&mut self, name: &str, bound: &[String]) -> Result<Ty, String> {
        if bound.iter().any(|b| b == name) {
            return Ok(Ty::Dyn);
        }
        match name {
            "args" => {
                self.uses_args = true;
                self.whole_args = true;
                Ok(Ty::Map)
            }
            "principal" => {
                self.uses_principal = true;
                Ok(Ty::Map)
            }
            // Type names CEL resolves as identifiers.
            "int" | "uint" | "double" | "string" | "bool" | "list" | "map" | "null_type" => {
                Ok(Ty::Dyn)
            }
            other => Err(format!(
                "unknown variable `{other}` (a condition sees `args` and `principal`)"
            )),
        }
    }
}

/// An operator's name as written (`_<=_` is `<=`).
fn shown(name: &str) -> &str {
    match name {
        "_&&_" => "&&",
        "_||_" => "||",
        "!_" => "!",
        "-_" | "_-_" => "-",
        "_*_" => "*",
        "_/_" => "/",
        "_%_" => "%",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn principal() -> Principal {
        let mut claims = serde_json::Map::new();
        claims.insert("projects".into(), json!(["alpha", "beta"]));
        Principal {
            subject: "alice".into(),
            issuer: "https://idp".into(),
            tenant: Some("acme".into()),
            client_id: Some("billing-agent".into()),
            actors: vec!["billing-agent".into()],
            scopes: vec![],
            roles: vec!["support".into()],
            token_id: None,
            expires_at: 0,
            issued_at: None,
            claims: Arc::new(claims),
        }
    }

    fn eval(src: &str, args: Json) -> Outcome {
        Condition::compile(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .eval(Arguments::Known(&args), &principal())
            .expect("decidable")
    }

    #[test]
    fn conditions_see_the_arguments_and_the_principal() {
        assert_eq!(
            eval("args.amount <= 500", json!({"amount": 500})),
            Outcome::True
        );
        assert_eq!(
            eval("args.amount <= 500", json!({"amount": 501})),
            Outcome::False
        );
        assert_eq!(
            eval(
                "args.project in principal.claims.projects",
                json!({"project": "beta"})
            ),
            Outcome::True
        );
        assert_eq!(
            eval(
                "args.ticket_id.startsWith(principal.tenant + '-')",
                json!({"ticket_id": "acme-7"})
            ),
            Outcome::True
        );
        assert_eq!(
            eval(
                "'support' in principal.roles && size(principal.actors) <= 1",
                json!({})
            ),
            Outcome::True
        );
        assert_eq!(
            eval(
                "args.items.all(i, i.qty < 10)",
                json!({"items": [{"qty": 1}, {"qty": 9}]})
            ),
            Outcome::True
        );
    }

    #[test]
    fn hostile_or_odd_arguments_never_make_a_condition_true() {
        for args in [
            json!({}),
            json!({"amount": "250"}),
            json!({"amount": null}),
            json!({"amount": [1]}),
            json!({"amount": {"lt": 1}}),
            json!("not an object"),
        ] {
            assert!(
                matches!(eval("args.amount <= 500", args.clone()), Outcome::Error(_)),
                "{args}"
            );
        }
        // Huge numbers stay numbers: beyond i64 they are floats, still compared.
        assert_ne!(
            eval("args.amount <= 500", json!({"amount": 1e300})),
            Outcome::True
        );
        assert_ne!(
            eval(
                "args.amount <= 500",
                json!({"amount": 18446744073709551615u64})
            ),
            Outcome::True
        );
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!({"a": deep});
        }
        assert!(matches!(
            eval("has(args.a)", json!({"a": deep})),
            Outcome::Error(_)
        ));
        let big = "x".repeat(MAX_INPUT_BYTES + 1);
        assert!(matches!(
            eval("size(args.note) > 0", json!({"note": big})),
            Outcome::Error(_)
        ));
        // Fields the condition does not name are not converted (nor counted).
        assert_eq!(
            eval("args.amount <= 500", json!({"amount": 1, "blob": big})),
            Outcome::True
        );
        // Look-alikes and traversal are just other strings.
        let under = "args.path.startsWith('/srv/shared/') && !args.path.contains('..')";
        assert_eq!(
            eval(under, json!({"path": "/srv/shared/a.txt"})),
            Outcome::True
        );
        assert_eq!(
            eval(under, json!({"path": "/srv/shared/../etc/passwd"})),
            Outcome::False
        );
        assert_eq!(
            eval(under, json!({"path": "/srv/ѕhared/a.txt"})),
            Outcome::False
        );
        assert!(matches!(
            eval("args.amount", json!({"amount": 1})),
            Outcome::Error(_)
        ));
        // Arithmetic at the edges is an error, never a panic or a wrapped value.
        let max = i64::MAX;
        for src in [
            "args.a * args.b > 0",
            "args.a + args.b > 0",
            "-args.m < 0",
            "args.a / args.z > 0",
            "args.a % args.z > 0",
            "size(args.s) > 0 && args.s[5] == 'x'",
        ] {
            let args = json!({"a": max, "b": max, "m": i64::MIN, "z": 0, "s": "abc"});
            assert_ne!(eval(src, args), Outcome::True, "{src}");
        }
    }

    #[test]
    fn what_cannot_be_checked_at_load_is_refused() {
        for bad in [
            "",
            "args.amount <=",
            "amount <= 500",
            "args.path.matches('^/srv')",
            "args.a.all(x, args.b.all(y, x == y))",
            "google.protobuf.Any{}",
            "args.amount <= 500\n|| true",
            // Types that are known at load.
            "1 + 2",
            "principal.tenant + 1 == 'x'",
            "size(principal.roles) > 'two'",
            "principal.subject.startsWith(5)",
            "principal.nickname == 'x'",
            "'a' in 'abc'",
            "args.amount <= 500 && 'yes'",
            "principal.roles < 3",
        ] {
            assert!(Condition::compile(bad).is_err(), "{bad:?}");
        }
        assert!(Condition::compile(&"a".repeat(MAX_SOURCE_BYTES + 1)).is_err());
    }

    #[test]
    fn a_condition_on_arguments_is_undecidable_without_the_call() {
        let p = principal();
        let c = Condition::compile("args.amount <= 500").expect("compiles");
        assert_eq!(c.eval(Arguments::Unknown, &p), None);
        let c = Condition::compile("'support' in principal.roles").expect("compiles");
        assert_eq!(c.eval(Arguments::Unknown, &p), Some(Outcome::True));
    }
}
