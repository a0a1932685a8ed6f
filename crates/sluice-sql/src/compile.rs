//! Compiling audiences to one SQL query per dialect.
//!
//! Shapes, chosen so that Postgres plans them as hash semi- and anti-joins:
//! - a property test is a predicate on the row;
//! - "has related rows" is `EXISTS (SELECT 1 FROM related WHERE join AND filter)`;
//! - a count or aggregate is an `EXISTS` over the related rows grouped by the join key with a
//!   `HAVING`; when a count of zero passes, it is a `NOT EXISTS` over the groups that fail, so
//!   parents with no related rows are members. The grouped rows are a derived table joined on
//!   the key, so that Postgres aggregates once and hash-joins — except for an aggregate over the
//!   related rows' whole history (no time window) that is `and`-ed with a condition narrowing the
//!   parents without aggregating (a property, an event, another audience): on Postgres that one
//!   is correlated (`… WHERE join AND filter GROUP BY key HAVING …`), see [`Compiler::related`];
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
                let filter = self.membership_of(audience, &alias, false, false)?;
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
                    let condition = self.membership_of(other, &alias, false, false)?;
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
        let in_a = self.membership_of(first, &alias, false, false)?;
        let in_b = self.membership_of(second, &alias, false, false)?;
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
    /// `narrowed`: see [`Compiler::condition`].
    fn membership_of(
        &self,
        audience: &Audience,
        alias: &str,
        negated: bool,
        narrowed: bool,
    ) -> Result<String, SqlError> {
        match &audience.body {
            AudienceBody::Conditions { condition: None, .. } => Ok("TRUE".into()),
            AudienceBody::Conditions { condition: Some(condition), .. } => self.inline(&audience.name, "", |c| {
                c.condition(condition, &audience.parent, alias, negated, narrowed, "conditions")
            }),
            AudienceBody::Priority { audiences, .. } => {
                let mut parts = Vec::new();
                for (i, member) in audiences.iter().enumerate() {
                    let path = format!("priority[{i}]");
                    let other = self.audience(member, &path)?;
                    parts.push(
                        self.inline(&audience.name, &path, |c| c.membership_of(other, alias, negated, narrowed))?,
                    );
                }
                Ok(format!("({})", parts.join(" OR ")))
            }
        }
    }

    /// A condition on the row `alias` of `model`. `negated` is true under an odd number of
    /// `not`s, where a test on a null must be false rather than unknown so that `not` means
    /// "everyone else". `narrowed` is true when the condition is `and`-ed (here or further out)
    /// with one that narrows the parents without aggregating, so it is only asked of those.
    fn condition(
        &self,
        condition: &Condition,
        model: &str,
        alias: &str,
        negated: bool,
        narrowed: bool,
        path: &str,
    ) -> Result<String, SqlError> {
        match condition {
            Condition::And(items) | Condition::Or(items) => {
                let is_and = matches!(condition, Condition::And(_));
                let (word, key) = if is_and { (" AND ", "and") } else { (" OR ", "or") };
                let parts = items
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let narrowed = narrowed
                            || (is_and
                                && items
                                    .iter()
                                    .enumerate()
                                    .any(|(j, other)| j != i && self.narrows(other, &mut Vec::new())));
                        self.condition(c, model, alias, negated, narrowed, &format!("{path}.{key}[{i}]"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(format!("({})", parts.join(word)))
            }
            Condition::Not(inner) => Ok(format!(
                "NOT ({})",
                self.condition(inner, model, alias, !negated, narrowed, &format!("{path}.not"))?
            )),
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
                let inner = self.membership_of(other, alias, negated == *member, narrowed)?;
                Ok(if *member { inner } else { format!("NOT ({inner})") })
            }
            Condition::Related(related) => self.related(related, model, alias, narrowed, path),
        }
    }

    /// Whether `condition` narrows the parent rows without aggregating related rows: a
    /// property test, "has (no) such related row or event", or an audience built of those.
    /// Audiences already being looked at (`visiting`) count as not narrowing; cycles are
    /// reported when they are inlined.
    fn narrows(&self, condition: &Condition, visiting: &mut Vec<String>) -> bool {
        match condition {
            Condition::Property { .. } => true,
            Condition::Related(related) => matches!(related.measure, Measure::Exists(_)),
            Condition::And(items) => items.iter().any(|c| self.narrows(c, visiting)),
            Condition::Or(items) => !items.is_empty() && items.iter().all(|c| self.narrows(c, visiting)),
            Condition::Not(inner) => self.narrows(inner, visiting),
            Condition::MemberOf { audience, .. } => {
                let Some(other) = self.audiences.get(audience) else { return false };
                if visiting.iter().any(|n| n == audience) {
                    return false;
                }
                visiting.push(audience.clone());
                let narrows = match &other.body {
                    AudienceBody::Conditions { condition: Some(c), .. } => self.narrows(c, visiting),
                    AudienceBody::Conditions { condition: None, .. } => false,
                    AudienceBody::Priority { audiences, .. } => {
                        !audiences.is_empty()
                            && audiences.iter().all(|member| {
                                self.narrows(&Condition::MemberOf { audience: member.clone(), member: true }, visiting)
                            })
                    }
                };
                visiting.pop();
                narrows
            }
        }
    }

    /// "Has related rows", a count or an aggregate of them. A count or aggregate is grouped by
    /// the join key in a derived table, which Postgres computes once for all parents and
    /// hash-joins; it cannot push the parent's key into it. That is the right plan when the
    /// condition is asked of every parent, or when a time window bounds the rows to aggregate.
    /// But an aggregate over the related rows' whole history (lifetime order totals), asked only
    /// of parents that another condition has narrowed down (`narrowed`), made Postgres
    /// aggregate the whole related table to answer for a few: in the audience benchmark
    /// (`scripts/bench-audiences`, "abandoned cart and not loyal"), 3× slower than a
    /// hand-written correlated `NOT EXISTS`. That case is compiled correlated on dialects that
    /// say so ([`Dialect::correlates_narrowed_aggregates`]): the same `GROUP BY … HAVING` with
    /// the join condition inside, so it only reads the rows of parents that get that far (by
    /// the related model's index on the join column, as a hand-written query would). Members
    /// are the same either way: both ask whether the parent's group passes.
    fn related(
        &self,
        related: &RelatedCondition,
        model: &str,
        outer: &str,
        narrowed: bool,
        path: &str,
    ) -> Result<String, SqlError> {
        let d = self.dialect;
        let (relation, target) = self.relation(model, &related.relation, path)?;
        let alias = self.alias("r");
        let a = d.ident(&alias);
        let mut filters = Vec::new();
        if let Some(filter) = &related.filter {
            filters.push(self.condition(filter, &relation.model, &alias, false, false, &format!("{path}.where"))?);
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
        let having = if count_accepts_zero { format!("NOT ({test})") } else { test };
        if narrowed && related.window.is_empty() && d.correlates_narrowed_aggregates() {
            let mut all = joins;
            all.extend(filters);
            let query = format!(
                "EXISTS (SELECT 1 FROM {from} WHERE {} GROUP BY {} HAVING {having})",
                all.join(" AND "),
                keys.join(", ")
            );
            return Ok(if count_accepts_zero { format!("NOT {query}") } else { query });
        }
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
            parts.push(self.condition(filter, &relation.model, &alias, false, false, &format!("{at}.where"))?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_audience;
    use serde_json::json;

    fn schema() -> Schema {
        let model = |table: &str, key: &str, timestamp: Option<&str>, relations: &[&str]| ModelSchema {
            query: ModelQuery::Table(table.into()),
            primary_key: key.into(),
            timestamp: timestamp.map(Into::into),
            relations: relations
                .iter()
                .map(|r| (r.to_string(), Relation { model: r.to_string(), on: vec![("id".into(), "user_id".into())] }))
                .collect(),
        };
        let mut models = BTreeMap::new();
        models.insert("users".into(), model("users", "id", None, &["orders", "views"]));
        models.insert("orders".into(), model("orders", "order_id", Some("ordered_at"), &[]));
        models.insert("views".into(), model("views", "view_id", Some("at"), &[]));
        Schema { models }
    }

    fn compile(dialect: Dialect, name: &str, audiences: serde_json::Value) -> String {
        let audiences: BTreeMap<String, Audience> =
            audiences.as_object().unwrap().iter().map(|(n, v)| (n.clone(), parse_audience(n, v).unwrap())).collect();
        let schema = schema();
        let now = chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
        Compiler::new(&schema, &audiences, dialect, now).compile(name).unwrap().sql
    }

    fn audiences() -> serde_json::Value {
        json!({
            "loyal": { "parent": "users", "conditions": {
                "related": "orders", "sum": { "column": "amount", "gt": 1000 } } },
            "few_orders_fr": { "parent": "users", "conditions": { "and": [
                { "property": "country", "equals": "FR" },
                { "related": "orders", "count": { "at_most": 1 } } ] } },
            "recent_not_loyal": { "parent": "users", "conditions": { "and": [
                { "event": "views", "within_last": "7 days" },
                { "not_member_of": "loyal" } ] } },
            "windowed": { "parent": "users", "conditions": { "and": [
                { "property": "country", "equals": "FR" },
                { "event": "views", "within_last": "7 days", "count": { "at_least": 3 } } ] } },
            "two_aggregates": { "parent": "users", "conditions": { "and": [
                { "member_of": "loyal" },
                { "related": "orders", "count": { "at_least": 2 } } ] } },
        })
    }

    const CORRELATED_SUM: &str = r#"EXISTS (SELECT 1 FROM "orders" AS "r2" WHERE "r2"."user_id" = "p0"."id" GROUP BY "r2"."user_id" HAVING sum("r2"."amount") > '1000')"#;

    #[test]
    fn a_lifetime_aggregate_narrowed_by_another_condition_is_correlated_on_postgres() {
        let sql = compile(Dialect::Postgres, "recent_not_loyal", audiences());
        assert!(sql.contains(&format!("NOT ({CORRELATED_SUM})")), "{sql}");
        // A count that zero passes: no group of this parent's rows may fail it.
        let sql = compile(Dialect::Postgres, "few_orders_fr", audiences());
        assert!(
            sql.contains(r#"NOT EXISTS (SELECT 1 FROM "orders" AS "r1" WHERE "r1"."user_id" = "p0"."id" GROUP BY "r1"."user_id" HAVING NOT (COUNT(*) <= '1'))"#),
            "{sql}"
        );
    }

    #[test]
    fn aggregates_alone_windowed_or_only_beside_aggregates_stay_grouped() {
        for name in ["loyal", "windowed", "two_aggregates"] {
            let sql = compile(Dialect::Postgres, name, audiences());
            assert!(sql.contains(r#"GROUP BY"#) && sql.contains(r#" AS "k0""#), "{name}: {sql}");
            assert!(!sql.contains(r#"= "p0"."id" GROUP BY"#), "{name} should not be correlated: {sql}");
        }
    }

    #[test]
    fn sqlite_keeps_the_grouped_derived_table() {
        for name in ["recent_not_loyal", "few_orders_fr"] {
            let sql = compile(Dialect::Sqlite, name, audiences());
            assert!(sql.contains(r#" AS "k0""#) && !sql.contains(r#"= "p0"."id" GROUP BY"#), "{name}: {sql}");
        }
    }

    #[test]
    fn narrowing_looks_through_audiences_and_stops_at_cycles() {
        let audiences = json!({
            "a": { "parent": "users", "conditions": { "and": [
                { "member_of": "b" }, { "related": "orders", "count": { "at_least": 2 } } ] } },
            "b": { "parent": "users", "conditions": { "or": [
                { "member_of": "a" }, { "property": "plan", "is_null": true } ] } },
        });
        let parsed: BTreeMap<String, Audience> =
            audiences.as_object().unwrap().iter().map(|(n, v)| (n.clone(), parse_audience(n, v).unwrap())).collect();
        let schema = schema();
        let now = chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
        let compiler = Compiler::new(&schema, &parsed, Dialect::Postgres, now);
        // `b` is an `or` whose first branch leads back to `a`: it does not count as narrowing,
        // and compiling reports the cycle.
        assert!(!compiler.narrows(&Condition::MemberOf { audience: "b".into(), member: true }, &mut vec!["a".into()]));
        let error = compiler.compile("a").unwrap_err().to_string();
        assert!(error.contains("cycle"), "{error}");
    }
}
