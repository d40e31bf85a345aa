//! The AVX2 kernel: up to four rows of `A` against one 16-column panel of `B`, eight 256-bit
//! accumulators. Per group of four `k`: two panel loads, and per row one 32-bit broadcast, two
//! `vpmaddubsw` (u8 × i8 → pairs summed to i16, exact for `A ≤ 127`) and two `vpmaddwd`
//! against ones (i16 pairs → i32).

use std::arch::x86_64::*;

use crate::{MR, NR};

/// # Safety
/// The CPU must have AVX2. `a` holds `rows` (1..=MR) rows of `k4` bytes (`k4 % 4 == 0`),
/// `panel` `k4 · NR` bytes, `sums` at least `rows · NR` values.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn kernel(a: &[u8], rows: usize, k4: usize, panel: &[i8], sums: &mut [i32]) {
    debug_assert!(rows >= 1 && rows <= MR && a.len() >= rows * k4 && panel.len() >= k4 * NR);
    match rows {
        4 => rows_n::<4>(a, k4, panel, sums),
        3 => rows_n::<3>(a, k4, panel, sums),
        2 => rows_n::<2>(a, k4, panel, sums),
        _ => rows_n::<1>(a, k4, panel, sums),
    }
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn rows_n<const R: usize>(a: &[u8], k4: usize, panel: &[i8], sums: &mut [i32]) {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    let a_ptr = a.as_ptr();
    let b_ptr = panel.as_ptr();
    for g in 0..k4 / 4 {
        // SAFETY: g · 64 + 64 ≤ k4 · NR and row r's bytes 4g..4g+4 lie within `a` (caller's contract)
        let b0 = _mm256_loadu_si256(b_ptr.add(g * 64) as *const __m256i);
        let b1 = _mm256_loadu_si256(b_ptr.add(g * 64 + 32) as *const __m256i);
        for (r, acc) in acc.iter_mut().enumerate() {
            let word = (a_ptr.add(r * k4 + g * 4) as *const i32).read_unaligned();
            let x = _mm256_set1_epi32(word);
            acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(_mm256_maddubs_epi16(x, b0), ones));
            acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(_mm256_maddubs_epi16(x, b1), ones));
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        _mm256_storeu_si256(sums.as_mut_ptr().add(r * NR) as *mut __m256i, acc[0]);
        _mm256_storeu_si256(sums.as_mut_ptr().add(r * NR + 8) as *mut __m256i, acc[1]);
    }
}
