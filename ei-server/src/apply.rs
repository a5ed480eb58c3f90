//! The effect of a validated request on the index (contract §2 "Effect" and §4): which
//! posts to write or delete, with which timestamps, and which effective changes that
//! makes. Pure: the current posts come through a [`View`], so the store's writer and
//! the unit tests drive the same code.

use crate::model::{Action, Engagement, EngagementKey, Timestamp, Transaction};
use crate::operation::WriteOperation;

/// Read access to the current posts, with the request's own writes visible.
pub trait View {
    type Error;
    /// The stored post with this key, if any.
    fn get(&mut self, key: &EngagementKey) -> Result<Option<Engagement>, Self::Error>;
    /// The stored post's timestamps only (all [`apply`] reads: the key is the one
    /// asked for). A view that keeps the timestamps apart answers this without
    /// copying the key; by default it is [`View::get`]'s.
    fn get_times(&mut self, key: &EngagementKey) -> Result<Option<Stored>, Self::Error> {
        Ok(self.get(key)?.as_ref().map(Stored::of))
    }
    /// Records a write so later reads in the same request see it.
    fn set(&mut self, key: &EngagementKey, value: Option<&Engagement>);
}

/// A stored post's timestamps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub most_recent_content: Option<Timestamp>,
    pub creation_time: Option<Timestamp>,
    pub update_time: Option<Timestamp>,
}

impl Stored {
    pub fn of(e: &Engagement) -> Stored {
        Stored {
            most_recent_content: e.most_recent_content,
            creation_time: e.creation_time,
            update_time: e.update_time,
        }
    }

    /// The post these timestamps belong to (its key copied).
    pub fn with_key(self, key: &EngagementKey) -> Engagement {
        Engagement {
            key: key.clone(),
            most_recent_content: self.most_recent_content,
            creation_time: self.creation_time,
            update_time: self.update_time,
        }
    }
}

/// A write to make, borrowed from the change it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation<'a> {
    Put(&'a Engagement),
    Delete(&'a EngagementKey),
    /// The delete of a key no change holds (the replaced post of an owner change).
    DeleteOwned(Box<EngagementKey>),
}

/// What kind of effective change a post went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Inserted,
    Deleted,
    /// The post existed and its mostRecentContent changed.
    ContentChanged,
    /// ProcessNotification moved the post from this index to another owner.
    OwnerChanged {
        previous_owner: String,
    },
    /// Only creationTime/updateTime changed (ProcessNotification stores them as given);
    /// stored, but not a change subscribers are told about (contract §2).
    TimesChanged,
}

/// One effective change, with the post as it is now (for a delete: as it was).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub engagement: Engagement,
}

impl Change {
    /// Whether subscribers are notified of this change (insert, delete,
    /// mostRecentContent change, and an owner change, which is a new post for them).
    pub fn is_notified(&self) -> bool {
        !matches!(self.kind, ChangeKind::TimesChanged)
    }
}

/// The effective changes of one request; the writes follow from them
/// ([`Outcome::mutations`]), so no post is copied twice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub changes: Vec<Change>,
}

impl Outcome {
    /// The writes the changes make, in order: a delete for a deleted post, the old
    /// key's delete and then the new post for an owner change, a put otherwise.
    pub fn mutations(&self) -> impl Iterator<Item = Mutation<'_>> {
        self.changes.iter().flat_map(|c| {
            let (first, main) = match &c.kind {
                ChangeKind::Deleted => (None, Mutation::Delete(&c.engagement.key)),
                ChangeKind::OwnerChanged { previous_owner } => (
                    Some(Mutation::DeleteOwned(Box::new(
                        c.engagement.key.with_owner(previous_owner),
                    ))),
                    Mutation::Put(&c.engagement),
                ),
                _ => (None, Mutation::Put(&c.engagement)),
            };
            first.into_iter().chain(std::iter::once(main))
        })
    }
}

/// Applies the transactions of one request, in order, at time `now`.
pub fn apply<V: View>(
    service: WriteOperation,
    own_hsa_id: &str,
    transactions: &[Transaction],
    now: Timestamp,
    view: &mut V,
) -> Result<Outcome, V::Error> {
    let mut out = Outcome::default();
    for t in transactions {
        match t.action {
            Action::Delete => delete(&t.engagement.key, view, &mut out)?,
            Action::Save => match service {
                WriteOperation::Update => save_update(&t.engagement, now, view, &mut out)?,
                WriteOperation::ProcessNotification => {
                    save_notification(&t.engagement, own_hsa_id, now, view, &mut out)?
                }
            },
        }
    }
    Ok(out)
}

fn delete<V: View>(key: &EngagementKey, view: &mut V, out: &mut Outcome) -> Result<(), V::Error> {
    if let Some(old) = view.get_times(key)? {
        view.set(key, None);
        out.changes.push(Change {
            kind: ChangeKind::Deleted,
            engagement: old.with_key(key),
        });
    }
    Ok(())
}

fn put<V: View>(e: Engagement, kind: ChangeKind, view: &mut V, out: &mut Outcome) {
    view.set(&e.key, Some(&e));
    out.changes.push(Change {
        kind,
        engagement: e,
    });
}

/// Update: creationTime = now on insert and never again; updateTime = now when the
/// post changes; an identical post changes nothing.
fn save_update<V: View>(
    e: &Engagement,
    now: Timestamp,
    view: &mut V,
    out: &mut Outcome,
) -> Result<(), V::Error> {
    // Only a post that changes is copied (into its change record); an identical
    // re-send costs a lookup.
    match view.get_times(&e.key)? {
        None => {
            let new = Engagement {
                creation_time: Some(now),
                update_time: None,
                ..e.clone()
            };
            put(new, ChangeKind::Inserted, view, out);
        }
        Some(old) if old.most_recent_content == e.most_recent_content => {}
        Some(old) => {
            let new = Stored {
                most_recent_content: e.most_recent_content,
                update_time: Some(now),
                ..old
            };
            put(new.with_key(&e.key), ChangeKind::ContentChanged, view, out);
        }
    }
    Ok(())
}

/// ProcessNotification: the incoming owner, creationTime and updateTime are stored as
/// given; absent times follow the Update rules. A post with the same key owned by
/// this index is replaced (the source moved to another index).
fn save_notification<V: View>(
    e: &Engagement,
    own_hsa_id: &str,
    now: Timestamp,
    view: &mut V,
    out: &mut Outcome,
) -> Result<(), V::Error> {
    let existing = view.get_times(&e.key)?;
    let own_key = e.key.with_owner(own_hsa_id);
    let moved = match existing {
        Some(_) => None,
        None if own_key != e.key => view.get_times(&own_key)?,
        None => None,
    };
    let base = existing.as_ref().or(moved.as_ref());
    let content_changed = base.is_some_and(|b| b.most_recent_content != e.most_recent_content);
    let creation_time = e
        .creation_time
        .or(base.and_then(|b| b.creation_time))
        .or(Some(now));
    let update_time = match (e.update_time, base) {
        (Some(t), _) => Some(t),
        (None, None) => None,
        (None, Some(b)) if content_changed || creation_time != b.creation_time => Some(now),
        (None, Some(b)) => b.update_time,
    };
    let new = Engagement {
        creation_time,
        update_time,
        ..e.clone()
    };
    if moved.is_some() {
        tracing::warn!(
            previous_owner = %own_key.owner(),
            new_owner = %e.key.owner(),
            service_domain = %e.key.service_domain(),
            "ProcessNotification moves a post of this index to another owner; replacing it"
        );
        view.set(&own_key, None);
        let previous_owner = own_key.owner().to_owned();
        put(new, ChangeKind::OwnerChanged { previous_owner }, view, out);
        return Ok(());
    }
    match existing {
        None => put(new, ChangeKind::Inserted, view, out),
        Some(old) if old == Stored::of(&new) => {}
        Some(_) if content_changed => put(new, ChangeKind::ContentChanged, view, out),
        Some(_) => put(new, ChangeKind::TimesChanged, view, out),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Field, RawEngagement, RawTransaction};
    use crate::rules::{validate_notification, validate_update, RulesConfig};
    use std::collections::HashMap;
    use std::convert::Infallible;

    #[derive(Default)]
    struct MapView(HashMap<EngagementKey, Engagement>);

    impl View for MapView {
        type Error = Infallible;
        fn get(&mut self, key: &EngagementKey) -> Result<Option<Engagement>, Infallible> {
            Ok(self.0.get(key).cloned())
        }
        fn set(&mut self, key: &EngagementKey, value: Option<&Engagement>) {
            match value {
                Some(v) => self.0.insert(key.clone(), v.clone()),
                None => self.0.remove(key),
            };
        }
    }

    const OWN: &str = "ei-hsa-id";

    fn ts(s: &str) -> Timestamp {
        Timestamp::try_from(s).unwrap()
    }

    fn raw(owner: Option<&str>, mrc: Option<&str>, delete: bool) -> RawTransaction {
        let mut e = RawEngagement::default();
        for f in &Field::UPDATE_KEY {
            e.set(*f, format!("v-{}", f.index()));
        }
        if let Some(o) = owner {
            e.set(Field::Owner, o);
        }
        if let Some(m) = mrc {
            e.set(Field::MostRecentContent, m);
        }
        RawTransaction {
            delete_flag: Some(delete.to_string()),
            engagement: e,
        }
    }

    fn update(view: &mut MapView, mrc: Option<&str>, delete: bool, now: &str) -> Outcome {
        let cfg = RulesConfig::new(OWN, "p");
        let txs = validate_update(&cfg, Some(OWN), vec![raw(None, mrc, delete)]).unwrap();
        let Ok(o) = apply(WriteOperation::Update, OWN, &txs, ts(now), view);
        o
    }

    fn notify(view: &mut MapView, t: RawTransaction, now: &str) -> Outcome {
        let cfg = RulesConfig::new(OWN, "p");
        let txs = validate_notification(&cfg, vec![t]).unwrap();
        let Ok(o) = apply(
            WriteOperation::ProcessNotification,
            OWN,
            &txs,
            ts(now),
            view,
        );
        o
    }

    #[test]
    fn update_insert_then_identical_then_change_then_delete() {
        let mut v = MapView::default();
        let o = update(&mut v, Some("20200101000000"), false, "20260101100000");
        assert_eq!(o.changes[0].kind, ChangeKind::Inserted);
        let e = &o.changes[0].engagement;
        assert_eq!(e.creation_time, Some(ts("20260101100000")));
        assert_eq!(e.update_time, None);
        assert_eq!(e.key.owner(), OWN);

        let o = update(&mut v, Some("20200101000000"), false, "20260101110000");
        assert_eq!(o, Outcome::default(), "identical post is not rewritten");

        let o = update(&mut v, Some("20210101000000"), false, "20260101120000");
        assert_eq!(o.changes[0].kind, ChangeKind::ContentChanged);
        let e = &o.changes[0].engagement;
        assert_eq!(
            e.creation_time,
            Some(ts("20260101100000")),
            "creationTime never changes"
        );
        assert_eq!(e.update_time, Some(ts("20260101120000")));

        let o = update(&mut v, None, false, "20260101130000");
        assert_eq!(
            o.changes[0].engagement.most_recent_content, None,
            "removing mrc is a change"
        );

        let o = update(&mut v, None, true, "20260101140000");
        assert_eq!(o.changes[0].kind, ChangeKind::Deleted);
        assert!(v.0.is_empty());
        let o = update(&mut v, None, true, "20260101150000");
        assert_eq!(
            o,
            Outcome::default(),
            "deleting a missing post is fine and no change"
        );
    }

    #[test]
    fn notification_stores_given_times_and_owner() {
        let mut v = MapView::default();
        let mut t = raw(Some("other"), Some("20200101000000"), false);
        t.engagement.set(Field::CreationTime, "20190101000000");
        t.engagement.set(Field::UpdateTime, "20190202000000");
        let o = notify(&mut v, t.clone(), "20260101100000");
        let e = &o.changes[0].engagement;
        assert_eq!(o.changes[0].kind, ChangeKind::Inserted);
        assert_eq!(
            (e.key.owner(), e.creation_time, e.update_time),
            (
                "other",
                Some(ts("20190101000000")),
                Some(ts("20190202000000"))
            )
        );
        assert_eq!(notify(&mut v, t, "20260101110000"), Outcome::default());
    }

    #[test]
    fn notification_without_times_follows_update_rules() {
        let mut v = MapView::default();
        let o = notify(
            &mut v,
            raw(Some("other"), Some("20200101000000"), false),
            "20260101100000",
        );
        assert_eq!(
            o.changes[0].engagement.creation_time,
            Some(ts("20260101100000"))
        );
        let o = notify(
            &mut v,
            raw(Some("other"), Some("20200202000000"), false),
            "20260101110000",
        );
        let e = &o.changes[0].engagement;
        assert_eq!(o.changes[0].kind, ChangeKind::ContentChanged);
        assert_eq!(
            (e.creation_time, e.update_time),
            (Some(ts("20260101100000")), Some(ts("20260101110000")))
        );
    }

    #[test]
    fn notification_moves_own_post_to_new_owner() {
        let mut v = MapView::default();
        update(&mut v, Some("20200101000000"), false, "20260101100000");
        let o = notify(
            &mut v,
            raw(Some("other"), Some("20200101000000"), false),
            "20260101110000",
        );
        assert_eq!(o.changes.len(), 1);
        assert_eq!(
            o.changes[0].kind,
            ChangeKind::OwnerChanged {
                previous_owner: OWN.into()
            }
        );
        let m: Vec<Mutation> = o.mutations().collect();
        assert_eq!(m.len(), 2);
        assert!(matches!(&m[0], Mutation::DeleteOwned(k) if k.owner() == OWN));
        assert!(matches!(&m[1], Mutation::Put(e) if e.key.owner() == "other"));
        assert_eq!(v.0.len(), 1);
        assert_eq!(v.0.keys().next().unwrap().owner(), "other");
        assert_eq!(
            o.changes[0].engagement.creation_time,
            Some(ts("20260101100000")),
            "keeps the original creation"
        );
    }

    #[test]
    fn notification_delete_only_touches_that_owner() {
        let mut v = MapView::default();
        update(&mut v, None, false, "20260101100000");
        let o = notify(&mut v, raw(Some("other"), None, true), "20260101110000");
        assert_eq!(o, Outcome::default());
        assert_eq!(v.0.len(), 1);
    }

    #[test]
    fn times_only_change_is_stored_not_notified() {
        let mut v = MapView::default();
        let mut t = raw(Some("other"), None, false);
        t.engagement.set(Field::CreationTime, "20190101000000");
        notify(&mut v, t.clone(), "20260101100000");
        t.engagement.set(Field::CreationTime, "20180101000000");
        let o = notify(&mut v, t, "20260101110000");
        assert_eq!(o.changes[0].kind, ChangeKind::TimesChanged);
        assert!(!o.changes[0].is_notified());
    }

    #[test]
    fn actions_are_visible_to_later_transactions() {
        let _ = Action::Save;
        let mut v = MapView::default();
        let cfg = RulesConfig::new(OWN, "p");
        let mut a = raw(Some("x"), None, false);
        let mut b = raw(Some("y"), None, false);
        a.engagement.set(Field::Owner, "x");
        b.engagement.set(Field::Owner, "y");
        update(&mut v, None, false, "20260101100000");
        let txs = validate_notification(&cfg, vec![a, b]).unwrap();
        let Ok(o) = apply(
            WriteOperation::ProcessNotification,
            OWN,
            &txs,
            ts("20260101110000"),
            &mut v,
        );
        // Only the first takes over the own post; the second is a plain insert.
        assert!(matches!(o.changes[0].kind, ChangeKind::OwnerChanged { .. }));
        assert_eq!(o.changes[1].kind, ChangeKind::Inserted);
        assert_eq!(v.0.len(), 2);
    }
}
