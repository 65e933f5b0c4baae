//! Tests of the table format: blocks, filters, the cache, and whole tables
//! in a [`MemFs`] checked against sorted-vector models.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use ekv_io::{FileSystem, MemFile, MemFs};
use futures::executor::block_on;
use proptest::prelude::*;

use super::block::{Block, BlockBuilder, Cursor, Target};
use super::bloom::{self, Filter};
use super::format::{self, FOOTER_LEN};
use super::*;
use crate::error::Error;
use crate::key::{self, Kind, Tombstone};

/// (internal key, value)
type Entry = (Vec<u8>, Vec<u8>);

fn ik(user: &[u8], seq: u64, kind: Kind) -> Vec<u8> {
    key::encode(user, seq, kind as u8)
}

fn small_opts() -> TableOptions {
    TableOptions { block_size: 256, restart_interval: 4, bloom_bits_per_key: 10, write_chunk: 1024 }
}

/// Sorts by internal key and drops duplicate keys.
fn sorted(mut v: Vec<Entry>) -> Vec<Entry> {
    v.sort_by(|a, b| key::compare(&a.0, &b.0));
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

fn path() -> PathBuf {
    PathBuf::from("/db/000007.sst")
}

async fn must_build(
    fs: &MemFs,
    path: &Path,
    entries: &[Entry],
    tombstones: &[Tombstone],
    opts: TableOptions,
) -> TableInfo {
    let file = fs.create(path).await.unwrap();
    let mut b = TableBuilder::new(file, opts);
    for (k, v) in entries {
        b.add(k, v).await.unwrap();
    }
    for t in tombstones {
        b.add_tombstone(t.clone());
    }
    assert_eq!(b.num_entries(), entries.len() as u64);
    b.finish().await.unwrap()
}

async fn must_open(fs: &MemFs, path: &Path, size: u64, global_seq: Option<u64>) -> Rc<Table<MemFile>> {
    let cache = Rc::new(BlockCache::new(1 << 20));
    must_open_with(fs, path, size, global_seq, cache).await
}

async fn must_open_with(
    fs: &MemFs,
    path: &Path,
    size: u64,
    global_seq: Option<u64>,
    cache: Rc<BlockCache>,
) -> Rc<Table<MemFile>> {
    let file = fs.open(path).await.unwrap();
    Rc::new(Table::open(file, 7, size, global_seq, cache).await.unwrap())
}

async fn must_collect_forward(it: &mut TableIter<MemFile>) -> Vec<Entry> {
    let mut out = Vec::new();
    it.seek_to_first().await.unwrap();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next().await.unwrap();
    }
    out
}

async fn must_collect_backward(it: &mut TableIter<MemFile>) -> Vec<Entry> {
    let mut out = Vec::new();
    it.seek_to_last().await.unwrap();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.prev().await.unwrap();
    }
    out.reverse();
    out
}

fn model_seek<'a>(model: &'a [Entry], target: &[u8]) -> Option<&'a Entry> {
    model.iter().find(|e| key::compare(&e.0, target).is_ge())
}

fn model_seek_for_prev<'a>(model: &'a [Entry], target: &[u8]) -> Option<&'a Entry> {
    model.iter().rev().find(|e| key::compare(&e.0, target).is_le())
}

fn current(it: &TableIter<MemFile>) -> Option<Entry> {
    it.valid().then(|| (it.key().to_vec(), it.value().to_vec()))
}

/// Entries with few distinct user keys (shared prefixes, several versions
/// each) and both kinds.
fn entries_strategy(max: usize) -> impl Strategy<Value = Vec<Entry>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(b'a'..b'e', 0..6),
            0u64..40,
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..40),
        ),
        0..max,
    )
    .prop_map(|v| {
        sorted(
            v.into_iter()
                .map(|(u, seq, put, val)| {
                    let kind = if put { Kind::Put } else { Kind::Delete };
                    (ik(&u, seq, kind), if put { val } else { Vec::new() })
                })
                .collect(),
        )
    })
}

fn target_strategy() -> impl Strategy<Value = Vec<u8>> {
    (proptest::collection::vec(b'a'..b'f', 0..7), 0u64..45, 0u8..2)
        .prop_map(|(u, s, k)| key::encode(&u, s, k))
}

// ---------------------------------------------------------------- blocks

fn must_block(entries: &[Entry], interval: usize) -> Block {
    let mut b = BlockBuilder::new(interval);
    for (k, v) in entries {
        b.add(k, v);
    }
    let mut out = Vec::new();
    let n = b.finish_into(&mut out);
    assert_eq!(n, out.len());
    assert!(b.is_empty(), "builder resets");
    Block::new(Bytes::from(out)).unwrap()
}

proptest! {
    #[test]
    fn block_round_trips_both_ways_and_seeks(
        entries in entries_strategy(120),
        interval in 1usize..20,
        targets in proptest::collection::vec(target_strategy(), 0..20),
    ) {
        let block = must_block(&entries, interval);
        let mut c = Cursor::default();
        let mut forward = Vec::new();
        c.seek_to_first(&block).unwrap();
        while c.valid() {
            forward.push((c.key().to_vec(), c.value(&block).to_vec()));
            c.next(&block).unwrap();
        }
        prop_assert_eq!(&forward, &entries);
        let mut backward = Vec::new();
        c.seek_to_last(&block).unwrap();
        while c.valid() {
            backward.push((c.key().to_vec(), c.value(&block).to_vec()));
            c.prev(&block).unwrap();
        }
        backward.reverse();
        prop_assert_eq!(&backward, &entries);
        for t in targets.iter().chain(entries.iter().map(|e| &e.0)) {
            c.seek(&block, &Target::of(t)).unwrap();
            let got = c.valid().then(|| (c.key().to_vec(), c.value_bytes(&block).to_vec()));
            prop_assert_eq!(got.as_ref(), model_seek(&entries, t));
        }
    }

    #[test]
    fn arbitrary_blocks_decode_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzz_block(&data);
    }
}

#[test]
fn hostile_block_structure_is_refused() {
    let entries: Vec<Entry> = (0..10u8).map(|i| (ik(&[b'k', i], 1, Kind::Put), vec![i])).collect();
    let mut good = BlockBuilder::new(3);
    for (k, v) in &entries {
        good.add(k, v);
    }
    let mut raw = Vec::new();
    good.finish_into(&mut raw);
    let n = raw.len();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = raw.clone();
        f(&mut b);
        Block::new(Bytes::from(b))
    };
    assert!(with(&|_| {}).is_ok());
    assert!(with(&|b| b[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes())).is_err(), "restart count");
    assert!(with(&|b| b[n - 8..n - 4].copy_from_slice(&0u32.to_le_bytes())).is_err(), "restarts unordered");
    assert!(
        with(&|b| b[n - 8..n - 4].copy_from_slice(&9999u32.to_le_bytes())).is_err(),
        "restart out of bounds"
    );
    assert!(with(&|b| b.truncate(3)).is_err(), "too short");
    assert!(Block::new(Bytes::from_static(&[0, 0, 0, 0])).is_ok(), "an empty block is fine");

    // An entry claiming a longer shared prefix than its predecessor's key.
    let mut b = BlockBuilder::new(16);
    b.add(&ik(b"a", 1, Kind::Put), b"");
    b.add(&ik(b"b", 1, Kind::Put), b"");
    let mut raw = Vec::new();
    b.finish_into(&mut raw);
    let second = 3 + 9;
    raw[second] = 50;
    let block = Block::new(Bytes::from(raw)).unwrap();
    let mut c = Cursor::default();
    c.seek_to_first(&block).unwrap();
    assert!(c.next(&block).is_err());
    assert!(!c.valid());

    // A key too short for its trailer, and an unknown kind.
    for (key, what) in [(vec![1u8, 2, 3], "short key"), (key::encode(b"x", 1, 7), "bad kind")] {
        let mut b = BlockBuilder::new(16);
        b.add(&key, b"v");
        let mut raw = Vec::new();
        b.finish_into(&mut raw);
        let block = Block::new(Bytes::from(raw)).unwrap();
        assert!(Cursor::default().seek_to_first(&block).is_err(), "{what}");
    }
}

// ---------------------------------------------------------------- meta blocks

#[test]
fn footer_round_trips_and_every_flip_is_refused() {
    let footer = Footer {
        file_size: 1 << 20,
        index: BlockHandle { offset: 1000, size: 20 },
        filter: BlockHandle { offset: 900, size: 50 },
        tombstones: BlockHandle { offset: 955, size: 3 },
        properties: BlockHandle { offset: 963, size: 30 },
    };
    let mut buf = Vec::new();
    footer.encode_into_vec(&mut buf);
    assert_eq!(buf.len(), FOOTER_LEN);
    assert_eq!(Footer::decode_from(&buf), Ok(footer));
    for i in 0..buf.len() {
        let mut bad = buf.clone();
        bad[i] ^= 0x04;
        assert!(Footer::decode_from(&bad).is_err(), "byte {i}");
    }
    assert!(Footer::decode_from(&buf[1..]).is_err());
}

#[test]
fn tombstones_and_properties_round_trip_and_refuse_lies() {
    let ts = vec![
        Tombstone { start: b"a".to_vec(), end: b"c".to_vec(), seq: 9 },
        Tombstone { start: b"a".to_vec(), end: b"b".to_vec(), seq: 4 },
        Tombstone { start: b"x".to_vec(), end: b"z".to_vec(), seq: 5 },
    ];
    let mut buf = Vec::new();
    format::encode_tombstones(&mut buf, &ts);
    assert_eq!(format::decode_tombstones(&buf).unwrap(), ts);
    // A huge count over few bytes is refused before anything is allocated.
    let mut lie = Vec::new();
    ekv_proto::codec::put_uvarint(&mut lie, u64::MAX / 2);
    lie.extend_from_slice(&[0; 8]);
    assert!(format::decode_tombstones(&lie).is_err());
    let mut unsorted = Vec::new();
    format::encode_tombstones(&mut unsorted, &[ts[2].clone(), ts[0].clone()]);
    assert!(format::decode_tombstones(&unsorted).is_err());

    let info = TableInfo {
        size: 0,
        num_entries: 10,
        num_deletions: 3,
        num_tombstones: 2,
        smallest: Some(ik(b"a", 3, Kind::Put)),
        largest: Some(ik(b"z", 1, Kind::Delete)),
        min_seq: 1,
        max_seq: 30,
        raw_key_bytes: 100,
        raw_value_bytes: 1000,
    };
    let mut buf = Vec::new();
    format::encode_properties(&mut buf, &info);
    assert_eq!(format::decode_properties(&buf).unwrap(), info);
    assert!(format::decode_properties(&buf[..buf.len() - 1]).is_err());
    let bad = TableInfo { num_deletions: 11, ..info };
    let mut buf = Vec::new();
    format::encode_properties(&mut buf, &bad);
    assert!(format::decode_properties(&buf).is_err());
}

// ---------------------------------------------------------------- bloom

#[test]
fn bloom_has_no_false_negatives_and_few_false_positives() {
    let n = 20_000;
    let hashes: Vec<u64> = (0..n).map(|i| bloom::hash(format!("user{i:010}").as_bytes())).collect();
    let mut buf = Vec::new();
    bloom::build(&hashes, 10, &mut buf);
    let filter = Filter::decode(&buf).unwrap().unwrap();
    for i in 0..n {
        assert!(filter.may_contain(format!("user{i:010}").as_bytes()));
    }
    let probes = 50_000;
    let fp = (0..probes).filter(|i| filter.may_contain(format!("absent{i:010}").as_bytes())).count();
    let rate = fp as f64 / probes as f64;
    assert!(rate < 0.03, "false positive rate {rate}");
    // Sanity that the filter filters at all.
    assert!(rate > 0.0001, "suspiciously perfect: {rate}");

    let mut none = Vec::new();
    bloom::build(&hashes, 0, &mut none);
    assert!(none.is_empty() && Filter::decode(&none).unwrap().is_none());
    assert!(Filter::decode(&buf[..buf.len() - 1]).is_err());
    let mut bad_k = buf.clone();
    let k_at = bad_k.len() - 5;
    bad_k[k_at] = 0;
    assert!(Filter::decode(&bad_k).is_err());
}

// ---------------------------------------------------------------- cache

#[test]
fn cache_stays_within_capacity_and_counts() {
    let cache = BlockCache::new(10_000);
    let mk = |fill: usize| {
        let mut b = BlockBuilder::new(16);
        b.add(&ik(b"k", 1, Kind::Put), &vec![1u8; fill]);
        let mut raw = Vec::new();
        b.finish_into(&mut raw);
        Block::new(Bytes::from(raw)).unwrap()
    };
    for i in 0..1000u64 {
        cache.insert(i % 3, i * 4096, mk(400 + (i as usize % 200)));
        let s = cache.stats();
        assert!(s.usage <= s.capacity, "{s:?}");
    }
    let s = cache.stats();
    assert_eq!(s.inserts, 1000);
    assert!(s.evictions > 900, "{s:?}");
    assert!(cache.get(999 % 3, 999 * 4096).is_some(), "newest entry present");
    assert!(cache.get(1, 1).is_none());
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (1, 1));
    // Larger than the whole cache: not inserted, nothing evicted.
    cache.insert(5, 0, mk(20_000));
    assert!(cache.get(5, 0).is_none());
    assert_eq!(cache.stats().evictions, s.evictions);
    let zero = BlockCache::new(0);
    zero.insert(1, 0, mk(10));
    assert_eq!(zero.stats().usage, 0);
}

#[test]
fn hot_blocks_survive_a_scan_of_cold_ones() {
    let cache = BlockCache::new(20 * 600);
    let mk = || {
        let mut b = BlockBuilder::new(16);
        b.add(&ik(b"k", 1, Kind::Put), &[0u8; 400]);
        let mut raw = Vec::new();
        b.finish_into(&mut raw);
        Block::new(Bytes::from(raw)).unwrap()
    };
    cache.insert(1, 0, mk());
    for i in 1..200u64 {
        assert!(cache.get(1, 0).is_some(), "hot block evicted after {i} cold inserts");
        cache.insert(2, i, mk());
    }
}

// ---------------------------------------------------------------- tables

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn table_iterates_seeks_and_gets_like_the_model(
        entries in entries_strategy(400),
        block_size in 32usize..600,
        restart_interval in 1usize..10,
        targets in proptest::collection::vec(target_strategy(), 1..40),
    ) {
        block_on(async {
            let fs = MemFs::new(512);
            let opts = TableOptions { block_size, restart_interval, bloom_bits_per_key: 10, write_chunk: 512 };
            let info = must_build(&fs, &path(), &entries, &[], opts).await;
            let table = must_open(&fs, &path(), info.size, None).await;
            prop_assert_eq!(table.info(), &info);
            prop_assert_eq!(must_collect_forward(&mut table.iter()).await, entries.clone());
            prop_assert_eq!(must_collect_backward(&mut table.iter()).await, entries.clone());
            prop_assert_eq!(must_collect_forward(&mut table.iter_for_compaction()).await, entries.clone());

            let mut it = table.iter();
            for t in targets.iter().chain(entries.iter().map(|e| &e.0)) {
                it.seek(t).await.unwrap();
                prop_assert_eq!(current(&it), model_seek(&entries, t).cloned(), "seek {:?}", t);
                it.seek_for_prev(t).await.unwrap();
                prop_assert_eq!(current(&it), model_seek_for_prev(&entries, t).cloned(), "seek_for_prev {:?}", t);
                // Stepping back from a seek (a no-op when it found nothing).
                it.seek(t).await.unwrap();
                it.prev().await.unwrap();
                let at = entries.iter().position(|e| key::compare(&e.0, t).is_ge());
                let want = at.and_then(|i| i.checked_sub(1)).map(|i| entries[i].clone());
                prop_assert_eq!(current(&it), want, "seek then prev {:?}", t);
                it.seek_for_prev(t).await.unwrap();
                it.next().await.unwrap();
                let at = entries.iter().rposition(|e| key::compare(&e.0, t).is_le());
                let want = at.and_then(|i| entries.get(i + 1)).cloned();
                prop_assert_eq!(current(&it), want, "seek_for_prev then next {:?}", t);
            }

            for t in &targets {
                let (user, snapshot) = (key::user_key(t), key::seq_of(t));
                let want = entries
                    .iter()
                    .find(|e| key::user_key(&e.0) == user && key::seq_of(&e.0) <= snapshot)
                    .map(|e| {
                        let kind = Kind::from_u8(key::kind_of(&e.0)).unwrap();
                        (key::seq_of(&e.0), kind, Bytes::from(e.1.clone()))
                    });
                prop_assert_eq!(table.get(user, snapshot).await.unwrap(), want, "get {:?}@{}", user, snapshot);
            }
            Ok(())
        })?;
    }

    #[test]
    fn global_seq_rewrites_every_version(
        keys in proptest::collection::btree_set((proptest::collection::vec(b'a'..b'd', 0..4), any::<bool>()), 0..60),
        global in 1u64..100,
        targets in proptest::collection::vec(
            (proptest::collection::vec(b'a'..b'e', 0..5), 0u64..3, 0u8..2), 1..30),
    ) {
        block_on(async {
            let entries = sorted(keys.iter().map(|(u, put)| {
                let kind = if *put { Kind::Put } else { Kind::Delete };
                (ik(u, 0, kind), u.clone())
            }).collect());
            let fs = MemFs::new(512);
            let ts = [Tombstone { start: b"b".to_vec(), end: b"c".to_vec(), seq: 0 }];
            let info = must_build(&fs, &path(), &entries, &ts, small_opts()).await;
            let table = must_open(&fs, &path(), info.size, Some(global)).await;
            let model: Vec<Entry> = entries.iter().map(|(k, v)| {
                let mut k = k.clone();
                key::set_seq(&mut k, global);
                (k, v.clone())
            }).collect();
            prop_assert_eq!(must_collect_forward(&mut table.iter()).await, model.clone());
            prop_assert_eq!(must_collect_backward(&mut table.iter()).await, model.clone());
            prop_assert_eq!(table.tombstones()[0].seq, global);
            prop_assert_eq!((table.info().min_seq, table.info().max_seq), (global, global));
            prop_assert_eq!(table.info().smallest.as_ref(), model.first().map(|e| &e.0));

            let mut it = table.iter();
            for (u, delta, kind) in &targets {
                let t = key::encode(u, global + delta - 1, *kind);
                it.seek(&t).await.unwrap();
                prop_assert_eq!(current(&it), model_seek(&model, &t).cloned(), "seek {:?}", t);
                it.seek_for_prev(&t).await.unwrap();
                prop_assert_eq!(current(&it), model_seek_for_prev(&model, &t).cloned(), "seek_for_prev {:?}", t);
                let snapshot = global + delta - 1;
                let want = model.iter().find(|e| key::user_key(&e.0) == u.as_slice() && global <= snapshot)
                    .map(|e| (global, Kind::from_u8(key::kind_of(&e.0)).unwrap(), Bytes::from(e.1.clone())));
                prop_assert_eq!(table.get(u, snapshot).await.unwrap(), want);
            }
            Ok(())
        })?;
    }

    #[test]
    fn arbitrary_tables_decode_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        fuzz_table(&data);
    }
}

#[test]
fn get_sees_the_newest_version_at_each_snapshot() {
    block_on(async {
        let mut entries = Vec::new();
        for u in [&b"apple"[..], b"banana", b"cherry"] {
            for seq in [30, 20, 10] {
                let kind = if seq == 20 && u == b"banana" { Kind::Delete } else { Kind::Put };
                entries
                    .push((ik(u, seq, kind), format!("{}@{seq}", String::from_utf8_lossy(u)).into_bytes()));
            }
        }
        let entries = sorted(entries);
        let fs = MemFs::default();
        let opts = TableOptions { block_size: 64, ..small_opts() };
        let info = must_build(&fs, &path(), &entries, &[], opts).await;
        assert_eq!(info.num_deletions, 1);
        let table = must_open(&fs, &path(), info.size, None).await;
        let get = |u: &'static [u8], s| {
            let table = table.clone();
            async move { table.get(u, s).await.unwrap().map(|(seq, kind, v)| (seq, kind, v.to_vec())) }
        };
        assert_eq!(get(b"apple", 5).await, None, "older than every version");
        assert_eq!(get(b"apple", 10).await, Some((10, Kind::Put, b"apple@10".to_vec())));
        assert_eq!(get(b"apple", 29).await, Some((20, Kind::Put, b"apple@20".to_vec())));
        assert_eq!(get(b"apple", u64::MAX).await, Some((30, Kind::Put, b"apple@30".to_vec())));
        assert_eq!(get(b"banana", 25).await.map(|e| (e.0, e.1)), Some((20, Kind::Delete)));
        assert_eq!(get(b"cherry", 30).await, Some((30, Kind::Put, b"cherry@30".to_vec())));
        assert_eq!(get(b"apples", 30).await, None);
        assert_eq!(get(b"", 30).await, None);
        assert_eq!(get(b"zzz", 30).await, None);
    });
}

#[test]
fn tombstones_round_trip_sorted_with_seq_bounds() {
    block_on(async {
        let fs = MemFs::default();
        let ts = vec![
            Tombstone { start: b"m".to_vec(), end: b"p".to_vec(), seq: 7 },
            Tombstone { start: b"a".to_vec(), end: b"c".to_vec(), seq: 3 },
            Tombstone { start: b"a".to_vec(), end: b"z".to_vec(), seq: 90 },
        ];
        let entries = vec![(ik(b"k", 40, Kind::Put), b"v".to_vec())];
        let info = must_build(&fs, &path(), &entries, &ts, small_opts()).await;
        assert_eq!((info.num_tombstones, info.min_seq, info.max_seq), (3, 3, 90));
        let table = must_open(&fs, &path(), info.size, None).await;
        let want = vec![ts[2].clone(), ts[1].clone(), ts[0].clone()];
        assert_eq!(table.tombstones(), want.as_slice());

        // A table of tombstones only.
        let p = PathBuf::from("/db/000008.sst");
        let info = must_build(&fs, &p, &[], &ts, small_opts()).await;
        assert_eq!((info.num_entries, info.smallest.clone(), info.min_seq, info.max_seq), (0, None, 3, 90));
        let table = must_open(&fs, &p, info.size, None).await;
        assert_eq!(table.tombstones().len(), 3);
        assert!(must_collect_forward(&mut table.iter()).await.is_empty());
        assert_eq!(table.get(b"k", 100).await.unwrap(), None);

        // And an entirely empty one.
        let p = PathBuf::from("/db/000009.sst");
        let info = must_build(&fs, &p, &[], &[], small_opts()).await;
        assert_eq!((info.num_entries, info.min_seq, info.max_seq), (0, 0, 0));
        let table = must_open(&fs, &p, info.size, Some(5)).await;
        assert_eq!((table.info().min_seq, table.info().max_seq), (0, 0));
        let mut it = table.iter();
        it.seek(&ik(b"a", 1, Kind::Put)).await.unwrap();
        assert!(!it.valid());
        it.seek_for_prev(&ik(b"a", 1, Kind::Put)).await.unwrap();
        assert!(!it.valid());
    });
}

#[test]
fn file_is_aligned_footer_last_and_written_in_chunks() {
    block_on(async {
        let fs = MemFs::new(4096);
        let file = fs.create(&path()).await.unwrap();
        let opts = TableOptions { write_chunk: 5000, ..TableOptions::default() };
        let mut b = TableBuilder::new(file, opts);
        let mut written_early = false;
        for i in 0..5000u32 {
            b.add(&ik(format!("key{i:08}").as_bytes(), 1, Kind::Put), &[i as u8; 50]).await.unwrap();
            let on_disk = fs.read_file(&path()).unwrap().len() as u64;
            assert_eq!(on_disk % 8192, 0, "writes are whole rounded-up chunks");
            assert!(on_disk <= b.estimated_size());
            written_early |= on_disk > 0;
        }
        assert!(written_early, "data goes out before finish");
        let info = b.finish().await.unwrap();
        let bytes = fs.read_file(&path()).unwrap();
        assert_eq!(bytes.len() as u64, info.size);
        assert_eq!(info.size % 4096, 0);
        let footer = Footer::decode_from(&bytes[bytes.len() - FOOTER_LEN..]).unwrap();
        assert_eq!(footer.file_size, info.size);
        assert_eq!(info.num_entries, 5000);
        assert_eq!(info.raw_value_bytes, 5000 * 50);
        assert_eq!(info.raw_key_bytes, 5000 * 19);
        assert_eq!(info.smallest, Some(ik(b"key00000000", 1, Kind::Put)));
        assert_eq!(info.largest, Some(ik(b"key00004999", 1, Kind::Put)));
        let table = must_open(&fs, &path(), info.size, None).await;
        assert!(table.data_blocks().len() > 50);
        for h in table.data_blocks() {
            assert!(h.size <= 4096, "blocks stay within the block size: {h:?}");
        }
        // A size other than the footer's is refused.
        let file = fs.open(&path()).await.unwrap();
        let err =
            Table::open(file, 7, info.size - 4096, None, Rc::new(BlockCache::new(0))).await.unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "{err}");
    });
}

#[test]
fn reads_go_through_the_cache_but_compaction_reads_do_not() {
    block_on(async {
        let fs = MemFs::default();
        let entries: Vec<Entry> =
            (0..500u32).map(|i| (ik(format!("k{i:05}").as_bytes(), 2, Kind::Put), vec![1; 30])).collect();
        let info = must_build(&fs, &path(), &entries, &[], small_opts()).await;
        let cache = Rc::new(BlockCache::new(1 << 20));
        let table = must_open_with(&fs, &path(), info.size, None, cache.clone()).await;
        let blocks = table.data_blocks().len() as u64;

        must_collect_forward(&mut table.iter_for_compaction()).await;
        assert_eq!(cache.stats(), CacheStats { capacity: 1 << 20, ..CacheStats::default() });

        assert!(table.get(b"k00010", 5).await.unwrap().is_some());
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.inserts), (0, 1, 1));
        assert!(table.get(b"k00010", 5).await.unwrap().is_some());
        assert_eq!(cache.stats().hits, 1);
        assert_eq!(table.get(b"k00010x", 5).await.unwrap(), None);

        // A forward scan reads ahead after two sequential blocks and leaves
        // what it read ahead out of the cache.
        must_collect_forward(&mut table.iter()).await;
        let s = cache.stats();
        assert!(blocks > 4);
        assert!(s.inserts <= 3, "only the get's block and those before read-ahead starts are cached: {s:?}");
        // A backward scan reads block by block through the cache.
        must_collect_backward(&mut table.iter()).await;
        let s = cache.stats();
        assert_eq!(s.inserts, blocks, "each block read from disk into the cache once");
        assert!(s.usage > 0 && s.usage <= s.capacity);
        must_collect_backward(&mut table.iter()).await;
        assert_eq!(cache.stats().inserts, blocks, "second scan all hits");
        for (k, _) in &entries {
            assert!(table.may_contain(key::user_key(k)));
        }

        // With no cache at all, reads still work.
        let table = must_open_with(&fs, &path(), info.size, None, Rc::new(BlockCache::new(0))).await;
        assert_eq!(must_collect_forward(&mut table.iter()).await, entries);
    });
}

#[test]
fn iterator_survives_eviction_of_its_block() {
    block_on(async {
        let fs = MemFs::default();
        let entries: Vec<Entry> =
            (0..300u32).map(|i| (ik(format!("k{i:05}").as_bytes(), 2, Kind::Put), vec![9; 40])).collect();
        let info = must_build(&fs, &path(), &entries, &[], small_opts()).await;
        // Room for about two blocks: every new block evicts an old one.
        let table = must_open_with(&fs, &path(), info.size, None, Rc::new(BlockCache::new(700))).await;
        let mut a = table.iter();
        let mut b = table.iter();
        a.seek_to_first().await.unwrap();
        b.seek_to_last().await.unwrap();
        let mut forward = Vec::new();
        while a.valid() {
            forward.push((a.key().to_vec(), a.value().to_vec()));
            a.next().await.unwrap();
            b.prev().await.unwrap();
        }
        assert_eq!(forward, entries);
    });
}

#[test]
fn bad_arguments_are_refused() {
    block_on(async {
        let fs = MemFs::default();
        let mut b = TableBuilder::new(fs.create(&path()).await.unwrap(), small_opts());
        assert!(matches!(b.add(b"short", b"").await, Err(Error::InvalidArgument(_))));
        assert!(matches!(b.add(&key::encode(b"k", 1, 9), b"").await, Err(Error::InvalidArgument(_))));
        b.abandon().await;
        let file = fs.open(&path()).await.unwrap();
        let err = Table::open(file, 1, 0, None, Rc::new(BlockCache::new(0))).await.unwrap_err();
        assert!(matches!(err, Error::Corruption { offset: 0, .. }), "{err}");
    });
}
