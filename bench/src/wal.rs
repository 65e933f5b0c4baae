//! The `wal` suite: ekv-wal against the raw disk, in one run.
//!
//! - `append_sync/regions=R/entry=E`: one round = one entry of E bytes for
//!   each of R regions, written with [`Wal::write`] (one record, one write,
//!   one fdatasync). Rounds alternate with the raw baseline: an overwrite of
//!   the same R×E bytes (rounded up to the device alignment) at the next
//!   position of an already-written file, through the same DMA path, plus
//!   fdatasync. Both see the same noise; the ratio is what counts.
//! - `throughput/round=4MiB`: large rounds, MB/s of payload, same baseline.
//! - `recovery/log=…`: time for [`Wal::open`] to rebuild the index of a log
//!   of that size, written by the append loop.
//!
//! Log maintenance (recycling segments) runs as a concurrent task, as it will
//! in a store, so its cost lands in the measured latencies.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ekv_io::GlommioFs;
use ekv_proto::RegionId;
use ekv_wal::{Entry, LogBatch, Wal, WalOptions};

use crate::harness::{self, CaseResult, Latency, Machine, Report};
use crate::raw::RawFile;

type BoxError = Box<dyn std::error::Error>;

/// Runs the WAL suite.
pub fn run(opts: &crate::Opts) -> Result<Report, BoxError> {
    let data = harness::data_dir(opts.dir.clone())?;
    let mut report = Report::new("wal", Machine::detect(Some(data.path())));
    let path = data.path().to_path_buf();
    let opts = opts.clone();
    let results = harness::run_on_executor("ekv-bench-wal", move || async move {
        suite(&path, &opts).await.map_err(|e| e.to_string())
    })?;
    for r in results.0 {
        report.push(r);
    }
    for n in results.1 {
        report.note(n);
    }
    drop(data);
    Ok(report)
}

/// The WAL's time split: its I/O alone, and its CPU per record.
struct Split {
    io_p50: f64,
    io_p99: f64,
    encode_mean: f64,
    apply_mean: f64,
    recycled: usize,
    zero_filled: usize,
}

struct Sizes {
    rounds_small: usize,
    rounds_large: usize,
    warmup: usize,
    throughput_rounds: usize,
    recovery_bytes: u64,
}

async fn suite(
    dir: &std::path::Path,
    opts: &crate::Opts,
) -> Result<(Vec<CaseResult>, Vec<String>), BoxError> {
    let sizes = if opts.quick {
        Sizes {
            rounds_small: 400,
            rounds_large: 120,
            warmup: 30,
            throughput_rounds: 24,
            recovery_bytes: 128 << 20,
        }
    } else {
        Sizes {
            rounds_small: 5000,
            rounds_large: 1500,
            warmup: 200,
            throughput_rounds: 150,
            recovery_bytes: 1 << 30,
        }
    };
    let fs = GlommioFs::new(dir).await?;
    let mut raw = RawFile::prepare(&fs, &dir.join("raw-baseline"), 256 << 20).await?;
    let mut results = Vec::new();
    let mut notes = vec![format!(
        "raw baseline: overwrite of the same payload bytes (rounded up to {} B) in a pre-written file, same DMA path, + fdatasync",
        raw.alignment()
    )];

    for &regions in &[1usize, 16, 256] {
        for &entry in &[128usize, 4096] {
            let rounds = if regions * entry >= 1 << 20 { sizes.rounds_large } else { sizes.rounds_small };
            let case = format!("append_sync/regions={regions}/entry={entry}");
            if !opts.wants(&case) {
                continue;
            }
            let wal_dir = dir.join(format!("wal-{regions}-{entry}"));
            let (wal_lat, raw_lat, split) =
                latency_case(&fs, &wal_dir, &mut raw, regions, entry, sizes.warmup, rounds).await?;
            for (metric, w, r, target) in [
                ("p50_us", wal_lat.p50(), raw_lat.p50(), None),
                ("p99_us", wal_lat.p99(), raw_lat.p99(), Some("<= 1.2")),
                ("p999_us", wal_lat.p999(), raw_lat.p999(), None),
            ] {
                results.push(CaseResult::against(&case, metric, w, r, target));
            }
            // Where the time goes: the WAL's own write+fdatasync against the
            // same raw baseline, and its CPU per record.
            results.push(CaseResult::against(&case, "io_only_p50_us", split.io_p50, raw_lat.p50(), None));
            results.push(CaseResult::against(&case, "io_only_p99_us", split.io_p99, raw_lat.p99(), None));
            results.push(CaseResult::plain(&case, "encode_mean_us", split.encode_mean));
            results.push(CaseResult::plain(&case, "index_apply_mean_us", split.apply_mean));
            results.push(CaseResult::plain(&case, "segments_recycled", split.recycled as f64));
            results.push(CaseResult::plain(&case, "segments_zero_filled", split.zero_filled as f64));
            let _ = std::fs::remove_dir_all(&wal_dir);
        }
    }

    // Large rounds: sequential throughput.
    if opts.wants("throughput/round=4MiB") {
        let (wal_mbs, raw_mbs) =
            throughput_case(&fs, &dir.join("wal-tput"), &mut raw, sizes.throughput_rounds).await?;
        results.push(CaseResult::against(
            "throughput/round=4MiB",
            "MB_per_s",
            wal_mbs,
            raw_mbs,
            Some(">= 0.85"),
        ));
        let _ = std::fs::remove_dir_all(dir.join("wal-tput"));
    }

    // Recovery.
    let label = format!("recovery/log={}MiB", sizes.recovery_bytes >> 20);
    if !opts.wants(&label) {
        raw.close().await?;
        return Ok((results, notes));
    }
    let (ms, entries) = recovery_case(&fs, &dir.join("wal-recovery"), sizes.recovery_bytes).await?;
    let mut r = CaseResult::plain(&label, "ms", ms);
    if sizes.recovery_bytes >= 1 << 30 {
        r = r.with_target("< 2000");
    } else {
        notes.push("recovery target (< 2 s) is set for a 1 GiB log: run without --quick".into());
    }
    results.push(r);
    notes.push(format!("recovery rebuilt the index of {entries} entries"));
    let _ = std::fs::remove_dir_all(dir.join("wal-recovery"));
    raw.close().await?;
    Ok((results, notes))
}

fn payload(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i * 131 + 7) as u8).collect::<Vec<u8>>())
}

/// Log maintenance running beside the appends, and what it did.
#[derive(Default)]
struct Maintenance {
    busy: Cell<bool>,
    recycled: Cell<usize>,
    zero_filled: Cell<usize>,
}

impl Maintenance {
    /// Starts maintenance in the background when the log asks for it.
    fn poke(self: &Rc<Self>, wal: &Rc<Wal<GlommioFs>>) {
        if self.busy.get() || !wal.needs_maintenance() {
            return;
        }
        self.busy.set(true);
        let (wal, this) = (wal.clone(), self.clone());
        glommio::spawn_local(async move {
            match wal.maintain().await {
                Err(e) => eprintln!("wal maintenance failed: {e}"),
                Ok(r) => {
                    this.recycled.set(this.recycled.get() + r.recycled.len());
                    this.zero_filled.set(this.zero_filled.get() + r.created);
                }
            }
            this.busy.set(false);
        })
        .detach();
    }

    async fn wait_idle(&self) {
        while self.busy.get() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// One round: an entry for each region; every 64 rounds each region also
/// compacts all but its last 32 entries, as an engine that applied them would
/// (regions at different rounds: their logs fill independently).
fn round(batch: &mut LogBatch, regions: usize, next_index: &mut [u64], data: &Bytes, n: u64) {
    for (r, next) in next_index.iter_mut().enumerate().take(regions) {
        let region = RegionId(r as u64 + 1);
        batch.add_entries(
            region,
            vec![Entry { index: *next, term: 1, data: data.clone(), ..Entry::default() }],
        );
        *next += 1;
        if (n + r as u64) % 64 == 63 && *next > 33 {
            batch.compact(region, *next - 32);
        }
    }
}

async fn latency_case(
    fs: &GlommioFs,
    dir: &std::path::Path,
    raw: &mut RawFile,
    regions: usize,
    entry: usize,
    warmup: usize,
    rounds: usize,
) -> Result<(Latency, Latency, Split), BoxError> {
    let wal = Rc::new(Wal::open(fs.clone(), dir.to_path_buf(), WalOptions::default()).await?);
    let maint = Rc::new(Maintenance::default());
    let data = payload(entry);
    let mut next = vec![1u64; regions];
    let (mut wal_lat, mut raw_lat, mut io_lat) = (Latency::new(), Latency::new(), Latency::new());
    let mut batch = LogBatch::new();
    for n in 0..(warmup + rounds) as u64 {
        round(&mut batch, regions, &mut next, &data, n);
        let io_before = wal.stats().io_nanos;
        let t = Instant::now();
        wal.write(&mut batch).await?;
        let w = t.elapsed();
        if n as usize >= warmup {
            io_lat.record(Duration::from_nanos(wal.stats().io_nanos - io_before));
        }
        let r = raw.overwrite_sync(regions * entry).await?;
        if n as usize >= warmup {
            wal_lat.record(w);
            raw_lat.record(r);
        }
        maint.poke(&wal);
    }
    maint.wait_idle().await;
    let st = wal.stats();
    let per = |n: u64| n as f64 / 1e3 / st.records as f64;
    let split = Split {
        io_p50: io_lat.p50(),
        io_p99: io_lat.p99(),
        encode_mean: per(st.encode_nanos),
        apply_mean: per(st.apply_nanos),
        recycled: maint.recycled.get(),
        zero_filled: maint.zero_filled.get(),
    };
    Rc::try_unwrap(wal).map_err(|_| "wal still shared")?.close().await?;
    Ok((wal_lat, raw_lat, split))
}

async fn throughput_case(
    fs: &GlommioFs,
    dir: &std::path::Path,
    raw: &mut RawFile,
    rounds: usize,
) -> Result<(f64, f64), BoxError> {
    const REGIONS: usize = 64;
    const PER_REGION: usize = 16;
    const ENTRY: usize = 4096;
    let bytes_per_round = (REGIONS * PER_REGION * ENTRY) as f64;
    let opts = WalOptions { segment_size: 128 << 20, ..WalOptions::default() };
    let wal = Rc::new(Wal::open(fs.clone(), dir.to_path_buf(), opts).await?);
    let maint = Rc::new(Maintenance::default());
    let data = payload(ENTRY);
    let mut next = vec![1u64; REGIONS];
    let (mut wal_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
    let mut batch = LogBatch::new();
    for n in 0..rounds as u64 {
        for _ in 0..PER_REGION {
            round(&mut batch, REGIONS, &mut next, &data, n);
        }
        let t = Instant::now();
        wal.write(&mut batch).await?;
        wal_time += t.elapsed();
        raw_time += raw.overwrite_sync(REGIONS * PER_REGION * ENTRY).await?;
        maint.poke(&wal);
    }
    maint.wait_idle().await;
    Rc::try_unwrap(wal).map_err(|_| "wal still shared")?.close().await?;
    let mbs = |d: Duration| bytes_per_round * rounds as f64 / d.as_secs_f64() / 1e6;
    Ok((mbs(wal_time), mbs(raw_time)))
}

async fn recovery_case(fs: &GlommioFs, dir: &std::path::Path, bytes: u64) -> Result<(f64, usize), BoxError> {
    const REGIONS: usize = 256;
    const ENTRY: usize = 4096;
    let wal = Wal::open(fs.clone(), dir.to_path_buf(), WalOptions::default()).await?;
    let data = payload(ENTRY);
    let mut next = vec![1u64; REGIONS];
    let mut batch = LogBatch::new();
    let rounds = bytes / (REGIONS * ENTRY) as u64;
    for _ in 0..rounds {
        for (r, next) in next.iter_mut().enumerate() {
            let e = Entry { index: *next, term: 1, data: data.clone(), ..Entry::default() };
            batch.add_entries(RegionId(r as u64 + 1), vec![e]);
            *next += 1;
        }
        wal.write(&mut batch).await?;
    }
    wal.close().await?;
    let t = Instant::now();
    let wal = Wal::open(fs.clone(), dir.to_path_buf(), WalOptions::default()).await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let entries = wal.stats().entries;
    if entries as u64 != rounds * REGIONS as u64 {
        return Err(format!("recovered {entries} entries, wrote {}", rounds * REGIONS as u64).into());
    }
    wal.close().await?;
    Ok((ms, entries))
}
