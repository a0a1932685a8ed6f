//! The audience language: what a marketer writes, as data. Parsed by [`crate::parse`],
//! compiled by [`crate::compile`].

/// An audience: members of a parent model chosen by conditions, or a priority list of other
/// audiences.
#[derive(Debug, Clone, PartialEq)]
pub struct Audience {
    pub name: String,
    /// The parent model the audience selects from (users, accounts…).
    pub parent: String,
    pub body: AudienceBody,
}

/// What decides membership.
#[derive(Debug, Clone, PartialEq)]
pub enum AudienceBody {
    /// Rows of the parent that meet the condition (all rows when there is none), optionally
    /// split into groups.
    Conditions { condition: Option<Condition>, splits: Option<Splits> },
    /// Each row lands in the first listed audience it belongs to; the column says which.
    Priority { audiences: Vec<String>, column: String },
}

/// Deterministic A/B/n and holdout groups.
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    /// Mixed into the hash so two audiences split the same people differently.
    pub salt: String,
    /// The output column carrying the group name.
    pub column: String,
    /// Group names and their shares in hundredths of a percent (summing to 10,000), in order.
    pub groups: Vec<(String, u32)>,
}

/// A condition tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    /// A test on a column of the current model.
    Property {
        column: String,
        test: Test,
    },
    /// A test on the rows of a related model (1:N, N:1) or an event model.
    Related(Box<RelatedCondition>),
    /// Membership of another audience on the same parent.
    MemberOf {
        audience: String,
        member: bool,
    },
}

/// A test on one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(Literal),
    NotEquals(Literal),
    In(Vec<Literal>),
    NotIn(Vec<Literal>),
    Compare(CompareOp, Literal),
    Between(Literal, Literal),
    Contains(String),
    StartsWith(String),
    IsNull,
    IsNotNull,
    /// Between now minus the duration and now.
    WithinLast(Duration),
    /// Strictly before an instant.
    Before(Instant),
    /// Strictly after an instant.
    After(Instant),
}

/// `<`, `<=`, `>`, `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl CompareOp {
    pub fn sql(self) -> &'static str {
        match self {
            CompareOp::Lt => "<",
            CompareOp::Lte => "<=",
            CompareOp::Gt => ">",
            CompareOp::Gte => ">=",
        }
    }
}

/// A constant in a condition. Rendered by the dialect, never pasted as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

/// A point in time, UTC, at second precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(pub chrono::NaiveDateTime);

/// A length of time in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub u64);

/// A condition on a related or event model.
#[derive(Debug, Clone, PartialEq)]
pub struct RelatedCondition {
    /// The relation's name, as declared on the current model.
    pub relation: String,
    /// Which related rows count.
    pub filter: Option<Condition>,
    /// For event models: which events count, by time.
    pub window: Vec<Test>,
    pub measure: Measure,
    /// For event models: "and then did (not) do Y".
    pub then: Option<Box<Sequence>>,
}

/// What is asked of the related rows that pass the filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// At least one row (`true`) or none (`false`).
    Exists(bool),
    /// How many rows.
    Count(Comparison),
    /// An aggregate of a column.
    Aggregate { function: Aggregate, column: String, comparison: Comparison },
}

/// sum, avg, min, max.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Avg,
    Min,
    Max,
}

impl Aggregate {
    pub fn sql(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
        }
    }
}

/// A numeric comparison of a count or aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    Equals(Literal),
    NotEquals(Literal),
    Compare(CompareOp, Literal),
    Between(Literal, Literal),
}

impl Comparison {
    /// Whether a count of zero passes, which decides how a count is compiled (parents with
    /// no related rows at all must then be members).
    pub fn accepts_zero(&self) -> bool {
        let zero = 0.0;
        let value = |l: &Literal| match l {
            Literal::Int(i) => *i as f64,
            Literal::Float(f) => *f,
            _ => f64::NAN,
        };
        match self {
            Comparison::Equals(l) => value(l) == zero,
            Comparison::NotEquals(l) => value(l) != zero,
            Comparison::Compare(op, l) => match op {
                CompareOp::Lt => zero < value(l),
                CompareOp::Lte => zero <= value(l),
                CompareOp::Gt => zero > value(l),
                CompareOp::Gte => zero >= value(l),
            },
            Comparison::Between(low, high) => value(low) <= zero && zero <= value(high),
        }
    }
}

/// "And then did (or did not) do `relation` within `within` of the first event."
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    pub relation: String,
    pub filter: Option<Condition>,
    /// How long after the first event the second one counts; unbounded when absent.
    pub within: Option<Duration>,
    /// `true` for `then`, `false` for `then_not`.
    pub did: bool,
}
