//! SplitMix64: a fast, well-mixed 64-bit hash, for turning a counter into
//! uniformly spread values (weighted picks, request ids). Not for secrets.

/// The SplitMix64 finaliser of `x`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
