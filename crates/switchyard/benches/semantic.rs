//! Vector index latency: `cargo bench -p switchyard --bench semantic` (about three minutes;
//! one group: `cargo bench -p switchyard --bench semantic -- search_ivf`).
//!
//! One bucket of 100,000 random unit vectors (1,000 to 20,000 in
//! `crossover`); every query is at cosine 0.97 to one of them (a hit at the
//! 0.95 threshold), cycling over 1,000 queries so the probed lists are not
//! all in cache. The IVF layer runs with the index's defaults.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use divan::Bencher;
use switchyard::cache::semantic::index::VectorIndex;

const BUCKET: u128 = 7;
const ENTRIES: usize = 100_000;
const QUERIES: usize = 1_000;
const THRESHOLD: f32 = 0.95;

fn main() {
    divan::main();
}

/// Which layer a bucket is searched with.
#[derive(Debug, Clone, Copy)]
enum Layer {
    Flat,
    Ivf,
}

/// Deterministic gaussians: xorshift64* and Box–Muller.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn unit(&mut self, dims: usize) -> Vec<f32> {
        let gaussian = |rng: &mut Self| {
            let (u, v) = (rng.uniform(), rng.uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        };
        let vector: Vec<f32> = (0..dims).map(|_| gaussian(self)).collect();
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        vector.into_iter().map(|x| x / norm).collect()
    }

    /// A unit vector at cosine `cos` to the unit vector `to`.
    fn near(&mut self, to: &[f32], cos: f32) -> Vec<f32> {
        let mut away = self.unit(to.len());
        let along: f32 = away.iter().zip(to).map(|(a, t)| a * t).sum();
        away.iter_mut().zip(to).for_each(|(a, t)| *a -= along * t);
        let norm = away.iter().map(|x| x * x).sum::<f32>().sqrt();
        let sin = (1.0 - cos * cos).sqrt();
        (to.iter().zip(&away))
            .map(|(t, a)| cos * t + sin * a / norm)
            .collect()
    }
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(3_600)
}

/// A full index of one bucket of `n` vectors searched with `layer`, and
/// queries near some of them.
fn fixture(n: usize, dims: usize, layer: Layer) -> (VectorIndex, Vec<Vec<f32>>) {
    let mut rng = Rng(0x5eed ^ dims as u64);
    let min_floats = match layer {
        Layer::Flat => usize::MAX,
        Layer::Ivf => 0,
    };
    let mut index =
        VectorIndex::new(dims, NonZeroUsize::new(n).unwrap()).with_ivf_min_floats(min_floats);
    let (now, later) = (Instant::now(), later());
    let mut queries = Vec::with_capacity(QUERIES);
    for id in 0..n {
        let vector = rng.unit(dims);
        if id % (n / QUERIES) == 0 {
            queries.push(rng.near(&vector, 0.97));
        }
        index
            .insert(BUCKET, id as u128, &vector, later, now)
            .unwrap();
    }
    if let Layer::Ivf = layer {
        let layer = index.rebuild_job(BUCKET).unwrap().build();
        drop(index.install(layer).unwrap());
    }
    (index, queries)
}

fn bench_search(bencher: Bencher, n: usize, dims: usize, layer: Layer) {
    let (index, queries) = fixture(n, dims, layer);
    let now = Instant::now();
    let mut next = 0;
    bencher.bench_local(|| {
        next = (next + 1) % queries.len();
        index.search(BUCKET, black_box(&queries[next]), THRESHOLD, now)
    });
}

/// One search over 100,000 vectors scanned whole.
#[divan::bench(args = [8, 384, 1536])]
fn search_flat(bencher: Bencher, dims: usize) {
    bench_search(bencher, ENTRIES, dims, Layer::Flat);
}

/// One search over 100,000 vectors through the IVF layer.
#[divan::bench(args = [8, 384, 1536])]
fn search_ivf(bencher: Bencher, dims: usize) {
    bench_search(bencher, ENTRIES, dims, Layer::Ivf);
}

/// Where the IVF layer starts to pay, at 384 dimensions.
#[divan::bench_group]
mod crossover {
    use super::*;

    const SIZES: [usize; 5] = [1_000, 2_000, 5_000, 10_000, 20_000];

    #[divan::bench(args = SIZES)]
    fn flat_384(bencher: Bencher, n: usize) {
        bench_search(bencher, n, 384, Layer::Flat);
    }

    #[divan::bench(args = SIZES)]
    fn ivf_384(bencher: Bencher, n: usize) {
        bench_search(bencher, n, 384, Layer::Ivf);
    }
}

/// One insertion into a full bucket of 100,000: evicts the oldest.
fn bench_insert(bencher: Bencher, dims: usize, layer: Layer) {
    let (mut index, vectors) = fixture(ENTRIES, dims, layer);
    let (now, later) = (Instant::now(), later());
    let mut id = ENTRIES as u128;
    bencher.bench_local(|| {
        id += 1;
        let vector = &vectors[id as usize % vectors.len()];
        index.insert(BUCKET, id, black_box(vector), later, now)
    });
}

/// One insertion (and eviction) into a flat bucket of 100,000.
#[divan::bench(args = [8, 384, 1536], sample_size = 100)]
fn insert_flat(bencher: Bencher, dims: usize) {
    bench_insert(bencher, dims, Layer::Flat);
}

/// One insertion (and eviction) into a bucket of 100,000 with an IVF layer.
#[divan::bench(args = [8, 384, 1536], sample_size = 100)]
fn insert_ivf(bencher: Bencher, dims: usize) {
    bench_insert(bencher, dims, Layer::Ivf);
}

/// The IVF layer of 100,000 vectors: the snapshot (under the lock)...
#[divan::bench(args = [8, 384, 1536], sample_count = 5, sample_size = 1)]
fn ivf_snapshot(bencher: Bencher, dims: usize) {
    let (index, _) = fixture(ENTRIES, dims, Layer::Flat);
    bencher.bench_local(|| index.rebuild_job(BUCKET));
}

/// ...the build (off the lock)...
#[divan::bench(args = [8, 384, 1536], sample_count = 3, sample_size = 1)]
fn ivf_build(bencher: Bencher, dims: usize) {
    let (index, _) = fixture(ENTRIES, dims, Layer::Flat);
    bencher
        .with_inputs(|| index.rebuild_job(BUCKET).unwrap())
        .bench_local_values(|job| job.build());
}

/// ...and the swap (under the lock).
#[divan::bench(args = [8, 384, 1536], sample_count = 3, sample_size = 1)]
fn ivf_install(bencher: Bencher, dims: usize) {
    let (mut index, _) = fixture(ENTRIES, dims, Layer::Flat);
    let mut layers: Vec<_> = (0..3)
        .map(|_| index.rebuild_job(BUCKET).unwrap().build())
        .collect();
    bencher
        .with_inputs(|| layers.pop())
        .bench_local_values(|layer| layer.map(|layer| index.install(layer)));
}
