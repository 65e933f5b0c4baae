//! Entry points for the fuzz targets in `lsm/fuzz`: every decoder of the
//! table format, fed arbitrary bytes.
//!
//! They assert nothing about the bytes; the fuzzer looks for panics,
//! hangs and runaway allocation. Loops are capped so that even a block that
//! decodes into many entries stays quick.

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use ekv_io::{FileSystem, MemFs};
use futures::executor::block_on;

use crate::table::block::{Block, Cursor, Target};
use crate::table::bloom::Filter;
use crate::table::{format, BlockCache, Table};

/// Most entries a fuzz run visits per scan.
const MAX_STEPS: usize = 4096;
/// Keys remembered from the scans to seek to and look up.
const MAX_PROBES: usize = 16;

/// Decodes `data` as each kind of block (data or index block, filter,
/// tombstones, properties, footer, raw block with trailer), walking the
/// entries both ways and seeking. Never panics, loops or allocates more
/// than a small multiple of `data.len()`.
pub fn fuzz_block(data: &[u8]) {
    if let Ok(block) = Block::new(Bytes::copy_from_slice(data)) {
        let mut c = Cursor::default();
        let mut keys = Vec::new();
        walk(&block, &mut c, &mut keys, Cursor::seek_to_first, Cursor::next);
        walk(&block, &mut c, &mut keys, Cursor::seek_to_last, Cursor::prev);
        for k in &keys {
            let _ = c.seek(&block, &Target::of(k));
            let _ = c.value_bytes(&block);
        }
    }
    if let Ok(Some(filter)) = Filter::decode(data) {
        let _ = filter.may_contain(data);
        let _ = filter.may_contain(b"");
    }
    let _ = format::decode_tombstones(data);
    let _ = format::decode_properties(data);
    let _ = format::Footer::decode_from(data);
    let _ = format::BlockHandle::decode_from(data);
    let _ = format::verify_block(data, data.len().saturating_sub(format::BLOCK_TRAILER_LEN));
}

type Step = fn(&mut Cursor, &Block) -> Result<(), format::Corrupt>;

fn walk(block: &Block, c: &mut Cursor, keys: &mut Vec<Vec<u8>>, start: Step, step: Step) {
    let mut r = start(c, block);
    for _ in 0..MAX_STEPS {
        if r.is_err() || !c.valid() {
            return;
        }
        if keys.len() < MAX_PROBES {
            keys.push(c.key().to_vec());
        }
        let _ = c.value(block);
        r = step(c, block);
    }
}

/// Opens `data` as a whole table file (in a [`MemFs`]), with and without a
/// global seq, then scans it both ways, including a compaction scan, seeks
/// and looks up keys found on the way. Never panics, loops or allocates
/// more than a small multiple of `data.len()`.
pub fn fuzz_table(data: &[u8]) {
    block_on(async {
        let fs = MemFs::new(512);
        let path = Path::new("/fuzz/000001.sst");
        if fs.create(path).await.is_err() || !fs.overwrite_durable(path, 0, data) {
            return;
        }
        for global_seq in [None, Some(7)] {
            let Ok(file) = fs.open(path).await else { return };
            let cache = Rc::new(BlockCache::new(64 << 10));
            let Ok(table) = Table::open(file, 1, data.len() as u64, global_seq, cache).await else {
                continue;
            };
            let table = Rc::new(table);
            let _ = table.may_contain(data);
            let mut keys: Vec<Vec<u8>> = table.tombstones().iter().take(2).map(|t| t.start.clone()).collect();
            for compaction in [false, true] {
                let mut it = if compaction { table.iter_for_compaction() } else { table.iter() };
                let mut r = it.seek_to_first().await;
                for _ in 0..MAX_STEPS {
                    if r.is_err() || !it.valid() {
                        break;
                    }
                    if keys.len() < MAX_PROBES {
                        keys.push(it.key().to_vec());
                    }
                    let _ = it.value();
                    r = it.next().await;
                }
            }
            let mut it = table.iter();
            let mut r = it.seek_to_last().await;
            for _ in 0..MAX_STEPS {
                if r.is_err() || !it.valid() {
                    break;
                }
                r = it.prev().await;
            }
            for k in &keys {
                let _ = it.seek(k).await;
                let _ = it.seek_for_prev(k).await;
                let _ = it.prev().await;
                if k.len() >= crate::key::TRAILER_LEN {
                    let user_key = crate::key::user_key(k);
                    let _ = table.get(user_key, crate::key::MAX_SEQ).await;
                    let _ = table.get(user_key, 3).await;
                }
            }
        }
    });
}
