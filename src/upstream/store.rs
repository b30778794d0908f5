//! The in-memory store of SIM integrations, shared by both path families.
//!
//! Each item keeps its JSON document next to the bytes it serialises to, so
//! a GET copies a reference-counted buffer instead of serialising; the list
//! is built once and cached until the next write. Writes hold the lock only
//! for in-memory work (apply, validate, serialise), never across an
//! `.await`, and a read-modify-write (PATCH, PUT) runs entirely under it,
//! which makes every change atomic.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::{Map, Value};

use super::reply::Failure;

/// A JSON object.
pub(crate) type Doc = Map<String, Value>;

/// The fields the server owns: set on create, never changed by a client.
pub(crate) const READ_ONLY: [&str; 3] = ["id", "created", "modified"];

/// One stored integration.
#[derive(Debug)]
pub(crate) struct Item {
    /// Insertion order, for a stable list order.
    seq: u64,
    created: SystemTime,
    modified: SystemTime,
    /// The full ServiceDeskIntegrationDto, `id`/`created`/`modified` included.
    pub(crate) doc: Doc,
    /// `doc` serialised.
    pub(crate) bytes: Bytes,
}

/// The store: a map of items behind one lock.
#[derive(Debug, Default)]
pub(crate) struct Store {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    items: HashMap<Arc<str>, Arc<Item>>,
    next_seq: u64,
    /// The serialised list, until the next write.
    list: Option<Bytes>,
}

impl Store {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written item
        // (items are replaced whole), so a poisoned lock is still usable.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many items there are.
    pub(crate) fn len(&self) -> usize {
        self.read().items.len()
    }

    /// The item with this id.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Item>> {
        self.read().items.get(id).cloned()
    }

    /// Every item, oldest first, as one JSON array.
    pub(crate) fn list(&self) -> Bytes {
        if let Some(list) = &self.read().list {
            return list.clone();
        }
        let mut inner = self.write();
        if let Some(list) = &inner.list {
            return list.clone();
        }
        let mut items: Vec<&Arc<Item>> = inner.items.values().collect();
        items.sort_unstable_by_key(|item| item.seq);
        let len = items.iter().map(|i| i.bytes.len() + 1).sum::<usize>() + 2;
        let mut out = Vec::with_capacity(len);
        out.push(b'[');
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&item.bytes);
        }
        out.push(b']');
        let list = Bytes::from(out);
        inner.list = Some(list.clone());
        list
    }

    /// Stores a new item made of `doc` (read-only fields are assigned here)
    /// and returns it.
    pub(crate) fn create(&self, doc: Doc) -> Result<Arc<Item>, Failure> {
        let id: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let now = SystemTime::now();
        let mut inner = self.write();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let item = Arc::new(Item::new(seq, &id, now, now, doc)?);
        inner.items.insert(id, item.clone());
        inner.list = None;
        Ok(item)
    }

    /// Replaces the item `id` by what `change` makes of it, atomically:
    /// `change` sees the current document and either returns the new one
    /// (its read-only fields are overwritten here) or fails, in which case
    /// nothing changes. `modified` moves forward on every successful change.
    pub(crate) fn update(
        &self,
        id: &str,
        change: impl FnOnce(&Doc) -> Result<Doc, Failure>,
    ) -> Result<Arc<Item>, Failure> {
        let mut inner = self.write();
        let Some((key, current)) = inner.items.get_key_value(id) else {
            return Err(Failure::not_found());
        };
        let key = key.clone();
        let doc = change(&current.doc)?;
        // Strictly later than the previous value even within one clock
        // tick, so `modified` always tells two versions apart.
        let modified = SystemTime::now().max(current.modified + Duration::from_millis(1));
        let item = Arc::new(Item::new(
            current.seq,
            &key,
            current.created,
            modified,
            doc,
        )?);
        inner.items.insert(key, item.clone());
        inner.list = None;
        Ok(item)
    }

    /// Removes the item `id`; false if there was none.
    pub(crate) fn remove(&self, id: &str) -> bool {
        let mut inner = self.write();
        let removed = inner.items.remove(id).is_some();
        if removed {
            inner.list = None;
        }
        removed
    }
}

impl Item {
    fn new(
        seq: u64,
        id: &str,
        created: SystemTime,
        modified: SystemTime,
        mut doc: Doc,
    ) -> Result<Item, Failure> {
        doc.insert("id".into(), Value::String(id.to_owned()));
        doc.insert("created".into(), Value::String(timestamp(created)));
        doc.insert("modified".into(), Value::String(timestamp(modified)));
        let bytes = serde_json::to_vec(&doc)
            .map_err(|e| Failure::internal(format!("cannot serialise an integration: {e}")))?;
        Ok(Item {
            seq,
            created,
            modified,
            doc,
            bytes: Bytes::from(bytes),
        })
    }
}

/// RFC 3339 in UTC with milliseconds, as the vendor writes them
/// (`2024-01-17T18:45:25.994Z`).
fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Doc {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn create_assigns_id_and_timestamps() {
        let store = Store::default();
        let item = store.create(doc(json!({"name": "a"}))).unwrap();
        let id = item.doc["id"].as_str().unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(item.doc["created"], item.doc["modified"]);
        assert!(item.doc["created"].as_str().unwrap().ends_with('Z'));
        assert_eq!(store.get(id).unwrap().bytes, item.bytes);
    }

    #[test]
    fn update_keeps_created_and_advances_modified() {
        let store = Store::default();
        let item = store.create(doc(json!({"name": "a"}))).unwrap();
        let id = item.doc["id"].as_str().unwrap().to_owned();
        let after = store
            .update(&id, |_| Ok(doc(json!({"name": "b", "id": "x"}))))
            .unwrap();
        assert_eq!(after.doc["id"], json!(id));
        assert_eq!(after.doc["name"], json!("b"));
        assert_eq!(after.doc["created"], item.doc["created"]);
        assert!(after.modified > item.modified);
    }

    #[test]
    fn failed_update_changes_nothing() {
        let store = Store::default();
        let item = store.create(doc(json!({"name": "a"}))).unwrap();
        let id = item.doc["id"].as_str().unwrap();
        let err = store.update(id, |_| Err(Failure::bad_request("no")));
        assert!(err.is_err());
        assert_eq!(store.get(id).unwrap().bytes, item.bytes);
        assert!(store.update("missing", |d| Ok(d.clone())).is_err());
    }

    #[test]
    fn list_is_in_creation_order_and_follows_writes() {
        let store = Store::default();
        assert_eq!(&store.list()[..], b"[]");
        let a = store.create(doc(json!({"name": "a"}))).unwrap();
        let b = store.create(doc(json!({"name": "b"}))).unwrap();
        let list: Vec<Value> = serde_json::from_slice(&store.list()).unwrap();
        assert_eq!(
            list,
            vec![Value::Object(a.doc.clone()), Value::Object(b.doc.clone())]
        );
        assert!(store.remove(a.doc["id"].as_str().unwrap()));
        assert!(!store.remove(a.doc["id"].as_str().unwrap()));
        let list: Vec<Value> = serde_json::from_slice(&store.list()).unwrap();
        assert_eq!(list, vec![Value::Object(b.doc.clone())]);
        assert_eq!(store.len(), 1);
    }
}
