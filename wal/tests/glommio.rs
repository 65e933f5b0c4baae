//! The log over real files: glommio DMA files on the target directory's
//! device, with rotation, recycling, reads from disk and a reopen.

mod support;

use ekv_io::GlommioFs;
use ekv_wal::{Wal, WalOptions};
use glommio::LocalExecutorBuilder;
use rand::SeedableRng;
use support::{must_match, random_round, to_batch, Model};

#[test]
fn log_over_dma_files_survives_reopen() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("wal");
    LocalExecutorBuilder::default()
        .spawn(move || async move {
            let fs = GlommioFs::new(tmp.path()).await.unwrap();
            // A tiny cache: most reads come back from disk.
            let opts =
                WalOptions { segment_size: 256 << 10, cache_capacity: 4 << 10, ..WalOptions::default() };
            let wal = Wal::open(fs.clone(), dir.clone(), opts.clone()).await.unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            let mut model = Model::default();
            let mut salt = 0;
            for round in 0..400 {
                let steps = random_round(&model, &mut rng, 64, &mut salt);
                wal.write(&mut to_batch(&steps)).await.unwrap();
                assert!(model.apply_batch(&steps));
                if round % 50 == 49 {
                    let report = wal.maintain().await.unwrap();
                    assert!(report.created <= opts.spare_segments, "{report:?}");
                }
            }
            must_match(&wal, &model, "before reopen").await;
            let st = wal.stats();
            assert!(st.active_segment > 3, "the workload rotates segments: {st:?}");
            assert!(st.records >= 400 && st.syncs == st.records, "one sync per record: {st:?}");
            wal.close().await.unwrap();
            let wal = Wal::open(fs, dir, opts).await.unwrap();
            must_match(&wal, &model, "after reopen").await;
            wal.close().await.unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
}
