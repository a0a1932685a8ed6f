//! Compiling audiences to one SQL query per dialect.
//!
//! Shapes, chosen so that Postgres plans them as hash semi- and anti-joins:
//! - a property test is a predicate on the row;
//! - "has related rows" is `EXISTS (SELECT 1 FROM related WHERE join AND filter)`;
//! - a count or aggregate is an `EXISTS` over the related rows grouped by the join key with a
//!   `HAVING`; when a count of zero passes, it is a `NOT EXISTS` over the groups that fail, so
//!   parents with no related rows are members;
//! - "did X then did not do Y within T" is `EXISTS (X … AND NOT EXISTS (Y after X, within T))`;
//! - membership of another audience inlines that audience's condition.
//!
//! Every identifier is quoted and every constant rendered by the dialect, never pasted.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use sluice_core::ModelQuery;

use crate::ast::*;
use crate::dialect::{like_escape, Dialect};
use crate::SqlError;

/// The models audiences are built on, and how they join.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub models: BTreeMap<String, ModelSchema>,
}

/// One model as the compiler sees it.
#[derive(Debug, Clone)]
pub struct ModelSchema {
    pub query: ModelQuery,
    pub primary_key: String,
    /// The event time column, for event models.
    pub timestamp: Option<String>,
    /// Related models by relation name.
    pub relations: BTreeMap<String, Relation>,
}

/// A declared join from one model to another.
#[derive(Debug, Clone)]
pub struct Relation {
    pub model: String,
    /// (column of this model, column of the related model) pairs, all equal.
    pub on: Vec<(String, String)>,
}

/// A column the compiled SQL reads, for `sluice validate` to check against the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRef {
    pub model: String,
    pub column: String,
    /// Key path inside the audience entry.
    pub path: String,
}

/// Named groups of an audience (split groups or priority-list members) and their column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Groups {
    pub column: String,
    pub names: Vec<String>,
}

/// An audience compiled for one dialect.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub sql: String,
    pub references: Vec<ColumnRef>,
    pub groups: Option<Groups>,
}

/// Compiles audiences against a schema, as of a moment (`within_last` windows end at `now`).
pub struct Compiler<'a> {
    schema: &'a Schema,
    audiences: &'a BTreeMap<String, Audience>,
    dialect: Dialect,
    now: NaiveDateTime,
    aliases: Cell<usize>,
    references: RefCell<Vec<ColumnRef>>,
    inlining: RefCell<Vec<String>>,
}

impl<'a> Compiler<'a> {
    pub fn new(
        schema: &'a Schema,
        audiences: &'a BTreeMap<String, Audience>,
        dialect: Dialect,
        now: NaiveDateTime,
    ) -> Compiler<'a> {
        Compiler {
            schema,
            audiences,
            dialect,
            now,
            aliases: Cell::new(0),
            references: RefCell::new(Vec::new()),
            inlining: RefCell::new(Vec::new()),
        }
    }

    /// The query returning the audience's members: every column of the parent model, plus the
    /// split or priority column when the audience has one.
    pub fn compile(&self, name: &str) -> Result<Compiled, SqlError> {
        self.reset();
        let audience = self.audience(name, "")?;
        let parent = self.model(&audience.parent, "parent")?;
        let d = self.dialect;
        let alias = self.alias("p");
        let from = format!("{} AS {}", self.from(parent), d.ident(&alias));
        self.reference(&audience.parent, &parent.primary_key, "parent");
        let (sql, groups) = match &audience.body {
            AudienceBody::Conditions { condition, splits } => {
                let filter = self.membership_of(audience, &alias, false)?;
                let mut select = format!("SELECT {}.*", d.ident(&alias));
                let mut groups = None;
                if let Some(splits) = splits {
                    let key = format!("{}.{}", d.ident(&alias), d.ident(&parent.primary_key));
                    select.push_str(&format!(", {} AS {}", self.split_case(splits, &key), d.ident(&splits.column)));
                    groups = Some(Groups {
                        column: splits.column.clone(),
                        names: splits.groups.iter().map(|(n, _)| n.clone()).collect(),
                    });
                }
                let sql = match condition {
                    None => format!("{select} FROM {from}"),
                    Some(_) => format!("{select} FROM {from} WHERE {filter}"),
                };
                (sql, groups)
            }
            AudienceBody::Priority { audiences, column } => {
                let mut case = String::from("CASE");
                for (i, member) in audiences.iter().enumerate() {
                    let path = format!("priority[{i}]");
                    let other = self.audience(member, &path)?;
                    self.same_parent(audience, other, &path)?;
                    if matches!(other.body, AudienceBody::Priority { .. }) {
                        return Err(SqlError::at(
                            path,
                            format!("`{member}` is itself a priority list; list plain audiences"),
                        ));
                    }
                    let condition = self.membership_of(other, &alias, false)?;
                    case.push_str(&format!(" WHEN {condition} THEN {}", d.string(member)));
                }
                case.push_str(" END");
                let sql = format!(
                    "SELECT * FROM (SELECT {}.*, {case} AS {} FROM {from}) AS {} WHERE {} IS NOT NULL",
                    d.ident(&alias),
                    d.ident(column),
                    d.ident("prioritised"),
                    d.ident(column)
                );
                (sql, Some(Groups { column: column.clone(), names: audiences.clone() }))
            }
        };
        Ok(Compiled { sql, references: self.references.take(), groups })
    }

    /// The members of one split group or priority-list entry.
    pub fn compile_group(&self, name: &str, group: &str) -> Result<Compiled, SqlError> {
        let mut compiled = self.compile(name)?;
        let Some(groups) = &compiled.groups else {
            return Err(SqlError::at(
                "",
                format!("audience `{name}` has no split groups or priority list, so there is no group `{group}`"),
            ));
        };
        if !groups.names.iter().any(|n| n == group) {
            return Err(SqlError::at(
                "",
                format!("audience `{name}` has no group `{group}`: it has {}", groups.names.join(", ")),
            ));
        }
        let d = self.dialect;
        compiled.sql = format!(
            "SELECT * FROM ({}) AS {} WHERE {} = {}",
            compiled.sql,
            d.ident("grouped"),
            d.ident(&groups.column),
            d.string(group)
        );
        Ok(compiled)
    }

    /// One row: how many parent rows there are, how many are in `a`, in `b`, and in both.
    pub fn overlap(&self, a: &str, b: &str) -> Result<String, SqlError> {
        self.reset();
        let first = self.audience(a, "")?;
        let second = self.audience(b, "")?;
        self.same_parent(first, second, "")?;
        let parent = self.model(&first.parent, "parent")?;
        let alias = self.alias("p");
        let d = self.dialect;
        let in_a = self.membership_of(first, &alias, false)?;
        let in_b = self.membership_of(second, &alias, false)?;
        Ok(format!(
            "SELECT COUNT(*) AS {}, SUM(CASE WHEN {in_a} THEN 1 ELSE 0 END) AS {}, SUM(CASE WHEN {in_b} THEN 1 ELSE 0 END) AS {}, \
             SUM(CASE WHEN ({in_a}) AND ({in_b}) THEN 1 ELSE 0 END) AS {} FROM {} AS {}",
            d.ident("parent_rows"),
            d.ident("in_a"),
            d.ident("in_b"),
            d.ident("in_both"),
            self.from(parent),
            d.ident(&alias)
        ))
    }

    fn reset(&self) {
        self.aliases.set(0);
        self.references.borrow_mut().clear();
        self.inlining.borrow_mut().clear();
    }

    fn audience(&self, name: &str, path: &str) -> Result<&'a Audience, SqlError> {
        self.audiences.get(name).ok_or_else(|| {
            SqlError::at(path, format!("no audience named `{name}`{}", suggest(name, self.audiences.keys())))
        })
    }

    fn model(&self, name: &str, path: &str) -> Result<&'a ModelSchema, SqlError> {
        self.schema.models.get(name).ok_or_else(|| {
            SqlError::at(path, format!("no model named `{name}`{}", suggest(name, self.schema.models.keys())))
        })
    }

    fn same_parent(&self, a: &Audience, b: &Audience, path: &str) -> Result<(), SqlError> {
        if a.parent == b.parent {
            return Ok(());
        }
        Err(SqlError::at(
            path,
            format!(
                "audience `{}` selects from `{}` but `{}` selects from `{}`: both must have the same parent model",
                a.name, a.parent, b.name, b.parent
            ),
        ))
    }

    /// Runs `f` while `name` is being inlined, refusing cycles.
    fn inline<T>(&self, name: &str, path: &str, f: impl FnOnce(&Self) -> Result<T, SqlError>) -> Result<T, SqlError> {
        if self.inlining.borrow().iter().any(|n| n == name) {
            let mut chain = self.inlining.borrow().clone();
            chain.push(name.to_string());
            return Err(SqlError::at(path, format!("audiences refer to each other in a cycle: {}", chain.join(" → "))));
        }
        self.inlining.borrow_mut().push(name.to_string());
        let result = f(self);
        self.inlining.borrow_mut().pop();
        result
    }

    /// The boolean expression "the row `alias` of the parent is a member of `audience`".
    fn membership_of(&self, audience: &Audience, alias: &str, negated: bool) -> Result<String, SqlError> {
        match &audience.body {
            AudienceBody::Conditions { condition: None, .. } => Ok("TRUE".into()),
            AudienceBody::Conditions { condition: Some(condition), .. } => self
                .inline(&audience.name, "", |c| c.condition(condition, &audience.parent, alias, negated, "conditions")),
            AudienceBody::Priority { audiences, .. } => {
                let mut parts = Vec::new();
                for (i, member) in audiences.iter().enumerate() {
                    let path = format!("priority[{i}]");
                    let other = self.audience(member, &path)?;
                    parts.push(self.inline(&audience.name, &path, |c| c.membership_of(other, alias, negated))?);
                }
                Ok(format!("({})", parts.join(" OR ")))
            }
        }
    }

    /// A condition on the row `alias` of `model`. `negated` is true under an odd number of
    /// `not`s, where a test on a null must be false rather than unknown so that `not` means
    /// "everyone else".
    fn condition(
        &self,
        condition: &Condition,
        model: &str,
        alias: &str,
        negated: bool,
        path: &str,
    ) -> Result<String, SqlError> {
        match condition {
            Condition::And(items) | Condition::Or(items) => {
                let (word, key) =
                    if matches!(condition, Condition::And(_)) { (" AND ", "and") } else { (" OR ", "or") };
                let parts = items
                    .iter()
                    .enumerate()
                    .map(|(i, c)| self.condition(c, model, alias, negated, &format!("{path}.{key}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(format!("({})", parts.join(word)))
            }
            Condition::Not(inner) => {
                Ok(format!("NOT ({})", self.condition(inner, model, alias, !negated, &format!("{path}.not"))?))
            }
            Condition::Property { column, test } => {
                self.reference(model, column, &format!("{path}.property"));
                let expr = format!("{}.{}", self.dialect.ident(alias), self.dialect.ident(column));
                Ok(self.test(&expr, test, negated))
            }
            Condition::MemberOf { audience, member } => {
                let at = format!("{path}.{}", if *member { "member_of" } else { "not_member_of" });
                let other = self.audience(audience, &at)?;
                if other.parent != model {
                    return Err(SqlError::at(
                        at,
                        format!("audience `{audience}` selects from `{}`, not from `{model}`", other.parent),
                    ));
                }
                let inner = self.membership_of(other, alias, negated == *member)?;
                Ok(if *member { inner } else { format!("NOT ({inner})") })
            }
            Condition::Related(related) => self.related(related, model, alias, path),
        }
    }

    fn related(&self, related: &RelatedCondition, model: &str, outer: &str, path: &str) -> Result<String, SqlError> {
        let d = self.dialect;
        let (relation, target) = self.relation(model, &related.relation, path)?;
        let alias = self.alias("r");
        let a = d.ident(&alias);
        let mut filters = Vec::new();
        if let Some(filter) = &related.filter {
            filters.push(self.condition(filter, &relation.model, &alias, false, &format!("{path}.where"))?);
        }
        if !related.window.is_empty() {
            let ts = self.timestamp_of(&relation.model, target, &related.relation, path)?;
            for test in &related.window {
                filters.push(self.test(&format!("{a}.{}", d.ident(ts)), test, false));
            }
        }
        if let Some(sequence) = &related.then {
            filters.push(self.sequence(sequence, model, outer, relation, target, &alias, path)?);
        }
        let joins: Vec<String> = relation
            .on
            .iter()
            .map(|(mine, theirs)| format!("{a}.{} = {}.{}", d.ident(theirs), d.ident(outer), d.ident(mine)))
            .collect();
        let from = format!("{} AS {a}", self.from(target));
        let having = match &related.measure {
            Measure::Exists(exists) => {
                let mut all = joins;
                all.extend(filters);
                let query = format!("EXISTS (SELECT 1 FROM {from} WHERE {})", all.join(" AND "));
                return Ok(if *exists { query } else { format!("NOT {query}") });
            }
            Measure::Count(comparison) => (String::from("COUNT(*)"), comparison),
            Measure::Aggregate { function, column, comparison } => {
                let key = match function {
                    Aggregate::Sum => "sum",
                    Aggregate::Avg => "avg",
                    Aggregate::Min => "min",
                    Aggregate::Max => "max",
                };
                self.reference(&relation.model, column, &format!("{path}.{key}.column"));
                (format!("{}({a}.{})", function.sql(), d.ident(column)), comparison)
            }
        };
        let (aggregate, comparison) = having;
        let count_accepts_zero = matches!(related.measure, Measure::Count(_)) && comparison.accepts_zero();
        let test = self.comparison(&aggregate, comparison);
        let keys: Vec<String> = relation.on.iter().map(|(_, theirs)| format!("{a}.{}", d.ident(theirs))).collect();
        let group = self.alias("g");
        let g = d.ident(&group);
        let select_keys: Vec<String> =
            keys.iter().enumerate().map(|(i, k)| format!("{k} AS {}", d.ident(&format!("k{i}")))).collect();
        let matches: Vec<String> = relation
            .on
            .iter()
            .enumerate()
            .map(|(i, (mine, _))| format!("{g}.{} = {}.{}", d.ident(&format!("k{i}")), d.ident(outer), d.ident(mine)))
            .collect();
        let where_clause = if filters.is_empty() { String::new() } else { format!(" WHERE {}", filters.join(" AND ")) };
        let having = if count_accepts_zero { format!("NOT ({test})") } else { test };
        let grouped = format!(
            "SELECT {} FROM {from}{where_clause} GROUP BY {} HAVING {having}",
            select_keys.join(", "),
            keys.join(", ")
        );
        let query = format!("EXISTS (SELECT 1 FROM ({grouped}) AS {g} WHERE {})", matches.join(" AND "));
        Ok(if count_accepts_zero { format!("NOT {query}") } else { query })
    }

    /// "…and then did (not) do `sequence.relation` after this event, within `sequence.within`".
    #[allow(clippy::too_many_arguments)]
    fn sequence(
        &self,
        sequence: &Sequence,
        model: &str,
        outer: &str,
        first: &Relation,
        first_target: &ModelSchema,
        first_alias: &str,
        path: &str,
    ) -> Result<String, SqlError> {
        let d = self.dialect;
        let at = format!("{path}.{}", if sequence.did { "then" } else { "then_not" });
        let first_ts = self.timestamp_of(&first.model, first_target, "the first event", path)?;
        let (relation, target) = self.relation(model, &sequence.relation, &format!("{at}.event"))?;
        let ts = self.timestamp_of(&relation.model, target, &sequence.relation, &at)?;
        let alias = self.alias("s");
        let a = d.ident(&alias);
        let mut parts: Vec<String> = relation
            .on
            .iter()
            .map(|(mine, theirs)| {
                // Join through the first event's key when it carries the same parent column, so
                // the inner query depends on the first event only and plans as an anti-join.
                let outer_value = match first.on.iter().find(|(m, _)| m == mine) {
                    Some((_, first_column)) => format!("{}.{}", d.ident(first_alias), d.ident(first_column)),
                    None => format!("{}.{}", d.ident(outer), d.ident(mine)),
                };
                format!("{a}.{} = {outer_value}", d.ident(theirs))
            })
            .collect();
        let second_time = d.timestamp(&format!("{a}.{}", d.ident(ts)));
        let first_time_expr = format!("{}.{}", d.ident(first_alias), d.ident(first_ts));
        parts.push(format!("{second_time} > {}", d.timestamp(&first_time_expr)));
        if let Some(within) = sequence.within {
            parts.push(format!("{second_time} <= {}", d.timestamp_plus(&first_time_expr, within.0)));
        }
        if let Some(filter) = &sequence.filter {
            parts.push(self.condition(filter, &relation.model, &alias, false, &format!("{at}.where"))?);
        }
        let query = format!("EXISTS (SELECT 1 FROM {} AS {a} WHERE {})", self.from(target), parts.join(" AND "));
        Ok(if sequence.did { query } else { format!("NOT {query}") })
    }

    fn relation(&self, model: &str, name: &str, path: &str) -> Result<(&'a Relation, &'a ModelSchema), SqlError> {
        let schema = self.model(model, path)?;
        let relation = schema.relations.get(name).ok_or_else(|| {
            let known = if schema.relations.is_empty() {
                format!(": declare it under `models.{model}.relations`")
            } else {
                format!(
                    "{}; its relations are {}",
                    suggest(name, schema.relations.keys()),
                    schema.relations.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                )
            };
            SqlError::at(path, format!("model `{model}` has no relation named `{name}`{known}"))
        })?;
        let target = self.model(&relation.model, path)?;
        for (mine, theirs) in &relation.on {
            self.reference(model, mine, &format!("models.{model}.relations.{name}.join"));
            self.reference(&relation.model, theirs, &format!("models.{model}.relations.{name}.join"));
        }
        Ok((relation, target))
    }

    fn timestamp_of(&self, model: &str, schema: &'a ModelSchema, what: &str, path: &str) -> Result<&'a str, SqlError> {
        match &schema.timestamp {
            Some(ts) => {
                self.reference(model, ts, &format!("models.{model}.timestamp"));
                Ok(ts)
            }
            None => Err(SqlError::at(
                path,
                format!("{what} needs event times, but model `{model}` has no `timestamp:` column declared"),
            )),
        }
    }

    /// A test on a column expression. Under negation, tests that are unknown on null are made
    /// false on null.
    fn test(&self, expr: &str, test: &Test, negated: bool) -> String {
        let d = self.dialect;
        let guard = |predicate: String| {
            if negated {
                format!("({expr} IS NOT NULL AND {predicate})")
            } else {
                predicate
            }
        };
        let list = |values: &[Literal]| values.iter().map(|v| d.literal(v)).collect::<Vec<_>>().join(", ");
        match test {
            Test::Equals(value) => guard(format!("{expr} = {}", d.literal(value))),
            Test::NotEquals(value) => format!("({expr} IS NULL OR {expr} <> {})", d.literal(value)),
            Test::In(values) => guard(format!("{expr} IN ({})", list(values))),
            Test::NotIn(values) => format!("({expr} IS NULL OR {expr} NOT IN ({}))", list(values)),
            Test::Compare(op, value) => guard(format!("{expr} {} {}", op.sql(), d.literal(value))),
            Test::Between(low, high) => guard(format!("{expr} BETWEEN {} AND {}", d.literal(low), d.literal(high))),
            Test::Contains(text) => guard(d.like_insensitive(expr, &d.string(&format!("%{}%", like_escape(text))))),
            Test::StartsWith(text) => guard(d.like_insensitive(expr, &d.string(&format!("{}%", like_escape(text))))),
            Test::IsNull => format!("{expr} IS NULL"),
            Test::IsNotNull => format!("{expr} IS NOT NULL"),
            Test::WithinLast(duration) => {
                let since = self.now - chrono::Duration::seconds(duration.0 as i64);
                let time = d.timestamp(expr);
                guard(format!("{time} >= {} AND {time} <= {}", d.instant(Instant(since)), d.instant(Instant(self.now))))
            }
            Test::Before(instant) => guard(format!("{} < {}", d.timestamp(expr), d.instant(*instant))),
            Test::After(instant) => guard(format!("{} > {}", d.timestamp(expr), d.instant(*instant))),
        }
    }

    fn comparison(&self, expr: &str, comparison: &Comparison) -> String {
        let d = self.dialect;
        match comparison {
            Comparison::Equals(v) => format!("{expr} = {}", d.literal(v)),
            Comparison::NotEquals(v) => format!("{expr} <> {}", d.literal(v)),
            Comparison::Compare(op, v) => format!("{expr} {} {}", op.sql(), d.literal(v)),
            Comparison::Between(low, high) => format!("{expr} BETWEEN {} AND {}", d.literal(low), d.literal(high)),
        }
    }

    fn split_case(&self, splits: &Splits, key: &str) -> String {
        let d = self.dialect;
        let bucket = d.split_bucket(&splits.salt, key);
        let mut case = String::from("CASE");
        let mut upper = 0;
        for (i, (name, share)) in splits.groups.iter().enumerate() {
            upper += share;
            if i + 1 == splits.groups.len() {
                case.push_str(&format!(" ELSE {} END", d.string(name)));
            } else {
                case.push_str(&format!(" WHEN {bucket} < {upper} THEN {}", d.string(name)));
            }
        }
        case
    }

    fn from(&self, model: &ModelSchema) -> String {
        self.dialect.relation(&model.query)
    }

    fn alias(&self, prefix: &str) -> String {
        let n = self.aliases.get();
        self.aliases.set(n + 1);
        format!("{prefix}{n}")
    }

    fn reference(&self, model: &str, column: &str, path: &str) {
        let reference = ColumnRef { model: model.to_string(), column: column.to_string(), path: path.to_string() };
        let mut references = self.references.borrow_mut();
        if !references.contains(&reference) {
            references.push(reference);
        }
    }
}

fn suggest<'n>(name: &str, known: impl Iterator<Item = &'n String>) -> String {
    let close = known.map(|k| (sluice_core::names::edit_distance(name, k), k)).filter(|(d, _)| *d <= 2).min();
    close.map(|(_, k)| format!(" (did you mean `{k}`?)")).unwrap_or_default()
}
