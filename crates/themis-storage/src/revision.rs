//! Document revisions (`_rev`) and generated keys from one hybrid logical clock.
//!
//! A tick is `max(now in microseconds since the Unix epoch, last tick + 1)`: unique
//! and strictly increasing within a process even if the wall clock steps back.
//!
//! Across restarts the clock never repeats a value because it never hands out a tick
//! above a *reserved* high-water mark that is already durable: when a tick would pass
//! the reservation, the clock first commits and fsyncs a new reservation (the tick plus
//! [`RESERVATION_MICROS`]) under `Meta` key [`CLOCK_KEY`]. On open the clock starts at
//! the stored reservation, so every later tick is above every tick issued before.
//! That costs one small sync per reservation window under steady load.
//!
//! A revision string is the tick in a 64-letter alphabet whose ASCII order matches
//! digit order, without leading zero digits. Ticks between 1979 and 2540 all take nine
//! letters, so in practice comparing two revision strings compares their ticks.
//! A generated `_key` is the tick in decimal (16 digits until the year 2286), so
//! generated keys sort in creation order too.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::error::{Result, StorageError};
use crate::kv::{KvEngine, Space};

/// `Meta` key of the clock's durable reservation (a big-endian `u64`).
pub(crate) const CLOCK_KEY: &[u8] = b"R";

/// How far ahead of the current tick a reservation reaches (5 s).
pub const RESERVATION_MICROS: u64 = 5_000_000;

/// The revision alphabet, in ASCII order so string order follows numeric order.
const ALPHABET: &[u8; 64] = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

/// Encodes a tick as a revision string.
pub fn encode_revision(mut tick: u64) -> String {
    let mut buf = [0u8; 11];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = ALPHABET[(tick & 63) as usize];
        tick >>= 6;
        if tick == 0 {
            break;
        }
    }
    buf[i..].iter().map(|&b| b as char).collect()
}

/// Decodes a revision string back into its tick; `None` if it is not one.
pub fn decode_revision(rev: &str) -> Option<u64> {
    if rev.is_empty() || rev.len() > 11 {
        return None;
    }
    let mut tick: u64 = 0;
    for b in rev.bytes() {
        let digit = ALPHABET.iter().position(|&a| a == b)? as u64;
        tick = tick.checked_mul(64)?.checked_add(digit)?;
    }
    Some(tick)
}

struct ClockState {
    last: u64,
    reserved_until: u64,
}

/// The store's hybrid logical clock.
pub(crate) struct RevisionClock {
    engine: Arc<dyn KvEngine>,
    state: Mutex<ClockState>,
}

fn now_micros() -> u64 {
    // Before the epoch (a badly set clock) counts as 0: `last + 1` still advances.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl RevisionClock {
    /// Loads the clock, starting above everything a previous run may have issued.
    pub(crate) fn load(engine: Arc<dyn KvEngine>) -> Result<RevisionClock> {
        let snap = engine.snapshot()?;
        let reserved = match snap.get(Space::Meta, CLOCK_KEY)? {
            None => 0,
            Some(v) => {
                let raw: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                    StorageError::Internal(format!(
                        "revision clock record is corrupt ({} bytes, expected 8); \
                         restore the data directory from a backup",
                        v.len()
                    ))
                })?;
                u64::from_be_bytes(raw)
            }
        };
        Ok(RevisionClock {
            engine,
            state: Mutex::new(ClockState {
                last: reserved,
                reserved_until: reserved,
            }),
        })
    }

    /// The next tick: unique, above every tick ever issued by this store.
    pub(crate) fn tick(&self) -> Result<u64> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| StorageError::Internal("revision clock lock poisoned".to_string()))?;
        let tick = now_micros().max(st.last.saturating_add(1));
        if tick > st.reserved_until {
            // Holding the lock while the reservation becomes durable keeps every
            // other caller from issuing a tick above the durable mark meanwhile.
            let reserve = tick.saturating_add(RESERVATION_MICROS);
            let mut tx = self.engine.begin()?;
            tx.put(
                Space::Meta,
                CLOCK_KEY,
                Bytes::copy_from_slice(&reserve.to_be_bytes()),
            )?;
            // A blind write reads nothing, so it cannot conflict.
            tx.commit()?;
            self.engine.persist()?;
            st.reserved_until = reserve;
        }
        st.last = tick;
        Ok(tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_roundtrip_and_order() {
        let samples = [
            0u64,
            1,
            63,
            64,
            1_000_000,
            now_micros(),
            now_micros() + 1,
            u64::MAX,
        ];
        for &t in &samples {
            assert_eq!(decode_revision(&encode_revision(t)), Some(t), "{t}");
        }
        let now = now_micros();
        let mut prev = encode_revision(now);
        assert_eq!(prev.len(), 9);
        for t in now + 1..now + 5000 {
            let cur = encode_revision(t);
            assert!(cur > prev, "{cur} <= {prev}");
            prev = cur;
        }
        assert_eq!(decode_revision(""), None);
        assert_eq!(decode_revision("a/b"), None);
        assert_eq!(decode_revision("zzzzzzzzzzzz"), None);
    }
}
