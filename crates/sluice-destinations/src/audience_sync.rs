//! Audience syncs for ad destinations that remove and add members in separate steps (LinkedIn
//! DMP segments, Snapchat Customer Lists): the steps a batch's member operations turn into, and
//! the outcome of each change once the removals, then the additions, were answered.
//!
//! Removals go first, so a member whose identifiers changed is never left removed when old and
//! new share an identifier.

use sluice_core::{Outcome, SyncMode};

use crate::ads::members::{Member, MemberOp};
use crate::ads::Platform;

/// What to do for one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Decided without sending anything.
    Done(Outcome),
    Add(Member),
    Remove(Member),
    Replace {
        remove: Member,
        add: Member,
    },
}

impl Step {
    /// The member to remove in the first phase.
    pub(crate) fn removal(&self) -> Option<&Member> {
        match self {
            Step::Remove(member) | Step::Replace { remove: member, .. } => Some(member),
            _ => None,
        }
    }

    /// The member to add in the second phase.
    pub(crate) fn addition(&self) -> Option<&Member> {
        match self {
            Step::Add(member) | Step::Replace { add: member, .. } => Some(member),
            _ => None,
        }
    }
}

/// How the platform answered for one member in one phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    Done,
    Rejected(String),
    /// Only LinkedIn reports a retryable status (429, 5xx) for single elements.
    #[cfg_attr(not(feature = "linkedin"), allow(dead_code))]
    Retryable(String),
}

/// The steps for a batch. In `insert` mode (add only) a changed member is added without removing
/// the previous one, and a member who left is not removed.
pub(crate) fn steps(ops: Vec<MemberOp>, mode: SyncMode, platform: Platform) -> Vec<Step> {
    ops.into_iter()
        .map(|op| match op {
            MemberOp::Add(member) => Step::Add(member),
            MemberOp::Replace { add, .. } if mode == SyncMode::Insert => Step::Add(add),
            MemberOp::Replace { remove, add } => Step::Replace { remove, add },
            MemberOp::Remove(_) if mode == SyncMode::Insert => Step::Done(Outcome::rejected(format!(
                "`mode: insert` only adds members to the {platform} audience; use `mode: audience` to remove those who leave"
            ))),
            MemberOp::Remove(member) => Step::Remove(member),
            MemberOp::Reject(message) => Step::Done(Outcome::rejected(message)),
        })
        .collect()
}

fn applied(member: &Member) -> Outcome {
    let mut outcome = Outcome::applied();
    outcome.destination_id = Some(member.to_destination_id());
    outcome
}

fn unanswered(platform: Platform) -> Outcome {
    Outcome::retryable(format!("{platform}'s answer did not cover this member"))
}

fn from_sent(sent: Option<&Sent>, member: &Member, platform: Platform) -> Outcome {
    match sent {
        Some(Sent::Done) => applied(member),
        Some(Sent::Rejected(message)) => Outcome::rejected(message.clone()),
        Some(Sent::Retryable(message)) => Outcome::retryable(message.clone()),
        None => unanswered(platform),
    }
}

/// One outcome per step. `removed[i]` and `added[i]` are the answers for step `i`'s removal and
/// addition. An applied record's destination id is the member sent (for a removal, the member
/// removed).
pub(crate) fn outcomes(
    steps: &[Step],
    removed: &[Option<Sent>],
    added: &[Option<Sent>],
    platform: Platform,
) -> Vec<Outcome> {
    steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let removal = removed.get(i).and_then(Option::as_ref);
            let addition = added.get(i).and_then(Option::as_ref);
            match step {
                Step::Done(outcome) => outcome.clone(),
                Step::Add(member) => from_sent(addition, member, platform),
                Step::Remove(member) => from_sent(removal, member, platform),
                Step::Replace { add, .. } => match (removal, addition) {
                    (Some(Sent::Done), Some(Sent::Done)) => applied(add),
                    (_, Some(Sent::Rejected(message))) => Outcome::rejected(message.clone()),
                    (_, Some(Sent::Retryable(message))) => Outcome::retryable(message.clone()),
                    (Some(Sent::Rejected(message)), Some(Sent::Done)) => Outcome::rejected(format!(
                        "added with its new identifiers, but {platform} did not remove the previous ones: {message}"
                    )),
                    (Some(Sent::Retryable(message)), Some(Sent::Done)) => Outcome::retryable(format!(
                        "added with its new identifiers, but {platform} did not remove the previous ones: {message}"
                    )),
                    (None, _) | (_, None) => unanswered(platform),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use sluice_core::OutcomeStatus;

    use super::*;
    use crate::ads::Identifier;

    fn member(hash: &str) -> Member {
        Member { identifiers: [(Identifier::Email, hash.to_string())].into_iter().collect() }
    }

    #[test]
    fn insert_mode_only_adds() {
        let ops = vec![
            MemberOp::Replace { remove: member("a"), add: member("b") },
            MemberOp::Remove(member("c")),
            MemberOp::Reject("email: not an e-mail address".into()),
        ];
        let steps = steps(ops.clone(), SyncMode::Insert, Platform::LinkedIn);
        assert_eq!(steps[0], Step::Add(member("b")));
        assert!(matches!(&steps[1], Step::Done(o) if o.status == OutcomeStatus::Rejected));
        assert_eq!(steps[2], Step::Done(Outcome::rejected("email: not an e-mail address")));
        let audience = super::steps(ops, SyncMode::Audience, Platform::LinkedIn);
        assert_eq!(audience[0], Step::Replace { remove: member("a"), add: member("b") });
        assert_eq!(audience[1], Step::Remove(member("c")));
    }

    #[test]
    fn replacements_need_both_halves() {
        let steps = vec![
            Step::Replace { remove: member("a"), add: member("b") },
            Step::Replace { remove: member("c"), add: member("d") },
            Step::Replace { remove: member("e"), add: member("f") },
            Step::Remove(member("g")),
            Step::Add(member("h")),
        ];
        let removed =
            vec![Some(Sent::Done), Some(Sent::Rejected("nope".into())), Some(Sent::Done), Some(Sent::Done), None];
        let added = vec![Some(Sent::Done), Some(Sent::Done), Some(Sent::Retryable("busy".into())), None, None];
        let out = outcomes(&steps, &removed, &added, Platform::Snapchat);
        assert_eq!(out[0].destination_id, Some(member("b").to_destination_id()));
        assert_eq!(out[0].status, OutcomeStatus::Applied);
        assert_eq!(out[1].status, OutcomeStatus::Rejected);
        assert!(out[1].message.as_deref().unwrap().contains("did not remove the previous ones: nope"));
        assert_eq!(out[2], Outcome::retryable("busy"));
        assert_eq!(out[3].destination_id, Some(member("g").to_destination_id()));
        assert_eq!(out[4].status, OutcomeStatus::Retryable, "an unanswered member is retried");
    }
}
