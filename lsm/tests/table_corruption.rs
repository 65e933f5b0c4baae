//! Damaged tables: every flipped byte inside a block is reported as
//! corruption of that block (file and offset), never as a panic or a wrong
//! value; arbitrary and truncated files decode without panicking.

use std::ops::Range;
use std::path::PathBuf;
use std::rc::Rc;

use ekv_io::{FileSystem, MemFile, MemFs};
use ekv_lsm::key;
use ekv_lsm::table::format::{BLOCK_TRAILER_LEN, FOOTER_LEN};
use ekv_lsm::table::{
    fuzz_block, fuzz_table, BlockCache, BlockHandle, Kind, Table, TableBuilder, TableOptions, Tombstone,
};
use ekv_lsm::Error;
use futures::executor::block_on;
use proptest::prelude::*;

const ENTRIES: u32 = 60;

fn path() -> PathBuf {
    PathBuf::from("/db/000042.sst")
}

fn user_key(i: u32) -> Vec<u8> {
    format!("user{i:04}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i}-{}", "x".repeat(i as usize % 13)).into_bytes()
}

/// A small table with several data blocks, a filter, tombstones, and
/// padding before the footer. Returns the file system and the table size.
fn must_build_table() -> (MemFs, u64) {
    block_on(async {
        let fs = MemFs::new(512);
        let file = fs.create(&path()).await.unwrap();
        let opts =
            TableOptions { block_size: 256, restart_interval: 4, bloom_bits_per_key: 10, write_chunk: 512 };
        let mut b = TableBuilder::new(file, opts);
        for i in 0..ENTRIES {
            b.add(&key::encode(&user_key(i), u64::from(i) + 1, Kind::Put as u8), &value(i)).await.unwrap();
        }
        b.add_tombstone(Tombstone { start: user_key(3), end: user_key(9), seq: 100 });
        b.add_tombstone(Tombstone { start: user_key(20), end: user_key(21), seq: 5 });
        let info = b.finish().await.unwrap();
        (fs, info.size)
    })
}

async fn open(fs: &MemFs, size: u64) -> Result<Rc<Table<MemFile>>, Error> {
    let file = fs.open(&path()).await.unwrap();
    Ok(Rc::new(Table::open(file, 42, size, None, Rc::new(BlockCache::new(1 << 20))).await?))
}

/// Named byte ranges of every block (trailer included) and of the footer.
fn must_layout(fs: &MemFs, size: u64) -> Vec<(String, Range<u64>)> {
    block_on(async {
        let table = open(fs, size).await.unwrap();
        let range = |h: BlockHandle| h.offset..h.offset + h.size + BLOCK_TRAILER_LEN as u64;
        let mut blocks: Vec<(String, Range<u64>)> =
            table.data_blocks().enumerate().map(|(i, h)| (format!("data block {i}"), range(h))).collect();
        assert!(blocks.len() >= 5, "want several data blocks, got {}", blocks.len());
        let f = *table.footer();
        blocks.push(("filter".into(), range(f.filter)));
        blocks.push(("tombstones".into(), range(f.tombstones)));
        blocks.push(("properties".into(), range(f.properties)));
        blocks.push(("index".into(), range(f.index)));
        blocks.push(("footer".into(), size - FOOTER_LEN as u64..size));
        blocks
    })
}

fn assert_corruption_at(err: &Error, offset: u64, what: &str) {
    match err {
        Error::Corruption { file, offset: at, .. } => {
            assert_eq!(file, &path(), "{what}: {err}");
            assert_eq!(*at, offset, "{what}: {err}");
        }
        other => panic!("{what}: expected corruption at {offset}, got {other}"),
    }
}

/// Opens the (possibly damaged) table and reads every key by lookup, by a
/// cached scan both ways and by a compaction scan. Every value returned must
/// be right; returns the errors seen.
async fn read_everything(fs: &MemFs, size: u64) -> Vec<Error> {
    let table = match open(fs, size).await {
        Ok(t) => t,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    for i in 0..ENTRIES {
        match table.get(&user_key(i), key::MAX_SEQ).await {
            Ok(Some((seq, kind, v))) => {
                assert_eq!((seq, kind, &v[..]), (u64::from(i) + 1, Kind::Put, &value(i)[..]), "key {i}");
            }
            Ok(None) => panic!("key {i} lost without an error"),
            Err(e) => errors.push(e),
        }
    }
    for mut it in [table.iter(), table.iter_for_compaction()] {
        let mut i = 0;
        let mut r = it.seek_to_first().await;
        while r.is_ok() && it.valid() {
            assert_eq!(key::user_key(it.key()), &user_key(i)[..]);
            assert_eq!(it.value(), &value(i)[..]);
            i += 1;
            r = it.next().await;
        }
        match r {
            Ok(()) => assert_eq!(i, ENTRIES, "scan ended early without an error"),
            Err(e) => errors.push(e),
        }
    }
    let mut it = table.iter();
    let mut i = ENTRIES;
    let mut r = it.seek_to_last().await;
    while r.is_ok() && it.valid() {
        i -= 1;
        assert_eq!(it.value(), &value(i)[..]);
        r = it.prev().await;
    }
    if let Err(e) = r {
        errors.push(e);
    }
    errors
}

fn flip(fs: &MemFs, pos: u64) -> MemFs {
    let damaged = fs.snapshot();
    let byte = fs.read_file(&path()).unwrap()[pos as usize];
    assert!(damaged.overwrite_durable(&path(), pos, &[byte ^ 0x5a]));
    damaged
}

#[test]
fn the_pristine_table_reads_back() {
    let (fs, size) = must_build_table();
    assert!(block_on(read_everything(&fs, size)).is_empty());
}

#[test]
fn a_flip_in_each_block_is_reported_at_that_block() {
    let (fs, size) = must_build_table();
    for (name, range) in must_layout(&fs, size) {
        let len = range.end - range.start;
        // First byte, middle, the compression byte and the checksum.
        for pos in [range.start, range.start + len / 2, range.end - 5, range.end - 1] {
            let damaged = flip(&fs, pos);
            let errors = block_on(read_everything(&damaged, size));
            assert!(!errors.is_empty(), "{name}: flip at {pos} went unnoticed");
            for e in &errors {
                assert_corruption_at(e, range.start, &format!("{name}, flip at {pos}"));
            }
            let opened = block_on(open(&damaged, size)).is_ok();
            assert_eq!(opened, name.starts_with("data"), "{name}: only data blocks are read after open");
        }
    }
}

#[test]
fn every_flipped_byte_is_caught_in_its_block_or_harmless() {
    let (fs, size) = must_build_table();
    let layout = must_layout(&fs, size);
    for pos in 0..size {
        let damaged = flip(&fs, pos);
        let errors = block_on(read_everything(&damaged, size));
        match layout.iter().find(|(_, r)| r.contains(&pos)) {
            Some((name, r)) => {
                assert!(!errors.is_empty(), "{name}: flip at {pos} went unnoticed");
                for e in &errors {
                    assert_corruption_at(e, r.start, &format!("{name}, flip at {pos}"));
                }
            }
            // Padding before the footer: nobody reads it.
            None => assert!(errors.is_empty(), "flip at {pos} in padding: {errors:?}"),
        }
    }
}

#[test]
fn truncated_or_resized_files_are_corrupt() {
    let (fs, size) = must_build_table();
    let bytes = fs.read_file(&path()).unwrap();
    for len in [0, 1, FOOTER_LEN as u64 - 1, FOOTER_LEN as u64, size / 2, size - 512, size - 1] {
        let cut = MemFs::new(512);
        block_on(async {
            cut.create(&path()).await.unwrap();
            cut.overwrite_durable(&path(), 0, &bytes[..len as usize]);
            // Told the true size of a file that lost its tail, or the size
            // of what is left: either way the footer is gone.
            for claimed in [size, len] {
                let err = open(&cut, claimed).await.unwrap_err();
                assert!(
                    matches!(&err, Error::Corruption { file, .. } if file == &path()),
                    "{len}/{claimed}: {err}"
                );
            }
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        fuzz_block(&data);
        fuzz_table(&data);
    }

    #[test]
    fn damaged_tables_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (fs, _) = must_build_table();
        let mut bytes = fs.read_file(&path()).unwrap();
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        fuzz_table(&bytes);
        fuzz_block(&bytes);
    }
}
