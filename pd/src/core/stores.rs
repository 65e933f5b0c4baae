//! Stores: their registration, lifecycle and latest statistics.

use std::collections::BTreeMap;

use ekv_proto::msg::{StoreHeartbeatRequest, StoreMeta, StoreState};
use ekv_proto::StoreId;
use serde::Serialize;

use super::error::{Error, Result};
use super::settings::Settings;

/// A store's state as the scheduler sees it: the persisted
/// [`StoreState`] plus the derived Down (no heartbeat for
/// [`Settings::down_after_ms`]), which is never persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum StoreHealth {
    /// Serving and heard from.
    Up,
    /// Registered as Up but silent for too long.
    Down,
    /// Being decommissioned (whether or not it still answers).
    Offline,
    /// Gone for good.
    Tombstone,
}

/// A store and what it last reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreInfo {
    /// The persisted registration.
    pub meta: StoreMeta,
    /// The last heartbeat (zeros until the first).
    pub stats: StoreHeartbeatRequest,
    /// When the store last showed signs of life: a heartbeat, a
    /// registration, or the start of this meta-service leader's term.
    pub last_seen_ms: u64,
    /// True once a heartbeat arrived in this term.
    pub heartbeated: bool,
}

impl StoreInfo {
    /// The store's state at `now_ms`.
    pub fn health(&self, now_ms: u64, settings: &Settings) -> StoreHealth {
        match self.meta.state {
            StoreState::Tombstone => StoreHealth::Tombstone,
            StoreState::Offline => StoreHealth::Offline,
            StoreState::Up if now_ms.saturating_sub(self.last_seen_ms) >= settings.down_after_ms => {
                StoreHealth::Down
            }
            StoreState::Up => StoreHealth::Up,
        }
    }

    /// True when a replica here counts as live: the store is Up and heard
    /// from.
    pub fn is_live(&self, now_ms: u64, settings: &Settings) -> bool {
        self.health(now_ms, settings) == StoreHealth::Up
    }

    /// True when the store may take a new replica or leader: live, heard
    /// from in this meta-service leader's term (a new leader counts every
    /// store live for `down_after_ms`, dead ones too: nothing is moved onto
    /// one on that credit), not shedding load, and not nearly full.
    pub fn accepts_load(&self, now_ms: u64, settings: &Settings) -> bool {
        let s = &self.stats;
        let full = s.capacity > 0
            && (s.capacity.saturating_sub(s.available)) as f64 > settings.max_used_ratio * s.capacity as f64;
        self.is_live(now_ms, settings) && self.heartbeated && !s.is_busy && !full
    }
}

/// Every store ever registered, by id (tombstones stay, so that their ids
/// are refused forever).
#[derive(Clone, Debug, Default)]
pub struct Stores {
    by_id: BTreeMap<StoreId, StoreInfo>,
}

impl Stores {
    /// The store `id`.
    pub fn get(&self, id: StoreId) -> Option<&StoreInfo> {
        self.by_id.get(&id)
    }

    /// Every store, by id.
    pub fn iter(&self) -> impl Iterator<Item = &StoreInfo> {
        self.by_id.values()
    }

    /// True when a replica on `id` counts as live at `now_ms`.
    pub fn is_live(&self, id: StoreId, now_ms: u64, settings: &Settings) -> bool {
        self.get(id).is_some_and(|s| s.is_live(now_ms, settings))
    }

    /// Checks a registration and returns the meta to persist, or `None`
    /// when nothing persisted changes. The state of a known store is kept
    /// (a restarting Offline store stays Offline); a new store is Up.
    pub fn check_put(&self, store: &StoreMeta) -> Result<Option<StoreMeta>> {
        if store.id.get() == 0 {
            return Err(Error::ZeroId { what: "store" });
        }
        let cur = self.by_id.get(&store.id);
        if let Some(cur) = cur {
            if cur.meta.state == StoreState::Tombstone {
                return Err(Error::StoreTombstoned { store: store.id });
            }
        }
        if let Some(other) = self.by_id.values().find(|s| {
            s.meta.id != store.id && s.meta.state != StoreState::Tombstone && s.meta.address == store.address
        }) {
            return Err(Error::DuplicateAddress { address: store.address.clone(), store: other.meta.id });
        }
        let meta = StoreMeta { state: cur.map_or(StoreState::Up, |c| c.meta.state), ..store.clone() };
        Ok((cur.map(|c| &c.meta) != Some(&meta)).then_some(meta))
    }

    /// Sets the persisted part of a store (from a registration, a state
    /// change or a record); a new store counts as seen at `now_ms`.
    pub fn put(&mut self, meta: StoreMeta, now_ms: u64) {
        match self.by_id.get_mut(&meta.id) {
            Some(s) => s.meta = meta,
            None => {
                let info = StoreInfo {
                    stats: StoreHeartbeatRequest { store_id: meta.id, ..Default::default() },
                    meta,
                    last_seen_ms: now_ms,
                    heartbeated: false,
                };
                self.by_id.insert(info.meta.id, info);
            }
        }
    }

    /// The store itself spoke to this meta-service leader (a registration
    /// or a bootstrap): it is alive as surely as after a heartbeat, and may
    /// take replicas before its first heartbeat is due.
    pub fn touch(&mut self, id: StoreId, now_ms: u64) {
        if let Some(s) = self.by_id.get_mut(&id) {
            s.last_seen_ms = s.last_seen_ms.max(now_ms);
            s.heartbeated = true;
        }
    }

    /// Records a heartbeat.
    ///
    /// # Errors
    /// [`Error::StoreNotFound`], [`Error::StoreTombstoned`].
    pub fn heartbeat(&mut self, hb: &StoreHeartbeatRequest, now_ms: u64) -> Result<()> {
        let s = self.by_id.get_mut(&hb.store_id).ok_or(Error::StoreNotFound { store: hb.store_id })?;
        if s.meta.state == StoreState::Tombstone {
            return Err(Error::StoreTombstoned { store: hb.store_id });
        }
        s.stats = hb.clone();
        s.last_seen_ms = s.last_seen_ms.max(now_ms);
        s.heartbeated = true;
        Ok(())
    }

    /// Starts every store's liveness clock afresh at `now_ms` and forgets
    /// statistics: a new meta-service leader must not take its own
    /// start-up for silence of the stores.
    pub fn reset_soft(&mut self, now_ms: u64) {
        for s in self.by_id.values_mut() {
            s.stats = StoreHeartbeatRequest { store_id: s.meta.id, ..Default::default() };
            s.last_seen_ms = now_ms;
            s.heartbeated = false;
        }
    }
}
