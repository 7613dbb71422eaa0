//! Which input offsets may be stored for commit. Outputs are acknowledged out of order
//! (many produce requests in flight), but a partition's committed offset may only move
//! past an event once every earlier event of that partition has been acknowledged too.

use std::collections::{HashMap, VecDeque};

/// Per partition, the consumed offsets whose outputs are not all acknowledged yet.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, VecDeque<Pending>>,
}

#[derive(Debug)]
struct Pending {
    offset: i64,
    acknowledged: bool,
}

impl OffsetTracker {
    /// Records that `offset` was consumed and its output is on its way. Offsets of one
    /// partition arrive in increasing order; a lower one means the partition was rewound
    /// (rebalance or seek), which forgets the older entries.
    pub fn start(&mut self, partition: i32, offset: i64) {
        let pending = self.partitions.entry(partition).or_default();
        if pending.back().is_some_and(|last| offset <= last.offset) {
            pending.clear();
        }
        pending.push_back(Pending {
            offset,
            acknowledged: false,
        });
    }

    /// Records that the output of `offset` was acknowledged. Returns the offset to store
    /// (the last of the acknowledged prefix; librdkafka commits it + 1) when it advanced.
    pub fn acknowledge(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let pending = self.partitions.get_mut(&partition)?;
        let index = pending
            .binary_search_by_key(&offset, |entry| entry.offset)
            .ok()?;
        pending[index].acknowledged = true;
        let mut storable = None;
        while let Some(front) = pending.front().filter(|entry| entry.acknowledged) {
            storable = Some(front.offset);
            pending.pop_front();
        }
        storable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_acknowledgements_wait_for_earlier_ones() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..15 {
            tracker.start(0, offset);
        }
        assert_eq!(tracker.acknowledge(0, 12), None);
        assert_eq!(tracker.acknowledge(0, 11), None);
        assert_eq!(tracker.acknowledge(0, 10), Some(12));
        assert_eq!(tracker.acknowledge(0, 14), None);
        assert_eq!(tracker.acknowledge(0, 13), Some(14));
        // Everything was stored: a repeated acknowledgement finds nothing to advance.
        assert_eq!(tracker.acknowledge(0, 14), None);
    }

    #[test]
    fn partitions_are_independent() {
        let mut tracker = OffsetTracker::default();
        tracker.start(0, 5);
        tracker.start(1, 7);
        tracker.start(0, 6);
        assert_eq!(tracker.acknowledge(0, 6), None);
        assert_eq!(tracker.acknowledge(1, 7), Some(7));
        assert_eq!(tracker.acknowledge(0, 5), Some(6));
    }

    #[test]
    fn gaps_in_offsets_are_fine() {
        // Compacted topics and transaction markers leave gaps between consumed offsets.
        let mut tracker = OffsetTracker::default();
        tracker.start(3, 100);
        tracker.start(3, 250);
        assert_eq!(tracker.acknowledge(3, 250), None);
        assert_eq!(tracker.acknowledge(3, 100), Some(250));
    }

    #[test]
    fn unknown_and_repeated_acknowledgements_are_ignored() {
        let mut tracker = OffsetTracker::default();
        assert_eq!(tracker.acknowledge(0, 1), None);
        tracker.start(0, 1);
        tracker.start(0, 2);
        assert_eq!(tracker.acknowledge(0, 1), Some(1));
        assert_eq!(tracker.acknowledge(0, 1), None);
        assert_eq!(tracker.acknowledge(0, 2), Some(2));
    }

    #[test]
    fn a_rewound_partition_starts_over() {
        let mut tracker = OffsetTracker::default();
        tracker.start(0, 8);
        tracker.start(0, 9);
        tracker.start(0, 4);
        tracker.start(0, 5);
        // 8 and 9 are forgotten: acknowledging them neither blocks nor advances anything.
        assert_eq!(tracker.acknowledge(0, 9), None);
        assert_eq!(tracker.acknowledge(0, 4), Some(4));
        assert_eq!(tracker.acknowledge(0, 8), None);
        assert_eq!(tracker.acknowledge(0, 5), Some(5));
    }
}
