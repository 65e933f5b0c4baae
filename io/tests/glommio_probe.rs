//! glommio's polled-I/O probe must not be fooled by an empty file opened first.
//!
//! glommio caches the probe result per block device and per thread, and so
//! does `GlommioFs::new`; this file runs as its own binary so no other test
//! opens a DMA file first. Each executor thread (shard) settles the probe
//! for itself.

use ekv_io::{File, FileSystem, GlommioFs};
use glommio::LocalExecutorBuilder;

#[test]
fn empty_dma_file_first_then_reads_and_writes_work() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // Two executors one after the other, as two shards of a store: the
    // second must not rely on the first one's probe.
    for shard in 0..2 {
        one_executor(&dir.path().join(format!("shard-{shard}")));
    }
}

fn one_executor(path: &std::path::Path) {
    let path = path.to_path_buf();
    LocalExecutorBuilder::default()
        .spawn(move || async move {
            let fs = GlommioFs::new(&path).await.expect("probe");
            // The trap: an empty file open for reading as the first data file.
            let empty = fs.create(&path.join("empty")).await.unwrap();
            assert_eq!(empty.read_at(0, 4096).await.unwrap().len(), 0);
            empty.close().await.unwrap();

            let f = fs.create(&path.join("data")).await.unwrap();
            let align = f.alignment() as usize;
            let mut buf = f.alloc_buf(align * 2);
            for (i, b) in ekv_io::IoBuf::as_mut_slice(&mut buf).iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
            f.write_at(buf, 0).await.unwrap();
            f.fdatasync().await.unwrap();
            // A read that would fail with EOPNOTSUPP if the device had been
            // mis-detected as poll-capable.
            let got = f.read_at(3, 100).await.expect("DMA read after an empty file");
            let want: Vec<u8> = (3..103).map(|i| (i % 251) as u8).collect();
            assert_eq!(&*got, &want[..]);
            f.close().await.unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
}
