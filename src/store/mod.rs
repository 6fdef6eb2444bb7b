//! The metadata store: the source of truth for which images (and later pods
//! and containers) exist.
//!
//! redb, an embedded pure-Rust B-tree with copy-on-write commits: a commit is
//! atomic and durable when `apply` returns, and a `kill -9` at any point
//! leaves the last committed state (no WAL replay to get wrong, no C build).
//! The store is generic: tables hold JSON values under string keys, and the
//! domain modules own their record types. Callers keep an in-memory index
//! loaded at start-up and write through; reads never hit the disk.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Bumped when a record's shape changes incompatibly; `open` refuses a store
/// written by a newer crius rather than misreading it.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The tables the domain writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Images,
    Layers,
    Sandboxes,
    Containers,
}

impl Table {
    fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Table::Images => TableDefinition::new("images"),
            Table::Layers => TableDefinition::new("layers"),
            Table::Sandboxes => TableDefinition::new("sandboxes"),
            Table::Containers => TableDefinition::new("containers"),
        }
    }
    const ALL: [Table; 4] = [
        Table::Images,
        Table::Layers,
        Table::Sandboxes,
        Table::Containers,
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open metadata store {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error(
        "metadata store {path} has schema version {found}, newer than this crius understands ({SCHEMA_VERSION}); run a newer crius"
    )]
    Schema { path: PathBuf, found: u64 },
    #[error("metadata store {op} failed: {message}")]
    Db { op: &'static str, message: String },
}

fn db_err(op: &'static str) -> impl Fn(redb::Error) -> StoreError {
    move |e| StoreError::Db {
        op,
        message: e.to_string(),
    }
}

/// One change in a batch: `value: None` deletes the key.
#[derive(Debug, Clone)]
pub struct Write {
    pub table: Table,
    pub key: String,
    pub value: Option<Vec<u8>>,
}

impl Write {
    pub fn put(table: Table, key: impl Into<String>, value: Vec<u8>) -> Self {
        Self {
            table,
            key: key.into(),
            value: Some(value),
        }
    }
    pub fn delete(table: Table, key: impl Into<String>) -> Self {
        Self {
            table,
            key: key.into(),
            value: None,
        }
    }
}

#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store and checks its schema version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: path.to_owned(),
            message,
        };
        let db = Database::create(path).map_err(|e| open_err(e.to_string()))?;
        let store = Self {
            db,
            path: path.to_owned(),
        };
        let tx = store
            .db
            .begin_write()
            .map_err(|e| open_err(e.to_string()))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| open_err(e.to_string()))?;
            let found = meta
                .get("schema_version")
                .map_err(|e| open_err(e.to_string()))?
                .map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::Schema {
                        path: path.to_owned(),
                        found: v,
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)
                        .map_err(|e| open_err(e.to_string()))?;
                }
            }
            for t in Table::ALL {
                tx.open_table(t.def())
                    .map_err(|e| open_err(e.to_string()))?;
            }
        }
        tx.commit().map_err(|e| open_err(e.to_string()))?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every (key, value) of a table, in key order.
    pub fn scan(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let e = db_err("read");
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let t = tx.open_table(table.def()).map_err(|x| e(x.into()))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|x| e(x.into()))? {
            let (k, v) = row.map_err(|x| e(x.into()))?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Applies a batch atomically and durably.
    pub fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let e = db_err("write");
        let tx = self.db.begin_write().map_err(|x| e(x.into()))?;
        for w in writes {
            let mut t = tx.open_table(w.table.def()).map_err(|x| e(x.into()))?;
            match &w.value {
                Some(v) => {
                    t.insert(w.key.as_str(), v.as_slice())
                        .map_err(|x| e(x.into()))?;
                }
                None => {
                    t.remove(w.key.as_str()).map_err(|x| e(x.into()))?;
                }
            }
        }
        tx.commit().map_err(|x| e(x.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_is_atomic_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.redb");
        {
            let s = Store::open(&p).unwrap();
            s.apply(&[
                Write::put(Table::Images, "a", b"1".to_vec()),
                Write::put(Table::Layers, "l", b"2".to_vec()),
            ])
            .unwrap();
            s.apply(&[Write::delete(Table::Images, "a")]).unwrap();
            s.apply(&[Write::put(Table::Images, "b", b"3".to_vec())])
                .unwrap();
        }
        let s = Store::open(&p).unwrap();
        assert_eq!(
            s.scan(Table::Images).unwrap(),
            vec![("b".into(), b"3".to_vec())]
        );
        assert_eq!(s.scan(Table::Layers).unwrap().len(), 1);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.redb");
        {
            let db = Database::create(&p).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("schema_version", SCHEMA_VERSION + 1)
                .unwrap();
            tx.commit().unwrap();
        }
        let err = Store::open(&p).unwrap_err().to_string();
        assert!(err.contains("schema version"), "{err}");
    }
}
