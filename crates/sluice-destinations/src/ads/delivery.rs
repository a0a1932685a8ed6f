//! Audience writes for ad destinations that send a batch's removals and additions as separate
//! requests of members converted for the platform (Google Customer Match, TikTok): which members
//! to send, and the outcome of each change once the platform answered.

use sluice_core::Outcome;

use super::members::{Member, MemberOp};

/// A member to send for one change, as the platform is sent it.
pub(crate) struct Entry<T> {
    pub(crate) change: usize,
    pub(crate) item: T,
}

/// What is known of each change of a batch while its members are sent.
pub(crate) struct Delivery {
    decided: Vec<Option<Outcome>>,
    problems: Vec<Vec<String>>,
    applied_id: Vec<Option<String>>,
}

impl Delivery {
    /// Splits a batch's ops into the members to remove and those to add, each converted by
    /// `sendable`; a member it refuses leaves its change rejected (`not added: {reason}`, …).
    pub(crate) fn plan<T>(
        ops: Vec<MemberOp>,
        mut sendable: impl FnMut(&Member) -> Result<T, String>,
    ) -> (Delivery, Vec<Entry<T>>, Vec<Entry<T>>) {
        let mut delivery = Delivery {
            decided: vec![None; ops.len()],
            problems: vec![Vec::new(); ops.len()],
            applied_id: vec![None; ops.len()],
        };
        let (mut removes, mut adds) = (Vec::new(), Vec::new());
        let mut keep =
            |delivery: &mut Delivery, change: usize, member: &Member, into: &mut Vec<Entry<T>>, what: &str| {
                match sendable(member) {
                    Ok(item) => into.push(Entry { change, item }),
                    Err(reason) => delivery.refused(change, what, &reason),
                }
            };
        for (change, op) in ops.into_iter().enumerate() {
            match op {
                MemberOp::Add(member) => keep(&mut delivery, change, &member, &mut adds, "not added"),
                MemberOp::Remove(member) => keep(&mut delivery, change, &member, &mut removes, "not removed"),
                MemberOp::Replace { remove, add } => {
                    keep(&mut delivery, change, &remove, &mut removes, "previous identifiers not removed");
                    keep(&mut delivery, change, &add, &mut adds, "new identifiers not added");
                }
                MemberOp::Reject(reason) => delivery.decided[change] = Some(Outcome::rejected(reason)),
            }
        }
        (delivery, removes, adds)
    }

    /// The platform refused a member of `change`: `what` says which (`not added`, …).
    pub(crate) fn refused(&mut self, change: usize, what: &str, reason: &str) {
        self.problems[change].push(format!("{what}: {reason}"));
    }

    /// The platform applied a member of `change`. The id a later remove needs is what was added,
    /// or, when nothing was, what was removed.
    pub(crate) fn applied(&mut self, change: usize, added: bool, id: String) {
        if added || self.applied_id[change].is_none() {
            self.applied_id[change] = Some(id);
        }
    }

    /// One outcome per change: the one decided without sending, else rejected with every problem,
    /// else what `unsettled` says for the change, else applied with its id.
    pub(crate) fn outcomes(self, mut unsettled: impl FnMut(usize) -> Option<Outcome>) -> Vec<Outcome> {
        let Delivery { decided, problems, mut applied_id } = self;
        decided
            .into_iter()
            .enumerate()
            .map(|(change, outcome)| {
                if let Some(outcome) = outcome {
                    return outcome;
                }
                if !problems[change].is_empty() {
                    return Outcome::rejected(problems[change].join("; "));
                }
                if let Some(outcome) = unsettled(change) {
                    return outcome;
                }
                let mut applied = Outcome::applied();
                applied.destination_id = applied_id[change].take();
                applied
            })
            .collect()
    }
}
