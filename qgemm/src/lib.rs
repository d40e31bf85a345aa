//! Integer matrix multiplication for rlsched's int8 variants: `C[m][n] = Σ_k A[m][k] · B[k][n]`
//! with `A` unsigned 8-bit activations, `B` signed 8-bit weights, and exact 32-bit sums.
//!
//! This crate owns only the arithmetic: packing the weights ([`PackedB`]), the kernels (AVX2
//! through runtime feature detection, a portable one everywhere else) and splitting the work over
//! rayon's threads. Quantization (scales, zero points) and what the sums become belong to the
//! executor (`executor/src/model/int8.rs`).
//!
//! Why our own: burn 0.22's flex backend dequantizes quantized tensors before every operation
//! (`burn-flex/src/ops/qtensor.rs`), the `gemm` and `matrixmultiply` crates have no 8-bit
//! integer kernels, and tract-linalg's int8 kernels come with tract's own operator and tensor
//! machinery. The kernel is the classic one for AVX2 without VNNI (FBGEMM, oneDNN): four
//! activation bytes broadcast, `vpmaddubsw` (u8 × i8 pairs → i16) then `vpmaddwd` against ones
//! (i16 pairs → i32). `vpmaddubsw` saturates when a pair's sum passes 32767, so activations
//! must stay within 0..=127 (PyTorch's `reduce_range` for FBGEMM does the same): then
//! 2 · 127 · 128 < 32768 and every sum is exact, and the kernels agree bit for bit.

#[cfg(target_arch = "x86_64")]
mod avx2;

use rayon::prelude::*;

/// Largest activation value the kernels take exactly (see the crate comment).
pub const A_MAX: u8 = 127;
/// Columns of `B` per packed panel: two 256-bit registers of eight 32-bit sums.
pub const NR: usize = 16;
/// Rows of `A` per kernel call.
pub const MR: usize = 4;

/// Rounds `k` up to a multiple of four (the kernels consume four bytes of a row at a time);
/// the padding must be zero in `A`, and [`PackedB`] pads `B` with zeros.
pub fn padded_k(k: usize) -> usize {
    k.div_ceil(4) * 4
}

/// Weights `B` (k × n) laid out for the kernels: panels of [`NR`] columns, and within a panel,
/// for each group of four rows, column by column, the group's four bytes. Ragged edges are
/// zero-padded. `col_sums` (Σ_k B[k][n]) lets the caller remove an activation zero point.
#[derive(Clone, Debug)]
pub struct PackedB {
    k: usize,
    n: usize,
    data: Vec<i8>,
    col_sums: Vec<i32>,
}

impl PackedB {
    /// Packs row-major `b` (`k` rows of `n`). `None` when `b.len() != k · n`.
    pub fn new(b: &[i8], k: usize, n: usize) -> Option<Self> {
        if k.checked_mul(n)? != b.len() {
            return None;
        }
        let k4 = padded_k(k);
        let panels = n.div_ceil(NR);
        let mut data = vec![0i8; panels * k4 * NR];
        for p in 0..panels {
            let panel = &mut data[p * k4 * NR..(p + 1) * k4 * NR];
            for kk in 0..k {
                let (group, within) = (kk / 4, kk % 4);
                for c in 0..NR.min(n - p * NR) {
                    panel[group * 4 * NR + c * 4 + within] = b[kk * n + p * NR + c];
                }
            }
        }
        let col_sums = (0..n).map(|c| (0..k).map(|kk| b[kk * n + c] as i32).sum()).collect();
        Some(Self { k, n, data, col_sums })
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// Σ_k B[k][c] for each column c.
    pub fn col_sums(&self) -> &[i32] {
        &self.col_sums
    }

    /// Bytes held (the packed weights and their column sums).
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * self.col_sums.len()
    }

    fn panel(&self, p: usize) -> &[i8] {
        let len = padded_k(self.k) * NR;
        &self.data[p * len..(p + 1) * len]
    }
}

/// Which kernel runs: AVX2 where the CPU has it, the portable one otherwise (or when asked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Kernel::Avx2;
        }
        Kernel::Portable
    }
}

/// Why a multiplication was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum GemmError {
    /// `a` must hold `m` rows of `padded_k(k)` bytes.
    ALength { expected: usize, got: usize },
    /// `c` must hold `m · n` sums.
    CLength { expected: usize, got: usize },
    /// An activation above [`A_MAX`] would saturate `vpmaddubsw`.
    AOutOfRange { index: usize, value: u8 },
}

impl std::fmt::Display for GemmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GemmError::ALength { expected, got } => write!(f, "activations: expected {expected} bytes, got {got}"),
            GemmError::CLength { expected, got } => write!(f, "output: expected {expected} sums, got {got}"),
            GemmError::AOutOfRange { index, value } => {
                write!(f, "activation {index} is {value}, above {A_MAX} (the kernels' exact range)")
            }
        }
    }
}

impl std::error::Error for GemmError {}

/// Below this many multiply-adds a product runs on the calling thread alone.
const SEQUENTIAL_MACS: usize = 1 << 18;

/// Rows per parallel task: enough rows that a task's slice of `A` and its sums amortise the
/// panel walk, few enough that both cores get work on the 7×7 maps of the last stages.
fn rows_per_task(m: usize, k4: usize) -> usize {
    // about 96 KiB of A per task stays in L2 while every panel of B passes over it
    let by_cache = (96 * 1024 / k4.max(1)).max(MR);
    let by_balance = m.div_ceil(2 * rayon::current_num_threads()).max(MR);
    by_cache.min(by_balance).div_ceil(MR) * MR
}

/// `c[i][j] = Σ_k a[i][k] · b[k][j]` for `m` rows; `a` row-major with rows of
/// `padded_k(b.k())` bytes (padding zero), every byte ≤ [`A_MAX`]; `c` row-major `m × b.n()`.
pub fn gemm(kernel: Kernel, a: &[u8], m: usize, b: &PackedB, c: &mut [i32]) -> Result<(), GemmError> {
    let k4 = padded_k(b.k);
    let expected = m.checked_mul(k4).unwrap_or(usize::MAX);
    if a.len() != expected {
        return Err(GemmError::ALength { expected, got: a.len() });
    }
    let expected = m.checked_mul(b.n).unwrap_or(usize::MAX);
    if c.len() != expected {
        return Err(GemmError::CLength { expected, got: c.len() });
    }
    // `max` vectorises; the position is looked for only when something is out of range
    if a.iter().copied().max().unwrap_or(0) > A_MAX {
        let index = a.iter().position(|&v| v > A_MAX).unwrap_or(0);
        return Err(GemmError::AOutOfRange { index, value: a[index] });
    }
    if m == 0 || b.n == 0 {
        return Ok(());
    }
    let n = b.n;
    if m < 2 * MR && m * k4 * n >= SEQUENTIAL_MACS {
        // a dense layer on one input: split the columns (the weights are what streams)
        let panels_per_task = n.div_ceil(NR).div_ceil(2 * rayon::current_num_threads()).max(1);
        let cols = panels_per_task * NR;
        let mut columns: Vec<Vec<i32>> = (0..n.div_ceil(cols)).map(|t| vec![0; m * cols.min(n - t * cols)]).collect();
        columns.par_iter_mut().enumerate().for_each(|(t, out)| {
            let width = cols.min(n - t * cols);
            for p in 0..width.div_ceil(NR) {
                let panel = b.panel(t * panels_per_task + p);
                let w = NR.min(width - p * NR);
                for row in 0..m {
                    let mut sums = [0i32; NR];
                    run_kernel(kernel, &a[row * k4..(row + 1) * k4], 1, k4, panel, &mut sums);
                    out[row * width + p * NR..row * width + p * NR + w].copy_from_slice(&sums[..w]);
                }
            }
        });
        for (t, out) in columns.iter().enumerate() {
            let width = cols.min(n - t * cols);
            for row in 0..m {
                c[row * n + t * cols..row * n + t * cols + width].copy_from_slice(&out[row * width..(row + 1) * width]);
            }
        }
        return Ok(());
    }
    // small products (the digits CNN's) cost less than handing them to other threads
    let rows = if m * k4 * n < SEQUENTIAL_MACS { m.div_ceil(MR) * MR } else { rows_per_task(m, k4) };
    c.par_chunks_mut(rows * n)
        .zip(a.par_chunks(rows * k4))
        .for_each(|(c, a)| {
            let task_rows = a.len() / k4;
            for p in 0..n.div_ceil(NR) {
                let panel = b.panel(p);
                let w = NR.min(n - p * NR);
                let mut row = 0;
                while row < task_rows {
                    let r = MR.min(task_rows - row);
                    let mut sums = [0i32; MR * NR];
                    run_kernel(kernel, &a[row * k4..(row + r) * k4], r, k4, panel, &mut sums);
                    for i in 0..r {
                        let at = (row + i) * n + p * NR;
                        c[at..at + w].copy_from_slice(&sums[i * NR..i * NR + w]);
                    }
                    row += r;
                }
            }
        });
    Ok(())
}

/// `rows` (≤ MR) rows of `a` (each `k4` bytes) against one panel → `sums[row * NR + col]`.
fn run_kernel(kernel: Kernel, a: &[u8], rows: usize, k4: usize, panel: &[i8], sums: &mut [i32]) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Avx2` is only handed out by `detect` when the CPU has AVX2 (or by a
        // caller that checked the same); the slices' lengths are what the kernel reads.
        Kernel::Avx2 => unsafe { avx2::kernel(a, rows, k4, panel, sums) },
        Kernel::Portable => portable(a, rows, k4, panel, sums),
    }
}

/// The reference kernel: the same sums, in plain integer arithmetic.
fn portable(a: &[u8], rows: usize, k4: usize, panel: &[i8], sums: &mut [i32]) {
    for r in 0..rows {
        let row = &a[r * k4..(r + 1) * k4];
        let out = &mut sums[r * NR..(r + 1) * NR];
        for g in 0..k4 / 4 {
            let block = &panel[g * 4 * NR..(g + 1) * 4 * NR];
            for (c, sum) in out.iter_mut().enumerate() {
                *sum += (0..4).map(|i| row[g * 4 + i] as i32 * block[c * 4 + i] as i32).sum::<i32>();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn reference(a: &[u8], m: usize, k: usize, b: &[i8], n: usize) -> Vec<i32> {
        let k4 = padded_k(k);
        let mut c = vec![0i32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|kk| a[i * k4 + kk] as i32 * b[kk * n + j] as i32).sum();
            }
        }
        c
    }

    fn random_case(rng: &mut rand::rngs::SmallRng, m: usize, k: usize, n: usize) -> (Vec<u8>, Vec<i8>) {
        let k4 = padded_k(k);
        let mut a = vec![0u8; m * k4];
        for i in 0..m {
            for kk in 0..k {
                a[i * k4 + kk] = rng.random_range(0..=A_MAX);
            }
        }
        let b = (0..k * n).map(|_| rng.random_range(-127..=127i8)).collect();
        (a, b)
    }

    #[test]
    fn every_kernel_matches_the_reference_on_ragged_shapes() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        // ragged k, n and m (small products on one thread, few rows split by columns, many by
        // rows; remainders of MR, NR and of tasks), and the extreme values where a saturating
        // kernel would go wrong
        for &(m, k, n) in &[(1, 1, 1), (1, 37, 33), (1, 4608, 600), (3, 2000, 100), (3, 27, 64), (5, 147, 17), (9, 576, 64), (49, 4608, 40), (130, 13, 1000)] {
            let (mut a, mut b) = random_case(&mut rng, m, k, n);
            if m == 9 {
                let k4 = padded_k(k);
                for i in 0..m {
                    a[i * k4..i * k4 + k].fill(A_MAX);
                }
                b.fill(-128);
            }
            let packed = PackedB::new(&b, k, n).unwrap();
            let expected = reference(&a, m, k, &b, n);
            for kernel in [Kernel::Portable, Kernel::detect()] {
                let mut c = vec![0i32; m * n];
                gemm(kernel, &a, m, &packed, &mut c).unwrap();
                assert_eq!(c, expected, "{kernel:?} m={m} k={k} n={n}");
            }
            let sums: Vec<i32> = (0..n).map(|j| (0..k).map(|kk| b[kk * n + j] as i32).sum()).collect();
            assert_eq!(packed.col_sums(), &sums[..]);
        }
    }

    #[test]
    fn bad_lengths_and_saturating_values_are_refused() {
        let packed = PackedB::new(&[1, 2, 3, 4, 5, 6], 2, 3).unwrap();
        let mut c = vec![0; 3];
        assert_eq!(gemm(Kernel::detect(), &[1, 2, 0], 1, &packed, &mut c), Err(GemmError::ALength { expected: 4, got: 3 }));
        assert_eq!(gemm(Kernel::detect(), &[1, 2, 0, 0], 1, &packed, &mut c[..2]), Err(GemmError::CLength { expected: 3, got: 2 }));
        assert_eq!(gemm(Kernel::detect(), &[1, 200, 0, 0], 1, &packed, &mut c), Err(GemmError::AOutOfRange { index: 1, value: 200 }));
        assert!(PackedB::new(&[1, 2, 3], 2, 2).is_none());
        gemm(Kernel::detect(), &[1, 2, 0, 0], 1, &packed, &mut c).unwrap();
        assert_eq!(c, vec![1 + 2 * 4, 2 + 2 * 5, 3 + 2 * 6]);
    }
}
