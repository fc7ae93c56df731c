//! The bounded map of session states (DESIGN point 11): one state per key,
//! however many handles the host creates; idle states are evicted oldest
//! first when the map is full.

use crate::session_state::SessionCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Session states by key.
pub(crate) struct Registry {
    cells: Mutex<Cells>,
    max: usize,
    tick: AtomicU64,
}

/// The map, and the size at which the next eviction pass may run.
struct Cells {
    map: HashMap<Arc<str>, Arc<SessionCell>>,
    next_eviction_at: usize,
}

impl Registry {
    /// A registry keeping at most `max` sessions (busy ones are never evicted,
    /// so it may briefly hold more).
    pub(crate) fn new(max: usize) -> Self {
        Registry {
            cells: Mutex::new(Cells {
                map: HashMap::new(),
                next_eviction_at: max,
            }),
            max,
            tick: AtomicU64::new(0),
        }
    }

    /// The state for `key`, created on first use.
    pub(crate) fn cell(&self, key: &str) -> (Arc<str>, Arc<SessionCell>) {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((key, cell)) = cells.map.get_key_value(key) {
            cell.last_used.store(tick, Ordering::Relaxed);
            return (key.clone(), cell.clone());
        }
        if cells.map.len() >= cells.next_eviction_at {
            // One pass per tenth of `max` inserted: a map full of busy or
            // held sessions grows instead of being rescanned on every insert.
            evict_idle(&mut cells.map, self.max - self.max / 10);
            cells.next_eviction_at = cells.map.len().max(self.max) + (self.max / 10).max(1);
        }
        let key: Arc<str> = Arc::from(key);
        let cell = Arc::new(SessionCell::default());
        cell.last_used.store(tick, Ordering::Relaxed);
        cells.map.insert(key.clone(), cell.clone());
        (key, cell)
    }

    /// The state a handle holding `slot` for `key` works on, re-attached by
    /// key if it was evicted; marked used. The handle's `Weak` is upgraded
    /// without the registry's lock (the cached path takes no shared lock),
    /// so an eviction may have found the state unheld just before the
    /// upgrade: two states for one key would then run two flights. The
    /// evictor marks a state before it counts the holders, the handle
    /// upgrades before it reads the mark, each with a full fence between
    /// (the store-buffer pattern): at least one sees the other, and a
    /// marked state is only ever handed out through the lock.
    pub(crate) fn attach(&self, key: &str, slot: &mut Weak<SessionCell>) -> Arc<SessionCell> {
        let upgraded = slot.upgrade();
        self.keep_or_reattach(key, slot, upgraded)
    }

    /// [`Registry::attach`] once the handle's `Weak` was upgraded.
    fn keep_or_reattach(
        &self,
        key: &str,
        slot: &mut Weak<SessionCell>,
        upgraded: Option<Arc<SessionCell>>,
    ) -> Arc<SessionCell> {
        if let Some(cell) = upgraded {
            fence(Ordering::SeqCst);
            if !cell.evicted.load(Ordering::Relaxed) {
                self.touch(&cell);
                return cell;
            }
        }
        let cell = self.cell(key).1;
        *slot = Arc::downgrade(&cell);
        cell
    }

    /// Marks `cell` as just used (for the least-recently-used eviction).
    pub(crate) fn touch(&self, cell: &SessionCell) {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        cell.last_used.store(tick, Ordering::Relaxed);
    }

    /// How many session states are held.
    pub(crate) fn len(&self) -> usize {
        self.cells.lock().map(|c| c.map.len()).unwrap_or(0)
    }

    /// The states that are not idle (something in flight or unsaved, a
    /// seed or code exchange running), with their keys.
    pub(crate) fn busy(&self) -> Vec<(Arc<str>, Arc<SessionCell>)> {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        // A loop, not filter/map/collect: fewer wasm bytes.
        let mut busy = Vec::new();
        for (key, cell) in &cells.map {
            if !cell.is_idle() || cell.has_replacing_calls() {
                busy.push((key.clone(), cell.clone()));
            }
        }
        busy
    }
}

// (Not in wasm: its log is compiled out, so the count would be for nothing.)
#[cfg(not(target_arch = "wasm32"))]
impl Drop for Registry {
    /// Says so when records held only in memory go with the client: their
    /// sessions' newest refresh tokens are lost (see
    /// [`crate::TokenClient::save_unsaved`]).
    fn drop(&mut self) {
        let cells = self.cells.get_mut().unwrap_or_else(|e| e.into_inner());
        let unsaved = (cells.map.values())
            .filter(|cell| cell.may_be_unsaved())
            .count();
        if unsaved > 0 {
            log::warn!(
                "freshtoken: a client went away holding {unsaved} session record(s) its store \
                 may never take (call save_unsaved() before closing it)"
            );
        }
    }
}

/// Drops the least recently used idle states (no operation running, nothing
/// in flight, nothing unsaved) until at most `target` remain. Handles hold
/// states weakly and re-attach by key, so they never keep one alive.
fn evict_idle(cells: &mut HashMap<Arc<str>, Arc<SessionCell>>, target: usize) {
    // A min-heap on the last use, not a sort: only `excess` are taken, and
    // the wasm then links no sorting at all (this sort and scope_key's were
    // 6.4 KB of it, 2.4 KB gzipped).
    // Pushed one by one (filter/map/collect, and the heapify `collect`
    // uses, cost wasm bytes). The keys are unique, so the order of the pops
    // is the same however the heap was built.
    let mut idle: BinaryHeap<(Reverse<u64>, Arc<str>)> = BinaryHeap::new();
    for (key, cell) in cells.iter() {
        if marked_unheld(cell) {
            idle.push((Reverse(cell.last_used.load(Ordering::Relaxed)), key.clone()));
        }
    }
    let excess = cells.len().saturating_sub(target);
    for _ in 0..excess {
        let Some((_, key)) = idle.pop() else { break };
        cells.remove(&key);
    }
    // The idle states kept lose their mark.
    for (_, key) in idle {
        if let Some(cell) = cells.get(&key) {
            cell.evicted.store(false, Ordering::Relaxed);
        }
    }
}

/// Marks `cell` as being evicted, then whether it is idle and no handle
/// holds it; unmarked again if not (see [`Registry::attach`]).
fn marked_unheld(cell: &Arc<SessionCell>) -> bool {
    cell.evicted.store(true, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    let unheld = Arc::strong_count(cell) == 1 && cell.is_idle();
    if !unheld {
        cell.evicted.store(false, Ordering::Relaxed);
    }
    unheld
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_state_per_key() {
        let r = Registry::new(10);
        let (_, a) = r.cell("u1");
        let (_, b) = r.cell("u1");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn evicts_idle_states_oldest_first_and_keeps_held_ones() {
        let r = Registry::new(10);
        let (_, held) = r.cell("held");
        for i in 0..9 {
            r.cell(&format!("u{i}"));
        }
        r.cell("u8"); // recently used
        r.cell("new"); // full: evicts down to 9 first
        assert!(r.len() <= 10);
        let (_, again) = r.cell("held");
        assert!(
            Arc::ptr_eq(&held, &again),
            "a state with a live handle is never evicted"
        );
        let cells = r.cells.lock().unwrap();
        assert!(cells.map.contains_key("u8") && cells.map.contains_key("new"));
        assert!(
            !cells.map.contains_key("u0"),
            "the oldest idle state goes first"
        );
    }

    #[test]
    fn a_handle_that_upgraded_as_its_state_was_evicted_re_attaches_by_key() {
        // The interleaving: the evictor found the state unheld, the handle
        // then upgraded its `Weak`, and the evictor removed the state.
        let r = Registry::new(10);
        let mut slot = Arc::downgrade(&r.cell("u1").1);
        let raced = {
            let mut cells = r.cells.lock().unwrap();
            assert!(marked_unheld(&cells.map["u1"]), "idle and unheld");
            let raced = slot.upgrade();
            cells.map.remove("u1");
            raced
        };
        let evicted = raced.clone().expect("upgraded before the removal");

        let attached = r.keep_or_reattach("u1", &mut slot, raced);

        assert!(!Arc::ptr_eq(&attached, &evicted), "not the evicted state");
        let (_, registered) = r.cell("u1");
        assert!(Arc::ptr_eq(&attached, &registered), "the key's one state");
        assert!(Arc::ptr_eq(&r.attach("u1", &mut slot), &registered));
    }

    #[test]
    fn a_state_found_held_keeps_no_mark() {
        let r = Registry::new(10);
        let (_, held) = r.cell("u1");
        assert!(!marked_unheld(&r.cells.lock().unwrap().map["u1"]));
        assert!(!held.evicted.load(Ordering::Relaxed));
        let mut slot = Arc::downgrade(&held);
        assert!(Arc::ptr_eq(&r.attach("u1", &mut slot), &held));
    }

    #[test]
    fn a_map_of_held_sessions_is_not_rescanned_on_every_insert() {
        let r = Registry::new(100);
        let held: Vec<_> = (0..100).map(|i| r.cell(&format!("held{i}")).1).collect();
        r.cell("first-over");
        let next = r.cells.lock().unwrap().next_eviction_at;
        assert_eq!(
            next, 110,
            "nothing evictable: the next pass waits a tenth of max"
        );
        for i in 0..9 {
            r.cell(&format!("more{i}"));
        }
        assert_eq!(r.len(), 110);
        assert_eq!(r.cells.lock().unwrap().next_eviction_at, next);
        drop(held);
        r.cell("late");
        assert!(
            r.len() <= 91,
            "idle states go once the next pass runs: {}",
            r.len()
        );
    }
}
