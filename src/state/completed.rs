//! A bounded memory of objects already processed, so that redelivered notifications
//! (SQS is at-least-once, and S3 can notify twice) do not produce the alerts again.

use std::collections::{HashSet, VecDeque};

/// (bucket, key, ETag) — the ETag distinguishes an object overwritten under the same
/// key; it is empty when unknown.
pub type ObjectId = (String, String, String);

/// Remembers the last `capacity` objects, forgetting the oldest first.
#[derive(Debug)]
pub struct Completed {
    set: HashSet<ObjectId>,
    order: VecDeque<ObjectId>,
    capacity: usize,
}

impl Completed {
    pub fn new(capacity: usize) -> Completed {
        Completed {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.set.contains(id)
    }

    pub fn insert(&mut self, id: ObjectId) {
        if self.capacity == 0 || !self.set.insert(id.clone()) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(k: &str) -> ObjectId {
        ("b".into(), k.into(), "e".into())
    }

    #[test]
    fn bounded_and_oldest_first() {
        let mut c = Completed::new(2);
        c.insert(id("a"));
        c.insert(id("b"));
        c.insert(id("a"));
        assert!(c.contains(&id("a")) && c.contains(&id("b")));
        c.insert(id("c"));
        assert!(!c.contains(&id("a")), "the oldest is forgotten");
        assert!(c.contains(&id("b")) && c.contains(&id("c")));
        assert_eq!(c.len(), 2);
        assert!(
            !c.contains(&("b".into(), "b".into(), "other-etag".into())),
            "a new version is new"
        );
    }
}
