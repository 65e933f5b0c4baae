//! What the fault tests (failpoints, I/O errors) share: a small tree on
//! `MemFs`, writes recorded in a model, and the tree's contents read back.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ekv_io::MemFs;
use ekv_lsm::{IterOptions, Lsm, Options};

/// What the tree should hold.
pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;

pub fn dir() -> PathBuf {
    PathBuf::from("/db")
}

/// Small memtables, so that a few writes flush.
pub fn options() -> Options {
    Options { memtable_size: 4096, ..Options::default() }
}

/// Puts keys `from..to` (values tagged with `tag`) and records them.
pub async fn put_all(lsm: &Lsm<MemFs>, model: &mut Model, from: u32, to: u32, tag: &str) {
    let cf = lsm.default_cf();
    for i in from..to {
        let (k, v) = (format!("key{i:05}").into_bytes(), format!("{tag}-{i}").into_bytes());
        lsm.put(cf, &k, &v).await.unwrap();
        model.insert(k, v);
    }
}

/// Everything the tree holds.
pub async fn contents(lsm: &Lsm<MemFs>) -> Model {
    let mut it = lsm.iter(lsm.default_cf(), IterOptions::default()).unwrap();
    it.seek_to_first().await.unwrap();
    let mut out = Model::new();
    while it.valid() {
        out.insert(it.key().to_vec(), it.value().to_vec());
        it.next().await.unwrap();
    }
    out
}

/// A tree on a fresh `MemFs` holding keys 0..100 flushed (`durable`, what
/// any crash must keep) and then keys 50..`more_to` only in the memtable
/// (`model`, everything written). Returns (fs, tree, durable, model).
pub async fn durable_then_more(more_to: u32) -> (MemFs, Lsm<MemFs>, Model, Model) {
    let fs = MemFs::new(512);
    let lsm = Lsm::open(fs.clone(), dir(), options()).await.unwrap();
    let mut model = Model::new();
    put_all(&lsm, &mut model, 0, 100, "a").await;
    lsm.flush().await.unwrap();
    let durable = model.clone();
    put_all(&lsm, &mut model, 50, more_to, "b").await;
    (fs, lsm, durable, model)
}
