//! The memory a server may spend on requests at once. Every request body reserves its bytes
//! from one budget as they arrive, and tops the reservation up by what decoding it may take
//! (see [`decode_reservation`]) before it is decoded; the reservation lives until the response
//! is built. A request that cannot reserve is answered 503, so the body limit times the
//! admission slots can never ask for more memory than the operator allowed.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in KiB so that one `u32` acquisition covers up to 4 TiB.
const UNIT: usize = 1024;

/// Most memory an operator may give the budget: far above any machine, far below overflow.
pub const MAX_BUDGET_BYTES: usize = 1 << 50;

#[derive(Clone, Debug)]
pub struct MemoryBudget {
    units: Arc<Semaphore>,
    bytes: usize,
}

/// Bytes held from a [`MemoryBudget`]; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    units: Arc<Semaphore>,
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT)
}

impl MemoryBudget {
    /// A budget of `bytes` (at least one KiB, at most [`MAX_BUDGET_BYTES`]).
    pub fn new(bytes: usize) -> Self {
        let bytes = bytes.clamp(UNIT, MAX_BUDGET_BYTES);
        Self { units: Arc::new(Semaphore::new(units(bytes))), bytes }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> usize {
        self.units.available_permits() * UNIT
    }

    /// An empty reservation to grow.
    pub fn empty(&self) -> Reservation {
        Reservation { permit: None, units: self.units.clone() }
    }
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits() * UNIT)
    }

    /// Grows the reservation to at least `bytes`, or says no at once (never waits: a request
    /// that waited here would hold its connection and the bytes it already has).
    pub fn grow_to(&mut self, bytes: usize) -> bool {
        let wanted = units(bytes);
        let held = self.permit.as_ref().map_or(0, |p| p.num_permits());
        if wanted <= held {
            return true;
        }
        let Ok(more) = u32::try_from(wanted - held) else { return false };
        match self.units.clone().try_acquire_many_owned(more) {
            Ok(more) => {
                match &mut self.permit {
                    Some(permit) => permit.merge(more),
                    None => self.permit = Some(more),
                }
                true
            }
            Err(_) => false,
        }
    }
}

/// What decoding a received body may allocate beyond the body itself, at most five times its
/// size: the JSON text of tensor data is kept once more while its datatype is learnt (1×) and
/// decoded at up to 8 bytes per element, an element costing at least 2 bytes of JSON (`0,`:
/// 4×); binary data decodes at 1×, and an int8 intermediate is then dequantized to f32 (4×).
/// 64 KiB more cover the request's own small parts (names, shape, parameters).
pub fn decode_reservation(body_bytes: usize) -> usize {
    body_bytes.saturating_mul(5).saturating_add(64 << 10)
}
