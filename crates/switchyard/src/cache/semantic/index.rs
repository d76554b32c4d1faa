//! The vector index of the semantic cache: given the embedding of a new
//! prompt, finds a stored one close enough that the stored answer may serve.
//!
//! - **Buckets.** Vectors are grouped by compatibility key (model, system
//!   prompt, parameters: everything but the last user turn); a search looks
//!   inside one bucket only.
//! - **Unit vectors.** Stored normalised, so cosine similarity is a dot
//!   product; a zero or non-finite vector is refused ([`VectorError`]).
//! - **Bounded.** At most `max_entries` over all buckets: a full index drops
//!   its oldest insertion (FIFO, a queue of insertions from which replaced
//!   and removed ones are skipped, then compacted away). Expired vectors
//!   never match; they are dropped when they reach the head of the queue.
//! - **Layer 1, flat.** A bucket is one contiguous arena (`Vec<f32>`,
//!   swap-remove) scanned whole by a loop the compiler vectorises. Exact.
//! - **Layer 2, IVF.** Past [`DEFAULT_IVF_MIN_FLOATS`] floats (about a
//!   quarter of a millisecond of scanning: 5,200 vectors of 384 dimensions,
//!   1,300 of 1,536), a bucket is split into √n lists by k-means, each its
//!   own arena; a search ranks the centroids and scans the nearest
//!   [`default_nprobe`] lists. It can miss a match, never return one under
//!   the threshold: every score is the exact dot product.
//!
//! # Recall
//!
//! 100,000 random unit vectors of 384 dimensions (the worst case for IVF:
//! no clusters), 1,000 queries each at cosine 0.97 to one of them; share of
//! queries whose search at threshold 0.96 returns it:
//!
//! | nprobe | 1     | 2     | 4     | 8     | 10    | 12    | 16    | 24    |
//! |--------|-------|-------|-------|-------|-------|-------|-------|-------|
//! | recall | 0.685 | 0.852 | 0.950 | 0.988 | 0.994 | 0.995 | 0.998 | 1.000 |
//!
//! Hence 12 probed lists by default, and 8 from 1,024 dimensions up, where
//! a search is bound by memory bandwidth (see below). Twice or half as many
//! lists (k = 2√n, √n/2) give the same recall per nprobe, within ±0.005.
//!
//! # Cost
//!
//! One core of a 2-core generic x86-64 machine (no `target-cpu`), release
//! build, while another build ran; ranges are over three runs of
//! `cargo bench --bench index`:
//!
//! | 100,000 vectors in one bucket | 8 dims        | 384 dims     | 1,536 dims |
//! |-------------------------------|---------------|--------------|------------|
//! | search, flat                  | 0.30 ms       | 8–14 ms      | 29–55 ms   |
//! | search, IVF                   | 0.013–0.03 ms | 0.28–0.45 ms | 1.1–1.4 ms |
//! | search, IVF, 8 lists          |               |              | 0.76–1.35 ms, median 0.97 |
//! | insert (evicting one), flat   | 0.5 µs        | 1.7 µs       | 5 µs       |
//! | insert (evicting one), IVF    | 1.8 µs        | 16–19 µs     | 60–100 µs  |
//! | [`VectorIndex::rebuild_job`]  | 0.5–0.9 ms    | 70–150 ms    | 0.4–0.6 s  |
//! | [`RebuildJob::build`]         | 0.2 s         | 2.2–2.9 s    | 8–12 s     |
//! | [`VectorIndex::install`]      | 1.3–2.8 ms    | 2.5–7 ms     | 3–7 ms     |
//!
//! A flat scan stays in cache up to about 10,000 × 384 (5,000: 0.19 ms,
//! 10,000: 0.4 ms, 20,000: 1.2–1.7 ms); the IVF layer at those sizes takes
//! 0.04–0.1 ms. The IVF search at 1,536 dimensions reads 25 MB with 12
//! lists and is bound by memory bandwidth; 8 lists, the default there, read
//! 16 MB in about 0.8 ms at 0.988 recall. An IVF insert's worst case (0.3 ms
//! at 384, 1.2 ms at 1,536) is a list growing its arena after a build.
//!
//! # Rebuilding without stalling requests
//!
//! A bucket needs its IVF layer built when it crosses the IVF size, and
//! again each time it has taken as many insertions as it held at the last
//! build (it doubled, or turned over) — amortised, O(√n·dims) per insertion,
//! what placing it costs anyway. The build takes seconds, so it happens away
//! from the index, on a snapshot, and is swapped in:
//!
//! ```text
//! index: RwLock<VectorIndex>   searches take the read lock
//! one writer (a thread fed by a channel) applies inserts and removes under
//! the write lock; after an insert, unless a build is under way:
//!   if index.needs_rebuild(bucket)
//!     job = index.read().rebuild_job(bucket)     copy of the bucket
//!     on a blocking thread, no lock: layer = job.build()
//!     back on the writer: retired = index.write().install(layer)
//!     drop(retired) once the lock is released    frees the old lists
//! ```
//!
//! Searches wait only for `install`; inserts also wait for the snapshot.
//! While a build runs the bucket keeps being served by its old layer (or
//! scanned flat), and the install takes in what changed meanwhile. Memory
//! peaks at three copies of the bucket (index, snapshot, new lists).

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::fmt;
use std::num::NonZeroUsize;
use std::time::Instant;

/// Lists an IVF search of `dims`-dimensional vectors probes unless
/// [`VectorIndex::with_nprobe`] says otherwise: 12, and 8 from 1,024
/// dimensions up, which keeps a search over 100,000 vectors of 1,536
/// dimensions under a millisecond (see the module's tables).
pub const fn default_nprobe(dims: usize) -> usize {
    if dims >= 1024 { 8 } else { 12 }
}

/// Floats (entries × dimensions) past which a bucket is worth an IVF layer,
/// unless [`VectorIndex::with_ivf_min_floats`] says otherwise.
pub const DEFAULT_IVF_MIN_FLOATS: usize = 2_000_000;

/// Independent sums of the dot product, which the compiler turns into SIMD
/// lanes.
const LANES: usize = 8;
/// Vectors sampled per list to train the centroids.
const SAMPLE_PER_LIST: usize = 32;
/// k-means rounds over the sample.
const KMEANS_ROUNDS: usize = 4;
/// [`VectorIndex::install`] refuses a layer when more than 1 / this of the
/// bucket changed since its snapshot: placing them would hold the lock.
const MAX_CHANGED_SHARE: usize = 8;

/// Why a vector was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorError {
    /// Its length is not the index's dimension.
    Dimensions {
        /// The index's dimension.
        expected: usize,
        /// The vector's length.
        found: usize,
    },
    /// A component is NaN or infinite.
    NotFinite,
    /// Every component is zero: it has no direction.
    Zero,
}

/// The best stored vector for a query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// The id it was inserted with: the key of the exact-cache entry.
    pub id: u128,
    /// Its cosine similarity to the query, in `[-1, 1]`.
    pub score: f32,
}

/// Unit vectors grouped in buckets, bounded in number over all buckets.
#[derive(Debug)]
pub struct VectorIndex {
    dims: usize,
    max_entries: usize,
    nprobe: usize,
    ivf_min_floats: usize,
    buckets: HashMap<u128, Bucket>,
    /// Insertions, oldest first; those since removed or replaced are skipped.
    fifo: VecDeque<Insertion>,
    len: usize,
    next_seq: u64,
}

/// A copy of one bucket, to build its IVF layer away from the index
/// ([`VectorIndex::rebuild_job`]).
#[derive(Debug)]
pub struct RebuildJob {
    bucket: u128,
    dims: usize,
    vectors: Vec<f32>,
    entries: Vec<Entry>,
    mark: BuildMark,
}

/// An IVF layer built by [`RebuildJob::build`], for [`VectorIndex::install`].
#[derive(Debug)]
pub struct IvfLayer {
    bucket: u128,
    dims: usize,
    centroids: Vec<f32>,
    /// The snapshot's entries, each in the list of its nearest centroid.
    lists: Vec<List>,
    mark: BuildMark,
}

/// What a bucket held before [`VectorIndex::install`]: drop it after
/// releasing the index's lock, as freeing a big bucket takes tens of
/// milliseconds.
#[derive(Debug)]
#[must_use = "drop it after releasing the lock"]
pub struct Retired {
    _lists: Vec<List>,
}

/// One insertion in the FIFO order of eviction.
#[derive(Debug)]
struct Insertion {
    bucket: u128,
    id: u128,
    seq: u64,
    expires_at: Instant,
}

/// The vectors of one compatibility key: one list while flat, one list per
/// centroid with an IVF layer.
#[derive(Debug)]
struct Bucket {
    dims: usize,
    lists: Vec<List>,
    /// Id → handle, fixed while the insertion is held.
    handles: HashMap<u128, u32>,
    /// Where each handle's entry sits, by handle (stale for a free one).
    places: Vec<Place>,
    free: Vec<u32>,
    ivf: Option<Ivf>,
    /// Insertions ever, to tell when the IVF layer is stale.
    inserts: u64,
}

/// A flat arena: `entries.len() × dims` floats, entry after entry.
#[derive(Debug, Default)]
struct List {
    vectors: Vec<f32>,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u128,
    /// Unique per insertion, rising.
    seq: u64,
    expires_at: Instant,
    handle: u32,
}

/// Where an entry sits in its bucket.
#[derive(Debug, Clone, Copy)]
struct Place {
    list: u32,
    pos: u32,
}

/// The centroids of a bucket's lists.
#[derive(Debug)]
struct Ivf {
    /// Unit vectors, one per list.
    centroids: Vec<f32>,
    built_from: BuildMark,
}

/// The state of a bucket when it was snapshotted for a build.
#[derive(Debug, Clone, Copy)]
struct BuildMark {
    /// The index's next seq: older insertions are in the snapshot, or gone.
    next_seq: u64,
    inserts: u64,
    len: usize,
}

// === impl VectorError ===

impl fmt::Display for VectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dimensions { expected, found } => {
                write!(f, "vector has {found} dimensions, the index {expected}")
            }
            Self::NotFinite => f.write_str("vector has a NaN or infinite component"),
            Self::Zero => f.write_str("vector is zero"),
        }
    }
}

impl Error for VectorError {}

// === impl VectorIndex ===

impl VectorIndex {
    /// An empty index of `dims`-dimensional vectors holding at most
    /// `max_entries` (capped at `u32::MAX`) over all buckets.
    pub fn new(dims: usize, max_entries: NonZeroUsize) -> Self {
        Self {
            dims,
            max_entries: max_entries.get().min(u32::MAX as usize),
            nprobe: default_nprobe(dims),
            ivf_min_floats: DEFAULT_IVF_MIN_FLOATS,
            buckets: HashMap::new(),
            fifo: VecDeque::new(),
            len: 0,
            next_seq: 0,
        }
    }

    /// Probes `nprobe` lists per IVF search: more finds more, slower.
    pub fn with_nprobe(mut self, nprobe: NonZeroUsize) -> Self {
        self.nprobe = nprobe.get();
        self
    }

    /// Searches a bucket through its IVF layer once it holds `floats`
    /// (entries × dimensions); smaller buckets are scanned whole.
    pub fn with_ivf_min_floats(mut self, floats: usize) -> Self {
        self.ivf_min_floats = floats;
        self
    }

    /// The dimension of every vector.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Vectors held over all buckets, expired ones not yet reclaimed
    /// included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no vector is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `vector` (normalised) under `id` in `bucket`, replacing what
    /// `id` held there. Makes room first: drops expired and then the oldest
    /// insertions while the index is full.
    pub fn insert(
        &mut self,
        bucket: u128,
        id: u128,
        vector: &[f32],
        expires_at: Instant,
        now: Instant,
    ) -> Result<(), VectorError> {
        let unit = self.unit(vector)?;
        self.remove(bucket, id);
        self.trim(now);
        let seq = self.next_seq;
        self.next_seq += 1;
        let dims = self.dims;
        let insertion = Insertion {
            bucket,
            id,
            seq,
            expires_at,
        };
        self.buckets
            .entry(bucket)
            .or_insert_with(|| Bucket::new(dims))
            .push(&insertion, &unit);
        self.fifo.push_back(insertion);
        self.len += 1;
        self.compact_fifo();
        Ok(())
    }

    /// Removes `id` from `bucket`; whether it was there.
    pub fn remove(&mut self, bucket: u128, id: u128) -> bool {
        let Some(held) = self.buckets.get_mut(&bucket) else {
            return false;
        };
        if !held.remove(id) {
            return false;
        }
        self.len -= 1;
        if held.len() == 0 {
            self.buckets.remove(&bucket);
        }
        true
    }

    /// The unexpired vector of `bucket` most similar to `query` with a
    /// similarity of at least `threshold`. The score is the exact cosine; an
    /// IVF layer may miss a match, never return one under `threshold`.
    pub fn search(
        &self,
        bucket: u128,
        query: &[f32],
        threshold: f32,
        now: Instant,
    ) -> Result<Option<Match>, VectorError> {
        let query = self.unit(query)?;
        let Some(held) = self.buckets.get(&bucket) else {
            return Ok(None);
        };
        let nprobe = held.uses_ivf(self.ivf_min_floats).then_some(self.nprobe);
        Ok(held.search(&query, threshold, now, nprobe))
    }

    /// Whether `bucket` is big enough for an IVF layer and has none, or has
    /// taken as many insertions as it held when its layer was built. Stays
    /// true until a layer is installed: the caller keeps track of the build
    /// under way.
    pub fn needs_rebuild(&self, bucket: u128) -> bool {
        self.buckets
            .get(&bucket)
            .is_some_and(|held| held.needs_rebuild(self.ivf_min_floats))
    }

    /// A copy of `bucket` to build its IVF layer from, away from the index:
    /// a memcpy of its vectors.
    pub fn rebuild_job(&self, bucket: u128) -> Option<RebuildJob> {
        let held = self.buckets.get(&bucket)?;
        let len = held.len();
        let mut job = RebuildJob {
            bucket,
            dims: self.dims,
            vectors: Vec::with_capacity(len * self.dims),
            entries: Vec::with_capacity(len),
            mark: BuildMark {
                next_seq: self.next_seq,
                inserts: held.inserts,
                len,
            },
        };
        for list in &held.lists {
            job.vectors.extend_from_slice(&list.vectors);
            job.entries.extend_from_slice(&list.entries);
        }
        Some(job)
    }

    /// Swaps in a layer built from a [`RebuildJob`]: O(n) without hashing,
    /// plus a nearest centroid for each vector inserted since the snapshot.
    /// Refuses it when the bucket is gone or has changed too much since.
    /// Either way, gives back what to drop after releasing the lock.
    pub fn install(&mut self, layer: IvfLayer) -> Result<Retired, IvfLayer> {
        match self.buckets.get_mut(&layer.bucket) {
            Some(held) if layer.dims == self.dims => held.install(layer),
            _ => Err(layer),
        }
    }

    /// `vector` scaled to length 1, if it has the index's dimension.
    fn unit(&self, vector: &[f32]) -> Result<Vec<f32>, VectorError> {
        if vector.len() != self.dims {
            return Err(VectorError::Dimensions {
                expected: self.dims,
                found: vector.len(),
            });
        }
        let mut unit = vector.to_vec();
        normalize(&mut unit)?;
        Ok(unit)
    }

    /// Drops the oldest insertions while they are gone, expired, or leave no
    /// room for one more.
    fn trim(&mut self, now: Instant) {
        while let Some(oldest) = self.fifo.front() {
            let current = is_current(&self.buckets, oldest);
            if current && oldest.expires_at > now && self.len < self.max_entries {
                return;
            }
            let (bucket, id) = (oldest.bucket, oldest.id);
            self.fifo.pop_front();
            if current {
                self.remove(bucket, id);
            }
        }
    }

    /// Forgets removed and replaced insertions once they outnumber the live
    /// ones: amortised O(1) per insertion.
    fn compact_fifo(&mut self) {
        if self.fifo.len() > 2 * self.len + 64 {
            let buckets = &self.buckets;
            self.fifo.retain(|insertion| is_current(buckets, insertion));
        }
    }
}

/// Whether `insertion` is still what its bucket holds under its id.
fn is_current(buckets: &HashMap<u128, Bucket>, insertion: &Insertion) -> bool {
    buckets
        .get(&insertion.bucket)
        .and_then(|held| held.entry(insertion.id))
        .is_some_and(|entry| entry.seq == insertion.seq)
}

// === impl RebuildJob ===

impl RebuildJob {
    /// Trains √n centroids by k-means on a sample and copies each vector into
    /// the list of its nearest: O(n·√n·dims), seconds for 100,000 vectors
    /// (see the module's table). Run it on a blocking thread.
    pub fn build(self) -> IvfLayer {
        let k = list_count(self.entries.len());
        let centroids = train(&self.vectors, self.dims, k);
        let assigned = assign(&self.vectors, &centroids, self.dims);
        let mut sizes = vec![0; k];
        assigned.iter().for_each(|&list| sizes[list as usize] += 1);
        let mut lists: Vec<List> = sizes
            .iter()
            .map(|&n| List::with_capacity(n, self.dims))
            .collect();
        let vectors = self.vectors.chunks_exact(self.dims);
        for ((vector, entry), list) in vectors.zip(self.entries).zip(assigned) {
            lists[list as usize].push(entry, vector);
        }
        IvfLayer {
            bucket: self.bucket,
            dims: self.dims,
            centroids,
            lists,
            mark: self.mark,
        }
    }
}

// === impl Bucket ===

impl Bucket {
    fn new(dims: usize) -> Self {
        Self {
            dims,
            lists: vec![List::default()],
            handles: HashMap::new(),
            places: Vec::new(),
            free: Vec::new(),
            ivf: None,
            inserts: 0,
        }
    }

    fn len(&self) -> usize {
        self.handles.len()
    }

    fn entry(&self, id: u128) -> Option<&Entry> {
        self.handles.get(&id).and_then(|&handle| self.at(handle))
    }

    /// What sits where `handle` points: its entry while it is held.
    fn at(&self, handle: u32) -> Option<&Entry> {
        let place = self.places.get(handle as usize)?;
        let list = self.lists.get(place.list as usize)?;
        list.entries.get(place.pos as usize)
    }

    fn push(&mut self, insertion: &Insertion, unit: &[f32]) {
        let list = match &self.ivf {
            Some(ivf) => nearest(&ivf.centroids, self.dims, unit),
            None => 0,
        };
        let handle = self.free.pop().unwrap_or(self.places.len() as u32);
        let entry = Entry {
            id: insertion.id,
            seq: insertion.seq,
            expires_at: insertion.expires_at,
            handle,
        };
        let pos = self.lists[list as usize].push(entry, unit);
        match self.places.get_mut(handle as usize) {
            Some(place) => *place = Place { list, pos },
            None => self.places.push(Place { list, pos }),
        }
        self.handles.insert(insertion.id, handle);
        self.inserts += 1;
    }

    fn remove(&mut self, id: u128) -> bool {
        let Some(handle) = self.handles.remove(&id) else {
            return false;
        };
        self.free.push(handle);
        let Place { list, pos } = self.places[handle as usize];
        if let Some(moved) = self.lists[list as usize].swap_remove(pos, self.dims) {
            self.places[moved as usize].pos = pos;
        }
        true
    }

    fn uses_ivf(&self, min_floats: usize) -> bool {
        self.ivf.is_some() && self.len() * self.dims >= min_floats
    }

    fn needs_rebuild(&self, min_floats: usize) -> bool {
        self.len() * self.dims >= min_floats
            && self.ivf.as_ref().is_none_or(|ivf| {
                let built = ivf.built_from;
                self.inserts - built.inserts >= built.len as u64
            })
    }

    /// The best live match at or above `threshold`: in the `nprobe` lists
    /// nearest `query` when given, else in every list.
    fn search(
        &self,
        query: &[f32],
        threshold: f32,
        now: Instant,
        nprobe: Option<usize>,
    ) -> Option<Match> {
        let best = |best: Option<Match>, list: &List| {
            let floor = best.map_or(threshold, |best| best.score);
            list.best(query, self.dims, floor, now).or(best)
        };
        match (&self.ivf, nprobe) {
            (Some(ivf), Some(nprobe)) => (ivf.nearest_lists(query, self.dims, nprobe).into_iter())
                .map(|list| &self.lists[list])
                .fold(None, best),
            _ => self.lists.iter().fold(None, best),
        }
    }

    /// Takes the layer's lists, less what left the bucket since its
    /// snapshot, plus what came in.
    fn install(&mut self, layer: IvfLayer) -> Result<Retired, IvfLayer> {
        if !self.fits(&layer) {
            return Err(layer);
        }
        let since = layer.mark.next_seq;
        let mut lists = layer.lists;
        for list in &mut lists {
            list.retain(self.dims, |entry| {
                self.at(entry.handle)
                    .is_some_and(|held| held.seq == entry.seq)
            });
        }
        for list in &self.lists {
            for (vector, entry) in list.iter(self.dims).filter(|(_, entry)| entry.seq >= since) {
                lists[nearest(&layer.centroids, self.dims, vector) as usize].push(*entry, vector);
            }
        }
        for (list, members) in (0..).zip(&lists) {
            for (pos, entry) in (0..).zip(&members.entries) {
                self.places[entry.handle as usize] = Place { list, pos };
            }
        }
        self.ivf = Some(Ivf {
            centroids: layer.centroids,
            built_from: layer.mark,
        });
        let old = std::mem::replace(&mut self.lists, lists);
        Ok(Retired { _lists: old })
    }

    /// Whether at most 1 / [`MAX_CHANGED_SHARE`] of the bucket came in or
    /// left since the layer's snapshot.
    fn fits(&self, layer: &IvfLayer) -> bool {
        let since = layer.mark.next_seq;
        let entries = self.lists.iter().flat_map(|list| &list.entries);
        let added = entries.filter(|entry| entry.seq >= since).count();
        let removed = layer.mark.len.saturating_sub(self.len() - added);
        layer.mark.len > 0 && (added + removed) * MAX_CHANGED_SHARE <= layer.mark.len
    }
}

// === impl List ===

impl List {
    fn with_capacity(entries: usize, dims: usize) -> Self {
        Self {
            vectors: Vec::with_capacity(entries * dims),
            entries: Vec::with_capacity(entries),
        }
    }

    fn iter(&self, dims: usize) -> impl Iterator<Item = (&[f32], &Entry)> {
        self.vectors.chunks_exact(dims).zip(&self.entries)
    }

    /// Appends; the entry's position.
    fn push(&mut self, entry: Entry, unit: &[f32]) -> u32 {
        self.vectors.extend_from_slice(unit);
        self.entries.push(entry);
        (self.entries.len() - 1) as u32
    }

    /// Removes the entry at `pos`, moving the last one there; that one's
    /// handle.
    fn swap_remove(&mut self, pos: u32, dims: usize) -> Option<u32> {
        let (pos, last) = (pos as usize, self.entries.len() - 1);
        self.entries.swap_remove(pos);
        self.vectors
            .copy_within(last * dims..(last + 1) * dims, pos * dims);
        self.vectors.truncate(last * dims);
        self.entries.get(pos).map(|moved| moved.handle)
    }

    fn retain(&mut self, dims: usize, mut keep: impl FnMut(&Entry) -> bool) {
        for pos in (0..self.entries.len()).rev() {
            if !keep(&self.entries[pos]) {
                self.swap_remove(pos as u32, dims);
            }
        }
    }

    /// The best live entry scoring at least `floor`.
    fn best(&self, query: &[f32], dims: usize, floor: f32, now: Instant) -> Option<Match> {
        let mut best = None;
        let mut floor = floor;
        for (vector, entry) in self.iter(dims) {
            let score = dot(query, vector);
            if score >= floor && entry.expires_at > now {
                floor = score;
                best = Some(Match {
                    id: entry.id,
                    score,
                });
            }
        }
        best
    }
}

// === impl Ivf ===

impl Ivf {
    /// The `nprobe` lists whose centroids are nearest `query`.
    fn nearest_lists(&self, query: &[f32], dims: usize, nprobe: usize) -> Vec<usize> {
        let mut ranked: Vec<(f32, usize)> = (self.centroids.chunks_exact(dims))
            .map(|centroid| dot(query, centroid))
            .zip(0..)
            .collect();
        if nprobe < ranked.len() {
            ranked.select_nth_unstable_by(nprobe, |a, b| b.0.total_cmp(&a.0));
            ranked.truncate(nprobe);
        }
        ranked.into_iter().map(|(_, list)| list).collect()
    }
}

// === k-means ===

/// √n lists, at least one.
fn list_count(n: usize) -> usize {
    ((n as f64).sqrt().round() as usize).max(1)
}

/// `k` unit centroids by spherical k-means over an evenly spaced sample,
/// seeded with evenly spaced picks: deterministic.
fn train(vectors: &[f32], dims: usize, k: usize) -> Vec<f32> {
    let n = vectors.len() / dims;
    let sample = pick_evenly(vectors, dims, (k * SAMPLE_PER_LIST).min(n));
    let mut centroids = pick_evenly(&sample, dims, k);
    for _ in 0..KMEANS_ROUNDS {
        let lists = assign(&sample, &centroids, dims);
        recenter(&mut centroids, &sample, &lists, dims);
    }
    centroids
}

/// `count` vectors spread evenly over `vectors`.
fn pick_evenly(vectors: &[f32], dims: usize, count: usize) -> Vec<f32> {
    let n = vectors.len() / dims;
    (0..count)
        .flat_map(|i| &vectors[i * n / count * dims..][..dims])
        .copied()
        .collect()
}

/// The nearest centroid of each vector.
fn assign(vectors: &[f32], centroids: &[f32], dims: usize) -> Vec<u32> {
    (vectors.chunks_exact(dims))
        .map(|vector| nearest(centroids, dims, vector))
        .collect()
}

/// Moves each centroid to the normalised mean of its vectors; one without
/// vectors stays.
fn recenter(centroids: &mut [f32], vectors: &[f32], lists: &[u32], dims: usize) {
    let mut sums = vec![0.0; centroids.len()];
    for (vector, &list) in vectors.chunks_exact(dims).zip(lists) {
        let sum = &mut sums[list as usize * dims..][..dims];
        sum.iter_mut().zip(vector).for_each(|(s, x)| *s += x);
    }
    for (sum, centroid) in sums
        .chunks_exact_mut(dims)
        .zip(centroids.chunks_exact_mut(dims))
    {
        if normalize(sum).is_ok() {
            centroid.copy_from_slice(sum);
        }
    }
}

/// The index of the centroid with the highest dot product with `vector`.
fn nearest(centroids: &[f32], dims: usize, vector: &[f32]) -> u32 {
    let mut best = (f32::NEG_INFINITY, 0);
    for (centroid, list) in centroids.chunks_exact(dims).zip(0..) {
        let score = dot(vector, centroid);
        if score > best.0 {
            best = (score, list);
        }
    }
    best.1
}

// === vector math ===

/// Scales `vector` to length 1.
fn normalize(vector: &mut [f32]) -> Result<(), VectorError> {
    if !vector.iter().all(|x| x.is_finite()) {
        return Err(VectorError::NotFinite);
    }
    // In f64: the squares of large f32 components would overflow.
    let norm = vector
        .iter()
        .map(|&x| f64::from(x).powi(2))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        return Err(VectorError::Zero);
    }
    for x in vector {
        *x = (f64::from(*x) / norm) as f32;
    }
    Ok(())
}

/// `a · b`, in [`LANES`] independent sums the compiler vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (a_chunks, a_tail) = a.as_chunks::<LANES>();
    let (b_chunks, b_tail) = b.as_chunks::<LANES>();
    let mut sums = [0.0; LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for ((sum, x), y) in sums.iter_mut().zip(x).zip(y) {
            *sum += x * y;
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    sums.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const DIMS: usize = 4;

    fn index(max_entries: usize) -> VectorIndex {
        VectorIndex::new(DIMS, NonZeroUsize::new(max_entries).unwrap())
    }

    fn clock() -> (Instant, Instant) {
        let now = Instant::now();
        (now, now + Duration::from_secs(60))
    }

    /// `[cos, sin, 0, 0]`: at cosine `cos` to `[1, 0, 0, 0]`.
    fn at(cos: f32) -> [f32; DIMS] {
        [cos, (1.0 - cos * cos).sqrt(), 0.0, 0.0]
    }

    const E0: [f32; DIMS] = [1.0, 0.0, 0.0, 0.0];
    const E1: [f32; DIMS] = [0.0, 1.0, 0.0, 0.0];

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

        fn gaussian(&mut self) -> f32 {
            let (u, v) = (self.uniform(), self.uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        }

        fn unit(&mut self, dims: usize) -> Vec<f32> {
            let mut vector: Vec<f32> = (0..dims).map(|_| self.gaussian()).collect();
            normalize(&mut vector).unwrap();
            vector
        }

        /// A unit vector at cosine `cos` to the unit vector `to`.
        fn near(&mut self, to: &[f32], cos: f32) -> Vec<f32> {
            let mut away = self.unit(to.len());
            let along = dot(&away, to);
            away.iter_mut().zip(to).for_each(|(a, t)| *a -= along * t);
            normalize(&mut away).unwrap();
            let sin = (1.0 - cos * cos).sqrt();
            to.iter()
                .zip(&away)
                .map(|(t, a)| cos * t + sin * a)
                .collect()
        }
    }

    /// `n` random unit vectors of `dims`, ids `0..n`, in bucket 7.
    fn random_index(n: usize, dims: usize, rng: &mut Rng) -> (VectorIndex, Vec<Vec<f32>>) {
        let (now, later) = clock();
        let mut index =
            VectorIndex::new(dims, NonZeroUsize::new(n).unwrap()).with_ivf_min_floats(n * dims / 2);
        let vectors: Vec<Vec<f32>> = (0..n).map(|_| rng.unit(dims)).collect();
        for (id, vector) in vectors.iter().enumerate() {
            index.insert(7, id as u128, vector, later, now).unwrap();
        }
        (index, vectors)
    }

    fn rebuild(index: &mut VectorIndex, bucket: u128) {
        assert!(index.needs_rebuild(bucket));
        let layer = index.rebuild_job(bucket).unwrap().build();
        drop(index.install(layer).unwrap());
        assert!(!index.needs_rebuild(bucket));
    }

    fn hit(index: &VectorIndex, bucket: u128, query: &[f32], threshold: f32) -> Option<u128> {
        let (now, _) = clock();
        let found = index.search(bucket, query, threshold, now).unwrap();
        found.map(|found| found.id)
    }

    #[test]
    fn an_exact_match_scores_one() {
        let (now, later) = clock();
        let mut index = index(10);
        index
            .insert(1, 42, &[1.0, 2.0, 3.0, 4.0], later, now)
            .unwrap();

        let found = index
            .search(1, &[3.0, 6.0, 9.0, 12.0], 0.999, now)
            .unwrap()
            .unwrap();

        assert_eq!(found.id, 42);
        assert!((found.score - 1.0).abs() < 1e-6, "{}", found.score);
    }

    #[test]
    fn the_threshold_is_respected_on_the_exact_score() {
        let (now, later) = clock();
        let mut index = index(10);
        index.insert(1, 1, &E0, later, now).unwrap();

        assert_eq!(index.search(1, &at(0.9), 0.95, now).unwrap(), None);
        let found = index.search(1, &at(0.9), 0.85, now).unwrap().unwrap();
        assert!((found.score - 0.9).abs() < 1e-6, "{}", found.score);
    }

    #[test]
    fn the_best_match_wins() {
        let (now, later) = clock();
        let mut index = index(10);
        for (id, cos) in [(1, 0.96), (2, 0.99), (3, 0.97)] {
            index.insert(1, id, &at(cos), later, now).unwrap();
        }

        assert_eq!(hit(&index, 1, &E0, 0.95), Some(2));
    }

    #[test]
    fn buckets_never_cross() {
        let (now, later) = clock();
        let mut index = index(10);
        index.insert(1, 1, &E0, later, now).unwrap();
        index.insert(2, 2, &E1, later, now).unwrap();

        assert_eq!(hit(&index, 1, &E0, 0.5), Some(1));
        assert_eq!(hit(&index, 1, &E1, 0.5), None);
        assert_eq!(hit(&index, 2, &E0, 0.5), None);
        assert_eq!(hit(&index, 3, &E0, 0.5), None);
    }

    #[test]
    fn expired_entries_never_match_and_are_reclaimed() {
        let now = Instant::now();
        let (soon, later) = (now + Duration::from_secs(1), now + Duration::from_secs(60));
        let mut index = index(10);
        index.insert(1, 1, &E0, soon, now).unwrap();
        index.insert(1, 2, &at(0.97), later, now).unwrap();
        let after = now + Duration::from_secs(2);

        let found = index.search(1, &E0, 0.95, after).unwrap().unwrap();
        assert_eq!(
            found.id, 2,
            "the live one, though the expired one is closer"
        );
        assert_eq!(index.len(), 2, "reclaimed lazily");
        index.insert(2, 3, &E1, later, after).unwrap();
        assert_eq!(index.len(), 2, "the next insertion reclaims it");
        assert!(!index.remove(1, 1));
    }

    #[test]
    fn the_oldest_insertion_is_evicted_at_max_entries() {
        let (now, later) = clock();
        let mut index = index(3);
        for (bucket, id) in [(1, 1), (2, 2), (1, 3), (2, 4)] {
            index.insert(bucket, id, &E0, later, now).unwrap();
        }

        assert_eq!(index.len(), 3);
        assert_eq!(hit(&index, 1, &E0, 0.9), Some(3));
        assert!(!index.remove(1, 1), "evicted");
        assert!(index.remove(2, 2));
    }

    #[test]
    fn reinserting_an_id_replaces_it_and_makes_it_youngest() {
        let (now, later) = clock();
        let mut index = index(2);
        index.insert(1, 1, &E0, later, now).unwrap();
        index.insert(1, 2, &at(0.5), later, now).unwrap();
        index.insert(1, 1, &E1, later, now).unwrap();

        assert_eq!(index.len(), 2);
        assert_eq!(hit(&index, 1, &E0, 0.9), None);
        assert_eq!(hit(&index, 1, &E1, 0.9), Some(1));
        index
            .insert(1, 3, &[0.0, 0.0, 1.0, 0.0], later, now)
            .unwrap();
        assert_eq!(hit(&index, 1, &E1, 0.9), Some(1), "2 was older");
        assert!(!index.remove(1, 2));
    }

    #[test]
    fn remove_takes_out_one_vector() {
        let (now, later) = clock();
        let mut index = index(10);
        index.insert(1, 1, &E0, later, now).unwrap();
        index.insert(1, 2, &E1, later, now).unwrap();

        assert!(index.remove(1, 1));
        assert!(!index.remove(1, 1));
        assert_eq!(index.len(), 1);
        assert_eq!(hit(&index, 1, &E0, 0.9), None);
        assert_eq!(
            hit(&index, 1, &E1, 0.9),
            Some(2),
            "moved by the swap-remove"
        );
        assert!(index.remove(1, 2));
        assert!(index.is_empty() && index.buckets.is_empty());
    }

    #[test]
    fn bad_vectors_are_refused() {
        let (now, later) = clock();
        let mut index = index(10);
        let refused = |vector: &[f32]| index.search(1, vector, 0.5, now).unwrap_err();

        assert_eq!(
            refused(&[1.0]),
            VectorError::Dimensions {
                expected: 4,
                found: 1
            }
        );
        assert_eq!(refused(&[0.0; 4]), VectorError::Zero);
        assert_eq!(refused(&[1.0, f32::NAN, 0.0, 0.0]), VectorError::NotFinite);
        assert_eq!(
            refused(&[f32::INFINITY, 0.0, 0.0, 0.0]),
            VectorError::NotFinite
        );
        let huge = [f32::MAX; 4];
        index.insert(1, 1, &huge, later, now).unwrap();
        assert_eq!(hit(&index, 1, &[1.0; 4], 0.999), Some(1));
    }

    #[test]
    fn replaced_insertions_do_not_pile_up() {
        let (now, later) = clock();
        let mut index = index(10);
        for round in 0..1_000 {
            index.insert(1, round % 3, &E0, later, now).unwrap();
        }

        assert_eq!(index.len(), 3);
        assert!(index.fifo.len() <= 2 * 3 + 64 + 1, "{}", index.fifo.len());
    }

    #[test]
    fn the_ivf_layer_finds_every_vector_through_removes_and_inserts() {
        let mut rng = Rng(0x5eed);
        let (mut index, vectors) = random_index(4_000, 16, &mut rng);
        let (now, later) = clock();
        rebuild(&mut index, 7);

        let removed = |id: usize| id.is_multiple_of(3);
        for id in (0..vectors.len()).filter(|&id| removed(id)) {
            assert!(index.remove(7, id as u128));
        }
        let added: Vec<Vec<f32>> = (0..500).map(|_| rng.unit(16)).collect();
        for (id, vector) in added.iter().enumerate() {
            index
                .insert(7, (10_000 + id) as u128, vector, later, now)
                .unwrap();
        }

        assert!(index.buckets[&7].uses_ivf(index.ivf_min_floats));
        for (id, vector) in vectors.iter().enumerate() {
            let expected = (!removed(id)).then_some(id as u128);
            assert_eq!(hit(&index, 7, vector, 0.9999), expected, "{id}");
        }
        for (id, vector) in added.iter().enumerate() {
            assert_eq!(hit(&index, 7, vector, 0.9999), Some((10_000 + id) as u128));
        }
    }

    #[test]
    fn an_ivf_layer_is_due_again_after_as_many_insertions() {
        let mut rng = Rng(7);
        let (mut index, _) = random_index(2_000, 8, &mut rng);
        let (now, later) = clock();
        rebuild(&mut index, 7);

        for id in 0..1_999 {
            index.insert(7, id, &rng.unit(8), later, now).unwrap();
        }
        assert!(!index.needs_rebuild(7));
        index.insert(7, 5_000, &rng.unit(8), later, now).unwrap();
        assert!(index.needs_rebuild(7));
    }

    #[test]
    fn a_bucket_shrunk_under_the_ivf_size_is_scanned_whole() {
        let mut rng = Rng(9);
        let (mut index, vectors) = random_index(2_000, 8, &mut rng);
        rebuild(&mut index, 7);

        for id in 0..1_100 {
            index.remove(7, id);
        }

        assert!(!index.buckets[&7].uses_ivf(index.ivf_min_floats));
        assert!(!index.needs_rebuild(7));
        for (id, vector) in vectors.iter().enumerate().skip(1_100) {
            let found = index.search(7, vector, 0.0, clock().0).unwrap();
            assert_eq!(found.map(|found| found.id), Some(id as u128));
        }
    }

    #[test]
    fn install_places_what_changed_since_the_snapshot() {
        let mut rng = Rng(11);
        let (mut index, vectors) = random_index(2_000, 8, &mut rng);
        let (now, later) = clock();
        let job = index.rebuild_job(7).unwrap();
        index.remove(7, 0);
        let fresh = rng.unit(8);
        index.insert(7, 9_999, &fresh, later, now).unwrap();

        drop(index.install(job.build()).unwrap());
        assert_eq!(hit(&index, 7, &fresh, 0.9999), Some(9_999));
        assert_eq!(hit(&index, 7, &vectors[0], 0.9999), None);
        assert_eq!(hit(&index, 7, &vectors[1_999], 0.9999), Some(1_999));
    }

    #[test]
    fn install_refuses_a_layer_the_bucket_has_outgrown() {
        let mut rng = Rng(13);
        let (mut index, _) = random_index(2_000, 8, &mut rng);
        let (now, later) = clock();
        let job = index.rebuild_job(7).unwrap();
        for id in 0..300 {
            index
                .insert(7, 5_000 + id, &rng.unit(8), later, now)
                .unwrap();
        }

        assert!(index.install(job.build()).is_err());
        assert!(index.needs_rebuild(7));
    }

    /// Share of `queries` (cosine 0.97 to a stored vector) whose search
    /// returns that vector.
    fn recall(index: &VectorIndex, queries: &[(u128, Vec<f32>)]) -> f64 {
        let found = (queries.iter())
            .filter(|(id, query)| hit(index, 7, query, 0.96) == Some(*id))
            .count();
        found as f64 / queries.len() as f64
    }

    fn planted_queries(vectors: &[Vec<f32>], count: usize, rng: &mut Rng) -> Vec<(u128, Vec<f32>)> {
        let step = vectors.len() / count;
        (0..count)
            .map(|i| (i * step) as u128)
            .map(|id| (id, rng.near(&vectors[id as usize], 0.97)))
            .collect()
    }

    #[test]
    #[ignore = "a minute in a debug build: cargo test --release -- --ignored --nocapture"]
    fn the_ivf_layer_recalls_99_percent_of_planted_neighbours() {
        let mut rng = Rng(0x384);
        let (mut index, vectors) = random_index(100_000, 384, &mut rng);
        let started = Instant::now();
        rebuild(&mut index, 7);
        eprintln!("build: {:?}", started.elapsed());
        let queries = planted_queries(&vectors, 1_000, &mut rng);

        for nprobe in [1, 2, 4, 8, 10, 12, 16, 24] {
            index.nprobe = nprobe;
            eprintln!("nprobe {nprobe:>2}: recall {:.3}", recall(&index, &queries));
        }
        index.nprobe = default_nprobe(384);
        assert!(recall(&index, &queries) >= 0.99);
    }
}
