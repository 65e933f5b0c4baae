//! The model test over real files: glommio DMA files on the target
//! directory's device (a real file system; `O_DIRECT` does not work on
//! tmpfs), with the flusher and the compactor as glommio tasks yielding
//! through `glommio::yield_if_needed`, and once with all work inline.
//! Crashes cannot be simulated here; they become clean reopens.
//!
//! Everything runs on one executor thread, in one test: `GlommioFs::new`
//! settles glommio's polled-I/O probe once per process, but glommio keeps
//! the probe's result per thread, so a second executor thread in the same
//! process could misjudge the device.

mod support;

use std::path::Path;
use std::rc::Rc;

use ekv_io::GlommioFs;
use ekv_lsm::Lsm;
use glommio::LocalExecutorBuilder;
use rand::SeedableRng;
use support::{random_op, tiny_options, BgTask, Op, Runner, Setup, Spawn};

/// A tree closed and opened again (its write buffers come uninitialised
/// from glommio's allocator, unlike `MemFs`'s).
async fn reopen_smoke(fs: &GlommioFs, root: &Path) {
    let dir = root.join("smoke");
    for round in 0..3u8 {
        let lsm = Lsm::open(fs.clone(), dir.clone(), tiny_options()).await.unwrap();
        let cf = lsm.default_cf();
        for r in 0..round {
            assert_eq!(lsm.get(cf, &[r]).await.unwrap().as_deref(), Some(&[r; 3][..]), "round {round}");
        }
        lsm.put(cf, &[round], &[round; 3]).await.unwrap();
        lsm.close().await.unwrap();
    }
}

async fn model_run(fs: &GlommioFs, root: &Path, seed: u64, steps: usize, background: bool) {
    let mut opts = tiny_options();
    opts.yield_hook = Some(Rc::new(|| Box::pin(glommio::yield_if_needed())));
    let spawn: Option<Spawn<GlommioFs>> = background.then(|| {
        Rc::new(|lsm: Lsm<GlommioFs>| {
            let l = lsm.clone();
            let flusher = glommio::spawn_local(async move { l.run_flusher().await });
            let compactor = glommio::spawn_local(async move { lsm.run_compactor().await });
            Box::pin(async move {
                let (a, b) = futures::join!(flusher, compactor);
                a.and(b)
            }) as BgTask
        }) as Spawn<GlommioFs>
    });
    let root = root.join(format!("run-{seed}"));
    let setup = Setup {
        fs: fs.clone(),
        dir: root.join("db"),
        other_dir: root.join("other"),
        export_dir: root.join("export"),
        opts,
        spawn,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let ops: Vec<Op> = (0..steps).map(|_| random_op(&mut rng)).collect();
    let mut runner = Runner::new(setup).await;
    runner.run(ops).await;
    let t = runner.finish().await;
    assert!(t.flushes >= 15 && t.compactions >= 5 && t.reopens >= 5 && t.ingested >= 5, "{t:?}");
}

#[test]
fn model_over_dma_files() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    LocalExecutorBuilder::default()
        .spawn(move || async move {
            let fs = GlommioFs::new(tmp.path()).await.unwrap();
            reopen_smoke(&fs, tmp.path()).await;
            model_run(&fs, tmp.path(), 0x61, 700, true).await;
            model_run(&fs, tmp.path(), 0x62, 400, false).await;
        })
        .unwrap()
        .join()
        .unwrap();
}
